"""PostgreSQL under faults: restarts, frozen holders and servers, proxies, cancelled waits.

These run against a server of this module's own (restarted, frozen and killed here), plus a
PgBouncer started per test in front of it. The contract suite covers the ordinary behaviour.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

import tenure
from tenure._async.backends.postgresql import sql
from tenure._config import validate_options
from tenure._core.keys import namespaced_key
from tenure._url import parse_url
from tests.servers import free_port
from tests.servers_postgres import PASSWORD, PgBouncer, PostgresServer
from tests.workers import read_line, worker

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """A server of this module's own, free to be restarted, frozen and killed."""
    pg = PostgresServer(tmp_path_factory.mktemp("pg-faults")).start()
    yield pg
    pg.stop()


@pytest.fixture
def namespace(server: PostgresServer) -> Iterator[str]:
    yield f"test-{uuid.uuid4().hex[:12]}"
    server.resume()
    if not server.running:
        server.start()


def url_of(base: str, namespace: str, **options: object) -> str:
    query = "&".join([f"namespace={namespace}", *(f"{k}={v}" for k, v in options.items())])
    return f"{base}?{query}"


def raw(server: PostgresServer) -> psycopg.Connection[Any]:
    return psycopg.connect(server.url, autocommit=True)


def fence_row(server: PostgresServer, key: str) -> tuple[int, int]:
    """Return (fence, pid) of ``key``'s holder row."""
    with raw(server) as conn:
        row = conn.execute(
            f"SELECT fence, pid FROM {sql.HOLDERS_TABLE} WHERE id = %s", (sql.lock_id(key),)
        ).fetchone()
    assert row is not None, f"no holder row for {key!r}"
    return int(row[0]), int(row[1])


def waiting_sessions(server: PostgresServer, key: str, mode: str = "%") -> int:
    """Return how many sessions wait in the server's lock queue for ``key`` (in lock ``mode``)."""
    classid, objid = sql.lock_halves(sql.lock_id(key))
    with raw(server) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            " AND classid = %s::oid AND objid = %s::oid AND objsubid = 1 AND mode LIKE %s",
            (classid, objid, mode),
        ).fetchone()
    assert row is not None
    return int(row[0])


def wait_until(predicate: object, timeout: float, what: str) -> float:
    """Poll ``predicate`` until true; return how long it took."""
    started = time.monotonic()
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() - started < timeout, f"{what} did not happen within {timeout} s"
        time.sleep(0.02)
    return time.monotonic() - started


# -- the acquisition statement ------------------------------------------------------------------


def test_the_fence_is_bumped_only_after_the_lock_is_taken(server: PostgresServer, namespace: str) -> None:
    key = namespaced_key(namespace, "order")
    lock = sql.lock_id(key)
    with tenure.Coordinator(url_of(server.url, namespace)) as coord:
        with coord.lock("order") as lease:
            first = lease.fence
        params = {"id": lock, "key": key, "owner": "x" * 32, "label": "raw", "ttl": 5.0, "idle": "5000"}
        with raw(server) as rival, raw(server) as other:
            rival.execute("SELECT pg_advisory_lock(%s)", (lock,))
            # The try finds it held: no row back, and the fence did not move.
            assert other.execute(sql.TRY_ACQUIRE, params).fetchall() == []
            assert fence_row(server, key) == (first, fence_row(server, key)[1])
            # The waiting form bumps nothing while it waits, and bumps once granted.
            got: list[Any] = []
            waiter = threading.Thread(
                target=lambda: got.extend(other.execute(sql.WAIT_ACQUIRE, params).fetchall())
            )
            waiter.start()
            time.sleep(0.3)
            assert not got and fence_row(server, key)[0] == first
            rival.execute("SELECT pg_advisory_unlock(%s)", (lock,))
            waiter.join(timeout=5)
            assert got and got[0][0] > first
            second = got[0][0]
            # The idle limit was set for this session in the same statement.
            assert other.execute("SHOW idle_session_timeout").fetchone() == ("5s",)
        # That session closed: its lock is gone and the row reads as free.
        assert coord.inspect("order") is None
        with coord.lock("order") as lease:
            assert lease.fence > second


