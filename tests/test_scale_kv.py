"""Many leases held at once on memory, SQLite, Redis and Redlock (issue 20).

2,000 locks of one coordinator stay held for three ttls and are released one by one; a server
restart (for SQLite: its file replaced) loses every lease within the ttl; renewals go in
batches, counted where the engine counts them: Redis's ``INFO commandstats``, SQLite's trace of
the statements run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis

import tenure
from tests.conftest import redlock_url_of
from tests.servers import RedisServer

pytestmark = pytest.mark.timeout(120)

HELD = 2_000


def hold(coord: tenure.Coordinator, count: int, ttl: float) -> tuple[list[tenure.Lease], list[tenure.Lease]]:
    """Take ``count`` distinct locks; return them and the list their losses are reported to."""
    lost: list[tenure.Lease] = []
    leases: list[tenure.Lease] = []
    for i in range(count):
        lease = coord.lock(f"held-{i}", ttl=ttl).try_acquire()
        assert lease is not None, f"held-{i} is free"
        lease.on_lost(lost.append)
        leases.append(lease)
    return leases, lost


def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return condition()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A server of this test's own: restarted, or its command counters read alone."""
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture
def own_redlock(tmp_path: Path) -> Iterator[list[RedisServer]]:
    servers: list[RedisServer] = []
    try:
        for i in range(3):
            servers.append(RedisServer(tmp_path / f"redis-{i}").start())
        yield servers
    finally:
        for server in servers:
            server.stop()


def evalsha_calls(server: RedisServer) -> int:
    """Return how many EVALSHA calls the server ran since its counters were last reset."""
    stats = redis.Redis(port=server.port, socket_timeout=5).info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


def reset_stats(server: RedisServer) -> None:
    redis.Redis(port=server.port, socket_timeout=5).config_resetstat()


# -- many leases held, each on its own -------------------------------------------------------------


@pytest.mark.parametrize("backend", ["memory", "sqlite", "redis", "redlock"])
def test_two_thousand_locks_stay_held_and_are_released_one_by_one(
    backend: str, request: pytest.FixtureRequest
) -> None:
    url: str = request.getfixturevalue(f"{backend}_url")
    ttl = 1.5
    with tenure.Coordinator(url) as coord, tenure.Coordinator(url) as rival:
        leases, lost = hold(coord, HELD, ttl)
        time.sleep(3 * ttl)
        assert lost == [], f"{len(lost)} of {HELD} leases lost while renewed"
        for lease in leases:
            lease.check()
        # Released one: the others stay held, a rival takes the released one and no other.
        leases[0].release()
        taken = rival.lock("held-0").try_acquire()
        assert taken is not None and taken.fence > leases[0].fence
        for lease in leases[1::100]:
            lease.check()
            assert rival.lock(lease.name).try_acquire() is None
        taken.release()
        for lease in leases[1:]:
            lease.release()
        assert lost == []
        for lease in leases[1::100]:
            again = rival.lock(lease.name).try_acquire()
            assert again is not None, f"{lease.name} was released"
            again.release()


@pytest.mark.parametrize("backend", ["memory", "sqlite", "redis", "redlock"])
def test_two_coordinators_of_one_process_exclude_each_other(
    backend: str, request: pytest.FixtureRequest
) -> None:
    url: str = request.getfixturevalue(f"{backend}_url")
    with tenure.Coordinator(url) as one, tenure.Coordinator(url) as two:
        first = one.lock("shared", ttl=1).acquire(timeout=2)
        assert two.lock("shared").try_acquire() is None
        with ThreadPoolExecutor(1) as other_thread:  # one thread asking twice is told AlreadyHeld
            attempt = other_thread.submit(one.lock("shared").try_acquire).result()
        assert attempt is None, "another thread of the same coordinator is kept out too"
        time.sleep(1.2)  # past the ttl: the renewer keeps it
        with pytest.raises(tenure.AcquireTimeout):
            two.lock("shared").acquire(timeout=0.2)
        first.release()
        second = two.lock("shared", ttl=1).acquire(timeout=2)
        assert second.fence > first.fence
        with ThreadPoolExecutor(1) as other_thread:
            assert other_thread.submit(one.lock("shared").try_acquire).result() is None
        second.release()


# -- a server that restarts loses every lease within the ttl -----------------------------------------


def assert_all_lost_within_ttl(coord: tenure.Coordinator, restart: Callable[[], None]) -> None:
    ttl = 1.0
    leases, lost = hold(coord, HELD, ttl)
    time.sleep(ttl)  # renewed at least once
    assert lost == []
    started = time.monotonic()
    restart()
    assert wait_until(lambda: len(lost) == HELD, ttl + 1), f"only {len(lost)} of {HELD} reported lost"
    took = time.monotonic() - started
    assert took <= ttl + 0.25, f"the last loss was reported {took:.2f}s after the restart (ttl {ttl}s)"
    assert all(lease.lost for lease in leases)


