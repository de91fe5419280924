"""Advisory mode's holds: one owner's claim on one key, and the steps that end or renew it.

A hold is on a shared session (a lock taken without waiting) or on a session of its own (a
waiter in the server's line, which keeps the lock there once granted). ``AsyncHoldSteps``, mixed
into ``AsyncMySQLStore``, ends a hold with RELEASE or with a step that ends with it (an
idempotency run's finish: ``records.py``), renews the due holds of each session in one round
trip, and takes a waiter out of the line.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence

from tenure._async.backends.base import Renewal
from tenure._async.backends.mysql import sql
from tenure._async.backends.mysql.connection import AsyncMySQLPool, AsyncSession, Reply
from tenure._concurrency import AsyncInFlight
from tenure._core.tokens import Owner
from tenure._exceptions import BackendError

RENEW_BATCH = 1000  # holds renewed per round trip: bounds one statement's size


class AsyncHold:
    """One owner holding, or queued for, one key: on a shared session, or on one of its own."""

    __slots__ = ("held", "name", "pending", "session", "shared", "ttl")

    def __init__(self, session: AsyncSession, name: str, ttl: float, *, held: bool, shared: bool) -> None:
        self.session = session
        self.name = name
        self.ttl = ttl
        self.held = held
        self.shared = shared  # False: a waiter's own session, lent by the pool
        self.pending: AsyncInFlight[Reply] | None = None  # a queued GET_LOCK still running


class AsyncHoldSteps:
    """Ending, renewing and abandoning the store's holds (``AsyncMySQLStore`` keeps them)."""

    _pool: AsyncMySQLPool
    _holds: dict[tuple[str, str], AsyncHold]

    async def _end(self, key: str, owner: Owner, statement: str, params: Mapping[str, object]) -> bool:
        """End ``owner``'s hold of ``key`` with RELEASE or a step ending with it (1 row: released)."""
        hold = self._holds.pop((key, owner.token), None)
        if hold is None:
            return False
        if not hold.held:
            await self._abandon(hold)
            return False
        session = hold.session
        async with session.mutex:
            if not session.alive:
                return False  # its session ended, and the lock with it
            try:
                reply = await self._pool.execute(
                    session, statement, {**params, "name": hold.name}, idle=sql.idle_limit(hold.ttl)
                )
                if reply.rowcount != 1 and hold.shared:
                    # Not recorded as ours: make sure this session keeps nothing of it.
                    await self._pool.execute(session, sql.FORGET, {"name": hold.name})
            finally:
                session.names.discard(hold.name)
        if hold.shared:
            return reply.rowcount == 1
        if reply.rowcount == 1:
            self._pool.checkin(session)  # a waiter's own session, now holding nothing
            return True
        self._pool.discard(session)  # not ours any more; make sure the session keeps nothing
        return False

    async def _renew_batch(self, renewals: Sequence[Renewal]) -> list[bool]:
        """Renew each lease: one round trip per session (and per RENEW_BATCH holds).

        A failed round trip closes its session, which ends every lock on it: False for each.
        """
        outcomes = [False] * len(renewals)
        by_session: dict[int, list[tuple[int, AsyncHold, float]]] = {}
        for index, (key, owner, ttl) in enumerate(renewals):
            hold = self._holds.get((key, owner.token))
            if hold is None or not hold.held:
                continue
            if not hold.session.alive:
                self._holds.pop((key, owner.token), None)  # its session ended, and the lock with it
                continue
            by_session.setdefault(id(hold.session), []).append((index, hold, ttl))
        for items in by_session.values():
            for start in range(0, len(items), RENEW_BATCH):
                await self._renew_on(items[start : start + RENEW_BATCH], renewals, outcomes)
        return outcomes

    async def _renew_on(
        self,
        items: list[tuple[int, AsyncHold, float]],
        renewals: Sequence[Renewal],
        outcomes: list[bool],
    ) -> None:
        """Renew holds of one session in one round trip; set each one's outcome."""
        session = items[0][1].session
        async with session.mutex:
            # A shared hold released meanwhile is no longer in its session's names; once it
            # holds none, the session may be waiting for another lock and must not be used.
            items = [item for item in items if not item[1].shared or item[1].name in session.names]
            held: set[str] = set()
            if session.alive and items:
                statement, params = sql.renew_holds([(hold.name, ttl) for _, hold, ttl in items])
                try:
                    reply = await self._pool.execute(
                        session, statement, params, idle=sql.idle_limit(items[0][1].ttl)
                    )
                    held = {sql.label_text(row[0]) for row in reply.rows}
                except BackendError:
                    pass  # the connection is closed now: every lock of its session is gone
            for index, hold, _ in items:
                outcomes[index] = hold.name in held
                if hold.name in held:
                    continue
                key, owner, _ = renewals[index]
                self._holds.pop((key, owner.token), None)
                if not session.alive:
                    continue
                if not hold.shared:
                    self._pool.discard(session)  # a waiter's own session: make sure it keeps nothing
                    continue
                session.names.discard(hold.name)
                # Not recorded as ours: make sure this session keeps nothing of it (if the call
                # fails, the connection is closed, and whatever it held with it).
                with contextlib.suppress(BackendError):
                    await self._pool.execute(session, sql.FORGET, {"name": hold.name})

    async def _abandon(self, hold: AsyncHold) -> None:
        """Leave the line and drop the waiter's own connection: anything granted goes with it."""
        pending, hold.pending = hold.pending, None
        if pending is not None and not pending.done():
            try:
                await self._pool.kill_query(hold.session.thread_id)
                await pending.wait(self._pool.op_timeout)
            except BackendError:
                pass  # closing the connection below ends the wait too, once the server notices
            pending.cancel()
        self._pool.discard(hold.session)