def test_keys_are_64_bit_and_names_that_collide_in_16_bits_do_not(
    server: PostgresServer, namespace: str
) -> None:
    names = [f"name-{i}" for i in range(2000)]
    ids = {sql.lock_id(namespaced_key(namespace, n)) for n in names}
    assert len(ids) == len(names)  # 16-bit ids (tooz) would collide ~all the time among 2000 names
    assert any(i < 0 for i in ids) and any(i > 2**32 for i in ids)  # the whole signed 64-bit range
    # Two names that tooz's postgresql driver maps to one lock (two bytes of an MD5 of the name).
    seen: dict[bytes, str] = {}
    for name in names:
        clash = seen.setdefault(hashlib.md5(name.encode()).digest()[:2], name)
        if clash != name:
            break
    negative = next(
        n for n in names if sql.lock_id(namespaced_key(namespace, n)) < 0 and n not in (clash, name)
    )
    coord = tenure.Coordinator(url_of(server.url, namespace))
    with coord, coord.lock(clash), coord.lock(name), coord.lock(negative) as first:
        # The clashing pair is held at once: distinct locks here.
        key = namespaced_key(namespace, negative)
        classid, objid = sql.lock_halves(sql.lock_id(key))
        with raw(server) as conn:
            found = conn.execute(
                "SELECT pg_advisory_unlock(%s), count(*) FROM pg_locks WHERE locktype = 'advisory'"
                " AND classid = %s::oid AND objid = %s::oid AND objsubid = 1 AND granted",
                (sql.lock_id(key), classid, objid),
            ).fetchone()
        # Another session cannot unlock it, and pg_locks shows it under its 64-bit id.
        assert found == (False, 1)
        info = coord.inspect(negative)
        assert info is not None and info.fence == first.fence


# -- liveness: restarts, terminated sessions, frozen holders ------------------------------------


def test_a_server_restart_while_held_is_told_and_a_stale_fenced_write_is_rejected(
    server: PostgresServer, namespace: str
) -> None:
    url = url_of(server.url, namespace)
    table = f"resource_{namespace.replace('-', '_')}"
    with raw(server) as conn:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {table} (id int PRIMARY KEY, value text, fence bigint)")

    def fenced_write(value: str, fence: int) -> int:
        """The protected resource: a write carries its fence; an older fence changes nothing."""
        with raw(server) as conn:
            cursor = conn.execute(
                f"INSERT INTO {table} AS r (id, value, fence) VALUES (1, %(v)s, %(f)s)"
                f" ON CONFLICT (id) DO UPDATE SET value = excluded.value, fence = excluded.fence"
                f" WHERE r.fence <= excluded.fence",
                {"v": value, "f": fence},
            )
            return cursor.rowcount

    lost = threading.Event()
    with tenure.Coordinator(url) as coord:
        lease = coord.lock("job", ttl=1.5).acquire(timeout=5)
        lease.on_lost(lambda _: lost.set())
        assert fenced_write("old holder", lease.fence) == 1
        server.restart()
        restarted = time.monotonic()
        # Told within a renewal period (ttl/3) plus the probe's round trip, not at release.
        assert lost.wait(timeout=3.0), "the holder was not told that its session ended"
        assert time.monotonic() - restarted < 1.5
        with pytest.raises(tenure.LockLost):
            lease.check()
        with tenure.Coordinator(url) as other, other.lock("job", ttl=5).acquire(timeout=5) as new:
            assert new.fence > lease.fence
            assert fenced_write("new holder", new.fence) == 1
            assert fenced_write("stale write of the old holder", lease.fence) == 0
        with pytest.raises(tenure.LockLost):
            lease.release()
    with raw(server) as conn:
        assert conn.execute(f"SELECT value FROM {table}").fetchone() == ("new holder",)


def crash(server: PostgresServer, how: str) -> None:
    """Crash the server: kill -9 every process of it, or SIGQUIT (immediate shutdown) to the postmaster."""
    if how == "kill -9":
        server.kill()
    else:
        assert server.proc is not None
        server.proc.send_signal(signal.SIGQUIT)
        server.proc.wait(timeout=30)


