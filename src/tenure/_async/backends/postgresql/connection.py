"""Connections to one PostgreSQL server: sessions, the pool, deadlines and psycopg's errors.

psycopg 3 in autocommit, through its public API only. Every call is bounded on the client side
by ``op_timeout`` (plus a lock wait's own timeout): a watchdog shuts down the socket of a call
that overstays (a duplicate of ``conn.fileno()``, safe from any thread), so the call fails at
once even when the server is frozen and answers nothing, not even a cancel request; the session
is then closed. ``map_errors`` turns every psycopg error into tenure's.

Short calls (``call``: reads, table-mode steps, rate decisions) run on at most ``size`` pooled
sessions at once (the URL's ``pool_size``); more wait for one to come back, up to op_timeout,
instead of opening sessions without end (a burst of concurrent calls would otherwise run into
the server's ``max_connections``). Sessions that hold locks or wait in the server's lock queue
are lent by ``checkout`` and not counted: a waiter may wait long, and a holder keeps its session.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import select
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import psycopg.errors

from tenure._async.backends.postgresql import sql
from tenure._concurrency import AsyncBackground, AsyncGate, AsyncMutex, AsyncSignal
from tenure._core.tokens import new_token
from tenure._exceptions import (
    BackendProtocolError,
    BackendTimeout,
    BackendUnavailable,
    ConfigurationError,
    TenureError,
)

log = logging.getLogger("tenure")

MAX_IDLE = 4  # sessions kept open for reuse; more are closed when returned
# Short calls running at once per store, each on a session of its own: more than a server's
# cores usually run them in parallel (a call is a fraction of a millisecond of server work), few
# enough that several processes stay well within a server's max_connections (100 by default).
POOL_SIZE = 16
Row = tuple[Any, ...]
Params = dict[str, Any] | Callable[[], dict[str, Any]] | None

POOLING = (
    "{url}: two connections were served by one server session (a transaction-pooling proxy, "
    "e.g. PgBouncer with pool_mode=transaction?); session-level advisory locks would silently "
    "move between clients there: use a session-pooling or direct connection, or mode=table"
)


def map_errors(
    exc: BaseException, what: str, *, url: str, password: str | None = None, cut: float | None = None
) -> TenureError:
    """Return tenure's error for a psycopg error raised while doing ``what``; never the password.

    ``cut``: the call's connection was shut down by the watchdog after that many seconds.
    """
    if isinstance(exc, psycopg.errors.DuplicatePreparedStatement):
        # Our prepared statement already exists in a session we never prepared it in.
        return ConfigurationError(POOLING.format(url=url))
    if cut is not None:
        return BackendTimeout(
            f"{url}: no reply within op_timeout={cut:g} s while {what}; the connection was closed"
        )
    text = str(exc).strip() or type(exc).__name__
    if password:
        text = text.replace(password, "***")
    if isinstance(exc, psycopg.errors.ConnectionTimeout):
        return BackendTimeout(f"{url}: {what}: {text}")
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return BackendUnavailable(f"{url}: {what}: {text}")
    return BackendProtocolError(f"{url}: {what}: {text}")


class AsyncPgSession:
    """One connection, i.e. one server session, and what the pool knows about it."""

    def __init__(self, conn: psycopg.AsyncConnection[Any], token: str) -> None:
        self.conn = conn
        # One cursor per session, reused: making one per call costs more than the rest of a
        # call's client side. The mutex keeps a statement and the read of its rows together.
        self.cursor = conn.cursor()
        self.mutex = AsyncMutex()
        self.pid = 0
        self.token = token  # the probe value this session was marked with
        # A duplicate of the connection's socket: cutting it needs no lock, and the descriptor
        # cannot be reused by another socket while we hold it.
        self.sock: socket.socket | None = socket.socket(fileno=os.dup(conn.fileno()))
        # When each call running overstays (monotonic): one at a time, under the mutex.
        self.deadlines: list[float] = []
        self.calls = 0  # calls running or queued for the mutex (a hint for sharing sessions)
        # The ttl of every lock this session holds or is taking, by lock id: a session that holds
        # locks for many leases is ended by the server after the smallest of them (``idle``).
        # Changed by holders and the renewer (threads, in sync code) through hold/unhold only.
        self.holds: dict[int, float] = {}
        self._ttls: Counter[float] = Counter()  # how many holds have each ttl: no scan per step
        self._holds_lock = threading.Lock()
        self.shared = False  # one of the sessions that hold locks for many leases
        self.aborted = False  # cut by the watchdog or the store: whatever it held is gone
        self.broken = False  # in doubt: close it instead of reusing it

    def hold(self, lock: int, ttl: float) -> None:
        """Count ``lock`` among this session's, with ``ttl``, in its idle limit from now on."""
        with self._holds_lock:
            self._drop(lock)
            self.holds[lock] = ttl
            self._ttls[ttl] += 1

    def unhold(self, lock: int) -> None:
        """Stop counting ``lock`` among this session's."""
        with self._holds_lock:
            self._drop(lock)

    def _drop(self, lock: int) -> None:
        ttl = self.holds.pop(lock, None)
        if ttl is not None:
            self._ttls[ttl] -= 1
            if not self._ttls[ttl]:
                del self._ttls[ttl]

    def idle(self) -> str:
        """Return the ``idle_session_timeout`` this session needs now: its smallest ttl (0: off)."""
        with self._holds_lock:
            return sql.milliseconds(min(self._ttls)) if self._ttls else "0"

    def abort(self) -> None:
        """Cut the connection now, from any thread: the call in flight fails at once.

        The server ends the session (and frees its locks) when it sees the connection closed.
        """
        self.aborted = self.broken = True
        sock = self.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def reusable(self) -> bool:
        """Return whether an idle session looks alive: nothing to read (no FATAL, no EOF)."""
        sock = self.sock
        if self.broken or sock is None or self.conn.closed:
            return False
        try:
            readable, _, _ = select.select([sock], [], [], 0)
        except (OSError, ValueError):
            return False
        return not readable

    async def aclose(self) -> None:
        """Close the connection: the server ends the session and frees whatever it held."""
        self.broken = True
        with contextlib.suppress(Exception):
            await self.conn.close()
        sock, self.sock = self.sock, None
        if sock is not None:
            sock.close()


