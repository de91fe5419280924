"""Table mode (``?mode=table``): an InnoDB lease table, expiry by the server's clock."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from tenure._async.backends.base import AsyncLeaseStore, Permit, Renewal, RenewOutcome
from tenure._async.backends.mysql import permit_sql, sql
from tenure._async.backends.mysql.connection import AsyncMySQLPool, Reply
from tenure._async.backends.mysql.rates import AsyncMySQLRates
from tenure._async.backends.mysql.records import AsyncMySQLTableRecords
from tenure._async.backends.mysql.states import AsyncMySQLStates
from tenure._concurrency import async_sleep
from tenure._config import BackendConfig
from tenure._core.guarantees import Capability, Guarantee
from tenure._core.holder import HolderInfo
from tenure._core.semaphore import limit_mismatch, permit_keys, slot_order
from tenure._core.tokens import Owner
from tenure._exceptions import BackendError

RENEW_BATCH = 1000  # leases renewed per round trip: bounds one statement's size
TRIES = 3  # permit steps per attempt: the limit check may need the recorded limit's width
DEADLOCK = 1213  # InnoDB rolled the whole transaction back: nothing of it was done


class AsyncMySQLTableStore(AsyncMySQLTableRecords, AsyncMySQLRates, AsyncMySQLStates, AsyncLeaseStore):
    """Serve leases from an InnoDB lease table; expiry by the server's clock.

    **Guarantees.** FENCING: each acquisition bumps the row's fence in the same statement and
    a lock's row is never deleted (an idempotency run's row goes with its record stored, and a
    later run's fence starts past it: ``records.py``). SERVER_TIME: ``expires_at`` is set and
    compared with the server's UTC_TIMESTAMP, so a frozen holder cannot extend its lease by its
    own clock.
    CROSS_PROCESS, CROSS_HOST: clients reach the server over TCP. Not SESSION_BOUND: a crashed
    holder's lease ends at its TTL, not with its connection. Waiters poll. ``renew_many``
    renews up to RENEW_BATCH leases in one round trip, each lease's outcome its own.

    **Transactions.** ``keys.run(..., transaction=conn)`` takes a PyMySQL or aiomysql connection
    to the URL's database: its transaction locks and deletes the run's lease row as it stores
    the record (``records.py``).

    **Semaphores.** A permit is the lease row of a slot's key. ``try_acquire_permit`` is one
    transaction in one round trip (``permit_sql.table_take``): it locks the semaphore's row in
    ``tenure_semaphores`` (its recorded limit), checks the limit, takes the first free slot in
    ``slot_order`` and bumps the fence of the semaphore key's own row into it.
    """

    scheme: ClassVar[str] = "mysql"
    description: ClassVar[str] = (
        "InnoDB lease table, one statement per step, expiry by the server's clock; waiters poll"
    )
    guarantees: ClassVar[frozenset[Guarantee]] = frozenset(
        {Guarantee.FENCING, Guarantee.SERVER_TIME, Guarantee.CROSS_PROCESS, Guarantee.CROSS_HOST}
    )
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.COUNTING, Capability.RECORDS, Capability.COUNTERS}
    )
    # No notification: poll from 2 ms, backing off to 50 ms (a poll is one primary-key read).
    poll_interval: ClassVar[tuple[float, float]] = (0.002, 0.05)

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        self._pool = AsyncMySQLPool(config, self.url)
        self._ready = False

    async def connect(self) -> None:
        if self._ready:
            return
        session, _ = await self._pool.run(sql.QUIET_NOTES, {})  # "already exists" is no news
        try:
            await self._pool.execute(session, sql.CREATE_LEASES, {})
            await self._pool.execute(session, permit_sql.CREATE_SEMAPHORES, {})
            await self._start_records(session)
            await self._start_rates(session)
            await self._start_states(session)
        except BackendError:
            self._pool.discard(session)
            raise
        self._pool.checkin(session)
        self._ready = True

    async def try_acquire(self, key: str, owner: Owner, ttl: float) -> int | None:
        params = {
            "name": sql.lock_name(key),
            "owner": owner.token,
            "label": owner.label[: sql.MAX_LABEL],
            "ttl_us": sql.micros(ttl),
        }
        reply = await self._call(sql.TABLE_ACQUIRE, params)
        if reply.rowcount == 1:
            return 1  # a new row: the name's first fence
        if reply.rowcount == 2:
            return reply.inserted
        return None

    async def renew_many(self, renewals: Sequence[Renewal]) -> list[RenewOutcome]:
        outcomes: list[RenewOutcome] = []
        for start in range(0, len(renewals), RENEW_BATCH):
            chunk = renewals[start : start + RENEW_BATCH]
            try:
                outcomes.extend(await self._renew_batch(chunk))
            except BackendError as exc:  # this round trip failed: each of its leases says why
                outcomes.extend([exc] * len(chunk))
        return outcomes

    async def release(self, key: str, owner: Owner) -> bool:
        params = {"name": sql.lock_name(key), "owner": owner.token}
        return (await self._call(sql.TABLE_RELEASE, params)).rowcount == 1

    async def holder(self, key: str) -> HolderInfo | None:
        reply = await self._call(sql.TABLE_HOLDER, {"name": sql.lock_name(key)})
        if not reply.rows:
            return None
        label, fence, remaining = reply.rows[0]
        return HolderInfo(sql.label_text(label), int(fence), max(0.0, float(remaining)))

    async def wait_released(self, key: str, timeout: float) -> None:
        await async_sleep(timeout)

    async def try_acquire_permit(self, key: str, limit: int, owner: Owner, ttl: float) -> Permit | None:
        slots = permit_keys(key, limit)
        names = [sql.lock_name(slot) for slot in slots]
        by_name = dict(zip(names, slots, strict=True))
        order = [names[slot] for slot in slot_order(limit)]
        lease = {"owner": owner.token, "label": owner.label[: sql.MAX_LABEL], "ttl_us": sql.micros(ttl)}
        wider: list[str] | None = None  # first without the check: the limit is most often the recorded one
        recorded = limit
        for _ in range(TRIES):
            statement, params = permit_sql.table_take(sql.lock_name(key), limit, order, wider, lease)
            recorded, agreed, slot, fence = (await self._take(statement, params)).rows[0]
            if agreed:
                return None if slot is None else Permit(by_name[sql.label_text(slot)], int(fence))
            if wider is not None and recorded <= len(wider):
                break  # checked: permits taken with the recorded limit are live
            # Replace the record only if no slot of the wider limit is live: look at them all.
            wider = [sql.lock_name(slot) for slot in permit_keys(key, max(limit, recorded))]
        raise limit_mismatch(key, limit, recorded)

    async def wait_permit_released(self, key: str, limit: int, timeout: float) -> None:
        await async_sleep(timeout)  # no notification: the caller's backoff paces the polls

    async def permit_holders(self, key: str, limit: int) -> list[HolderInfo]:
        names = [sql.lock_name(slot) for slot in permit_keys(key, limit)]
        reply = await self._call(*permit_sql.table_holders(names))
        return permit_sql.holders_in_slot_order(names, reply.rows)

    async def aclose(self) -> None:
        await self._pool.aclose()

    async def _take(self, statement: str, params: Mapping[str, object]) -> Reply:
        """Run a permit transaction; once more if InnoDB chose it as a deadlock's victim."""
        for attempt in range(2):
            try:
                return await self._call(statement, params)
            except BackendError as exc:
                code = getattr(exc.__cause__, "args", (None,))[:1]
                if attempt or code != (DEADLOCK,):
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def _renew_batch(self, renewals: Sequence[Renewal]) -> list[bool]:
        """Renew leases in one round trip; return whether each one was renewed."""
        statement, params = sql.table_renew_many(
            [(sql.lock_name(key), owner.token, ttl) for key, owner, ttl in renewals]
        )
        reply = await self._call(statement, params)
        renewed = {(sql.label_text(name), str(owner)) for name, owner in reply.rows}
        return [(sql.lock_name(key), owner.token) in renewed for key, owner, _ in renewals]

    async def _call(self, statement: str, params: Mapping[str, object]) -> Reply:
        return await self._pool.call(statement, params)  # at most pool_size at once
