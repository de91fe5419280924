"""The ``mysql`` suite: locks over one MariaDB server on loopback.

tenure's ``mysql://`` backend (GET_LOCK on a few shared sessions, plain and ``fair=True``, and
the ``?mode=table`` lease table) against tooz's mysql driver, and the floor: one PyMySQL
connection sending ``SELECT GET_LOCK(name, timeout)`` to acquire (a waiter blocks in the
server's queue) and ``SELECT RELEASE_LOCK(name)`` to release: no fence, no TTL, no holder
record. The server (tests/servers_mysql.py) is started by the suite's environment, in the
parent process, and stopped at the end, with InnoDB's default durability (the redo log flushed
at every commit), as packaged.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.servers_mysql import DATABASE, PASSWORD, USER, MariaDBServer

from benchmarks.registry import BenchContext, Contender, Role, Suite, Target
from benchmarks.suites.common import TIMEOUT, TenureHandle, ToozHandle, client_versions


@contextlib.contextmanager
def one_server(workdir: Path) -> Iterator[dict[str, str]]:
    server = MariaDBServer(workdir / "mariadb", durable=True)  # flushes the redo log per commit
    try:
        server.start()
        version = subprocess.run(
            [server.binary, "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout.strip()
        yield {
            "tenure_url": server.url,
            "host": "127.0.0.1",
            "port": str(server.port),
            "server": f"{version} (innodb_flush_log_at_trx_commit=1, data in {server.datadir})",
            "clients": client_versions("PyMySQL", "tooz"),
            "server_pids": str(server.proc.pid) if server.proc is not None else "",
        }
    finally:
        server.stop()


def _connect(ctx: BenchContext) -> Any:
    import pymysql  # type: ignore[import-untyped]  # the mysql extra: missing, skipped

    return pymysql.connect(
        host=ctx.params["host"],
        port=int(ctx.params["port"]),
        user=USER,
        password=PASSWORD,
        database=DATABASE,
        autocommit=True,
        read_timeout=TIMEOUT + 5,
    )


class MySQLFloor:
    """The floor: ``SELECT GET_LOCK(name, 10)`` / ``SELECT RELEASE_LOCK(name)`` on one connection.

    A waiter blocks in the server's lock queue, which hands the lock over on release: the least
    any GET_LOCK client can do. No fence, no TTL, no record of the holder.
    """

    def __init__(self, ctx: BenchContext, name: str) -> None:
        self._conn = _connect(ctx)
        self._name = f"floor:{name}"

    def acquire(self) -> None:
        with self._conn.cursor() as cur:
            cur.execute("SELECT GET_LOCK(%s, %s)", (self._name, TIMEOUT))
            if cur.fetchone()[0] != 1:
                raise TimeoutError(f"floor lock {self._name!r} not acquired within {TIMEOUT} s")

    def release(self) -> None:
        with self._conn.cursor() as cur:
            cur.execute("SELECT RELEASE_LOCK(%s)", (self._name,))
            if cur.fetchone()[0] != 1:
                raise RuntimeError(f"floor lock {self._name!r} was not held at release")

    def close(self) -> None:
        self._conn.close()


class ToozMySQLHandle(ToozHandle):
    """tooz's mysql driver: ``get_coordinator('mysql://…').get_lock(name).acquire(timeout=10)``.

    Each acquire opens a connection and sends ``GET_LOCK(name, 10)`` (a waiter blocks on the
    server); each release sends ``RELEASE_LOCK`` and closes the connection. No TTL, no fence.
    """

    def __init__(self, ctx: BenchContext, name: str) -> None:
        url = f"mysql://{USER}:{PASSWORD}@{ctx.params['host']}:{ctx.params['port']}/{DATABASE}"
        super().__init__(url, name, what="tooz mysql", timeout=int(TIMEOUT))


def tenure_mysql(ctx: BenchContext, name: str) -> TenureHandle:
    return TenureHandle(ctx.params["tenure_url"], name)


def tenure_mysql_fair(ctx: BenchContext, name: str) -> TenureHandle:
    return TenureHandle(ctx.params["tenure_url"], f"fair-{name}", fair=True)


def tenure_mysql_table(ctx: BenchContext, name: str) -> TenureHandle:
    return TenureHandle(ctx.params["tenure_url"] + "?mode=table", f"table-{name}")


SUITE = Suite(
    name="mysql",
    description="locks over one MariaDB server on loopback",
    baseline="tooz-mysql",
    environment=one_server,
    contenders=(
        Contender(
            "tenure-mysql",
            Role.TENURE,
            tenure_mysql,
            floor="mysql-floor",
            ttl=True,
            fence=True,
            summary="tenure.Coordinator('mysql://…').lock(name, ttl=10).acquire() / lease.release()",
            notes="GET_LOCK + fence + holder row in one statement; waiters wait on the server and retry",
        ),
        Contender(
            "tenure-mysql-fair",
            Role.TENURE,
            tenure_mysql_fair,
            floor="mysql-floor",
            ttl=True,
            fence=True,
            summary="the same with fair=True: waiters queue in GET_LOCK, the server hands over",
            notes="the waiting statement records the holder and draws the fence once granted",
        ),
        Contender(
            "tenure-mysql-table",
            Role.TENURE,
            tenure_mysql_table,
            floor="mysql-floor",
            ttl=True,
            fence=True,
            summary="tenure.Coordinator('mysql://…?mode=table').lock(name, ttl=10): an InnoDB lease table",
            notes="one upsert per acquire; waiters poll from 2 ms to 50 ms",
        ),
        Contender(
            "tooz-mysql",
            Role.PEER,
            ToozMySQLHandle,
            floor="mysql-floor",
            summary="tooz.coordination.get_coordinator('mysql://…').get_lock(name).acquire(timeout=10)",
            notes="a new connection per acquire, GET_LOCK(name, 10); closed at release",
        ),
        Contender(
            "mysql-floor",
            Role.FLOOR,
            MySQLFloor,
            summary="raw PyMySQL: SELECT GET_LOCK(name, 10) / SELECT RELEASE_LOCK(name)",
            notes="waiters block in the server's lock queue",
        ),
    ),
    targets=(
        Target("tenure-mysql", "uncontended.p50_us", 1.25, "mysql-floor", label="uncontended"),
        Target("tenure-mysql-fair", "contended.gap_p50_us", 1.3, "mysql-floor", label="fair hand-off"),
        Target("tenure-mysql-fair", "contended.fairness", 0.99, at_most=False, label="fairness"),
        Target("tenure-mysql", "contended.gap_p50_us", 1.3, "mysql-floor", label="hand-off"),
    ),
)
