# GENERATED from src/tenure/_async/backends/mysql/holds.py by scripts/unasync.py: do not edit; edit the source and re-run.
"""Advisory mode's holds: one owner's claim on one key, and the steps that end or renew it.

A hold is on a shared session (a lock taken without waiting) or on a session of its own (a
waiter in the server's line, which keeps the lock there once granted). ``HoldSteps``, mixed
into ``MySQLStore``, ends a hold with RELEASE or with a step that ends with it (an
idempotency run's finish: ``records.py``), renews the due holds of each session in one round
trip, and takes a waiter out of the line.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence

from tenure._sync.backends.base import Renewal
from tenure._sync.backends.mysql import sql
from tenure._sync.backends.mysql.connection import MySQLPool, Session, Reply
from tenure._concurrency import InFlight
from tenure._core.tokens import Owner
from tenure._exceptions import BackendError

RENEW_BATCH = 1000  # holds renewed per round trip: bounds one statement's size


class Hold:
    """One owner holding, or queued for, one key: on a shared session, or on one of its own."""

    __slots__ = ("held", "name", "pending", "session", "shared", "ttl")

    def __init__(self, session: Session, name: str, ttl: float, *, held: bool, shared: bool) -> None:
        self.session = session
        self.name = name
        self.ttl = ttl
        self.held = held
        self.shared = shared  # False: a waiter's own session, lent by the pool
        self.pending: InFlight[Reply] | None = None  # a queued GET_LOCK still running


class HoldSteps:
    """Ending, renewing and abandoning the store's holds (``MySQLStore`` keeps them)."""

    _pool: MySQLPool
    _holds: dict[tuple[str, str], Hold]

    def _end(self, key: str, owner: Owner, statement: str, params: Mapping[str, object]) -> bool:
        """End ``owner``'s hold of ``key`` with RELEASE or a step ending with it (1 row: released)."""
        hold = self._holds.pop((key, owner.token), None)
        if hold is None:
            return False
        if not hold.held:
            self._abandon(hold)
            return False
        session = hold.session
        with session.mutex:
            if not session.alive:
                return False  # its session ended, and the lock with it
            try:
                reply = self._pool.execute(
                    session, statement, {**params, "name": hold.name}, idle=sql.idle_limit(hold.ttl)
                )
                if reply.rowcount != 1 and hold.shared:
                    # Not recorded as ours: make sure this session keeps nothing of it.
                    self._pool.execute(session, sql.FORGET, {"name": hold.name})
            finally:
                session.names.discard(hold.name)
        if hold.shared:
            return reply.rowcount == 1
        if reply.rowcount == 1:
            self._pool.checkin(session)  # a waiter's own session, now holding nothing
            return True
        self._pool.discard(session)  # not ours any more; make sure the session keeps nothing
        return False

    def _renew_batch(self, renewals: Sequence[Renewal]) -> list[bool]:
        """Renew each lease: one round trip per session (and per RENEW_BATCH holds).

        A failed round trip closes its session, which ends every lock on it: False for each.
        """
        outcomes = [False] * len(renewals)
        by_session: dict[int, list[tuple[int, Hold, float]]] = {}
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
                self._renew_on(items[start : start + RENEW_BATCH], renewals, outcomes)
        return outcomes

    def _renew_on(
        self,
        items: list[tuple[int, Hold, float]],
        renewals: Sequence[Renewal],
        outcomes: list[bool],
    ) -> None:
        """Renew holds of one session in one round trip; set each one's outcome."""
        session = items[0][1].session
        with session.mutex:
            # A shared hold released meanwhile is no longer in its session's names; once it
            # holds none, the session may be waiting for another lock and must not be used.
            items = [item for item in items if not item[1].shared or item[1].name in session.names]
            held: set[str] = set()
            if session.alive and items:
                statement, params = sql.renew_holds([(hold.name, ttl) for _, hold, ttl in items])
                try:
                    reply = self._pool.execute(
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
                    self._pool.execute(session, sql.FORGET, {"name": hold.name})

    def _abandon(self, hold: Hold) -> None:
        """Leave the line and drop the waiter's own connection: anything granted goes with it."""
        pending, hold.pending = hold.pending, None
        if pending is not None and not pending.done():
            try:
                self._pool.kill_query(hold.session.thread_id)
                pending.wait(self._pool.op_timeout)
            except BackendError:
                pass  # closing the connection below ends the wait too, once the server notices
            pending.cancel()
        self._pool.discard(hold.session)
