"""Connections to one PostgreSQL server for ``postgresql://``: sessions, a pool, deadlines, wake-ups.

psycopg 3 in autocommit. Every call is bounded on the client side, by ``op_timeout`` (plus the
wait's own timeout for a lock wait): a watchdog cuts the socket of a call that overstays
(``shutdown``, safe from any thread), so the call fails at once even when the server is frozen
and answers nothing, not even a cancel request; the session is then closed. A statement timeout
on the server would not help there. A fair waiter's lock wait is sent with ``send`` and its
reply read, a timeout at a time, with ``receive``: psycopg's own wait with a timeout, no thread.
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
from collections.abc import Iterator
from typing import Any

import psycopg
import psycopg.errors
from psycopg import generators
from psycopg.pq import ExecStatus

from tenure._concurrency import AsyncBackground, AsyncMutex, AsyncSignal, async_sleep
from tenure._core import postgres_sql as sql
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
TUPLES_OK = ExecStatus.TUPLES_OK
FATAL_ERROR = ExecStatus.FATAL_ERROR


class _NeverRaised(Exception):
    """Stands for psycopg's wait timeout on a version without one (psycopg requires >= 3.2)."""


# What psycopg's ``Connection.wait`` raises when its timeout runs out (an OperationalError).
WAIT_TIMEOUT: type[Exception] = getattr(psycopg.errors, "_WaitTimeout", _NeverRaised)
Row = tuple[Any, ...]

POOLING = (
    "{url}: two connections were served by one server session (a transaction-pooling proxy, "
    "e.g. PgBouncer with pool_mode=transaction?); session-level advisory locks would silently "
    "move between clients there: use a session-pooling or direct connection, or mode=table"
)


