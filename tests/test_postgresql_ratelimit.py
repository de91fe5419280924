"""Rate limits on PostgreSQL (both modes): what the contract suite cannot see from outside.

Each step is ``gcra_step`` to the bit, by the server's clock; a refusal or a look writes
nothing; expired rows are deleted by later inserts; decisions from two coordinators on a key
no one has used yet admit exactly the burst; the modes share the buckets; a server that
restarted or crashed answers the next decision, with the buckets it had.
"""

from __future__ import annotations

import asyncio
import math
import random
import threading
import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest

import tenure
from tenure._async.backends.postgresql.ratelimit import RATES_TABLE, SWEEP
from tenure._core.ratelimit import gcra_step, parse_rates
from tenure._sync.backends.base import Counters
from tests.servers_postgres import PostgresServer

pytestmark = pytest.mark.slow

MODES = {"advisory": "mode=advisory", "table": "mode=table"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """A server of this module's own, free to be restarted and killed."""
    pg = PostgresServer(tmp_path_factory.mktemp("pg-rates")).start()
    yield pg
    pg.stop()


@pytest.fixture(params=sorted(MODES))
def url(request: pytest.FixtureRequest, server: PostgresServer) -> Iterator[str]:
    yield f"{server.url}?{MODES[request.param]}&namespace=test-{uuid.uuid4().hex[:12]}"
    if not server.running:
        server.start()


def row_of(server: PostgresServer, key: str) -> tuple[str, list[float], float] | None:
    """Return (xmin, tats, expires_at) of ``key``'s row: xmin changes with every write."""
    with psycopg.connect(server.url, autocommit=True) as conn:
        row = conn.execute(
            f"SELECT xmin::text, tats, expires_at FROM {RATES_TABLE} WHERE key = %s", (key,)
        ).fetchone()
    return None if row is None else (str(row[0]), list(row[1]), float(row[2]))


def test_each_step_is_gcra_step_to_the_bit(url: str, server: PostgresServer) -> None:
    rates = parse_rates("50/s;20/2s;100/min", burst=8)
    chooser = random.Random(16)
    with tenure.Coordinator(url) as coord:
        store = coord._store
        assert isinstance(store, Counters)
        key = f"{coord.namespace}:ratelimit:exact"
        admitted = refused = 0
        for _ in range(120):
            before = row_of(server, key)
            stored = before[1] if before else []
            cost = chooser.choice([0, 1, 1, 2, 3])
            step = store.rate_step(key, rates, cost)
            assert step == gcra_step(stored, step.now, rates, cost)  # the same floats, not close ones
            after = row_of(server, key)
            if step.allowed and cost:
                admitted += 1
                assert after is not None and tuple(after[1]) == step.tats
                assert after[2] == math.ceil(max(step.tats))
            else:
                refused += not step.allowed
                assert after == before
            time.sleep(chooser.choice([0.0, 0.0, 0.01, 0.03]))
        assert admitted > 10 and refused > 10  # both sides were seen
        # A limiter that lost a rate keeps the TATs of those it has; one that gained one starts it idle.
        for fewer_or_more in (rates[:1], (*rates, *parse_rates("5/s"))):
            before = row_of(server, key)
            step = store.rate_step(key, fewer_or_more, 1)
            assert step == gcra_step(before[1] if before else [], step.now, fewer_or_more, 1)


def test_a_refusal_or_a_look_writes_nothing(url: str, server: PostgresServer) -> None:
    with tenure.Coordinator(url) as coord:
        limiter = coord.rate_limiter("api", rate="1/min", burst=2, deadline=None)
        assert limiter.peek(key="fresh").remaining == 2
        assert row_of(server, f"{limiter.key}:fresh") is None  # a look at a new key leaves no row
        assert limiter.try_acquire(key="k") and limiter.try_acquire(key="k")
        written = row_of(server, f"{limiter.key}:k")
        assert written is not None
        for _ in range(5):
            assert not limiter.try_acquire(key="k")
            assert limiter.peek(key="k").remaining == 0
        assert row_of(server, f"{limiter.key}:k") == written  # the same row version: no write


def count_rows(server: PostgresServer, where: str, *args: object) -> int:
    with psycopg.connect(server.url, autocommit=True) as conn:
        row = conn.execute(f"SELECT count(*) FROM {RATES_TABLE} WHERE {where}", args).fetchone()
    assert row is not None
    return int(row[0])


def test_expired_rows_are_deleted_by_later_inserts_and_live_ones_stay(
    url: str, server: PostgresServer
) -> None:
    with tenure.Coordinator(url) as coord:
        brief = coord.rate_limiter("brief", rate="100/s", burst=1, deadline=None)  # rows last 10 ms
        kept = coord.rate_limiter("kept", rate="1/min", burst=1, deadline=None)
        for i in range(12):
            assert brief.try_acquire(key=f"k{i}")
        assert kept.try_acquire(key="live")
        prefix = f"{brief.key}:"
        assert count_rows(server, "starts_with(key, %s)", prefix) == 12
        time.sleep(1.2)  # past every expiry (whole seconds of the server's clock)
        # Oldest first: other tests' expired rows may go before ours. Enough inserts for all.
        expired = count_rows(server, "expires_at <= extract(epoch FROM clock_timestamp())")
        assert expired >= 12
        inserts = math.ceil(expired / SWEEP)
        for i in range(inserts):
            assert kept.try_acquire(key=f"new{i}")
        assert count_rows(server, "starts_with(key, %s)", prefix) == 0
        assert not kept.try_acquire(key="live")  # a live bucket is never swept
        # Refused or admitted, a step on an existing key deletes nothing.
        assert brief.try_acquire(key="again")
        time.sleep(1.1)
        for _ in range(3):
            assert not kept.try_acquire(key="live")
        assert count_rows(server, "key = %s", f"{brief.key}:again") == 1


def race(limiters: list[tenure.RateLimiter], key: str, threads: int, tries: int) -> list[bool]:
    """Return what ``threads`` threads, started at once, got from ``tries`` tries each on ``key``."""
    admitted: list[bool] = []
    start = threading.Barrier(threads)

    def caller(index: int) -> None:
        limiter = limiters[index % len(limiters)]
        start.wait(timeout=10)
        for _ in range(tries):
            admitted.append(limiter.try_acquire(key=key))

    workers = [threading.Thread(target=caller, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    return admitted


def test_two_coordinators_racing_on_new_keys_admit_exactly_the_burst(url: str) -> None:
    burst, threads, tries = 25, 8, 10
    with tenure.Coordinator(url) as first, tenure.Coordinator(url) as second:
        limiters = [c.rate_limiter("race", rate="1/min", burst=burst, deadline=None) for c in (first, second)]
        for round_ in range(3):  # each round races the first insert of a new key
            admitted = race(limiters, f"k{round_}", threads, tries)
            assert len(admitted) == threads * tries
            assert sum(admitted) == burst


def test_both_modes_share_the_buckets(server: PostgresServer) -> None:
    namespace = f"test-{uuid.uuid4().hex[:12]}"
    with (
        tenure.Coordinator(f"{server.url}?mode=advisory&namespace={namespace}") as advisory,
        tenure.Coordinator(f"{server.url}?mode=table&namespace={namespace}") as table,
    ):
        first, second = [
            coord.rate_limiter("api", rate="1/min", burst=2, deadline=None) for coord in (advisory, table)
        ]
        assert first.try_acquire(key="k")
        assert second.try_acquire(key="k")
        assert not first.try_acquire(key="k")


@pytest.mark.parametrize("how", ["restart", "crash"])
def test_a_server_that_came_back_answers_the_next_decision_with_its_buckets(
    url: str, server: PostgresServer, how: str
) -> None:
    with tenure.Coordinator(url) as coord:
        limiter = coord.rate_limiter("api", rate="1/min", burst=3, on_unavailable="deny", deadline=None)
        assert limiter.try_acquire(key="k") and limiter.try_acquire(key="k")
        if how == "restart":
            server.restart()
        else:
            server.kill()
            server.start()
        state = limiter.decide(key="k")  # on a new session: the pooled ones died with the server
        assert state.allowed and not state.unavailable and state.remaining == 0
        assert not limiter.try_acquire(key="k")  # the bucket was kept: 3 in all


def test_a_stopped_server_gives_the_chosen_answer_within_the_deadline(
    url: str, server: PostgresServer
) -> None:
    with tenure.Coordinator(url) as coord:
        denying = coord.rate_limiter("api", rate="1/min", burst=3, on_unavailable="deny", deadline=0.5)
        allowing = coord.rate_limiter("api", rate="1/min", burst=3, on_unavailable="allow", deadline=0.5)
        assert denying.try_acquire(key="k")
        server.shutdown()
        started = time.monotonic()
        refused = denying.decide(key="k")
        allowed = allowing.decide(key="k")
        assert time.monotonic() - started < 1.5
        assert (refused.allowed, refused.unavailable) == (False, True)
        assert (allowed.allowed, allowed.unavailable) == (True, True)
        server.start()
        assert denying.decide(key="k").remaining == 1  # back, with the bucket: one taken before, one now


def tenure_sessions(server: PostgresServer) -> set[int]:
    with psycopg.connect(server.url, autocommit=True) as conn:
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE application_name = 'tenure'").fetchall()
    return {int(row[0]) for row in rows}


async def test_a_decision_past_its_deadline_keeps_its_session(url: str, server: PostgresServer) -> None:
    async with tenure.AsyncCoordinator(url) as coord:
        limiter = coord.rate_limiter("api", rate="1/min", burst=5, on_unavailable="deny", deadline=0.05)
        assert await limiter.try_acquire(key="k")
        sessions = await asyncio.to_thread(tenure_sessions, server)
        server.pause()
        try:
            late = await limiter.decide(key="k")
        finally:
            server.resume()
        assert (late.allowed, late.unavailable) == (False, True)
        await asyncio.sleep(0.3)  # the late step ends on the server; its session goes back to the pool
        state = await limiter.decide(key="k")
        assert state.allowed and state.remaining == 2  # the late step took its permit too
        assert await asyncio.to_thread(tenure_sessions, server) == sessions  # no session closed or opened


@pytest.fixture
def database(server: PostgresServer) -> Iterator[str]:
    """The URL of a fresh database of this test's own (no tenure schema yet)."""
    name = f"db_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server.url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield server.url.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(server.url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


def test_stores_of_both_modes_starting_at_once_create_the_schema_once(database: str) -> None:
    failures: list[BaseException] = []
    admitted: list[bool] = []
    start = threading.Barrier(6)

    def starter(index: int) -> None:
        mode = sorted(MODES)[index % 2]
        try:
            start.wait(timeout=10)
            with tenure.Coordinator(f"{database}?{MODES[mode]}&namespace=start") as coord:
                limiter = coord.rate_limiter("api", rate="1/min", burst=4, deadline=None)
                admitted.append(limiter.try_acquire(key="k"))
        except Exception as exc:  # reported below, with the others
            failures.append(exc)

    workers = [threading.Thread(target=starter, args=(i,)) for i in range(6)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert failures == []
    assert sorted(admitted) == [False, False, True, True, True, True]


def test_a_database_of_an_earlier_version_gets_the_rates_schema(database: str) -> None:
    for mode in sorted(MODES):
        url = f"{database}?{MODES[mode]}&namespace=upgrade"
        with tenure.Coordinator(url) as coord, coord.lock("job").acquire(timeout=1):
            pass
        with psycopg.connect(database, autocommit=True) as conn:  # as an earlier version left it
            conn.execute(f"DROP TABLE {RATES_TABLE}")
            conn.execute("DROP FUNCTION tenure_rate_step")
        with tenure.Coordinator(url) as coord:
            assert coord.rate_limiter("api", rate="1/min", burst=1, deadline=None).try_acquire(key=mode)
