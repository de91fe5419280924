"""Elections across real processes: a paused leader is deposed harmlessly, a killed one replaced.

The in-process contract (campaign, resign, observe, a partitioned leader) is in
``tests/_async/test_election_contract.py``; these tests need separate processes.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from pathlib import Path

import pytest

import tenure
from tenure._core.guarantees import Guarantee
from tenure._exceptions import BackendUnavailable
from tests._sync.faults import replace_renew
from tests.conftest import backends_with
from tests.workers import fenced_write, read_line, worker

CROSS_PROCESS = sorted(set(backends_with(Guarantee.CROSS_PROCESS)) | set(backends_with(Guarantee.CROSS_HOST)))
# Backends whose observers are told of a change by the server rather than by polling.
NOTIFYING = ["memory", "redis", "redlock", "etcd", "zookeeper", "postgresql", "postgresql_table"]


def url_of(backend: str, request: pytest.FixtureRequest) -> str:
    value: str = request.getfixturevalue(f"{backend}_url")
    return value


@pytest.mark.slow
@pytest.mark.parametrize("backend", CROSS_PROCESS)
def test_a_paused_leader_is_deposed_and_its_late_write_rejected(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url, register = url_of(backend, request), tmp_path / "register.db"
    leader = worker("lead-and-check", url, "paused", "0.5", str(register))
    try:
        first_term = int(read_line(leader, "LEADER").split()[1])
        os.kill(leader.pid, signal.SIGSTOP)  # a GC pause, a VM migration, a partition
        time.sleep(1.0)  # past the TTL: the backend lets the leadership expire
        with tenure.Coordinator(url) as coord:
            leadership = coord.election("paused", value="successor", ttl=5).campaign(timeout=3)
            assert leadership.term > first_term
            assert fenced_write(register, "from the successor", leadership.term)
            os.kill(leader.pid, signal.SIGCONT)
            # Split brain made harmless: told at its next check, its stale-term write rejected.
            assert read_line(leader, "DEPOSED") == f"DEPOSED {first_term} callback=True late-write=False"
            with sqlite3.connect(register) as db:
                assert db.execute("SELECT value, term FROM register").fetchone() == (
                    "from the successor",
                    leadership.term,
                )
            leader_now = coord.election("paused").leader()
            assert leader_now == tenure.Leader("successor", leadership.term)
            leadership.resign()
        assert leader.wait(timeout=10) == 0
    finally:
        os.kill(leader.pid, signal.SIGCONT) if leader.poll() is None else None
        leader.kill()
        leader.wait()


@pytest.mark.slow
@pytest.mark.parametrize("backend", CROSS_PROCESS)
def test_a_killed_leader_is_replaced_after_its_ttl(backend: str, request: pytest.FixtureRequest) -> None:
    url = url_of(backend, request)
    leader = worker("lead-forever", url, "crashed", "0.5")
    try:
        first_term = int(read_line(leader, "LEADER").split()[1])
        with tenure.Coordinator(url) as coord:
            standby = coord.election("crashed", value="standby", ttl=5)
            assert standby.leader() is not None
            leader.kill()  # kill -9: no resignation, no goodbye
            leader.wait()
            started = time.monotonic()
            leadership = standby.campaign(timeout=5)
            took = time.monotonic() - started
            assert leadership.term > first_term
            assert took < 1.5, f"took {took:.2f} s to replace a leader whose ttl is 0.5 s"
            leadership.resign()
    finally:
        leader.kill()
        leader.wait()


@pytest.mark.parametrize("backend", NOTIFYING)
def test_observers_are_notified_rather_than_polling(backend: str, request: pytest.FixtureRequest) -> None:
    url = url_of(backend, request)
    with tenure.Coordinator(url) as coord, tenure.Coordinator(url) as rival:
        coord.connect()
        feed = coord._store.watch(coord.election("observed").key)
        try:
            changed_at: list[float] = []

            def campaign_soon() -> None:
                time.sleep(0.3)
                changed_at.append(time.monotonic())
                rival.election("observed", value="x").campaign(timeout=2)

            thread = threading.Thread(target=campaign_soon)
            thread.start()
            started = time.monotonic()
            feed.wait(10.0)  # polling would sleep the whole 10 s (or a poll interval, 0.5 s and up)
            woke = time.monotonic()
            thread.join()
            assert changed_at and woke >= changed_at[0] - 0.05, "woke before anything changed"
            assert woke - started < 2.0 and woke - changed_at[0] < 0.2, "the change was not notified"
        finally:
            feed.close()


def test_sync_run_stops_fn_when_leadership_is_lost(backend_url: str) -> None:
    # A thread cannot be cancelled: run() raises inside fn at its next bytecode instead.
    with tenure.Coordinator(backend_url) as coord:
        election = coord.election("run-me", value="runner", ttl=0.4)
        steps: list[int] = []

        def lead() -> None:
            def refuse(*args: object) -> bool:
                raise BackendUnavailable("injected partition")

            replace_renew(coord._store, refuse)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                steps.append(1)
                time.sleep(0.01)

        started = time.monotonic()
        with pytest.raises(tenure.LeadershipLost) as info:
            election.run(lead)
        took = time.monotonic() - started
        assert isinstance(info.value, tenure.LockLost) and "run-me" in str(info.value)
        assert steps and took < 2.0, f"fn went on for {took:.2f} s after a 0.4 s leadership"
        time.sleep(0.1)  # no stop is left pending to surface here
        assert election.leader() is None


def test_sync_run_returns_without_a_pending_stop() -> None:
    # A stop that comes as fn returns is withdrawn: it never surfaces in the caller's code.
    from tenure._concurrency import call_stoppably

    stops: list[object] = []
    assert call_stoppably(lambda x: x * 2, (21,), stops.append) == 42
    stop = stops[0]
    thread = threading.Thread(target=stop)  # type: ignore[arg-type]
    thread.start()
    thread.join()
    total = sum(range(100_000))  # many bytecodes: a pending stop would fire here
    assert total == 4_999_950_000
