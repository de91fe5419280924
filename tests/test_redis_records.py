"""Redis idempotency records: one round trip per hit, nothing left forever, fences that only grow."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
import redis

import tenure
from tenure._core.idempotency import run_name
from tenure._core.keys import namespaced_key
from tenure._core.tokens import Owner
from tenure._sync.backends.base import Records, Renewal
from tests.servers import RedisServer

T = TypeVar("T")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    """A server of this test's own: its command counts and its restarts are this test's alone."""
    redis_server = RedisServer(tmp_path / "redis").start()
    yield redis_server
    redis_server.stop()


def test_a_replayed_hit_is_one_script_call(server: RedisServer) -> None:
    direct = _direct(server.url)
    with tenure.Coordinator(server.url) as coord:
        keys = coord.idempotency("payments")
        first = keys.run("req-1", lambda amount: {"charged": amount}, 42)
        direct.config_resetstat()
        assert keys.run("req-1", lambda amount: {"charged": amount}, 42) == first
        stats = direct.info("commandstats")
    calls = {
        name: stat["calls"]
        for name, stat in stats.items()
        if not name.startswith(("cmdstat_info", "cmdstat_config"))
    }
    # One EVALSHA from the client; the server counts its script's reads as well: a replay is one
    # GET (the record's own expiry makes its presence enough; its time left is not read).
    assert calls == {"cmdstat_evalsha": 1, "cmdstat_get": 1}


def test_waiting_duplicates_wake_one_after_another_when_the_run_ends(redis_url: str) -> None:
    # The run's end wakes one waiter; each waiter woken by the record passes the wake-up on as
    # it finds it. Without that, the others would sleep out their backoff (up to 0.5 s here).
    coords = [tenure.Coordinator(redis_url) for _ in range(4)]
    try:
        ended: list[float] = []
        returned: list[float] = []

        def slow() -> str:
            time.sleep(1.5)  # long enough for the waiters' backoff to reach its 0.5 s ceiling
            ended.append(time.monotonic())
            return "paid"

        def duplicate(coord: tenure.Coordinator) -> None:
            assert coord.idempotency("payments").run("req-1", slow, timeout=10) == "paid"
            returned.append(time.monotonic())

        runner = threading.Thread(target=duplicate, args=(coords[0],))
        runner.start()
        time.sleep(0.2)
        waiters = [threading.Thread(target=duplicate, args=(c,)) for c in coords[1:] for _ in range(2)]
        for waiter in waiters:
            waiter.start()
        for thread in [runner, *waiters]:
            thread.join(timeout=15)
        assert len(ended) == 1 and len(returned) == 7
        assert max(returned) - ended[0] < 0.25, [round(t - ended[0], 3) for t in sorted(returned)]
    finally:
        for coord in coords:
            coord.close()


def test_everything_a_key_leaves_expires(redis_url: str) -> None:
    direct = _direct(redis_url)
    with tenure.Coordinator(redis_url) as coord:
        keys = coord.idempotency("payments", ttl=60, lease=0.3)
        keys.run("done", lambda: "ok")
        with pytest.raises(ValueError):
            keys.run("failed", _fail)  # the error frees the key: its lease is released
        store = coord._store
        assert isinstance(store, Records)
        dead = _store_key(coord, "payments", "dead")
        assert isinstance(store.begin_run(dead, Owner(), 0.3), int)  # a runner that dies at once

        mine = _keys_of(direct, coord.namespace)
        assert mine, "the runs left nothing to look at"
        for name in mine:
            assert direct.pttl(name) > 0, f"{name!r} would live forever"
        for name in ("failed", "dead"):  # the fence counter goes a grace (1 s) after the lease
            assert 0 < direct.pttl(_prefix(coord, name) + ":fence") <= 1300
        assert not direct.exists(_prefix(coord, "done") + ":fence")  # the record keeps the fence

        time.sleep(1.5)
        left = {name for name in _keys_of(direct, coord.namespace) if not name.endswith(b":signal")}
        assert left == {_prefix(coord, "done").encode() + b":record"}


def test_a_run_longer_than_its_lease_keeps_its_fence(redis_url: str) -> None:
    with tenure.Coordinator(redis_url) as coord:
        keys = coord.idempotency("reports", lease=0.3)
        seen: list[int] = []

        def slow() -> str:
            lease = tenure.Idempotency.current_lease()
            assert lease is not None
            time.sleep(1.6)  # several leases long: the renewals keep the counter alive too
            running = keys.state("r-1").running
            assert running is not None
            seen.extend((lease.fence, running.fence))
            return "done"

        assert keys.run("r-1", slow) == "done"
        done = keys.state("r-1").done
        assert done is not None and seen == [done.fence, done.fence]


def test_fences_grow_after_a_key_left_nothing_behind(redis_url: str) -> None:
    direct = _direct(redis_url)
    with tenure.Coordinator(redis_url) as coord:
        keys = coord.idempotency("orders", ttl=0.3, lease=0.3)
        fences: list[int] = []

        def charge() -> str:
            lease = tenure.Idempotency.current_lease()
            assert lease is not None
            fences.append(lease.fence)
            return "charged"

        keys.run("o-1", charge)
        time.sleep(1.4)  # the record has expired, and the key left no counter behind
        assert _keys_of(direct, coord.namespace) <= {_prefix(coord, "o-1", "orders").encode() + b":signal"}
        keys.run("o-1", charge)
        keys.run("o-1", charge)  # a hit: not run again
        assert len(fences) == 2 and fences[1] > fences[0]


def test_a_restart_without_persistence_forgets_records_and_fences_still_grow(server: RedisServer) -> None:
    with tenure.Coordinator(server.url) as coord:
        keys = coord.idempotency("payments")
        fences: list[int] = []

        def charge() -> int:
            lease = tenure.Idempotency.current_lease()
            assert lease is not None
            fences.append(lease.fence)
            return len(fences)

        assert keys.run("req-1", charge) == 1
        server.restart()  # the fixture's server keeps nothing on disk: every record is gone
        assert _eventually(lambda: keys.run("req-1", charge)) == 2
        assert keys.run("req-1", charge) == 2
        assert fences[1] > fences[0], "a server that lost its data must not hand out an old fence"


def test_a_lock_keeps_its_fence_counter_when_renewed(redis_url: str) -> None:
    direct = _direct(redis_url)
    with tenure.Coordinator(redis_url) as coord, coord.lock("orders", ttl=5).acquire() as lease:
        lease.renew()
        fence_key = "{" + namespaced_key(coord.namespace, "orders") + "}:fence"
        assert direct.pttl(fence_key) == -1, "only a run's counter expires, not a lock's"


def test_a_lock_s_renewal_touches_only_its_lease(server: RedisServer) -> None:
    direct = _direct(server.url)
    with tenure.Coordinator(server.url) as coord:
        keys = coord.idempotency("payments")
        keys.run("req-1", lambda: "ok")  # the store has run a key: locks still renew alone
        with coord.lock("orders", ttl=5).acquire() as lease:
            lease.renew()  # the server learns the script (EVAL); the next renewal is an EVALSHA
            direct.config_resetstat()
            lease.renew()
            stats = direct.info("commandstats")
    calls = {
        name: stat["calls"]
        for name, stat in stats.items()
        if not name.startswith(("cmdstat_info", "cmdstat_config"))
    }
    assert calls == {"cmdstat_evalsha": 1, "cmdstat_get": 1, "cmdstat_pexpire": 1}


def test_a_batch_of_runs_and_locks_renews_each_as_its_kind(redis_url: str) -> None:
    direct = _direct(redis_url)
    with tenure.Coordinator(redis_url) as coord:
        store = coord._store
        assert isinstance(store, Records)
        run, lock, stranger = _store_key(coord, "payments", "r-1"), "orders", "taken"
        runner, holder = Owner(), Owner()
        assert isinstance(store.begin_run(run, runner, 0.3), int)
        assert store.try_acquire(lock, holder, 0.3) is not None
        outcomes = store.renew_many(
            [Renewal(lock, holder, 5), Renewal(run, runner, 5), Renewal(stranger, Owner(), 5)]
        )
        assert outcomes == [True, True, False]  # in the batch's order, whatever script renewed each
        assert 5000 < direct.pttl(_prefix(coord, "r-1") + ":fence") <= 6000  # the lease's ttl + a grace
        assert direct.pttl("{" + lock + "}:fence") == -1
        assert store.finish_run(run, runner, b"done", 60)
        assert store.renew_many([Renewal(lock, holder, 5)]) == [True]


def test_max_size_cannot_exceed_what_redis_keeps(redis_url: str) -> None:
    coord = tenure.Coordinator(redis_url)
    store = coord._store
    assert isinstance(store, Records)
    assert coord.idempotency("blobs").max_size == store.record_limit
    with pytest.raises(tenure.ConfigurationError, match="max_size"):
        coord.idempotency("blobs", max_size=store.record_limit + 1)


def _fail() -> None:
    raise ValueError("declined")


def _store_key(coord: tenure.Coordinator, space: str, key: str) -> str:
    return namespaced_key(coord.namespace, run_name(space, key), kind="idempotency")


def _prefix(coord: tenure.Coordinator, key: str, space: str = "payments") -> str:
    return "{" + _store_key(coord, space, key) + "}"


def _keys_of(direct: redis.Redis, namespace: str) -> set[bytes]:
    return set(direct.scan_iter(match="{" + namespace + ":*"))


def _direct(url: str) -> redis.Redis:
    return redis.Redis.from_url(url.split("?", 1)[0], socket_timeout=5)


def _eventually(call: Callable[[], T]) -> T:
    """Call ``call`` until the restarted server answers (the first calls may find it still down)."""
    deadline = time.monotonic() + 5
    while True:
        try:
            return call()
        except tenure.BackendUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