def test_redis_restart_loses_every_lease_within_the_ttl(own_redis: RedisServer) -> None:
    with tenure.Coordinator(f"{own_redis.url}?op_timeout=0.3&connect_timeout=0.3") as coord:
        assert_all_lost_within_ttl(coord, own_redis.restart)


def test_redlock_majority_restart_loses_every_lease_within_the_ttl(own_redlock: list[RedisServer]) -> None:
    url = redlock_url_of(own_redlock, op_timeout=0.3, connect_timeout=0.3)
    with tenure.Coordinator(url) as coord:

        def restart_majority() -> None:
            for server in own_redlock[:2]:
                server.restart()

        assert_all_lost_within_ttl(coord, restart_majority)


def test_sqlite_file_replaced_loses_every_lease_within_the_ttl(tmp_path: Path) -> None:
    path = tmp_path / "locks.db"
    with tenure.Coordinator(f"sqlite://{path}") as coord:

        def replace_file() -> None:
            for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
                name.unlink(missing_ok=True)

        assert_all_lost_within_ttl(coord, replace_file)


# -- renewals go in batches ------------------------------------------------------------------------


def count_renewals(coord: tenure.Coordinator) -> list[int]:
    """Count the leases handed to the store's renew_many (the renewer's one entry point)."""
    store = coord._store
    real = store.renew_many
    renewed: list[int] = []

    def counting(renewals: list[object]) -> object:
        renewed.append(len(renewals))
        return real(renewals)  # type: ignore[arg-type]

    store.renew_many = counting  # type: ignore[method-assign]
    return renewed


def test_redis_renews_two_thousand_leases_in_a_few_script_calls(own_redis: RedisServer) -> None:
    with tenure.Coordinator(own_redis.url) as coord:
        renewed = count_renewals(coord)
        leases, lost = hold(coord, HELD, ttl=1.5)
        reset_stats(own_redis)
        renewed.clear()
        time.sleep(3.0)  # six renewal rounds of every lease
        calls, renewals = evalsha_calls(own_redis), sum(renewed)
        assert renewals >= 4 * HELD, f"only {renewals} renewals in 3 s"
        # One script call per batch of up to 1,000 leases, not one per lease.
        assert calls <= renewals / 100, f"{calls} script calls for {renewals} renewals"
        assert lost == []
        for lease in leases:
            lease.release()


def test_redlock_renews_two_thousand_leases_in_a_few_calls_per_instance(
    own_redlock: list[RedisServer],
) -> None:
    with tenure.Coordinator(redlock_url_of(own_redlock)) as coord:
        renewed = count_renewals(coord)
        leases, lost = hold(coord, HELD, ttl=1.5)
        for server in own_redlock:
            reset_stats(server)
        renewed.clear()
        time.sleep(3.0)
        renewals = sum(renewed)
        assert renewals >= 4 * HELD, f"only {renewals} renewals in 3 s"
        for server in own_redlock:
            calls = evalsha_calls(server)
            assert calls <= renewals / 100, f"{calls} script calls on one instance for {renewals} renewals"
        assert lost == []
        for lease in leases:
            lease.release()


def test_sqlite_renews_two_thousand_leases_in_a_few_statements(sqlite_url: str) -> None:
    with tenure.Coordinator(sqlite_url) as coord:
        renewed = count_renewals(coord)
        leases, lost = hold(coord, HELD, ttl=1.5)
        statements: list[str] = []
        coord._store._table._current_db().set_trace_callback(statements.append)  # type: ignore[attr-defined]
        renewed.clear()
        time.sleep(3.0)
        renewals = sum(renewed)
        renewing = "UPDATE tenure_leases SET expires_at"
        updates = [sql for sql in statements if sql.lstrip().startswith(renewing)]
        assert renewals >= 4 * HELD, f"only {renewals} renewals in 3 s"
        assert len(updates) <= renewals / 100, f"{len(updates)} statements for {renewals} renewals"
        assert lost == []
        for lease in leases:
            lease.release()


def test_sqlite_before_3_38_renews_in_one_transaction(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tenure._sync.backends.sqlite import table

    monkeypatch.setattr(table, "BATCHED_RENEWALS", False)  # as on a SQLite without RETURNING or ->>
    with tenure.Coordinator(sqlite_url) as coord, tenure.Coordinator(sqlite_url) as rival:
        leases, lost = hold(coord, 50, ttl=0.6)
        time.sleep(1.5)  # several rounds of renewals
        assert lost == []
        released = leases.pop()
        released.release()
        assert rival.lock(released.name).try_acquire() is not None
        assert all(rival.lock(lease.name).try_acquire() is None for lease in leases[::10])
        for lease in leases:
            lease.release()
