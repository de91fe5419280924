"""MariaDB's idempotency records, both modes: a restart keeps them, the server's packet bounds
them, a key leaves nothing but its record, which goes once expired, and a record written in a
caller's transaction (PyMySQL, aiomysql) keeps the key from running again until that commits."""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiomysql  # type: ignore[import-untyped]
import pymysql  # type: ignore[import-untyped]
import pytest

import tenure
from tenure._async.backends.mysql.record_sql import PACKET_HEADROOM, record_limit
from tenure._async.backends.mysql.sql import lock_name
from tenure._core.idempotency import HEADER_BYTES, Recorded, run_name
from tenure._core.keys import namespaced_key
from tenure._core.tokens import Owner
from tenure._sync.transaction import run_steps
from tests.servers_mysql import DATABASE, PASSWORD, USER, MariaDBServer
from tests.test_mysql import namespaced, raw_connection

pytestmark = pytest.mark.slow
MODES: dict[str, dict[str, object]] = {"advisory": {}, "table": {"mode": "table"}}


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[MariaDBServer]:
    """A server of this test's own, free to be restarted or reconfigured."""
    server = MariaDBServer(tmp_path / "mariadb").start()
    yield server
    server.stop()


class Raw:
    """Results are the bytes the function returns."""

    def dumps(self, value: Any) -> bytes:
        return bytes(value)

    def loads(self, data: bytes) -> Any:
        return data


def scalar(server: MariaDBServer, query: str, params: list[str]) -> int:
    """Return the one number ``query`` reads; ``{names}`` in it stands for ``params``' placeholders."""
    with raw_connection(server) as conn, conn.cursor() as cur:
        cur.execute(query.format(names=", ".join(["%s"] * len(params))), params)
        found: int = cur.fetchone()[0]
        return found


@pytest.mark.parametrize("mode", MODES)
def test_a_restart_keeps_finished_records(own_server: MariaDBServer, mode: str) -> None:
    url = namespaced(own_server.url, op_timeout=2, **MODES[mode])
    runs: list[int] = []

    def charge(amount: int) -> dict[str, int]:
        runs.append(amount)
        return {"charged": amount}

    with tenure.Coordinator(url) as coord:
        keys = coord.idempotency("payments")
        assert keys.run("req-1", charge, 5) == {"charged": 5}
        before = keys.state("req-1").done
        assert before is not None
        own_server.restart()  # kill -9, then the same data dir: every session ends
        assert keys.run("req-1", charge, 5) == {"charged": 5}, "replayed, not run again"
        after = keys.state("req-1")
        assert after.running is None and after.done is not None
        assert after.done.fence == before.fence and after.done.remaining > 86000
        assert keys.run("req-2", charge, 7) == {"charged": 7}
        later = keys.state("req-2").done
        assert later is not None and later.fence > before.fence, "fences keep growing across the crash"
    assert runs == [5, 7]


def test_the_record_limit_follows_the_servers_packet(own_server: MariaDBServer) -> None:
    packet = 4 * 1024 * 1024
    own_server.sql(f"SET GLOBAL max_allowed_packet = {packet}")
    limit = record_limit(packet)
    assert limit == (packet - PACKET_HEADROOM) // 2
    # The largest record, of the bytes that an escaped literal would have doubled.
    body = (b"\0'\\\"" * limit)[: limit - HEADER_BYTES]
    for mode in MODES:
        url = namespaced(own_server.url, **MODES[mode])
        with tenure.Coordinator(url) as coord:
            assert coord._store.record_limit == limit  # type: ignore[attr-defined]
            keys = coord.idempotency("blobs", serializer=Raw())
            assert keys.run("big", lambda: body) == body
            assert keys.run("big", lambda: b"not run") == body
        # A space built before the first connection takes the default packet's size limit: a
        # record over this server's is refused by the store, which frees the key.
        early = tenure.Coordinator(url)
        try:
            keys = early.idempotency("blobs", serializer=Raw())
            with pytest.raises(tenure.IdempotencyError, match="max_allowed_packet"):
                keys.run("bigger", lambda: b"x" * limit)
            assert keys.state("bigger") == tenure.KeyState(None, None)
            assert keys.run("bigger", lambda: b"small") == b"small"
        finally:
            early.close()


