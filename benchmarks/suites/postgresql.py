"""The ``postgresql`` suite: locks over one PostgreSQL 15 server on loopback.

tenure's ``postgresql://`` backend (advisory locks, plain and ``fair=True``, and the
``?mode=table`` lease table) against tooz's postgresql driver, and the floor: one psycopg 3
connection sending ``pg_advisory_lock(id)`` to acquire (a waiter blocks in the server's lock
queue) and ``pg_advisory_unlock(id)`` to release, both prepared. The server
(tests/servers_postgres.py) is started by the suite's environment, in the parent process, and
stopped at the end. It keeps PostgreSQL's default durability (``fsync``, ``synchronous_commit``
and ``full_page_writes`` on, the data on disk), as a production server does: a commit that
must reach the disk costs a flush, and the figures show it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from tests.servers_postgres import PostgresServer

from benchmarks.registry import BenchContext, Contender, Role, Suite, Target
from benchmarks.suites.common import TenureHandle, ToozHandle, client_versions
from tenure._core.keys import key_hash64


@contextlib.contextmanager
def one_server(workdir: Path) -> Iterator[dict[str, str]]:
    server = PostgresServer(workdir / "postgres", durable=True)
    try:
        server.start()
        version = server.psql("SHOW server_version").strip()
        settings = server.psql(
            "SELECT string_agg(name || '=' || setting, ', ' ORDER BY name) FROM pg_settings "
            "WHERE name IN ('fsync', 'synchronous_commit', 'full_page_writes', 'wal_sync_method')"
        ).strip()
        yield {
            "tenure_url": server.url,
            "pg_url": server.url,
            "host": "127.0.0.1",
            "port": str(server.port),
            "server": f"PostgreSQL {version} ({settings}; data in {server.data})",
            "clients": client_versions("psycopg", "psycopg2-binary", "tooz"),
            "server_pids": str(server.proc.pid) if server.proc is not None else "",
        }
    finally:
        server.stop()


class PostgresFloor:
    """The floor: ``SELECT pg_advisory_lock(id)`` / ``SELECT pg_advisory_unlock(id)``, prepared.

    One psycopg 3 connection in autocommit, opened once. A waiter blocks in the server's lock
    queue, which hands the lock over in arrival order. No fence, no TTL.
    """

    def __init__(self, ctx: BenchContext, name: str) -> None:
        import psycopg

        self._conn = psycopg.connect(ctx.params["pg_url"], autocommit=True)
        self._id = key_hash64(f"floor:{name}")

    def acquire(self) -> None:
        self._conn.execute("SELECT pg_advisory_lock(%s)", (self._id,), prepare=True).fetchone()

    def release(self) -> None:
        row = self._conn.execute("SELECT pg_advisory_unlock(%s)", (self._id,), prepare=True).fetchone()
        if row is None or row[0] is not True:
            raise RuntimeError("floor lock was not held at release")

    def close(self) -> None:
        self._conn.close()


class ToozPostgresHandle(ToozHandle):
    """tooz's postgresql driver: ``get_coordinator('postgresql://…').get_lock(name).acquire()``.

    Each acquire opens a psycopg2 connection and sends ``pg_advisory_lock(k1, k2)`` with a
    16-bit key (two bytes of an MD5 of the name: names collide); a waiter blocks on the server.
    Each release unlocks and closes the connection. No TTL, no fence. ``blocking=True``: with a
    number tooz polls ``pg_try_advisory_lock`` instead.
    """

    def __init__(self, ctx: BenchContext, name: str) -> None:
        url = f"postgresql://postgres@{ctx.params['host']}:{ctx.params['port']}?dbname=postgres"
        super().__init__(url, name, what="tooz postgresql")


def tenure_postgresql(ctx: BenchContext, name: str) -> TenureHandle:
    return TenureHandle(ctx.params["tenure_url"], name)


def tenure_postgresql_fair(ctx: BenchContext, name: str) -> TenureHandle:
    return TenureHandle(ctx.params["tenure_url"], f"fair-{name}", fair=True)


def tenure_postgresql_table(ctx: BenchContext, name: str) -> TenureHandle:
    return TenureHandle(ctx.params["tenure_url"] + "?mode=table", f"table-{name}")


SUITE = Suite(
    name="postgresql",
    description="locks over one PostgreSQL 15 server on loopback",
    baseline="tooz-postgresql",
    environment=one_server,
    contenders=(
        Contender(
            "tenure-postgresql",
            Role.TENURE,
            tenure_postgresql,
            floor="postgresql-floor",
            ttl=True,
            fence=True,
            summary="tenure.Coordinator('postgresql://…').lock(name, ttl=10).acquire() / lease.release()",
            notes="one statement takes the lock and bumps the fence; blocking acquires queue on the server",
        ),
        Contender(
            "tenure-postgresql-fair",
            Role.TENURE,
            tenure_postgresql_fair,
            floor="postgresql-floor",
            ttl=True,
            fence=True,
            summary="the same with fair=True: waiters block in the server's lock queue",
            notes="the fence is bumped in the statement that waits",
        ),
        Contender(
            "tenure-postgresql-table",
            Role.TENURE,
            tenure_postgresql_table,
            floor="postgresql-floor",
            ttl=True,
            fence=True,
            summary="tenure.Coordinator('postgresql://…?mode=table'): the lease table",
            notes="an upsert per acquire, an update per release; waiters wake on NOTIFY",
        ),
        Contender(
            "tooz-postgresql",
            Role.PEER,
            ToozPostgresHandle,
            floor="postgresql-floor",
            summary="tooz.coordination.get_coordinator('postgresql://…').get_lock(name).acquire()",
            notes="a new connection per acquire; 16-bit advisory keys; waiters block on the server",
        ),
        Contender(
            "postgresql-floor",
            Role.FLOOR,
            PostgresFloor,
            summary="raw psycopg 3: SELECT pg_advisory_lock(id) / SELECT pg_advisory_unlock(id)",
            notes="one connection, prepared statements; waiters block in the server's lock queue",
        ),
    ),
    targets=(
        Target("tenure-postgresql", "uncontended.p50_us", 1.25, "postgresql-floor", label="uncontended"),
        Target(
            "tenure-postgresql-fair", "contended.gap_p50_us", 1.3, "postgresql-floor", label="fair hand-off"
        ),
        Target("tenure-postgresql-fair", "contended.fairness", 0.99, at_most=False, label="fairness"),
        Target("tenure-postgresql", "contended.gap_p50_us", 1.3, "postgresql-floor", label="hand-off"),
    ),
)