class AsyncPgSession:
    """One connection, i.e. one server session, and what the pool knows about it."""

    def __init__(self, conn: psycopg.AsyncConnection[Any], pid: int, token: str) -> None:
        self.conn = conn
        # One cursor per session, reused: making one per call costs more than the rest of a
        # call's client side. The mutex keeps a statement and the read of its rows together.
        self.cursor = conn.cursor()
        self.mutex = AsyncMutex()
        self.pid = pid
        self.token = token  # the probe value this session was marked with
        # A duplicate of the connection's socket: cutting it needs no lock, and the descriptor
        # cannot be reused by another socket while we hold it.
        self.sock: socket.socket | None = socket.socket(fileno=os.dup(conn.fileno()))
        # When each call in flight overstays (monotonic). A list: the renewer and the holder may
        # both have a call on the session, one waiting for the mutex (its wait counts too).
        self.deadlines: list[float] = []
        self.prepared: set[bytes] = set()  # statements ``send`` prepared on this session
        self.aborted = False  # cut by the watchdog or the store: whatever it held is gone
        self.broken = False  # in doubt: close it instead of reusing it

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

    def __init__(self, url: str, params: dict[str, Any], op_timeout: float) -> None:
        self.url = url  # redacted
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

    def start(self) -> None:
        """Start the watchdog (call from the store's connect)."""
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
            raise self.mapped(exc, None, "connecting") from exc
        token = new_token()
        try:
            session = AsyncPgSession(conn, 0, token)
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

    async def checkin(self, session: AsyncPgSession) -> None:
        """Take a session back: kept for reuse if sound and the pool is not full, else closed."""
        if not session.broken and not self._closed:
            with self._mutex:
                if len(self._idle) < MAX_IDLE:
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
        params: dict[str, Any] | None,
        what: str,
        *,
        waits: float = 0.0,
        prepare: bool = True,
    ) -> list[Row]:
        """Run one statement on ``session``; return its rows.

        Bounded by ``op_timeout``, plus ``waits`` seconds for a statement that waits for a lock
        (with a lock timeout of its own; running out of it returns no rows). Any other failure
        marks the session broken (the caller closes it) and is mapped to tenure's errors:
        ``BackendTimeout`` when the deadline cut it, ``BackendUnavailable`` when the connection
        failed, ``BackendProtocolError`` for anything else the server refused.
        """
        with self._guarded(session, waits + self.op_timeout, what):
            try:
                async with session.mutex:
                    cursor = session.cursor
                    await cursor.execute(statement, params, prepare=prepare and params is not None)
                    # Checking the result's status, not ``cursor.description``: that builds column
                    # objects, which costs more than the rest of a hot-path call.
                    result = cursor.pgresult
                    if result is None or result.status != TUPLES_OK:
                        return []
                    return await cursor.fetchall()
            except psycopg.errors.LockNotAvailable:
                if waits and not session.aborted:
                    return []  # the statement's own lock timeout: nothing was taken
                raise

    async def exchange(
        self, session: AsyncPgSession, statement: sql.Prepared, params: dict[str, Any], what: str
    ) -> list[Row]:
        """Run one prepared hot-path statement on ``session`` (see ``sql.Prepared``); return its rows.

        The rows come as text (bytes). Bounded by ``op_timeout``; a failure marks the session
        broken (the caller closes it) and is mapped as in ``run``.
        """
        async with session.mutex:
            await self.send(session, statement, params, what)
            rows = await self.receive(session, self.op_timeout, what)
        if rows is None:
            session.broken = True
            raise BackendTimeout(f"{self.url}: no reply within op_timeout={self.op_timeout:g} s while {what}")
        return rows

    async def send(
        self, session: AsyncPgSession, statement: sql.Prepared, params: dict[str, Any], what: str
    ) -> None:
        """Send one statement without waiting for its reply; read the reply with ``receive``.

        For a lock wait that must stay in the server's queue across the caller's waits: the
        session is the caller's alone until the reply is read or the session is closed. The
        statement is prepared on the session's first use (planning it costs more than running
        it).
        """
        pgconn = session.conn.pgconn
        name, values = statement.name, statement.values(params)
        with self._guarded(session, self.op_timeout, what):
            if name not in session.prepared:
                pgconn.send_prepare(name, statement.text, param_types=values[1])
                await session.conn.wait(generators.send(pgconn), timeout=self.op_timeout)
                _raise_refusal(
                    session, await session.conn.wait(generators.fetch_many(pgconn), timeout=self.op_timeout)
                )
                session.prepared.add(name)
            pgconn.send_query_prepared(name, values[0])
            await session.conn.wait(generators.send(pgconn), timeout=self.op_timeout)

    @staticmethod
    def reply_ready(session: AsyncPgSession) -> bool:
        """Return whether the whole reply to the statement sent is already here (no waiting)."""
        pgconn = session.conn.pgconn
        try:
            pgconn.consume_input()
        except psycopg.Error:
            return True  # broken: ``receive`` says how, at once
        return not pgconn.is_busy()

    async def receive(self, session: AsyncPgSession, timeout: float, what: str) -> list[Row] | None:
        """Wait up to ``timeout`` for the reply to the statement sent; None if it has not come.

        The rows come as text (bytes), as the server sent them.
        """
        pgconn = session.conn.pgconn
        # Bounded even if the caller is cancelled meanwhile and psycopg then waits for the
        # server to confirm the cancel, which a frozen server never does.
        with self._guarded(session, timeout + self.op_timeout, what):
            try:
                results = await session.conn.wait(generators.fetch_many(pgconn), timeout=timeout)
            except WAIT_TIMEOUT:
                if session.aborted:
                    raise
                return None
            _raise_refusal(session, results)
        rows: list[Row] = []
        for result in results:
            if result.status == TUPLES_OK:
                rows = [
                    tuple(result.get_value(row, column) for column in range(result.nfields))
                    for row in range(result.ntuples)
                ]
        return rows

    @contextlib.contextmanager
    def _guarded(self, session: AsyncPgSession, budget: float, what: str) -> Iterator[None]:
        """Watch a call on ``session`` for ``budget`` seconds; on failure mark it broken.

        The watchdog closes the connection of a call still running after its deadline. A
        psycopg error is raised as tenure's (``mapped``); an interruption leaves the session's
        state unknown, so it is marked broken as well (the caller closes it).
        """
        deadline = time.monotonic() + budget
        session.deadlines.append(deadline)
        try:
            yield
        except psycopg.Error as exc:
            session.broken = True
            raise self.mapped(exc, session, what) from exc
        except BaseException:
            session.broken = True
            raise
        finally:
            session.deadlines.remove(deadline)

    def mapped(self, exc: BaseException, session: AsyncPgSession | None, what: str) -> TenureError:
        """Map a psycopg error to tenure's tree; the password never appears."""
        if isinstance(exc, psycopg.errors.DuplicatePreparedStatement):
            # Our prepared statement already exists in a session we never prepared it in.
            return ConfigurationError(POOLING.format(url=self.url))
        text = str(exc).strip() or type(exc).__name__
        if self._password:
            text = text.replace(self._password, "***")
        if session is not None and session.aborted:
            return BackendTimeout(
                f"{self.url}: no reply within op_timeout={self.op_timeout:g} s while {what}; "
                "the connection was closed"
            )
        if isinstance(exc, psycopg.OperationalError) and "timeout" in text.lower() and session is None:
            return BackendTimeout(f"{self.url}: {what}: {text}")
        if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
            return BackendUnavailable(f"{self.url}: {what}: {text}")
        return BackendProtocolError(f"{self.url}: {what}: {text}")

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


