"""PostgreSQL advisory mode at scale: thousands of locks on a few shared sessions (issue 20).

The server allows 100 connections only: holding 2,000 locks from one process works because the
locks share a few sessions, renewed in one statement per session.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

import tenure
from tenure._async.backends.postgresql import sql
from tenure._core.keys import namespaced_key
from tests.servers_postgres import PostgresServer

pytestmark = pytest.mark.slow

N = 2000
TTL = 1.5


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """A server with a low connection limit (and a lock table with room for the locks)."""
    pg = PostgresServer(tmp_path_factory.mktemp("pg-scale"), max_connections=100, max_locks=128).start()
    yield pg
    pg.stop()


@pytest.fixture
def url(server: PostgresServer) -> str:
    return f"{server.url}?namespace=scale-{uuid.uuid4().hex[:12]}"


def query(server: PostgresServer, statement: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(server.url, autocommit=True) as conn:
        return conn.execute(statement, params).fetchall()


def tenure_sessions(server: PostgresServer) -> int:
    return int(query(server, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'tenure'")[0][0])


def test_two_thousand_locks_are_held_on_a_few_sessions_and_released_one_by_one(
    server: PostgresServer, url: str
) -> None:
    assert int(query(server, "SHOW max_connections")[0][0]) == 100
    with tenure.Coordinator(url) as coord, tenure.Coordinator(url) as rival:
        leases = [coord.lock(f"job-{i}", ttl=TTL).acquire(timeout=5) for i in range(N)]
        used = tenure_sessions(server)
        assert used <= 8, f"{used} server sessions for {N} held locks"
        time.sleep(3 * TTL)
        assert [lease.name for lease in leases if lease.lost] == []
        for lease in leases:
            lease.check()
        # Each release frees its own lock only: a rival takes it, and none of the others.
        for index, lease in enumerate(leases):
            lease.release()
            if index % 200 == 0:
                taken = rival.lock(f"job-{index}").try_acquire()
                assert taken is not None, f"job-{index} was released"
                taken.release()
                if index + 1 < N:
                    assert rival.lock(f"job-{index + 1}").try_acquire() is None
        assert tenure_sessions(server) <= 8


def in_thread(fn: Any) -> Any:
    """Run ``fn`` in another thread (a lock's holder may not wait for itself) and return its result."""
    done: list[Any] = []
    thread = threading.Thread(target=lambda: done.append(fn()))
    thread.start()
    thread.join(timeout=10)
    assert done, "the call did not end"
    return done[0]


def test_two_locks_of_one_coordinator_on_one_name_exclude_each_other(
    server: PostgresServer, url: str
) -> None:
    with tenure.Coordinator(url) as coord, tenure.Coordinator(url) as other:
        first = coord.lock("shared-name", ttl=5).acquire(timeout=5)
        # The same session would be granted the advisory lock again: the store refuses it locally.
        assert in_thread(lambda: coord.lock("shared-name").try_acquire()) is None

        def times_out() -> bool:
            try:
                coord.lock("shared-name").acquire(timeout=0.3)
            except tenure.AcquireTimeout:
                return True
            return False

        assert in_thread(times_out)
        assert other.lock("shared-name").try_acquire() is None
        got: list[tenure.Lease] = []
        waiter = threading.Thread(target=lambda: got.append(coord.lock("shared-name").acquire(timeout=5)))
        waiter.start()
        time.sleep(0.2)
        assert not got
        first.release()
        waiter.join(timeout=5)
        assert got and got[0].fence > first.fence
        assert other.lock("shared-name").try_acquire() is None
        assert coord.lock("shared-name").try_acquire() is None
        got[0].release()
        again = other.lock("shared-name").try_acquire()
        assert again is not None
        assert coord.lock("shared-name").try_acquire() is None
        again.release()


def test_a_killed_session_loses_every_lease_on_it_within_ttl(server: PostgresServer, url: str) -> None:
    ttl = 1.0
    with tenure.Coordinator(url) as coord:
        leases = [coord.lock(f"k-{i}", ttl=ttl).acquire(timeout=5) for i in range(300)]
        namespace = url.split("namespace=")[1]
        ids = [sql.lock_id(namespaced_key(namespace, f"k-{i}")) for i in range(300)]
        pids = _pids(server, ids)
        assert 1 <= len(set(pids)) <= 4
        victim = min(pids)
        on_victim = [lease for lease, pid in zip(leases, pids, strict=True) if pid == victim]
        others = [lease for lease in leases if lease not in on_victim]
        query(server, "SELECT pg_terminate_backend(%s)", victim)
        killed = time.monotonic()
        while not all(lease.lost for lease in on_victim):
            assert time.monotonic() - killed < ttl, "every lease on the killed session is lost within ttl"
            time.sleep(0.02)
        assert not any(lease.lost for lease in others)
        for lease in others:
            lease.release()
        for lease in on_victim:
            with pytest.raises(tenure.LockLost):
                lease.release()
        with tenure.Coordinator(url) as rival, rival.lock("k-0").acquire(timeout=2):
            pass


def _pids(server: PostgresServer, ids: list[int]) -> list[int]:
    rows = dict(query(server, f"SELECT id, pid FROM {sql.HOLDERS_TABLE} WHERE id = ANY(%s)", ids))
    return [int(rows[i]) for i in ids]


def test_a_server_restart_loses_every_lease_within_ttl(server: PostgresServer, url: str) -> None:
    ttl = 1.5
    with tenure.Coordinator(url) as coord:
        leases = [coord.lock(f"r-{i}", ttl=ttl).acquire(timeout=5) for i in range(500)]
        server.restart()
        restarted = time.monotonic()
        while not all(lease.lost for lease in leases):
            assert time.monotonic() - restarted < ttl, "a restart loses every lease within ttl"
            time.sleep(0.02)
        lease = coord.lock("r-0", ttl=ttl).acquire(timeout=5)  # the dead sessions were replaced
        lease.release()


def test_renewals_are_batched_one_statement_per_session(server: PostgresServer, url: str) -> None:
    with tenure.Coordinator(url) as coord:
        pool = coord._store._pool  # type: ignore[attr-defined]
        statements: list[str] = []
        real_run = pool.run

        def counting_run(session: Any, statement: str, *args: Any, **kwargs: Any) -> Any:
            statements.append(statement)
            return real_run(session, statement, *args, **kwargs)

        pool.run = counting_run
        leases = [coord.lock(f"b-{i}", ttl=TTL).acquire(timeout=5) for i in range(N)]
        statements.clear()
        time.sleep(TTL)  # at least two renewals of every lease (every ttl/3)
        renewals = statements.count(sql.RENEW_MANY)
        assert not any(lease.lost for lease in leases)
        # Not one per lease (N x 2 or more): one per session per renewer round.
        assert 2 <= renewals <= 60, renewals
        for lease in leases:
            lease.release()


def test_a_lease_whose_renewals_stop_frees_its_lock_while_its_session_lives(
    server: PostgresServer, url: str
) -> None:
    with tenure.Coordinator(url) as coord, tenure.Coordinator(url) as rival:
        store = coord._store  # type: ignore[attr-defined]
        real_renew_many = store.renew_many

        def renew_many_but_cursed(renewals: Any) -> Any:
            kept = [r for r in renewals if not r.key.endswith(":cursed")]
            outcomes = iter(real_renew_many(kept))
            failed = tenure.BackendUnavailable("injected: this lease's renewals fail")
            return [failed if r.key.endswith(":cursed") else next(outcomes) for r in renewals]

        store.renew_many = renew_many_but_cursed
        cursed = coord.lock("cursed", ttl=0.6).acquire(timeout=5)
        healthy = coord.lock("healthy", ttl=0.6).acquire(timeout=5)
        started = time.monotonic()
        while rival.lock("cursed").try_acquire() is None:
            # Freed by the server once its row is a ttl old, at the next renewal on its session.
            assert time.monotonic() - started < 2.0, "the unrenewed lock stayed held"
            time.sleep(0.05)
        assert cursed.lost
        healthy.check()
        assert rival.lock("healthy").try_acquire() is None
        healthy.release()
