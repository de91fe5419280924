"""The caller's-transaction option of idempotency keys (SQL backends), in both colours.

The caller's own DB-API connection writes its business rows without committing; the run's
record joins that transaction, and tenure commits both or neither.
"""

from __future__ import annotations

import collections.abc
import sqlite3

import pytest

import tenure
from tenure._async.backends.base import AsyncRecordsInTransaction
from tenure._concurrency import AsyncBackground, async_sleep
from tests._async.faults import stall_renewals
from tests.conftest import BACKENDS
from tests.sql_connections import OPENERS, Orders

IN_TRANSACTION = [name for name in BACKENDS if name in OPENERS]


@pytest.fixture(params=IN_TRANSACTION)
def sql_backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def records_url(sql_backend: str, request: pytest.FixtureRequest) -> str:
    """Here, a backend whose records the caller's SQL connection writes (``keeper`` runs on it)."""
    url: str = request.getfixturevalue(f"{sql_backend}_url")
    return url


@pytest.fixture
def orders(
    sql_backend: str, records_url: str, request: pytest.FixtureRequest
) -> collections.abc.Iterator[Orders]:
    """The caller's own table and connections, in the backend's database."""
    table = Orders(OPENERS[sql_backend], records_url, request)
    yield table
    table.close()


async def test_only_sql_backends_take_a_transaction(coord: tenure.AsyncCoordinator) -> None:
    if tenure.Capability.RECORDS not in coord.capabilities:
        return  # refused whole: the contract suite checks that
    keys = coord.idempotency("payments")
    if isinstance(coord._store, AsyncRecordsInTransaction):
        with pytest.raises(tenure.ConfigurationError, match="DB-API connection"):
            await keys.run("req-1", lambda: 1, transaction=object())
    else:
        with pytest.raises(tenure.BackendIncapable, match="transaction="):
            await keys.run("req-1", lambda: 1, transaction=sqlite3.connect(":memory:"))


async def test_the_callers_writes_and_the_record_commit_together(
    keeper: tenure.AsyncCoordinator, orders: Orders
) -> None:
    keys = keeper.idempotency("payments")
    connection = orders.connect()
    runs: list[int] = []

    def charge(order_id: int) -> dict[str, int]:
        runs.append(order_id)
        lease = tenure.AsyncIdempotency.current_lease()
        assert lease is not None
        orders.insert(connection, order_id, lease.fence)
        assert orders.ids() == []  # not committed yet: another connection sees nothing
        return {"order": order_id}

    assert await keys.run("req-1", charge, 7, transaction=connection) == {"order": 7}
    assert orders.ids() == [7]
    assert await keys.run("req-1", charge, 7, transaction=connection) == {"order": 7}
    assert runs == [7] and orders.ids() == [7]
    state = await keys.state("req-1")
    assert state.running is None and state.done is not None


async def test_an_error_rolls_the_callers_writes_back_and_frees_the_key(
    keeper: tenure.AsyncCoordinator, orders: Orders
) -> None:
    keys = keeper.idempotency("payments")
    connection = orders.connect()
    attempts: list[int] = []

    def charge(order_id: int) -> int:
        attempts.append(order_id)
        orders.insert(connection, order_id, len(attempts))
        if len(attempts) == 1:
            raise ConnectionError("partner down after the row was written")
        return order_id

    with pytest.raises(ConnectionError):
        await keys.run("req-1", charge, 7, transaction=connection)
    assert orders.ids() == []
    assert await keys.run("req-1", charge, 7, transaction=connection) == 7
    assert orders.ids() == [7] and attempts == [7, 7]


async def test_a_run_that_lost_its_key_is_rolled_back(
    keeper: tenure.AsyncCoordinator, records_url: str, orders: Orders
) -> None:
    """A run paused past its lease while another took over: its writes never commit."""
    stale_connection = orders.connect()
    errors: list[BaseException] = []

    async def stale_charge(order_id: int) -> int:
        orders.insert(stale_connection, order_id, 1)
        await async_sleep(1.6)  # its renewals fail meanwhile: the lease runs out
        return order_id

    async def stale_run() -> None:
        try:
            await keeper.idempotency("payments", lease=0.6).run(
                "req-1", stale_charge, 1, payload=b"p", transaction=stale_connection
            )
        except tenure.LockLost as exc:
            errors.append(exc)

    await stall_renewals(keeper, seconds=5)
    stale = AsyncBackground(stale_run, name="stale")
    stale.start()
    await async_sleep(1.0)
    async with tenure.AsyncCoordinator(records_url) as other:
        fresh_connection = orders.connect()

        def fresh_charge(order_id: int) -> int:
            orders.insert(fresh_connection, order_id, 2)
            return order_id

        # SQLite: the stale run's open transaction holds the file's write lock until it ends,
        # so the newer run waits for it; the servers let it run beside the stale one.
        newer = await other.idempotency("payments", lease=5).run(
            "req-1", fresh_charge, 2, payload=b"p", transaction=fresh_connection, timeout=10
        )
        assert newer == 2
        await stale.join()
        assert len(errors) == 1 and "rolled back" in str(errors[0])
        assert orders.ids() == [2]
        assert await other.idempotency("payments").run("req-1", fresh_charge, 3, payload=b"p") == 2
