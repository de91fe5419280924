"""MariaDB under faults: restarts, frozen holders and servers, cancelled waits, long names."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pymysql  # type: ignore[import-untyped]
import pytest

import tenure
from tenure._async.backends.mysql.permit_sql import guard_name
from tenure._async.backends.mysql.sql import MAX_LOCK_NAME, lock_name
from tenure._core.keys import MAX_NAME_BYTES, namespaced_key
from tenure._core.semaphore import permit_key
from tenure._core.tokens import Owner
from tests.servers import free_port
from tests.servers_mysql import DATABASE, PASSWORD, USER, MariaDBServer
from tests.workers import read_line, worker

pytestmark = pytest.mark.slow


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[MariaDBServer]:
    """A server of this test's own, free to be restarted or frozen."""
    server = MariaDBServer(tmp_path / "mariadb").start()
    yield server
    server.stop()


def namespaced(url: str, **options: object) -> str:
    query = "&".join([f"namespace=test-{uuid.uuid4().hex[:12]}", *(f"{k}={v}" for k, v in options.items())])
    return f"{url}?{query}"


def raw_connection(server: MariaDBServer) -> pymysql.Connection:
    return pymysql.connect(
        host="127.0.0.1", port=server.port, user=USER, password=PASSWORD, database=DATABASE, autocommit=True
    )


def fenced_write(server: MariaDBServer, value: str, fence: int) -> int:
    """Write ``value`` to the protected row unless a larger fence wrote first; return rows changed."""
    with raw_connection(server) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS resource (id INT PRIMARY KEY, value TEXT, fence BIGINT)")
        cur.execute("INSERT IGNORE INTO resource VALUES (1, '', 0)")
        changed: int = cur.execute(
            "UPDATE resource SET value = %s, fence = %s WHERE id = 1 AND fence < %s", (value, fence, fence)
        )
        return changed


def test_lock_names_are_digests_of_at_most_64_characters(mariadb_server: MariaDBServer) -> None:
    longest = "n" * MAX_NAME_BYTES
    names = {lock_name(namespaced_key(ns, name)) for ns in ("a", "b") for name in ("x", "X", longest)}
    assert len(names) == 6, "distinct keys (case included) get distinct lock names"
    assert all(len(name) <= MAX_LOCK_NAME and name == name.lower() for name in names)
    url = namespaced(mariadb_server.url)
    with (
        tenure.Coordinator(url) as coord,
        tenure.Coordinator(url) as rival,
        coord.lock(longest, ttl=5) as lease,
    ):
        assert rival.lock(longest).try_acquire() is None
        with raw_connection(mariadb_server) as conn, conn.cursor() as cur:
            cur.execute("SELECT IS_USED_LOCK(%s)", (lock_name(namespaced_key(coord.namespace, longest)),))
            assert cur.fetchone()[0] is not None, "the server holds the lock under the digest name"
        info = coord.inspect(longest)
        assert info is not None and info.fence == lease.fence


def test_the_fence_is_drawn_only_after_the_lock_is_taken(mariadb_server: MariaDBServer) -> None:
    # The acquiring INSERT takes the lock in its WHERE clause and draws the fence in its select
    # list: failed attempts must draw nothing, or a fence could be drawn before the lock is ours.
    url = namespaced(mariadb_server.url)
    with tenure.Coordinator(url) as coord, tenure.Coordinator(url) as rival:
        first = coord.lock("order", ttl=5).acquire()
        for _ in range(20):
            assert rival.lock("order").try_acquire() is None
        waiter = rival.lock("order", fair=True)
        with pytest.raises(tenure.AcquireTimeout):
            waiter.acquire(timeout=0.3)  # a queued wait that times out draws none either
        first.release()
        with coord.lock("order", ttl=5) as second:
            assert second.fence == first.fence + 1


@pytest.mark.parametrize("durable", [True, False], ids=["flush_log_at_commit=1", "flush_log_at_commit=2"])
def test_fences_keep_growing_across_a_server_crash(tmp_path: Path, durable: bool) -> None:
    # Running out of cached values stores the sequence's next 1000 without flushing it: a crash
    # right after would make the sequence hand out values again, so fences restart higher.
    server = MariaDBServer(tmp_path / "mariadb", durable=durable).start()
    try:
        url = namespaced(server.url)
        for _ in range(2):
            drawn = []
            with tenure.Coordinator(url) as coord:
                lock = coord.lock("job")
                for _ in range(1500):  # across at least one refill of the sequence's cache
                    with lock.acquire(timeout=5) as lease:
                        drawn.append(lease.fence)
            assert drawn == sorted(set(drawn))
            server.restart()  # kill -9, then start on the same data
            with tenure.Coordinator(url) as coord, coord.lock("job").acquire(timeout=5) as lease:
                assert lease.fence > drawn[-1], (lease.fence, drawn[-1])
    finally:
        server.stop()