@pytest.mark.parametrize(("how", "fair"), [("kill -9", False), ("SIGQUIT", True)])
def test_fences_keep_growing_across_a_server_crash(
    server: PostgresServer, namespace: str, how: str, fair: bool
) -> None:
    # Acquisitions do not wait for a WAL flush, so a crash loses the sequence's last values.
    # The WAL writer is slowed to 10 s here, so that nothing writes them out before the crash.
    with raw(server) as conn:
        conn.execute("ALTER SYSTEM SET wal_writer_delay = '10s'")
        conn.execute("SELECT pg_reload_conf()")
    try:
        drawn: list[int] = []
        with tenure.Coordinator(url_of(server.url, namespace)) as coord:
            for index in range(200):
                with coord.lock(f"job-{index % 3}", fair=fair).acquire(timeout=5) as lease:
                    drawn.append(lease.fence)
        assert drawn == sorted(set(drawn))
        crash(server, how)
        server.start()
        with raw(server) as conn:  # the crash emptied the unlogged tables: no fence epoch
            assert conn.execute(f"SELECT count(*) FROM {sql.EPOCH_TABLE}").fetchone() == (0,)
        with tenure.Coordinator(url_of(server.url, namespace)) as coord:
            for index in range(3):
                with coord.lock(f"job-{index}", fair=fair).acquire(timeout=5) as lease:
                    assert lease.fence > max(drawn), (lease.fence, max(drawn))
                    drawn.append(lease.fence)
        with raw(server) as conn:  # one new epoch, started where the sequence stood after the crash
            row = conn.execute(f"SELECT fence_from FROM {sql.EPOCH_TABLE}").fetchall()
        assert len(row) == 1 and row[0][0] < drawn[-3] <= row[0][0] + 3
    finally:
        if not server.running:
            server.start()
        with raw(server) as conn:
            conn.execute("ALTER SYSTEM RESET wal_writer_delay")
            conn.execute("SELECT pg_reload_conf()")


def test_fences_of_the_old_side_table_carry_over(server: PostgresServer, namespace: str) -> None:
    # Earlier versions kept a fence per name in a logged table; the sequence starts above them.
    database = f"db_{namespace.replace('-', '_')}"
    with raw(server) as conn:
        conn.execute(f"CREATE DATABASE {database}")
    try:
        old_url = server.url.rsplit("/", 1)[0] + f"/{database}"
        with psycopg.connect(old_url, autocommit=True) as conn:
            conn.execute(f"CREATE TABLE {sql.OLD_FENCES_TABLE} (id bigint PRIMARY KEY, fence bigint)")
            conn.execute(f"INSERT INTO {sql.OLD_FENCES_TABLE} VALUES (1, 7), (2, 1234)")
        with tenure.Coordinator(url_of(old_url, namespace)) as coord, coord.lock("a").acquire() as lease:
            assert lease.fence == 1235
    finally:
        with raw(server) as conn:
            conn.execute(f"DROP DATABASE {database} WITH (FORCE)")


def test_a_terminated_session_loses_its_lock_and_is_told(server: PostgresServer, namespace: str) -> None:
    lost = threading.Event()
    with tenure.Coordinator(url_of(server.url, namespace)) as coord:
        lease = coord.lock("job", ttl=1.5).acquire(timeout=5)
        lease.on_lost(lambda _: lost.set())
        row = fence_row(server, namespace_key := namespaced_key(namespace, "job"))
        assert row is not None
        with raw(server) as conn:
            conn.execute("SELECT pg_terminate_backend(%s)", (row[1],))
        assert lost.wait(timeout=2.0), "the probe at the next renewal must report the lost session"
        assert coord.inspect("job") is None
        again = coord.lock("job").try_acquire()
        assert again is not None and again.fence > lease.fence
        assert fence_row(server, namespace_key)[1] != row[1]
        again.release()


