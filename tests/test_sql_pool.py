"""The SQL backends' short calls share a bounded pool: a burst waits for sessions, never floods the server.

300 concurrent async calls (rate decisions and holder reads) from one coordinator, against
servers of this module's own that allow only ``MAX_CONNECTIONS`` connections: unbounded, each
call would open a session of its own and most would fail ("too many clients already" on
PostgreSQL, error 1040 on MariaDB). Bounded, the server sees at most ``pool_size`` of tenure's
sessions and every call is answered by the store.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest

import tenure
from tenure import ConfigurationError
from tenure._async.backends.mysql.connection import POOL_SIZE as MYSQL_POOL_SIZE
from tenure._async.backends.postgresql.connection import POOL_SIZE as PG_POOL_SIZE
from tests.servers_mysql import USER, MariaDBServer
from tests.servers_postgres import PostgresServer

pytestmark = pytest.mark.slow

MAX_CONNECTIONS = 40
BURST = 300
POOL_SIZES = [None, 4]  # None: the default


@pytest.fixture(scope="module")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    server = PostgresServer(tmp_path_factory.mktemp("pg-pool"), max_connections=MAX_CONNECTIONS).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDBServer]:
    server = MariaDBServer(tmp_path_factory.mktemp("mariadb-pool"), max_connections=MAX_CONNECTIONS).start()
    yield server
    server.stop()


def url_of(base: str, mode: str, pool_size: int | None) -> str:
    options = [f"namespace=pool-{uuid.uuid4().hex[:12]}", f"mode={mode}"]
    if pool_size is not None:
        options.append(f"pool_size={pool_size}")
    return f"{base}?{'&'.join(options)}"


class Peak:
    """The most sessions ``count()`` saw while sampling in a thread (every millisecond or so)."""

    def __init__(self, count: Callable[[], int]) -> None:
        self.count = count
        self.most = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> Peak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _sample(self) -> None:
        deadline = time.monotonic() + 120  # bounded even if never stopped
        while not self._stop.is_set() and time.monotonic() < deadline:
            self.most = max(self.most, self.count())
            self.samples += 1
            time.sleep(0.001)


async def burst(url: str) -> list[object]:
    """Return the outcomes of BURST concurrent short calls from one coordinator, made at once."""
    async with tenure.AsyncCoordinator(url) as coord:
        limiter = coord.rate_limiter("api", rate="50/min", burst=50, deadline=None, on_unavailable="deny")
        await limiter.peek(key="k")  # connected
        calls: list[Any] = []
        for index in range(BURST):
            calls.append(limiter.decide(key="k") if index % 2 else coord.inspect(f"job-{index % 10}"))
        return list(await asyncio.gather(*calls, return_exceptions=True))


def check(outcomes: list[object]) -> None:
    """Every call was answered by the store; the decisions admitted exactly the budget."""
    errors = [f"{type(o).__name__}: {o}" for o in outcomes if isinstance(o, BaseException)]
    assert not errors, f"{len(errors)} calls failed: {errors[:3]}"
    states = [o for o in outcomes if isinstance(o, tenure.RateState)]
    assert len(states) == BURST // 2
    assert not [state for state in states if state.unavailable]
    assert sum(state.allowed for state in states) == 50


@pytest.mark.parametrize("pool_size", POOL_SIZES)
@pytest.mark.parametrize("mode", ["advisory", "table"])
def test_postgresql_short_calls_stay_within_the_pool(
    pg: PostgresServer, mode: str, pool_size: int | None
) -> None:
    cap = pool_size or PG_POOL_SIZE
    with psycopg.connect(pg.url, autocommit=True) as conn:

        def sessions() -> int:
            statement = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'tenure'"
            row = conn.execute(statement).fetchone()
            return int(row[0]) if row else 0

        with Peak(sessions) as peak:
            outcomes = asyncio.run(burst(url_of(pg.url, mode, pool_size)))
    print(f"POOL postgresql {mode} pool_size={cap}: at most {peak.most} sessions ({peak.samples} samples)")
    check(outcomes)
    assert peak.samples > 10
    assert 0 < peak.most <= cap, f"{peak.most} sessions for short calls, over the pool's {cap}"


@pytest.mark.parametrize("pool_size", POOL_SIZES)
@pytest.mark.parametrize("mode", ["advisory", "table"])
def test_mariadb_short_calls_stay_within_the_pool(
    mariadb: MariaDBServer, mode: str, pool_size: int | None
) -> None:
    cap = pool_size or MYSQL_POOL_SIZE
    url = url_of(mariadb.url, mode, pool_size)
    mariadb.sql("FLUSH STATUS")  # resets Max_used_connections to the connections open now
    outcomes = asyncio.run(burst(url))
    # The server's own high-water mark: every connection, this client's included.
    most = int(mariadb.sql("SHOW GLOBAL STATUS LIKE 'Max_used_connections'").split()[1])
    left = int(mariadb.sql(f"SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = '{USER}'"))
    print(f"POOL mariadb {mode} pool_size={cap}: at most {most} connections")
    check(outcomes)
    assert left == 0, "the coordinator closed its connections"
    assert most <= cap + 1, f"{most} connections (one is the reading client's), over the pool's {cap}"


@pytest.mark.parametrize("backend", ["postgresql", "mariadb"])
def test_threads_of_a_sync_coordinator_stay_within_the_pool(
    backend: str, request: pytest.FixtureRequest
) -> None:
    """64 threads read at once through pool_size=3 (the threaded colour's gate)."""
    server = request.getfixturevalue("pg" if backend == "postgresql" else "mariadb")
    url = url_of(server.url, "advisory", 3)
    if backend == "postgresql":
        with psycopg.connect(server.url, autocommit=True) as conn:
            statement = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'tenure'"
            with Peak(lambda: int(conn.execute(statement).fetchall()[0][0])) as peak:
                outcomes = reads_from_threads(url)
        most = peak.most
    else:
        server.sql("FLUSH STATUS")
        outcomes = reads_from_threads(url)
        most = int(server.sql("SHOW GLOBAL STATUS LIKE 'Max_used_connections'").split()[1])
    assert outcomes == [None] * 640
    assert 0 < most <= 3


def reads_from_threads(url: str) -> list[object]:
    with tenure.Coordinator(url) as coord, ThreadPoolExecutor(64) as pool:
        coord.inspect("job")  # connected
        return list(pool.map(lambda index: coord.inspect(f"job-{index % 7}"), range(640)))


def test_postgresql_a_call_that_finds_no_session_free_within_op_timeout_raises_backend_timeout(
    pg: PostgresServer,
) -> None:
    url = url_of(pg.url, "advisory", 1) + "&op_timeout=0.3"

    async def scenario() -> float:
        async with tenure.AsyncCoordinator(url) as coord:
            await coord.inspect("job")
            pool = coord._store._pool  # type: ignore[attr-defined]
            assert await pool._gate.enter(0)  # the only place, taken as a call would
            started = time.monotonic()
            try:
                with pytest.raises(tenure.BackendTimeout, match="pool_size"):
                    await coord.inspect("job")
            finally:
                pool._gate.leave()
            took = time.monotonic() - started
            assert await coord.inspect("job") is None  # the place came back
            return took

    took = asyncio.run(scenario())
    assert 0.25 <= took < 1.0


@pytest.mark.parametrize("scheme", ["postgresql", "mysql"])
@pytest.mark.parametrize("value", ["0", "-1", "x", "1.5", "²"])
def test_a_bad_pool_size_is_refused_before_any_io(scheme: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match="pool_size"):
        tenure.Coordinator(f"{scheme}://u@127.0.0.1:1/db?pool_size={value}")