def test_a_restart_while_held_is_told_and_the_stale_fenced_write_is_rejected(
    own_server: MariaDBServer,
) -> None:
    url = namespaced(own_server.url, op_timeout=2)
    lost = threading.Event()
    with tenure.Coordinator(url) as coord:
        lease = coord.lock("resource", ttl=1.5).acquire()
        lease.on_lost(lambda _: lost.set())
        assert fenced_write(own_server, "first holder", lease.fence) == 1
        own_server.restart()
        # Told within a renewal period (ttl/3) plus the time to find the session gone.
        assert lost.wait(timeout=3.0), "the holder must be told its session ended with the server"
        with pytest.raises(tenure.LockLost):
            lease.check()
        with tenure.Coordinator(url) as rival, rival.lock("resource", ttl=5, timeout=5) as successor:
            assert successor.fence > lease.fence, "the fence sequence continues after a restart"
            assert fenced_write(own_server, "successor", successor.fence) == 1
            assert fenced_write(own_server, "late write from the old holder", lease.fence) == 0
        with pytest.raises(tenure.LockLost):
            lease.release()
    with raw_connection(own_server) as conn, conn.cursor() as cur:
        cur.execute("SELECT value FROM resource WHERE id = 1")
        assert cur.fetchone()[0] == "successor"


def test_a_frozen_holder_loses_the_lock_when_the_server_ends_its_idle_session(
    mariadb_server: MariaDBServer,
) -> None:
    url = namespaced(mariadb_server.url)
    holder = worker("hold-forever", url, "frozen", "1.0")
    try:
        first_fence = int(read_line(holder, "HELD").split()[1])
        os.kill(holder.pid, signal.SIGSTOP)  # a GC pause, a VM migration, a ^Z
        frozen = time.monotonic()
        with tenure.Coordinator(url) as coord:
            assert coord.lock("frozen").try_acquire() is None, "a frozen holder keeps it until its idle limit"
            lease = coord.lock("frozen", ttl=5).acquire(timeout=5)
            waited = time.monotonic() - frozen
            # wait_timeout = ceil(ttl) = 1 s after the holder's last renewal (every ttl/3).
            assert 0.3 < waited < 2.0, f"freed after {waited:.2f} s"
            assert lease.fence > first_fence
            lease.release()
    finally:
        os.kill(holder.pid, signal.SIGCONT)
        holder.kill()
        holder.wait()


def test_an_unreachable_port_fails_within_connect_timeout() -> None:
    url = f"mysql://{USER}:{PASSWORD}@127.0.0.1:{free_port()}/{DATABASE}?connect_timeout=1"
    started = time.monotonic()
    with pytest.raises(tenure.BackendUnavailable) as info, tenure.Coordinator(url) as coord:
        coord.lock("x").try_acquire()
    assert time.monotonic() - started < 1.5
    assert PASSWORD not in str(info.value) and "***" in str(info.value)


def test_a_wrong_password_is_not_echoed(mariadb_server: MariaDBServer) -> None:
    secret = "not-the-password-42"
    url = f"mysql://{USER}:{secret}@127.0.0.1:{mariadb_server.port}/{DATABASE}"
    with pytest.raises(tenure.BackendError) as info:
        tenure.Coordinator(url).connect()
    assert secret not in str(info.value) and secret not in repr(info.value)
    assert secret not in repr(tenure.Coordinator(url))


def test_a_frozen_server_gives_backend_timeout_within_op_timeout(own_server: MariaDBServer) -> None:
    url = namespaced(own_server.url, op_timeout=0.5, connect_timeout=0.5)
    with tenure.Coordinator(url) as coord:
        coord.lock("warm").try_acquire()  # a pooled connection, so the frozen call is a query
        own_server.pause()
        try:
            for attempt in (lambda: coord.lock("x").try_acquire(), lambda: coord.inspect("x")):
                started = time.monotonic()
                with pytest.raises(tenure.BackendTimeout):
                    attempt()
                assert time.monotonic() - started < 1.0
        finally:
            own_server.resume()
        with coord.lock("x", ttl=5) as lease:  # the store recovers once the server answers again
            assert lease.fence > 0


