"""Rate limits on MariaDB (both modes): the server's step is gcra_step, refusals write nothing,
expired rows are swept a few at a time, concurrent coordinators are exact, a restart is survived.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pymysql  # type: ignore[import-untyped]
import pytest

import tenure
from tenure._async.backends.mysql import rate_sql
from tenure._core.ratelimit import gcra_step, parse_rates
from tenure._sync.backends.mysql import rates as sync_rates
from tests.servers_mysql import DATABASE, PASSWORD, USER, MariaDBServer

pytestmark = pytest.mark.slow

MODES = ["advisory", "table"]


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[MariaDBServer]:
    """A server of this test's own, free to be restarted."""
    server = MariaDBServer(tmp_path / "mariadb").start()
    yield server
    server.stop()


def url_of(server: MariaDBServer, mode: str, **options: object) -> str:
    query = [f"namespace=test-{uuid.uuid4().hex[:12]}", f"mode={mode}"]
    query += [f"{name}={value}" for name, value in options.items()]
    return f"{server.url}?{'&'.join(query)}"


def raw_connection(server: MariaDBServer) -> pymysql.Connection:
    return pymysql.connect(
        host="127.0.0.1", port=server.port, user=USER, password=PASSWORD, database=DATABASE, autocommit=True
    )


def row_of(server: MariaDBServer, key: str) -> tuple[object, ...] | None:
    """Return the stored row of store key ``key`` (its TATs and expiry), or None."""
    with raw_connection(server) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT tat0, tat1, tat2, expires_at FROM tenure_rates WHERE key_hash = UNHEX(%s)",
            (rate_sql.key_params(key)["hash"],),
        )
        row: tuple[object, ...] | None = cur.fetchone()
        return row


def row_changes(server: MariaDBServer) -> dict[str, int]:
    """Return the server's counts of rows updated and deleted so far (every table, every session).

    Handler_write is no witness: it counts an INSERT that found its key taken and updated instead.
    """
    with raw_connection(server) as conn, conn.cursor() as cur:
        cur.execute("SHOW GLOBAL STATUS WHERE Variable_name IN ('Handler_update', 'Handler_delete')")
        return {name: int(value) for name, value in cur.fetchall()}


@pytest.mark.parametrize("mode", MODES)
def test_the_servers_step_is_gcra_step_to_the_bit(mariadb_server: MariaDBServer, mode: str) -> None:
    # The limiter gains and drops rates between steps: a missing TAT is idle, a dropped one is gone.
    choices = [parse_rates("10/s", 4), parse_rates("50/s;20/2s;100/min"), parse_rates("5/s;30/min")]
    generator = random.Random(16)
    with tenure.Coordinator(url_of(mariadb_server, mode)) as coord:
        store = coord._store
        stored: tuple[float, ...] = ()
        key = f"bits-{uuid.uuid4().hex}"  # store keys: the table is shared by every namespace
        outcomes = set()
        for _ in range(120):
            rates = generator.choice(choices)
            cost = generator.choice([0, 1, 1, 1, 2, min(rate.burst for rate in rates)])
            step = store.rate_step(key, rates, cost)  # type: ignore[attr-defined]
            assert step == gcra_step(stored, step.now, rates, cost)
            if step.allowed and cost:
                stored = step.tats
            outcomes.add((step.allowed, cost > 0))
        assert {(True, True), (False, True), (True, False)} <= outcomes  # admitted, refused, looked


@pytest.mark.parametrize("mode", MODES)
def test_a_refusal_or_a_peek_writes_nothing(
    mariadb_server: MariaDBServer, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sync_rates, "SWEEP_EVERY", 10**9)  # no sweep in between
    with tenure.Coordinator(url_of(mariadb_server, mode)) as coord:
        store = coord._store
        limiter = coord.rate_limiter("api", rate="1/min;2/h", burst=3, deadline=None)
        assert limiter.peek(key="fresh").remaining == 2
        assert row_of(mariadb_server, f"{limiter.key}:fresh") is None  # a peek adds no row
        assert limiter.try_acquire(key="k")
        changes = row_changes(mariadb_server)
        assert limiter.try_acquire(key="k")
        assert row_changes(mariadb_server)["Handler_update"] > changes["Handler_update"]  # it sees ours
        assert not limiter.try_acquire(key="k")
        before, changes = row_of(mariadb_server, f"{limiter.key}:k"), row_changes(mariadb_server)
        assert not limiter.try_acquire(key="k")
        assert not limiter.try_acquire(key="k", cost=2)
        assert not limiter.peek(key="k").allowed
        # A cost no fresh bucket admits (only rate_step itself takes it) adds no row either.
        refused = store.rate_step("never", parse_rates("10/s", 2), 3)  # type: ignore[attr-defined]
        assert not refused.allowed and refused.tats == (refused.now,)
        assert row_changes(mariadb_server) == changes
        assert row_of(mariadb_server, f"{limiter.key}:k") == before
        assert row_of(mariadb_server, "never") is None


