"""The few server sessions that hold advisory locks for many leases at once (advisory mode)."""

from __future__ import annotations

import threading

from tenure._async.backends.postgresql.connection import AsyncPgPool, AsyncPgSession, Row
from tenure._concurrency import AsyncInFlight, async_sleep
from tenure._exceptions import BackendUnavailable

# Sessions per store that hold locks; a blocking wait takes one of its own. PostgreSQL walks every
# lock a session holds at the end of each of its transactions (its local lock table, whose buckets
# double past 1,024 entries and never shrink), so a step costs the server time in proportion to
# the locks on its session: the more sessions share N locks, the cheaper each step. 7, with the
# pooled session that reads use, keeps a coordinator within 8 server connections (plus one per
# blocking waiter). Taking 10,000 locks cost the server 110 µs each over 4 sessions, 88-95 µs over
# 7 or 8, 210-280 µs over one (45-60 µs with none held; server CPU, raw psycopg).
SHARED_SESSIONS = 7
# Locks on one session past which another session is opened (while fewer than SHARED_SESSIONS):
# below it, sequential callers stay on one session and open no other.
CROWDED = 1000


class AsyncSharedSessions:
    """Lend one of at most ``size`` sessions to take a lock on, for as long as it is held.

    A session is shared by every lock it holds: a call waits for the one before it on that
    session (its mutex), so a session with no call running is preferred, then a new one while
    fewer than ``size`` are open, then the one with the fewest calls queued. Sequential callers
    thus stay on one session; concurrent ones spread over up to ``size``.
    """

    def __init__(self, pool: AsyncPgPool, size: int = SHARED_SESSIONS) -> None:
        self._pool = pool
        self._size = size
        self._sessions: list[AsyncPgSession] = []
        self._opening = 0
        self._mutex = threading.Lock()  # threads of a sync store share the sessions

    def sessions(self) -> list[AsyncPgSession]:
        """Return the shared sessions open now."""
        with self._mutex:
            return list(self._sessions)

    async def pick(self) -> AsyncPgSession:
        """Return a sound shared session to take a lock on; open one if it is worth it."""
        for _ in range(1000):  # bounded: each turn finds, opens, or waits 5 ms for an opener
            stale = []
            reserved = False
            with self._mutex:
                # A session in doubt (a call on it failed) is closed: the server frees its locks.
                stale = [s for s in self._sessions if s.broken]
                self._sessions = [s for s in self._sessions if not s.broken]
                quiet = [s for s in self._sessions if not s.calls]
                room = len(self._sessions) + self._opening < self._size
                session = min(quiet, key=lambda s: len(s.holds)) if quiet else None
                if session is not None and not (room and len(session.holds) >= CROWDED):
                    if session.holds or session.reusable():
                        return session
                    # Holding nothing and ended while idle (e.g. by a server restart): replace it.
                    self._sessions.remove(session)
                    stale.append(session)
                elif room:
                    self._opening += 1
                    reserved = True
                elif self._sessions:
                    return min(self._sessions, key=lambda s: s.calls)
            for session in stale:
                await self._pool.discard(session)
            if stale:
                continue
            if reserved:
                return await self._open()
            else:
                await async_sleep(0.005)  # every slot is being opened by someone else
        raise BackendUnavailable(f"{self._pool.url}: no session to take a lock on became available")

    async def _open(self) -> AsyncPgSession:
        """Open a shared session in the slot reserved by ``pick`` (an idle pooled one if any)."""
        try:
            session = await self._pool.checkout()
        except BaseException:
            with self._mutex:
                self._opening -= 1
            raise
        session.shared = True
        with self._mutex:
            self._opening -= 1
            self._sessions.append(session)
        return session


class AsyncHold:
    """One owner's claim on one key: the session holding it, and its lock wait while in line."""

    __slots__ = ("session", "ttl", "wait")

    def __init__(
        self, session: AsyncPgSession, ttl: float, wait: AsyncInFlight[list[Row]] | None = None
    ) -> None:
        self.session = session
        self.ttl = ttl
        self.wait = wait  # a pg_advisory_lock statement still running: in the server's line