def test_a_holder_frozen_past_its_ttl_loses_its_session_and_the_next_fence_is_larger(
    server: PostgresServer, namespace: str
) -> None:
    url = url_of(server.url, namespace)
    holder = worker("hold-and-check", url, "frozen", "0.6")
    try:
        first_fence = int(read_line(holder, "HELD").split()[1])
        row = fence_row(server, namespaced_key(namespace, "frozen"))
        assert row is not None and row[0] == first_fence
        os.kill(holder.pid, signal.SIGSTOP)  # its connection stays open, but silent
        with raw(server) as conn:

            def session_ended() -> bool:
                return conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (row[1],)
                ).fetchone() == (0,)

            # The server ends the silent session after its ttl (idle_session_timeout).
            took = wait_until(session_ended, 5.0, "the frozen holder's session ending")
            assert took < 1.5
        with tenure.Coordinator(url) as coord:
            lease = coord.lock("frozen", ttl=5).acquire(timeout=1)
            assert lease.fence > first_fence
            os.kill(holder.pid, signal.SIGCONT)
            assert read_line(holder, "LOST") == f"LOST {first_fence} callback=True"
            assert read_line(holder, "RELEASE-REFUSED") == "RELEASE-REFUSED"
            lease.check()
            lease.release()
        assert holder.wait(timeout=10) == 0
    finally:
        if holder.poll() is None:
            os.kill(holder.pid, signal.SIGCONT)
            holder.kill()
        holder.wait()


def test_a_plain_waiter_is_handed_the_lock_as_soon_as_a_crashed_holders_session_ends(
    server: PostgresServer, namespace: str
) -> None:
    url = url_of(server.url, namespace)
    holder = worker("hold-forever", url, "crash", "30")
    try:
        read_line(holder, "HELD")
        acquired: list[float] = []
        with tenure.Coordinator(url) as coord:

            def wait_for_it() -> None:
                coord.lock("crash").acquire(timeout=10)
                acquired.append(time.monotonic())

            waiter = threading.Thread(target=wait_for_it)
            waiter.start()
            time.sleep(1.5)  # the waiter's waits between attempts have grown to most of a second
            holder.kill()  # no release: only the server sees the session end
            killed = time.monotonic()
            waiter.join(timeout=10)
        assert acquired, "the waiter never got the lock"
        # Waiting in the server's lock queue, not sleeping: it is woken at once.
        assert acquired[0] - killed < 0.3
    finally:
        holder.kill()
        holder.wait()


def test_plain_waiters_wait_in_the_servers_queue_and_are_served_in_order(
    server: PostgresServer, namespace: str
) -> None:
    # plain_waiters_queue: a plain blocking acquire waits for the exclusive lock itself, in line.
    url = url_of(server.url, namespace)
    served: list[int] = []
    with tenure.Coordinator(url) as coord:
        lease = coord.lock("plain-line").acquire()
        waiters = [tenure.Coordinator(url) for _ in range(3)]

        def wait_in_line(index: int) -> None:
            with waiters[index].lock("plain-line", timeout=10):
                served.append(index)

        def queued(count: int) -> Callable[[], bool]:
            key = namespaced_key(namespace, "plain-line")
            return lambda: waiting_sessions(server, key, "ExclusiveLock") == count

        threads = [threading.Thread(target=wait_in_line, args=(index,)) for index in range(3)]
        try:
            for count, thread in enumerate(threads, 1):  # one after the other: a known order
                thread.start()
                wait_until(queued(count), 5, "queueing")
            lease.release()
            for thread in threads:
                thread.join(timeout=10)
        finally:
            for client in waiters:
                client.close()
    assert served == [0, 1, 2]


# -- unreachable and frozen servers, bad input --------------------------------------------------


def test_an_unreachable_port_fails_within_connect_timeout() -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres?connect_timeout=2"
    started = time.monotonic()
    with pytest.raises(tenure.BackendUnavailable) as info:
        tenure.Coordinator(url).connect()
    assert time.monotonic() - started < 2.0
    assert "127.0.0.1" in str(info.value)


def test_bad_urls_fail_before_any_io_and_never_show_the_password(server: PostgresServer) -> None:
    for bad in (
        f"postgresql://u:{PASSWORD}@h1:1,h2:2/db",  # two servers
        f"postgresql://u:{PASSWORD}@h/db?mode=queue",
        f"postgresql://u:{PASSWORD}@h/db?op_timeout=0",
        f"postgresql://u:{PASSWORD}@h/db?pool=3",
        f"postgresql://u:{PASSWORD}@h/db/more",
    ):
        with pytest.raises(tenure.ConfigurationError) as info:
            tenure.Coordinator(bad)
        assert PASSWORD not in str(info.value), str(info.value)
    wrong = server.password_url.replace(PASSWORD, "wrong-" + PASSWORD)
    with pytest.raises(tenure.BackendUnavailable) as failed:
        tenure.Coordinator(wrong).connect()
    assert PASSWORD not in str(failed.value) and "password" in str(failed.value).lower()
    coord = tenure.Coordinator(server.password_url)
    assert PASSWORD not in repr(coord) and PASSWORD not in coord.url
    with coord, coord.lock("pw") as lease:
        assert lease.fence > 0