class AsyncPgPool:
    """Open, lend and close sessions to one server; bound every call by ``op_timeout``."""

    def __init__(
        self,
        url: str,
        params: dict[str, Any],
        op_timeout: float,
        max_idle: int = MAX_IDLE,
        size: int = POOL_SIZE,
    ) -> None:
        self.url = url  # redacted
        self.max_idle = max_idle
        self.size = size
        self._gate = AsyncGate(size)  # places for short calls (``call``)
        self.op_timeout = op_timeout
        self._params = params
        self._password = params.get("password")
        self._mutex = threading.Lock()  # threads of a sync store share the pool
        self._idle: list[AsyncPgSession] = []
        self._open: set[AsyncPgSession] = set()
        self._tick = min(0.1, op_timeout / 10)
        self._watchdog: AsyncBackground | None = None
        self._stop: AsyncSignal | None = None
        self._closed = False
        self.server_version = 0

    async def open(self) -> None:
        """Start the watchdog (the store's connect calls this before its first checkout)."""
        if self._watchdog is None:
            self._stop = AsyncSignal()
            self._watchdog = AsyncBackground(self._watch, name="tenure-postgresql-watchdog")
            self._watchdog.start()

    async def open_session(self) -> AsyncPgSession:
        """Connect a new session and set it up (one round trip after the handshake).

        Raise ``ConfigurationError`` if its server session turns out to be one that another of
        our open connections already uses: a proxy is sharing server sessions.
        """
        if self._closed:
            raise BackendUnavailable(f"the connections to {self.url} are closed")
        try:
            conn = await psycopg.AsyncConnection.connect(autocommit=True, **self._params)
        except psycopg.Error as exc:
            raise map_errors(exc, "connecting", url=self.url, password=self._password) from exc
        token = new_token()
        try:
            session = AsyncPgSession(conn, token)
        except OSError as exc:
            await conn.close()
            raise BackendUnavailable(f"{self.url}: connecting: {exc}") from exc
        with self._mutex:
            self._open.add(session)
        try:
            # Not prepared: behind a transaction pooler the server session may already hold our
            # prepared statements, and the probe below explains that better than the clash.
            rows = await self.run(
                session, sql.SETUP, {"token": token}, "setting up the session", prepare=False
            )
            session.pid, seen = int(rows[0][0]), rows[0][1]
            # Marked by a connection of ours that is still open: the proxy lent us its server
            # session. (Not the pid: a server session of ours that ended unnoticed may have
            # left its pid to this one.)
            with self._mutex:
                marks = {s.token for s in self._open if s is not session}
            if seen in marks:
                raise ConfigurationError(POOLING.format(url=self.url))
        except BaseException:
            await self.discard(session)
            raise
        self.server_version = conn.info.server_version
        return session

    async def probe(self, session: AsyncPgSession) -> None:
        """Check that ``session`` still talks to the server session it was set up on."""
        rows = await self.run(session, sql.PROBE, None, "checking the session")
        if int(rows[0][0]) != session.pid or rows[0][1] != session.token:
            raise ConfigurationError(POOLING.format(url=self.url))

    async def checkout(self) -> AsyncPgSession:
        """Lend an idle session that looks alive, or open a new one."""
        while True:
            with self._mutex:
                session = self._idle.pop() if self._idle else None
            if session is None:
                return await self.open_session()
            if session.reusable():
                return session
            await self.discard(session)  # e.g. ended by a server restart while idle

    async def call(self, statement: str, params: Params, what: str) -> list[Row]:
        """Run one short statement on a pooled session; return its rows.

        At most ``size`` such calls run at once; more wait for a place, up to op_timeout, then
        raise ``BackendTimeout``. The session goes back to the pool, or is closed if the call
        failed or was interrupted (its state is unknown).
        """
        if not await self._gate.enter(self.op_timeout):
            raise BackendTimeout(
                f"{self.url}: no session came free within op_timeout={self.op_timeout:g} s while {what} "
                f"({self.size} calls were running: the pool_size)"
            )
        try:
            session = await self.checkout()
            try:
                rows = await self.run(session, statement, params, what)
            except BaseException:
                await self.discard(session)
                raise
            await self.checkin(session)
            return rows
        finally:
            self._gate.leave()

    async def checkin(self, session: AsyncPgSession) -> None:
        """Take a session back: kept for reuse if sound and the pool is not full, else closed."""
        if not session.broken and not self._closed:
            with self._mutex:
                if len(self._idle) < max(self.max_idle, self._gate.waiting):  # for waiting calls
                    self._idle.append(session)
                    return
        await self.discard(session)

    async def discard(self, session: AsyncPgSession) -> None:
        """Close ``session``: whatever it held on the server is freed with it."""
        with self._mutex:
            self._open.discard(session)
            if session in self._idle:
                self._idle.remove(session)
        await session.aclose()

    async def run(
        self,
        session: AsyncPgSession,
        statement: str,
        params: Params,
        what: str,
        *,
        waits: float = 0.0,
        prepare: bool = True,
        rows: bool = True,
    ) -> list[Row]:
        """Run one statement on ``session``; return its rows (none if ``rows`` is False).

        ``params`` may be a function, called once the session is ours (under its mutex): for
        values that depend on what the session holds when the statement runs.

        Bounded by ``op_timeout``, plus ``waits`` seconds for a statement that waits for a lock
        (with a lock timeout of its own, whose running out returns no rows; ``math.inf`` for a
        wait the caller ends by closing the session). Any other failure marks the session
        broken (the caller closes it) and is mapped by ``map_errors``: ``BackendTimeout`` when
        the deadline cut it, ``BackendUnavailable`` when the connection failed,
        ``BackendProtocolError`` for anything else the server refused.
        """
        session.calls += 1
        try:
            # The deadline starts once the session is ours: on a shared session, calls queue
            # for the mutex, and an interruption while queued leaves the session sound.
            async with session.mutex:
                with self._guarded(session, waits + self.op_timeout, what):
                    try:
                        bound = params() if callable(params) else params
                        cursor = session.cursor
                        await cursor.execute(statement, bound, prepare=prepare and bound is not None)
                        return await cursor.fetchall() if rows else []
                    except psycopg.errors.LockNotAvailable:
                        if waits and not session.aborted:
                            return []  # the statement's own lock timeout: nothing was taken
                        raise
        finally:
            session.calls -= 1

    @contextlib.contextmanager
    def _guarded(self, session: AsyncPgSession, budget: float, what: str) -> Iterator[None]:
        """Watch a call on ``session`` for ``budget`` seconds; on failure mark it broken.

        The watchdog closes the connection of a call still running after its deadline. A
        psycopg error is raised as tenure's (``map_errors``); an interruption leaves the
        session's state unknown, so it is marked broken as well (the caller closes it).
        """
        deadline = time.monotonic() + budget
        session.deadlines.append(deadline)
        try:
            yield
        except psycopg.Error as exc:
            session.broken = True
            cut = self.op_timeout if session.aborted else None
            raise map_errors(exc, what, url=self.url, password=self._password, cut=cut) from exc
        except BaseException:
            session.broken = True
            raise
        finally:
            session.deadlines.remove(deadline)

    async def aclose(self) -> None:
        """Close every session (freeing whatever they held) and stop the watchdog; idempotent."""
        self._closed = True
        if self._stop is not None:
            self._stop.set()
        if self._watchdog is not None:
            await self._watchdog.join()
        with self._mutex:
            sessions = list(self._open)
            self._open.clear()
            self._idle.clear()
        for session in sessions:
            await session.aclose()

    async def _watch(self) -> None:
        """Cut the connection of every call that overstays its deadline."""
        assert self._stop is not None
        while not self._closed:
            now = time.monotonic()
            with self._mutex:
                late = [s for s in self._open if min(s.deadlines, default=math.inf) <= now and not s.aborted]
            for session in late:
                log.warning("tenure: %s did not answer within op_timeout; closing that connection", self.url)
                session.abort()
            await self._stop.wait(self._tick)