def test_a_wait_outlives_op_timeout_and_later_calls_are_bounded_again(own_server: MariaDBServer) -> None:
    # The sync twin raises its socket's timeout for a wait in the server's line and lowers it
    # after: the wait outlives op_timeout, and a call on the connection it was handed the lock
    # on fails within op_timeout once the server freezes. If PyMySQL ever set the socket's
    # timeout itself again, one of the two would break here.
    url = namespaced(own_server.url, op_timeout=0.5, connect_timeout=0.5)
    with tenure.Coordinator(url) as coord, tenure.Coordinator(url) as waiter:
        lease = coord.lock("long", ttl=30).acquire()
        releaser = threading.Timer(1.5, lease.release)
        releaser.start()
        started = time.monotonic()
        handed = waiter.lock("long", ttl=30, fair=True).acquire(timeout=5)
        assert time.monotonic() - started > 1.2, "the wait outlived op_timeout in the server's line"
        releaser.join()
        own_server.pause()
        try:
            started = time.monotonic()
            with pytest.raises(tenure.LockError):
                handed.release()  # its connection does not answer: closed, and the lock with it
            assert time.monotonic() - started < 1.0
        finally:
            own_server.resume()


async def test_a_frozen_server_gives_backend_timeout_within_op_timeout_async(
    own_server: MariaDBServer,
) -> None:
    url = namespaced(own_server.url, op_timeout=0.5, connect_timeout=0.5)
    async with tenure.AsyncCoordinator(url) as coord:
        await coord.lock("warm").try_acquire()
        own_server.pause()
        try:
            started = time.monotonic()
            with pytest.raises(tenure.BackendTimeout):
                await coord.lock("x").try_acquire()
            assert time.monotonic() - started < 1.0
        finally:
            own_server.resume()
        async with coord.lock("x", ttl=5) as lease:
            assert lease.fence > 0


@pytest.mark.parametrize("fair", [True, False], ids=["fair", "plain"])
async def test_cancelling_a_server_side_wait_leaves_nothing_held(
    mariadb_server: MariaDBServer, fair: bool
) -> None:
    url = namespaced(mariadb_server.url)
    async with tenure.AsyncCoordinator(url) as coord, tenure.AsyncCoordinator(url) as waiter:
        lease = await coord.lock("busy", ttl=5).acquire()
        wait = asyncio.ensure_future(waiter.lock("busy", ttl=5, fair=fair).acquire(timeout=30))
        await asyncio.sleep(0.5)  # blocked in GET_LOCK on the server by now
        with raw_connection(mariadb_server) as conn, conn.cursor() as cur:
            name = lock_name(namespaced_key(coord.namespace, "busy"))
            cur.execute(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE %s", (f"%{name}%",)
            )
            assert cur.fetchone()[0] >= 1, "the waiter waits on the server"
        wait.cancel()
        with pytest.raises(asyncio.CancelledError):
            await wait
        await lease.release()
        started = time.monotonic()
        # Nothing was handed to the cancelled waiter's session: the lock is free at once.
        third = await coord.lock("busy", ttl=5).acquire(timeout=2)
        assert time.monotonic() - started < 0.5
        assert (await coord.inspect("busy")) is not None
        await third.release()
        assert await coord.inspect("busy") is None
        assert not waiter._store._holds  # type: ignore[attr-defined]


def test_fair_waiters_are_handed_the_lock_by_the_server_in_order(mariadb_server: MariaDBServer) -> None:
    url = namespaced(mariadb_server.url)
    served: list[int] = []
    with tenure.Coordinator(url) as coord:
        lease = coord.lock("line", ttl=5, fair=True).acquire()

        def wait_in_line(index: int) -> None:
            with tenure.Coordinator(url) as client, client.lock("line", ttl=5, fair=True, timeout=20):
                served.append(index)
                time.sleep(0.01)

        threads = []
        for index in range(6):
            threads.append(threading.Thread(target=wait_in_line, args=(index,)))
            threads[-1].start()
            time.sleep(0.15)
        time.sleep(2.5)  # longer than any one wait slice (poll_interval): places are kept across slices
        lease.release()
        for thread in threads:
            thread.join(timeout=20)
    assert served == list(range(6))


def test_a_lock_handed_to_a_waiter_that_never_takes_it_frees_itself(mariadb_server: MariaDBServer) -> None:
    # A waiter's session in the server's line is handed the lock by the release and records it
    # in the same round trip; if the waiter never comes back for it (frozen, or gone), that
    # session's idle limit (ceil(ttl)) frees the lock like a silent holder's.
    url = namespaced(mariadb_server.url)
    with tenure.Coordinator(url) as coord, tenure.Coordinator(url) as waiter:
        lease = coord.lock("handed", ttl=5).acquire()
        key = waiter.lock("handed", ttl=1).key
        queued = waiter._store.try_acquire_queued(key, Owner(label="never back"), 1.0, patience=5.0)
        assert queued is None, "the lock is held: the waiter is in line"
        lease.release()
        time.sleep(0.2)
        assert coord.lock("handed").try_acquire() is None, "the line's first session was handed it"
        rival = coord.lock("handed", ttl=5).acquire(timeout=3)  # nobody took it: freed by the server
        assert rival.fence > lease.fence + 1, "the waiter's session drew a fence when handed it"
        rival.release()