@pytest.mark.parametrize("mode", MODES)
def test_a_key_leaves_only_its_record_and_that_goes_once_expired(
    mariadb_server: MariaDBServer, mode: str
) -> None:
    url = namespaced(mariadb_server.url, **MODES[mode])
    fences: list[int] = []

    def charge(amount: int) -> int:
        lease = tenure.Idempotency.current_lease()
        assert lease is not None
        fences.append(lease.fence)
        return amount

    with tenure.Coordinator(url) as coord:
        keys = coord.idempotency("payments", ttl=1)
        names = [
            lock_name(namespaced_key(coord.namespace, run_name("payments", f"req-{i}"), kind="idempotency"))
            for i in range(20)
        ]
        for i in range(20):
            keys.run(f"req-{i}", charge, i)
        mine = "SELECT COUNT(*) FROM {table} WHERE lock_name IN ({{names}})"
        assert scalar(mariadb_server, mine.format(table="tenure_records"), names) == 20
        # No holder row (advisory mode) nor lease row (table mode) is left; fences come from the
        # server-wide sequence (advisory) or start past the server's time (table): none is kept.
        runs = "tenure_holders" if mode == "advisory" else "tenure_leases"
        assert scalar(mariadb_server, mine.format(table=runs), names) == 0
        time.sleep(1.2)
        # Each finish takes up to 8 expired records with it, the oldest first (this server's
        # other tests left some too).
        expired = scalar(
            mariadb_server, "SELECT COUNT(*) FROM tenure_records WHERE expires_at <= UTC_TIMESTAMP(6)", []
        )
        for i in range(math.ceil(expired / 8)):
            keys.run(f"later-{i}", charge, i)
        assert scalar(mariadb_server, mine.format(table="tenure_records"), names) == 0
        keys.run("req-0", charge, 0)  # its record expired: it runs again, with a larger fence
        assert fences[-1] > fences[0]


@pytest.mark.parametrize("outcome", ["commit", "rollback"])
@pytest.mark.parametrize("mode", MODES)
def test_a_run_lost_before_the_callers_commit_holds_the_next_one_until_it_ends(
    mariadb_server: MariaDBServer, mode: str, outcome: str
) -> None:
    """The run's lease goes (its session killed, or its lease row expired) after the caller's
    transaction proved the hold: a begin step meanwhile waits for that transaction, then gets the
    record it committed, or takes the key if it rolled back."""
    url = namespaced(mariadb_server.url, **MODES[mode])
    key = f"req-{uuid.uuid4().hex}"
    with tenure.Coordinator(url) as coord, tenure.Coordinator(url) as other:
        store: Any = coord._store
        owner = Owner()
        fence = store.begin_run(key, owner, 0.5)
        assert isinstance(fence, int)
        caller = pymysql.connect(
            host="127.0.0.1", port=mariadb_server.port, user=USER, password=PASSWORD, database=DATABASE
        )
        try:
            assert run_steps(caller, store.record_steps(key, owner, fence, b"result", 60))
            if mode == "advisory":
                holder = "SELECT conn FROM tenure_holders WHERE lock_name = %s"
                with raw_connection(mariadb_server) as admin, admin.cursor() as cur:
                    cur.execute(holder, [lock_name(key)])
                    cur.execute(f"KILL {int(cur.fetchone()[0])}")
            with ThreadPoolExecutor(1) as pool:
                time.sleep(0.7)  # the session's end reaches its lock; the lease row expires
                begun = pool.submit(other._store.begin_run, key, Owner(), 5.0)  # type: ignore[attr-defined]
                time.sleep(0.5)
                assert not begun.done(), "it waits for the caller's transaction"
                caller.commit() if outcome == "commit" else caller.rollback()
                got = begun.result(timeout=10)
        finally:
            caller.close()
    if outcome == "commit":
        assert isinstance(got, Recorded) and got.record == b"result" and got.fence == fence
    else:
        assert isinstance(got, int) and got > fence


async def test_an_aiomysql_connection_records_in_its_transaction(mariadb_server: MariaDBServer) -> None:
    runs: list[int] = []
    table = f"orders_{uuid.uuid4().hex[:12]}"
    connection = await aiomysql.connect(
        host="127.0.0.1", port=mariadb_server.port, user=USER, password=PASSWORD, db=DATABASE
    )
    try:
        async with connection.cursor() as cur:
            await cur.execute(f"CREATE TABLE {table} (id INT PRIMARY KEY, fence BIGINT)")

        async def charge(order_id: int) -> int:
            runs.append(order_id)
            lease = tenure.AsyncIdempotency.current_lease()
            assert lease is not None
            async with connection.cursor() as cur:
                await cur.execute(f"INSERT INTO {table} VALUES (%s, %s)", (order_id, lease.fence))
            return order_id

        async with tenure.AsyncCoordinator(namespaced(mariadb_server.url)) as coord:
            keys = coord.idempotency("payments")
            assert await keys.run("req-1", charge, 7, transaction=connection) == 7
            assert await keys.run("req-1", charge, 7, transaction=connection) == 7
        assert runs == [7]
        assert scalar(mariadb_server, f"SELECT COUNT(*) FROM {table}", []) == 1
    finally:
        connection.close()


def test_a_replay_is_one_statement(own_server: MariaDBServer) -> None:
    """A hit sends the plain read of the record and nothing else, in both modes."""
    with raw_connection(own_server) as conn, conn.cursor() as cur:

        def statements() -> int:
            cur.execute("SHOW GLOBAL STATUS LIKE 'Questions'")  # counts itself too
            return int(cur.fetchone()[1])

        for mode in MODES:
            with tenure.Coordinator(namespaced(own_server.url, **MODES[mode])) as coord:
                keys = coord.idempotency("payments")
                assert keys.run("req-1", lambda: 7) == 7
                assert keys.run("req-1", lambda: 8) == 7  # opens the pooled connection (its set-up)
                before = statements()
                for _ in range(10):
                    assert keys.run("req-1", lambda: 8) == 7
                assert statements() - before == 10 + 1, mode