def test_connection_parameters_come_from_the_url() -> None:
    config = validate_options(
        parse_url("postgresql://me:pw@db.example:6543/app?connect_timeout=0.5&op_timeout=3"), {}
    )
    params = sql.connect_params(config)
    assert params["host"] == "db.example" and params["port"] == 6543 and params["dbname"] == "app"
    assert params["user"] == "me" and params["password"] == "pw"
    assert params["connect_timeout"] == 2  # libpq's least
    assert params["tcp_user_timeout"] == 3000


def test_a_frozen_server_gives_backend_timeout_within_op_timeout(
    server: PostgresServer, namespace: str
) -> None:
    url = url_of(server.url, namespace, op_timeout=0.5, connect_timeout=2)
    lost = threading.Event()
    with tenure.Coordinator(url) as coord:
        lease = coord.lock("job", ttl=3).acquire(timeout=2)
        lease.on_lost(lambda _: lost.set())
        server.pause()
        try:
            started = time.monotonic()
            with pytest.raises(tenure.BackendTimeout):
                coord.inspect("job")
            assert time.monotonic() - started < 0.5 + 0.3
            # The holder's probe is cut too: the lease is reported lost, not kept on hope.
            assert lost.wait(timeout=1 + 0.5 + 0.3)
            # A new connection meets a server that accepts but never answers: connect_timeout.
            started = time.monotonic()
            with pytest.raises(tenure.BackendTimeout):
                tenure.Coordinator(url).connect()
            assert time.monotonic() - started < 2 + 0.5
        finally:
            server.resume()
        with pytest.raises(tenure.LockLost):
            lease.release()
        assert coord.lock("job").acquire(timeout=3).fence > lease.fence
    asyncio.run(_frozen_async(server, url))


async def _frozen_async(server: PostgresServer, url: str) -> None:
    """The async colour: a call to a frozen server ends in BackendTimeout, never hangs."""
    async with tenure.AsyncCoordinator(url) as coord:
        lease = await coord.lock("async", ttl=3).acquire(timeout=2)
        server.pause()
        try:
            started = time.monotonic()
            with pytest.raises(tenure.BackendTimeout):
                await coord.inspect("async")
            assert time.monotonic() - started < 0.5 + 0.3
        finally:
            server.resume()
        # Its own session was idle and is intact: the lease survived the short freeze.
        await asyncio.wait_for(lease.release(), timeout=5)


# -- proxies ------------------------------------------------------------------------------------


def test_a_transaction_pooling_proxy_is_refused(server: PostgresServer, namespace: str) -> None:
    bouncer = PgBouncer(server, pool_mode="transaction").start()
    try:
        with pytest.raises(tenure.ConfigurationError) as info:
            tenure.Coordinator(url_of(bouncer.url, namespace)).connect()
        message = str(info.value)
        assert "transaction" in message and "session-pooling or direct connection" in message
        assert "mode=table" in message
        # The lease table needs no session affinity: it works through the same proxy.
        coord = tenure.Coordinator(url_of(bouncer.url, namespace, mode="table"))
        with coord, coord.lock("job") as lease:
            assert coord.inspect("job") is not None and lease.fence > 0
    finally:
        bouncer.stop()


def test_a_session_pooling_proxy_is_accepted(server: PostgresServer, namespace: str) -> None:
    bouncer = PgBouncer(server, pool_mode="session").start()
    try:
        url = url_of(bouncer.url, namespace)
        with tenure.Coordinator(url) as coord, tenure.Coordinator(url) as rival:
            with coord.lock("job", ttl=2) as lease:
                assert rival.lock("job").try_acquire() is None
                time.sleep(1.0)  # renewed through the proxy
                lease.check()
            again = rival.lock("job").try_acquire()
            assert again is not None and again.fence > lease.fence
            again.release()
    finally:
        bouncer.stop()


