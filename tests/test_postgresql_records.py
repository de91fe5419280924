"""Idempotency records on PostgreSQL (both modes): what the contract suite cannot see from outside.

Finished records survive a server restart and a crash; what a key leaves on the server (its
record, its run's marker, advisory mode's holder row, table mode's lease row) is deleted once it
expired, by later runs' finishes, while a key's fences keep growing; duplicates that race a
run's finish never run it twice.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

import tenure
from tenure._async.backends.postgresql import record_sql, sql, table_records
from tenure._core.idempotency import Recorded
from tenure._core.keys import namespaced_key
from tenure._core.tokens import Owner
from tests.servers_postgres import PostgresServer

pytestmark = pytest.mark.slow

# Per mode: the URL option, the records table, and the table of what a run holds.
MODES = {
    "advisory": ("mode=advisory", record_sql.RECORDS_TABLE, sql.HOLDERS_TABLE),
    "table": ("mode=table", table_records.RECORDS_TABLE, table_records.LEASES_TABLE),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """A server of this module's own, free to be restarted and killed."""
    pg = PostgresServer(tmp_path_factory.mktemp("pg-records")).start()
    yield pg
    pg.stop()


@pytest.fixture(params=sorted(MODES))
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def url(server: PostgresServer, mode: str) -> Iterator[str]:
    yield f"{server.url}?{MODES[mode][0]}&namespace=test-{uuid.uuid4().hex[:12]}"
    if not server.running:
        server.start()


def left_behind(server: PostgresServer, coord: tenure.Coordinator, mode: str, space: str) -> tuple[int, int]:
    """Return how many rows of ``space``'s keys are in the records table and in the runs' table."""
    _, records_table, runs_table = MODES[mode]
    prefix = namespaced_key(coord.namespace, f"{space}:", kind="idempotency")
    with psycopg.connect(server.url, autocommit=True) as conn:
        counts = [
            conn.execute(f"SELECT count(*) FROM {table} WHERE starts_with(key, %s)", (prefix,)).fetchone()
            for table in (records_table, runs_table)
        ]
    return int(counts[0][0]), int(counts[1][0])  # type: ignore[index]


def fence_of_run(calls: list[int]) -> Any:
    """Return a function that notes its run's fence and returns it."""

    def run() -> int:
        lease = tenure.Idempotency.current_lease()
        assert lease is not None
        calls.append(lease.fence)
        return lease.fence

    return run


@pytest.mark.parametrize("how", ["restart", "kill -9"])
def test_finished_records_survive_a_server_restart_and_a_crash(
    server: PostgresServer, url: str, how: str
) -> None:
    class Declined(Exception):
        pass

    def decline() -> None:
        raise Declined("card declined")

    fences: list[int] = []
    with tenure.Coordinator(url) as coord:
        keys = coord.idempotency("payments", store_errors=(Declined,))
        first = keys.run("req-1", fence_of_run(fences))
        with pytest.raises(Declined):
            keys.run("req-2", decline)
    if how == "restart":
        server.restart()
    else:
        server.kill()  # no goodbye: only what was committed (and written to the WAL) is left
        server.start()
    with tenure.Coordinator(url) as coord:
        keys = coord.idempotency("payments", store_errors=(Declined,))
        assert keys.run("req-1", fence_of_run(fences)) == first
        with pytest.raises(Declined, match="card declined"):
            keys.run("req-2", lambda: "ran again")
        done = keys.state("req-1").done
        assert done is not None and done.fence == first and done.remaining > 86000
        assert fences == [first]
        # New runs work, with larger fences (in advisory mode after a crash: a new fence epoch).
        assert keys.run("req-3", fence_of_run(fences)) > first


def test_what_expired_keys_leave_behind_is_deleted_and_fences_keep_growing(
    server: PostgresServer, url: str, mode: str
) -> None:
    fences: list[int] = []
    with tenure.Coordinator(url) as coord:
        keys = coord.idempotency("short", ttl=1.0, lease=1.0)
        for index in range(12):
            keys.run(f"done-{index}", lambda: "done")
        for index in range(4):  # failed runs give their keys up: no record, something of the run
            with pytest.raises(ValueError):
                keys.run(f"failed-{index}", lambda: int("x"))
        keys.run("again", fence_of_run(fences))
        with tenure.Coordinator(url) as dying:  # a runner that dies mid-run
            store: Any = dying._store
            key = namespaced_key(dying.namespace, "short:dead", kind="idempotency")
            assert isinstance(store.begin_run(key, Owner(), 1.0), int)
        assert left_behind(server, coord, mode, "short") == (18, 5)
        time.sleep(1.3)  # every record and lease of "short" has expired
        others = coord.idempotency("long")
        for index in range(4):  # each finish deletes up to 8 expired rows, with what they left
            others.run(f"req-{index}", lambda: "kept")
        assert left_behind(server, coord, mode, "short") == (0, 0)
        assert left_behind(server, coord, mode, "long") == (4, 0)  # records only: runs are over
        keys.run("again", fence_of_run(fences))  # its row was deleted: the fence still grows
        assert len(fences) == 2 and fences[1] > fences[0]


