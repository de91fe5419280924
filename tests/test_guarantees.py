"""Every guarantee a backend declares (and the README tabulates) is verified by named tests.

Declaring a new guarantee without adding its verifying tests here fails the suite, so the
generated guarantee table can only claim what the tests check against that backend.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from tenure._async.backends.base import AsyncQueueing
from tenure._core.guarantees import Capability, Guarantee
from tenure._registry import resolve
from tenure._sync.backends.base import Queueing
from tests.conftest import BACKENDS, EXAMPLE_URLS, backend_module, declared

ROOT = Path(__file__).resolve().parent.parent

# guarantee -> tests ("module::function") that run against every backend declaring it
VERIFIED_BY: dict[Guarantee, list[str]] = {
    Guarantee.FENCING: [
        "tests._sync.test_lock_contract::test_fences_grow_with_every_acquisition",
        "tests._async.test_lock_contract::test_fences_grow_with_every_acquisition",
        "tests.test_multiprocess::test_no_increment_is_lost_and_fences_follow_hold_order",
        "tests.test_multiprocess::test_a_paused_holder_is_told_and_the_next_fence_is_larger",
    ],
    # Expiry is judged by the backend: a holder that is frozen cannot keep its lease alive
    # by its own clock, and a crashed holder's lease ends on time.
    Guarantee.SERVER_TIME: [
        "tests._sync.test_lock_contract::test_loss_is_told_at_the_next_check",
        "tests._async.test_lock_contract::test_release_is_owner_checked",
        "tests.test_multiprocess::test_a_paused_holder_is_told_and_the_next_fence_is_larger",
        "tests.test_multiprocess::test_a_killed_holder_frees_the_lock_after_its_ttl",
    ],
    Guarantee.FIFO: [
        "tests.test_zookeeper::test_waiters_watch_only_their_predecessor",
        "tests._async.test_lock_contract::test_fair_waiters_are_served_in_arrival_order",
        "tests._sync.test_lock_contract::test_fair_waiters_are_served_in_arrival_order",
        "tests.test_mysql::test_fair_waiters_are_handed_the_lock_by_the_server_in_order",
        "tests.test_postgresql::test_fair_waiters_keep_their_place_across_many_waits",
    ],
    Guarantee.CROSS_HOST: [
        # Every client reaches the server over TCP; the processes here share a host, the
        # protocol does not care.
        "tests.test_multiprocess::test_no_increment_is_lost_and_fences_follow_hold_order",
    ],
    Guarantee.CROSS_PROCESS: [
        "tests.test_multiprocess::test_no_increment_is_lost_and_fences_follow_hold_order",
    ],
    # A minority of instances killed, or restarted empty, while a lock is held: it stays held,
    # rivals stay out, renewal and release keep working.
    Guarantee.SURVIVES_FAILOVER: [
        "tests.test_redlock::test_one_instance_down_it_still_works",
        "tests.test_redlock::test_holders_exclude_each_other_with_an_instance_down",
        "tests.test_redlock::test_a_restarted_instance_does_not_free_a_held_lock",
        "tests.test_etcd::test_killing_the_leader_keeps_the_lock_held_and_the_line_moving",
        "tests.test_etcd::test_a_dead_first_endpoint_is_skipped",
        "tests.test_etcd::test_a_frozen_leader_is_left_behind",
        "tests.test_zookeeper::test_killing_the_leader_keeps_the_lock_and_the_line",
        "tests.test_zookeeper::test_the_session_moves_to_another_member_when_its_member_dies",
    ],
    # A lease ends with its session: a lost session loses every lock of it, and a holder frozen
    # past its session's TTL is told when it wakes, after another took over with a larger fence.
    Guarantee.SESSION_BOUND: [
        "tests.test_etcd::test_a_revoked_session_loses_its_locks",
        "tests.test_etcd::test_a_holder_paused_past_its_session_ttl_is_told",
        "tests.test_zookeeper::test_a_frozen_holder_process_loses_its_session_and_is_told",
        "tests.test_mysql::test_a_restart_while_held_is_told_and_the_stale_fenced_write_is_rejected",
        "tests.test_mysql::test_a_frozen_holder_loses_the_lock_when_the_server_ends_its_idle_session",
        "tests.test_postgresql::test_a_server_restart_while_held_is_told_and_a_stale_fenced_write_is_rejected",
        "tests.test_postgresql::test_a_terminated_session_loses_its_lock_and_is_told",
        "tests.test_postgresql::test_a_holder_frozen_past_its_ttl_loses_its_session_and_the_next_fence_is_larger",
    ],
}
# The multi-process tests are parametrised over backends declaring either of these.
MULTIPROCESS = {Guarantee.CROSS_PROCESS, Guarantee.CROSS_HOST}


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_declared_guarantee_has_verifying_tests(backend: str) -> None:
    for guarantee in declared(backend):
        applicable = []
        for test in VERIFIED_BY.get(guarantee, []):
            module_name, function = test.split("::")
            module = importlib.import_module(module_name)
            assert callable(getattr(module, function, None)), f"{test} does not exist"
            if _runs_against(module_name, backend):
                applicable.append(test)
        assert applicable, f"{backend}:// declares {guarantee.name} but no test verifies it there"


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_declared_capability_is_the_protocol_implemented(backend: str) -> None:
    # Capabilities are Protocols checked when a primitive is built: declaring one and having its
    # operations must go together, in both colours.
    example = EXAMPLE_URLS.get(backend, f"{backend}://localhost")
    for colour, protocol in (("_async", AsyncQueueing), ("_sync", Queueing)):
        cls, _ = resolve(example, colour)  # type: ignore[arg-type]
        declares = Capability.QUEUEING in cls.capabilities  # type: ignore[attr-defined]
        assert declares == issubclass(cls, protocol), f"{backend}:// ({colour}): Queueing"


def test_readme_table_matches_the_declarations() -> None:
    result = subprocess.run(
        [sys.executable, "scripts/guarantee_table.py", "--check"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def _runs_against(module_name: str, backend: str) -> bool:
    """Return whether the tests of ``module_name`` are run against ``backend``."""
    if module_name.endswith(".test_lock_contract"):
        return True  # parametrised over every backend
    if module_name == "tests.test_multiprocess":
        return bool(declared(backend) & MULTIPROCESS)
    return module_name == f"tests.test_{backend_module(backend)}"  # a backend's own fault tests
