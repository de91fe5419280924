# GENERATED from src/tenure/_async/backends/postgresql/lock_queue.py by scripts/unasync.py: do not edit; edit the source and re-run.
"""Advisory mode's queueing: fair waiters wait in the server's lock queue, each on a session of its own.

A waiter's ``pg_advisory_lock`` is left running across the caller's waits (``InFlight``);
the server grants the lock in arrival order and the statement's reply is the fence. The waiting
session holds nothing else, keeps the lock once granted, and leaving the line closes it (which
frees a grant that raced the departure too).
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, cast

from tenure._sync.backends.postgresql import sql
from tenure._sync.backends.postgresql.connection import PgSession
from tenure._sync.backends.postgresql.shared import Hold
from tenure._concurrency import InFlight
from tenure._core.tokens import Owner
from tenure._exceptions import BackendError, BackendProtocolError

if TYPE_CHECKING:
    from tenure._sync.backends.postgresql.store import PostgresStore

log = logging.getLogger("tenure")


class LockQueue:
    """The Queueing capability of advisory mode, mixed into ``PostgresStore``."""

    def try_acquire_queued(
        self, key: str, owner: Owner, ttl: float, *, patience: float, will_wait: bool = True
    ) -> int | None:
        # ``patience`` is not needed: a waiter that died leaves the line with its session.
        store = cast("PostgresStore", self)
        hold = store._holds.get((key, owner.token))
        if hold is not None and hold.wait is not None:
            if not hold.wait.done():
                return None  # still in line
            return self._granted(key, owner, hold, early=True)
        fence = store.try_acquire(key, owner, ttl)
        if fence is None and will_wait:
            self._queue(key, owner, store._pool.checkout(), ttl)  # a session of its own
        return fence

    def wait_turn(self, key: str, owner: Owner, timeout: float) -> int | None:
        hold = cast("PostgresStore", self)._holds.get((key, owner.token))
        if hold is None or hold.wait is None:
            return None
        early = hold.wait.done()
        if not early and not hold.wait.wait(timeout):
            return None
        return self._granted(key, owner, hold, early=early)

    def leave_queue(self, key: str, owner: Owner) -> None:
        hold = cast("PostgresStore", self)._holds.pop((key, owner.token), None)
        if hold is not None:
            self._leave(hold)

    def _queue(self, key: str, owner: Owner, session: PgSession, ttl: float) -> None:
        """Join the server's line on ``session``: a lock wait left running across the caller's waits.

        Its reply is the fence; it ends when the lock is granted or the session is closed. The
        session is this wait's alone, and holds the lock once granted, until it is released.
        """
        store = cast("PostgresStore", self)
        session.hold(sql.lock_id(key), ttl)  # a session of its own, holding nothing else
        params = store._acquire_params(key, owner, ttl, session)
        what = f"waiting for {key!r}"
        wait = InFlight(
            lambda: store._pool.run(session, sql.WAIT_ACQUIRE, params, what, waits=math.inf),
            name="tenure-postgresql-wait",
        )
        store._holds[(key, owner.token)] = Hold(session, ttl, wait)

    def _granted(self, key: str, owner: Owner, hold: Hold, *, early: bool) -> int | None:
        """Take the ended lock wait's reply: the fence, or None when it must queue again.

        ``early``: the reply had come before this call began, while nobody was waiting. The
        caller counts the lease from this call, so the idle-session limit restarts now too.
        """
        store = cast("PostgresStore", self)
        assert hold.wait is not None
        try:
            rows = hold.wait.result()
            hold.wait = None
            if rows and rows[0][0] is None:  # no epoch (a crash): nothing taken; recover, queue again
                store._recover_fences(hold.session)
                self._queue(key, owner, hold.session, hold.ttl)
                return None
        except BaseException:
            store._holds.pop((key, owner.token), None)
            self._leave(hold)
            raise
        if not rows:
            store._forget(key, owner)
            raise BackendProtocolError(f"{store.url}: the wait for {key!r} ended without a fence")
        if early:
            try:
                params = {"idle": hold.session.idle()}
                store._pool.run(hold.session, sql.REFRESH, params, "refreshing")
            except BackendError:
                store._forget(key, owner)
                return None
        return int(rows[0][0])

    def _leave(self, hold: Hold) -> None:
        """Leave the line: end the session, which frees a grant that raced the departure too."""
        store = cast("PostgresStore", self)
        session, wait = hold.session, hold.wait
        session.abort()
        if wait is not None:
            # Its socket is shut down: the wait fails at once; let it end before the close.
            wait.wait(store.config.common.op_timeout)
            wait.abandon()
        store._pool.discard(session)
        if wait is not None and session.pid:
            # The server would notice the closed connection at its next check (1 s); end the
            # session now so that it leaves the lock queue at once.
            try:
                store._call(sql.TERMINATE, {"pid": session.pid}, "ending a waiting session")
            except BackendError as exc:
                log.debug("tenure: ending waiting session %d failed: %s", session.pid, exc)