@pytest.mark.parametrize("mode", MODES)
def test_expired_rows_are_swept_a_bounded_few_at_a_time(
    mariadb_server: MariaDBServer, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = uuid.uuid4().hex
    with tenure.Coordinator(url_of(mariadb_server, mode)) as coord:
        store = coord._store
        short = parse_rates("20/s", 1)  # a permit's row expires 50 ms later
        monkeypatch.setattr(sync_rates, "SWEEP_EVERY", 10**9)
        for index in range(rate_sql.SWEEP_LIMIT + 20):
            assert store.rate_step(f"{prefix}:short:{index}", short, 1).allowed  # type: ignore[attr-defined]
        assert store.rate_step(f"{prefix}:long", parse_rates("1/min"), 1).allowed  # type: ignore[attr-defined]

        def rows(pattern: str = "%") -> int:
            """Count rows of every test (the table is shared), or of keys LIKE ``pattern``."""
            with raw_connection(mariadb_server) as conn, conn.cursor() as cur:
                cur.execute("SELECT COUNT(*) FROM tenure_rates WHERE rate_key LIKE %s", (pattern,))
                return int(cur.fetchone()[0])

        shorts = f"{prefix}:short:%"
        assert rows(shorts) == rate_sql.SWEEP_LIMIT + 20
        monkeypatch.setattr(sync_rates, "SWEEP_EVERY", 1)  # every decision sweeps
        assert store.rate_step(f"{prefix}:probe", short, 1).allowed  # type: ignore[attr-defined]
        assert rows(shorts) == rate_sql.SWEEP_LIMIT + 20, "within the margin, an expired row stays"
        time.sleep(rate_sql.SWEEP_MARGIN + 0.2)
        before = rows()
        assert store.rate_step(f"{prefix}:new", short, 1).allowed  # type: ignore[attr-defined]
        assert rows() == before - rate_sql.SWEEP_LIMIT + 1, "a sweep deletes SWEEP_LIMIT rows, no more"
        for index in range(200):  # other tests' expired rows go first if older: more sweeps
            if rows(shorts) == 0:
                break
            store.rate_step(f"{prefix}:more:{index}", short, 1)  # type: ignore[attr-defined]
        assert rows(shorts) == 0
        assert row_of(mariadb_server, f"{prefix}:long") is not None, "a live row is never swept"


@pytest.mark.parametrize("mode", MODES)
def test_two_coordinators_deciding_at_once_are_exact(mariadb_server: MariaDBServer, mode: str) -> None:
    url = url_of(mariadb_server, mode)
    taken: list[int] = []
    with tenure.Coordinator(url) as first, tenure.Coordinator(url) as second:
        limiters = [c.rate_limiter("api", rate="1/min", burst=60, deadline=None) for c in (first, second)]
        start = threading.Barrier(12)

        def caller(index: int) -> None:
            start.wait()
            for _ in range(10):
                cost = 1 + index % 3
                if limiters[index % 2].try_acquire(key="hot", cost=cost):
                    taken.append(cost)

        threads = [threading.Thread(target=caller, args=(i,)) for i in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        left = limiters[0].peek(key="hot").remaining
    # Costs of 1, 2 and 3 from 12 threads of two coordinators (a refill of 1/min adds nothing
    # within the test): never more than the bucket, and what is left is exactly the rest.
    assert 60 - 2 <= sum(taken) <= 60
    assert left == 60 - sum(taken)


@pytest.mark.parametrize("mode", MODES)
def test_a_restarted_server_answers_again_and_keeps_the_buckets(own_server: MariaDBServer, mode: str) -> None:
    with tenure.Coordinator(url_of(own_server, mode, op_timeout=2)) as coord:
        limiter = coord.rate_limiter("api", rate="1/min", burst=2, deadline=5)
        assert limiter.try_acquire(key="k") and limiter.try_acquire(key="k")
        for index in range(3):
            assert limiter.try_acquire(key=f"warm-{index}")  # several pooled connections, all to end
        own_server.restart()
        states = [limiter.decide(key="k") for _ in range(4)]
        assert not any(state.unavailable for state in states), "every pooled connection is replaced"
        assert not any(state.allowed for state in states), "the bucket outlived the restart (InnoDB)"
        assert limiter.try_acquire(key="other")


async def test_a_restarted_server_answers_again_async(own_server: MariaDBServer) -> None:
    async with tenure.AsyncCoordinator(url_of(own_server, "table", op_timeout=2)) as coord:
        limiter = coord.rate_limiter("api", rate="1/min", burst=1, deadline=5)
        assert await limiter.try_acquire(key="k")
        await asyncio.gather(*(limiter.try_acquire(key=f"warm-{i}") for i in range(4)))
        own_server.restart()
        states = [await limiter.decide(key="k") for _ in range(6)]
        assert not any(state.unavailable for state in states)
        assert not any(state.allowed for state in states)
        assert await limiter.try_acquire(key="other")