@pytest.mark.parametrize(
    "url",
    [
        "mysql://user@127.0.0.1:1",  # no database
        "mysql://user@h1:1,h2:2/db",  # one host only
        "mysql://user@127.0.0.1:1/db?mode=lease",
        "mysql://user@127.0.0.1:1/db?pool=3",
    ],
)
def test_bad_urls_fail_before_any_io(url: str) -> None:
    started = time.monotonic()
    with pytest.raises(tenure.ConfigurationError):
        tenure.Coordinator(url)
    assert time.monotonic() - started < 0.5, "nothing was dialled"


# -- semaphores ------------------------------------------------------------------------------

MODES = pytest.mark.parametrize("mode", ["advisory", "table"])


@MODES
def test_a_permit_above_a_narrower_limit_keeps_the_recorded_limit(
    mariadb_server: MariaDBServer, mode: str
) -> None:
    # A live permit on slot 2 of limit 3 is outside limit 2's slots: the check must look wider.
    url = namespaced(mariadb_server.url, mode=mode)
    with tenure.Coordinator(url) as coord, tenure.Coordinator(url) as rival:
        sem = coord.semaphore("slots", limit=3, ttl=5)
        permits = [sem.acquire(timeout=1) for _ in range(3)]
        top = permit_key(sem.key, 2)
        for permit in permits:
            if permit._holding.key != top:
                permit.release()
        for limit in (1, 2):
            with pytest.raises(tenure.ConfigurationError, match="limit=3"):
                rival.semaphore("slots", limit=limit).try_acquire()
        next(p for p in permits if p._holding.key == top).release()
        with rival.semaphore("slots", limit=2, ttl=5).acquire(timeout=1) as narrower:
            assert narrower.fence > max(p.fence for p in permits)
            with pytest.raises(tenure.ConfigurationError, match="limit=2"):
                sem.try_acquire()


def test_a_permit_step_waits_for_the_guard_within_op_timeout(mariadb_server: MariaDBServer) -> None:
    # The guard serializes permit steps of one name; one held too long is a timeout, not a hang.
    url = namespaced(mariadb_server.url, op_timeout=0.5)
    with tenure.Coordinator(url) as coord, raw_connection(mariadb_server) as conn, conn.cursor() as cur:
        sem = coord.semaphore("slots", limit=2, ttl=5)
        cur.execute("SELECT GET_LOCK(%s, 1)", (guard_name(sem.key),))
        started = time.monotonic()
        with pytest.raises(tenure.BackendTimeout, match="permit step"):
            sem.try_acquire()
        assert time.monotonic() - started < 1.5
        cur.execute("DO RELEASE_LOCK(%s)", (guard_name(sem.key),))
        with sem.acquire(timeout=1):
            assert len(sem.holders()) == 1


@MODES
def test_threads_never_hold_more_than_limit_permits(mariadb_server: MariaDBServer, mode: str) -> None:
    # A coordinator per thread: one coordinator's permits taken at once by several threads can
    # reach its fence check out of the server's order (a known limit of that check, not here).
    url = namespaced(mariadb_server.url, mode=mode)
    held, most, fences, errors = [0], [0], [], []
    guard = threading.Lock()

    def work() -> None:
        try:
            with tenure.Coordinator(url) as coord:
                for _ in range(10):
                    with coord.semaphore("slots", limit=3, ttl=5).acquire(timeout=30) as permit:
                        with guard:
                            held[0] += 1
                            most[0] = max(most[0], held[0])
                            fences.append(permit.fence)
                        time.sleep(0.005)
                        with guard:
                            held[0] -= 1
        except Exception as exc:  # reported below: a thread's error must fail the test
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert most[0] == 3
    assert len(set(fences)) == len(fences) == 120
    with tenure.Coordinator(url) as coord:
        assert coord.semaphore("slots", limit=3).holders() == []


def test_a_restart_while_permits_are_held_tells_each_and_leaks_none(own_server: MariaDBServer) -> None:
    url = namespaced(own_server.url, op_timeout=2)
    lost = threading.Event()
    with tenure.Coordinator(url) as coord:
        sem = coord.semaphore("slots", limit=2, ttl=1.5)
        permits = [sem.acquire(timeout=5) for _ in range(2)]
        permits[1].on_lost(lambda _: lost.set())
        own_server.restart()
        assert lost.wait(timeout=5.0), "the holders must be told their sessions ended with the server"
        for permit in permits:
            with pytest.raises(tenure.LockLost):
                permit.check()
        with tenure.Coordinator(url) as other:  # both slots came back: nothing leaked
            again = [other.semaphore("slots", limit=2, ttl=5).acquire(timeout=10) for _ in range(2)]
            assert min(p.fence for p in again) > max(p.fence for p in permits)
            for permit in again:
                permit.release()
