"""Advisory mode's semaphore steps (the Counting capability), mixed into ``AsyncMySQLStore``."""

from __future__ import annotations

import functools
import random
from typing import Any, TypeVar

from tenure._async.backends.base import Permit
from tenure._async.backends.mysql import permit_sql, sql
from tenure._async.backends.mysql.connection import AsyncMySQLPool, AsyncSession
from tenure._concurrency import AsyncReturning
from tenure._core.holder import HolderInfo
from tenure._core.semaphore import limit_mismatch, permit_keys, slot_order
from tenure._core.tokens import Owner
from tenure._exceptions import BackendTimeout

T = TypeVar("T")
# A hint's wait on one permit while others are held: a release of another permit (which wakes
# no one) is noticed within this long.
LONGEST_HINT = 0.2
TRIES = 3  # permit steps per attempt: the limit check may need the recorded limit's width


class AsyncMySQLPermits:
    """A permit is a GET_LOCK on a slot's name, taken on a shared session as ``try_acquire`` is.

    ``try_acquire_permit`` is one round trip under the semaphore's guard lock (``permit_sql``):
    the recorded limit is checked, the slots are tried in ``slot_order`` with GET_LOCK(name, 0)
    until one is taken, the fence is drawn from the server-wide sequence (so it grows per name
    across slots) and the holder recorded, as ACQUIRE does. The permit is then renewed, released
    and lost as a lock on the slot's key. A slot the shared session already holds is skipped
    without asking (GET_LOCK would re-enter it). Waiting: in the server's line of one held
    permit, the one taken first.
    """

    _pool: AsyncMySQLPool

    async def try_acquire_permit(self, key: str, limit: int, owner: Owner, ttl: float) -> Permit | None:
        slots = permit_keys(key, limit)
        by_name = {sql.lock_name(slot): slot for slot in slots}
        wider: list[str] | None = None  # first without the check: the limit is most often the recorded one
        recorded = limit
        for _ in range(TRIES):
            step = functools.partial(self._take_permit, key, limit, by_name, wider, owner, ttl)
            guard, recorded, agreed, slot, fence = await self._on_shared(ttl, step)
            if guard != 1:
                raise BackendTimeout(
                    f"semaphore {key!r} on {self._pool.url}: another client's permit step did not "
                    f"end within {self._pool.op_timeout:g} s; retry later"
                )
            if agreed:
                return None if slot is None else Permit(by_name[sql.label_text(slot)], int(fence))
            if wider is not None and recorded <= len(wider):
                break  # checked: permits taken with the recorded limit are live
            # Replace the record only if no slot of the wider limit is live: look at them all.
            wider = [sql.lock_name(slot) for slot in permit_keys(key, max(limit, recorded))]
        raise limit_mismatch(key, limit, recorded)

    async def wait_permit_released(self, key: str, limit: int, timeout: float) -> None:
        if timeout <= 0:
            return
        names = [sql.lock_name(slot) for slot in permit_keys(key, limit)]
        if limit > 1:
            timeout = min(timeout, LONGEST_HINT)
        statement, params = permit_sql.advisory_wait(names, random.choice(names), timeout)
        session, _ = await self._pool.run(statement, params, wait=timeout)
        self._pool.checkin(session)

    async def permit_holders(self, key: str, limit: int) -> list[HolderInfo]:
        names = [sql.lock_name(slot) for slot in permit_keys(key, limit)]
        reply = await self._pool.call(*permit_sql.advisory_holders(names))
        return permit_sql.holders_in_slot_order(names, reply.rows)

    async def _take_permit(
        self,
        key: str,
        limit: int,
        by_name: dict[str, str],
        wider: list[str] | None,
        owner: Owner,
        ttl: float,
        session: AsyncSession,
    ) -> tuple[Any, ...]:
        """Run the permit step on shared ``session`` (under its mutex); record the hold if taken."""
        names = list(by_name)
        candidates = [names[slot] for slot in slot_order(limit) if names[slot] not in session.names]
        guard_wait = self._pool.op_timeout
        statement, params = permit_sql.advisory_take(
            sql.lock_name(key), permit_sql.guard_name(key), limit, candidates, wider,
            sql.holder_params(owner, ttl), guard_wait,
        )  # fmt: skip
        reply = await self._pool.execute(
            session, statement, params, idle=sql.idle_limit(ttl), wait=guard_wait
        )
        outcome = reply.rows[0]
        if outcome[3] is not None:
            name = sql.label_text(outcome[3])
            self._keep(session, by_name[name], owner, name, ttl)
        return tuple(outcome)

    # -- the store's ---------------------------------------------------------------------------

    async def _on_shared(self, ttl: float, step: AsyncReturning[T]) -> T:
        raise NotImplementedError  # pragma: no cover

    def _keep(self, session: AsyncSession, key: str, owner: Owner, name: str, ttl: float) -> None:
        raise NotImplementedError  # pragma: no cover