def test_duplicates_racing_a_finishing_run_never_run_it_twice(url: str) -> None:
    """Many keys, each called by four threads over two clients at once: one run per key."""
    runs: Counter[str] = Counter()
    lock = threading.Lock()
    errors: list[BaseException] = []

    def fn(key: str) -> str:
        with lock:
            runs[key] += 1
        return key

    with tenure.Coordinator(url) as one, tenure.Coordinator(url) as two:
        spaces = [one.idempotency("race"), two.idempotency("race")]

        def caller(index: int) -> None:
            try:
                for key in range(60):
                    assert spaces[index % 2].run(f"k-{key}", fn, f"k-{key}", timeout=20) == f"k-{key}"
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=caller, args=(index,)) for index in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []
    assert runs == Counter({f"k-{key}": 1 for key in range(60)})


def test_a_run_that_took_a_lost_key_waits_for_the_callers_commit_and_finds_the_record(
    server: PostgresServer, url: str, mode: str
) -> None:
    """The lease is lost after the caller's transaction stored the record, before it commits.

    A run that takes the key meanwhile waits for what that transaction holds (advisory: the
    record's row; table: the key's turn), then finds the record instead of running again.
    """
    with tenure.Coordinator(url) as coord, tenure.Coordinator(url) as other:
        store: Any = coord._store
        key = namespaced_key(coord.namespace, "payments:req-1", kind="idempotency")
        owner = Owner()
        fence = store.begin_run(key, owner, 1.0)
        assert isinstance(fence, int)
        with psycopg.connect(server.url) as caller:
            for step in store.record_steps(key, owner, fence, b"result", 60.0):
                cursor = caller.execute(step.sql, step.params)
                assert not step.proves_hold or cursor.fetchall()  # held: stored
            if mode == "advisory":  # the store's session dies: its lock is free at once
                with psycopg.connect(server.url, autocommit=True) as admin:
                    ended = f"SELECT pg_terminate_backend(pid) FROM {sql.HOLDERS_TABLE} WHERE key = %s"
                    assert admin.execute(ended, (key,)).fetchall() == [(True,)]
            else:
                time.sleep(1.1)  # the lease row expires
            found: list[object] = []
            rival: Any = other._store
            competitor = threading.Thread(target=lambda: found.append(rival.begin_run(key, Owner(), 5.0)))
            competitor.start()
            competitor.join(0.5)
            assert competitor.is_alive()  # waiting for the caller's transaction
            caller.commit()
            competitor.join(5)
        assert len(found) == 1 and isinstance(found[0], Recorded)
        assert found[0].record == b"result" and found[0].fence == fence


async def test_an_asyncio_psycopg_connection_records_in_its_transaction(url: str) -> None:
    async with tenure.AsyncCoordinator(url) as coord:
        keys = coord.idempotency("payments")
        async with await psycopg.AsyncConnection.connect(url.partition("?")[0]) as caller:
            await caller.execute("CREATE TEMPORARY TABLE charges (id int)")

            async def charge(order_id: int) -> int:
                await caller.execute("INSERT INTO charges VALUES (%s)", (order_id,))
                return order_id

            assert await keys.run("req-1", charge, 7, payload=b"p", transaction=caller) == 7
            assert await keys.run("req-1", charge, 8, payload=b"p", transaction=caller) == 7  # replayed
            rows = await (await caller.execute("SELECT id FROM charges")).fetchall()
            assert rows == [(7,)]
            assert (await keys.state("req-1")).running is None


def test_runs_in_the_callers_transaction_delete_what_expired_keys_leave(
    server: PostgresServer, url: str, mode: str
) -> None:
    with tenure.Coordinator(url) as coord, psycopg.connect(server.url) as caller:
        keys = coord.idempotency("short", ttl=1.0, lease=1.0)
        for index in range(12):
            keys.run(f"done-{index}", lambda: "done", transaction=caller)
        for index in range(4):
            with pytest.raises(ValueError):
                keys.run(f"failed-{index}", lambda: int("x"), transaction=caller)
        assert left_behind(server, coord, mode, "short") == (16, 4)
        time.sleep(1.3)  # every record and lease of "short" has expired
        others = coord.idempotency("long")
        for index in range(2):  # each caller's transaction deletes up to 8 expired rows
            assert others.run(f"req-{index}", lambda: "kept", transaction=caller) == "kept"
        assert left_behind(server, coord, mode, "short") == (0, 0)
        assert left_behind(server, coord, mode, "long") == (2, 0)