# -- fair waiting on the server -----------------------------------------------------------------


def test_fair_waiters_keep_their_place_across_many_waits(server: PostgresServer, namespace: str) -> None:
    url = url_of(server.url, namespace)
    served: list[int] = []
    errors: list[BaseException] = []

    def wait_in_line(index: int) -> None:
        try:
            with tenure.Coordinator(url) as client, client.lock("line", ttl=3, fair=True, timeout=20):
                served.append(index)
                time.sleep(0.05)
        except BaseException as exc:
            errors.append(exc)

    with tenure.Coordinator(url) as coord:
        lease = coord.lock("line", ttl=3, fair=True).acquire(timeout=2)
        threads = []
        for index in range(4):
            threads.append(threading.Thread(target=wait_in_line, args=(index,)))
            threads[-1].start()
            time.sleep(0.2)
        wait_until(
            lambda: waiting_sessions(server, namespaced_key(namespace, "line")) == 4, 5, "4 waiters in line"
        )
        # Held for several of the store's longest waits (0.5 s): every waiter comes back
        # empty-handed many times and must keep its place in the server's queue.
        time.sleep(2.0)
        assert waiting_sessions(server, namespaced_key(namespace, "line")) == 4
        with tenure.Coordinator(url) as newcomer:
            assert newcomer.lock("line", fair=True).try_acquire() is None, "a newcomer must not jump the line"
        lease.release()
        for thread in threads:
            thread.join(timeout=20)
    assert not errors, errors
    assert served == [0, 1, 2, 3]


async def test_cancelling_a_wait_on_the_server_leaves_nothing_held(
    server: PostgresServer, namespace: str
) -> None:
    url = url_of(server.url, namespace)
    key = namespaced_key(namespace, "job")
    async with tenure.AsyncCoordinator(url) as coord, tenure.AsyncCoordinator(url) as waiter:
        lease = await coord.lock("job", ttl=5).acquire(timeout=2)
        task = asyncio.create_task(waiter.lock("job", ttl=5, fair=True).acquire(timeout=30))
        for _ in range(100):
            if await asyncio.to_thread(waiting_sessions, server, key) == 1:
                break
            await asyncio.sleep(0.02)
        assert await asyncio.to_thread(waiting_sessions, server, key) == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The waiting session left the server's line at once.
        assert await asyncio.to_thread(waiting_sessions, server, key) == 0
        await lease.release()
        # Nothing was granted to the departed waiter: the lock is free for anyone, now.
        assert await coord.inspect("job") is None
        third = await coord.lock("job").try_acquire()
        assert third is not None and third.fence == lease.fence + 1
        await third.release()
        # A plain attempt cancelled in flight leaves nothing behind either.
        for _ in range(20):
            attempt = asyncio.create_task(waiter.lock("job", ttl=5).acquire(timeout=1))
            await asyncio.sleep(0.0005)
            attempt.cancel()
            try:
                got = await attempt
            except asyncio.CancelledError:
                continue
            await got.release()
        assert await coord.inspect("job") is None
        last = await coord.lock("job").try_acquire()
        assert last is not None
        await last.release()


def test_a_server_restart_while_permits_are_held_tells_each_and_leaks_none(
    server: PostgresServer, namespace: str
) -> None:
    url = url_of(server.url, namespace)
    lost = threading.Event()
    with tenure.Coordinator(url) as coord:
        sem = coord.semaphore("slots", limit=2, ttl=1.5)
        permits = [sem.acquire(timeout=5) for _ in range(2)]
        permits[1].on_lost(lambda _: lost.set())
        server.restart()
        assert lost.wait(timeout=3.0), "the holders were not told that their sessions ended"
        for permit in permits:
            with pytest.raises(tenure.LockLost):
                permit.check()
        with tenure.Coordinator(url) as other:  # both slots came back: nothing leaked
            again = [other.semaphore("slots", limit=2, ttl=5).acquire(timeout=5) for _ in range(2)]
            assert min(p.fence for p in again) > max(p.fence for p in permits)
            for permit in again:
                permit.release()