class AsyncPgListener:
    """One LISTENing session per table-mode store: counts releases per lock id, wakes waiters.

    Only a hint: an expired lease sends nothing, so waits stay bounded by their timeout.
    Started by the first wait; while it is (re)connecting, waits just pause.
    """

    def __init__(self, pool: AsyncPgPool) -> None:
        self._pool = pool
        self._mutex = threading.Lock()
        self._counts: dict[int, int] = {}  # lock id -> releases heard
        self._waiters: dict[int, list[AsyncSignal]] = {}
        self._worker: AsyncBackground | None = None
        self._stop: AsyncSignal | None = None
        self._session: AsyncPgSession | None = None
        self._listening = False  # a LISTEN is in effect right now
        self._closed = False

    async def listening(self, timeout: float) -> None:
        """Start listening if not yet, and return once a LISTEN is in effect (or after ``timeout``)."""
        self._start()
        deadline = time.monotonic() + timeout
        while not self._listening and not self._closed and time.monotonic() < deadline:
            await async_sleep(0.002)

    def _start(self) -> None:
        if self._worker is None and not self._closed:
            self._stop = AsyncSignal()
            self._worker = AsyncBackground(self._listen, name="tenure-postgresql-listener")
            self._worker.start()

    def mark(self, lock: int) -> int:
        """Return how many releases of ``lock`` were heard so far (taken before an attempt)."""
        return self._counts.get(lock, 0)

    async def wait(self, lock: int, mark: int, timeout: float) -> None:
        """Return when a release of ``lock`` was heard since ``mark``, or after ``timeout``."""
        self._start()
        signal = AsyncSignal()
        with self._mutex:
            self._waiters.setdefault(lock, []).append(signal)
        try:
            if self._counts.get(lock, 0) != mark:
                return
            await signal.wait(timeout)
        finally:
            with self._mutex:
                waiting = self._waiters.get(lock, [])
                if signal in waiting:
                    waiting.remove(signal)
                if not waiting:
                    self._waiters.pop(lock, None)

    async def aclose(self) -> None:
        """Stop listening; idempotent."""
        self._closed = True
        if self._stop is not None:
            self._stop.set()
        session = self._session
        if session is not None:
            session.abort()
        if self._worker is not None:
            await self._worker.join()

    def _heard(self, lock: int | None) -> None:
        with self._mutex:
            if lock is None:  # reconnected: releases may have been missed, every waiter looks
                signals = [s for waiting in self._waiters.values() for s in waiting]
            else:
                if len(self._counts) >= 4096:  # stay bounded; a reset count only wakes early
                    self._counts.clear()
                self._counts[lock] = self._counts.get(lock, 0) + 1
                signals = list(self._waiters.get(lock, ()))
        for signal in signals:
            signal.set()

    async def _listen(self) -> None:
        assert self._stop is not None
        pause = 0.05
        while not self._closed:
            session: AsyncPgSession | None = None
            try:
                session = await self._pool.open_session()
                self._session = session
                await self._pool.run(session, sql.LISTEN, None, "listening for releases")
                if self._closed:
                    break
                self._listening = True
                self._heard(None)
                pause = 0.05
                async for note in session.conn.notifies():
                    try:
                        self._heard(int(note.payload))
                    except ValueError:
                        continue
            except Exception as exc:
                if not self._closed:
                    log.debug(
                        "tenure: the release listener of %s stopped (%s); reconnecting", self._pool.url, exc
                    )
            finally:
                self._listening = False
                self._session = None
                if session is not None:
                    await self._pool.discard(session)
            self._heard(None)
            await self._stop.wait(pause)
            pause = min(pause * 2, 1.0)


def _raise_refusal(session: AsyncPgSession, results: list[Any]) -> None:
    """Raise the server's error if one of ``results`` (a reply read through libpq) is one."""
    for result in results:
        if result.status == FATAL_ERROR:
            raise psycopg.errors.error_from_result(result, encoding=session.conn.info.encoding)
