"""Connections to one MariaDB/MySQL server: sessions, a pool, bounded calls, driver errors.

Every call goes through the driver's public API (a cursor's ``execute`` and ``nextset``) and
is bounded: by ``op_timeout``, plus the server-side wait a statement asks for
(``tenure._concurrency.AsyncMySQLCalls`` bounds it in each colour). A connection whose call
failed or was interrupted is closed, never reused: its state is unknown, and closing it ends its
session, which frees whatever it held. ``map_errors`` is the one mapping of driver errors.

Short calls (``call``: reads, table-mode steps, rate decisions) run on at most ``size`` pooled
connections at once (the URL's ``pool_size``); more wait for one to come back, up to op_timeout,
instead of opening connections without end (a burst of concurrent calls would otherwise run into
the server's ``max_connections``, error 1040). Connections that hold locks or wait in the
server's lock queue are lent by ``checkout`` or ``run`` and not counted: a waiter may wait long,
and a holder keeps its session.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Mapping
from typing import Any, cast

import aiomysql  # type: ignore[import-untyped]
from pymysql.constants import CLIENT  # type: ignore[import-untyped]

from tenure._async.backends.mysql import sql
from tenure._concurrency import AsyncGate, AsyncInFlight, AsyncMutex, AsyncMySQLCalls
from tenure._config import BackendConfig
from tenure._exceptions import BackendError, BackendProtocolError, BackendTimeout, BackendUnavailable

MAX_IDLE = 16  # pooled connections kept open beyond those that hold or wait
# Short calls running at once per store, each on a connection of its own: more than a server's
# cores usually run them in parallel (a call is a fraction of a millisecond of server work), few
# enough that several processes stay well within a server's max_connections (151 by default).
POOL_SIZE = 16
IDLE_MARGIN = 0.25  # seconds: a pooled connection this close to its server idle limit is dropped
# Client error codes meaning the connection is gone (server gone away, lost during query, ...).
CONNECTION_LOST = frozenset({2006, 2013, 2055})


class Reply:
    """What one round trip returned: the last statement's affected rows, insert id and rows."""

    __slots__ = ("inserted", "rowcount", "rows")

    def __init__(self, rowcount: int, inserted: int, rows: tuple[tuple[Any, ...], ...]) -> None:
        self.rowcount = rowcount
        self.inserted = inserted
        self.rows = rows


class AsyncSession:
    """One server connection (a session) and what this client knows of its state."""

    __slots__ = (
        "alive", "calls", "idle_limit", "last_used", "mutex", "names", "raw", "reused", "thread_id", "users",
    )  # fmt: skip

    def __init__(self, raw: Any, calls: AsyncMySQLCalls) -> None:
        self.raw = raw
        self.calls = calls  # bounds each call on this connection
        self.thread_id: int = raw.thread_id()
        self.idle_limit = 28800  # the server default; lowered per hold
        self.last_used = time.monotonic()
        self.mutex = AsyncMutex()  # holders and the renewer share a session: one call at a time
        self.reused = False
        self.alive = True  # False once closed: every lock its session held is gone
        # The lock names this session holds, changed under ``mutex``. GET_LOCK is reentrant in a
        # session, so a name already here is refused without asking the server.
        self.names: set[str] = set()
        self.users = 0  # calls that picked this shared session and have not finished with it


class AsyncMySQLPool:
    """Open, lend, take back and close connections to one server; run bounded round trips."""

    def __init__(self, config: BackendConfig, url: str) -> None:
        self.url = url
        self.connect_timeout = config.common.connect_timeout
        self.op_timeout = config.common.op_timeout
        self._options: dict[str, Any] = {
            **sql.connection_options(config),
            "autocommit": True,
            "charset": "utf8mb4",
            "connect_timeout": self.connect_timeout,
            "client_flag": CLIENT.MULTI_STATEMENTS,
        }
        self._idle: list[AsyncSession] = []
        self._closed = False
        self.size = cast(int, config.extra.get("pool_size", POOL_SIZE))  # parsed by the registry
        self._gate = AsyncGate(self.size)  # places for short calls (``call``)
        self._mutex = threading.Lock()  # threads of a sync store share the pool
        self.setup: str | None = None  # run on every new connection before it is lent

    async def open(self) -> AsyncSession:
        """Open a new connection; raise BackendUnavailable (or BackendTimeout) within connect_timeout."""
        if self._closed:
            raise BackendUnavailable(f"the connections to {self.url} are closed")
        calls = AsyncMySQLCalls()
        try:
            raw = await calls.connect(aiomysql.connect, self._options, self.connect_timeout)
        except Exception as exc:
            raise map_errors(exc, f"cannot connect to {self.url}") from exc
        session = AsyncSession(raw, calls)
        if self.setup is not None:
            await self.execute(session, self.setup, {})  # closes the connection if it fails
        return session

    async def checkout(self) -> AsyncSession:
        """Lend a pooled connection (the most recently used) or open one."""
        now = time.monotonic()
        while self._idle:
            session = self._idle.pop()
            if now - session.last_used < session.idle_limit - IDLE_MARGIN:
                session.reused = True
                return session
            self.discard(session)  # the server is about to end (or ended) its idle session
        return await self.open()

    def checkin(self, session: AsyncSession) -> None:
        """Take back a connection that holds nothing."""
        if self._closed or len(self._idle) >= max(MAX_IDLE, self._gate.waiting):  # for waiting calls
            self.discard(session)
        else:
            self._idle.append(session)

    def discard(self, session: AsyncSession) -> None:
        """Close a connection: the server ends its session and frees whatever it held."""
        session.alive = False
        with contextlib.suppress(Exception):
            session.calls.close(session.raw)

    async def aclose(self) -> None:
        """Close every pooled connection; idempotent."""
        self._closed = True
        idle, self._idle = self._idle, []
        for session in idle:
            self.discard(session)

    async def execute(
        self,
        session: AsyncSession,
        statement: str,
        params: Mapping[str, object],
        *,
        idle: int | None = None,
        wait: float = 0.0,
    ) -> Reply:
        """Send one round trip on ``session``; return the last statement's reply.

        ``idle`` sets the session's server idle limit in the same round trip when it differs;
        ``wait`` is how long the statement may block on the server, added to op_timeout.
        On any error or interruption the connection is closed (a failed statement does not
        release a lock it took) and the error is raised as BackendError (or the interruption).
        """
        query = self._prepare(session, statement, params, idle)
        try:
            reply = await session.calls.call(lambda: _round_trip(session.raw, query), self.op_timeout + wait)
        except BaseException as exc:
            self.discard(session)
            if isinstance(exc, Exception):
                raise map_errors(exc, f"a statement failed on {self.url}") from exc
            raise
        if idle is not None:
            session.idle_limit = idle
        session.last_used = time.monotonic()
        return reply

    def start(
        self, session: AsyncSession, statement: str, params: Mapping[str, object], *, idle: int, wait: float
    ) -> AsyncInFlight[Reply]:
        """Start ``execute`` on ``session`` for a statement that waits on the server; collect it later.

        Until it is done the session belongs to it; ``kill_query`` ends it early.
        """
        return AsyncInFlight(lambda: self.execute(session, statement, params, idle=idle, wait=wait))

    async def run(
        self, statement: str, params: Mapping[str, object], *, idle: int | None = None, wait: float = 0.0
    ) -> tuple[AsyncSession, Reply]:
        """Run a round trip on a lent connection; retry once on a fresh one if a pooled one was dead.

        A pooled connection may have been ended by the server (idle limit, restart) while it
        sat in the pool; whatever the failed statement did died with that session.
        """
        session = await self.checkout()
        try:
            return session, await self.execute(session, statement, params, idle=idle, wait=wait)
        except BackendUnavailable as exc:
            if not session.reused or not connection_lost(exc):
                raise
        session = await self.open()
        return session, await self.execute(session, statement, params, idle=idle, wait=wait)

    async def call(self, statement: str, params: Mapping[str, object]) -> Reply:
        """Run one short round trip on a pooled connection (``run``); return its reply.

        At most ``size`` such calls run at once; more wait for a place, up to op_timeout, then
        raise ``BackendTimeout``. The connection goes back to the pool, or is closed if the call
        failed or was interrupted.
        """
        if not await self._gate.enter(self.op_timeout):
            raise BackendTimeout(
                f"{self.url}: no connection came free within op_timeout={self.op_timeout:g} s "
                f"({self.size} calls were running: the pool_size)"
            )
        try:
            session, reply = await self.run(statement, params)
            self.checkin(session)
            return reply
        finally:
            self._gate.leave()

    async def kill_query(self, thread_id: int) -> None:
        """End the statement running on session ``thread_id`` (its own user may)."""
        await self.call("KILL QUERY %(id)s", {"id": thread_id})

    def _prepare(
        self, session: AsyncSession, statement: str, params: Mapping[str, object], idle: int | None
    ) -> str:
        """Return the query text with its literals, escaped by the driver."""
        if idle is not None and idle != session.idle_limit:
            statement = sql.SET_IDLE_LIMIT + statement
            params = {**params, "idle": idle}
        raw = session.raw
        return statement % {name: raw.escape(value) for name, value in params.items()}


async def _round_trip(raw: Any, query: str) -> Reply:
    """Send ``query`` (one or more statements) and read every reply; return the last one."""
    cursor = await raw.cursor()
    await cursor.execute(query)
    while True:
        rows = tuple(await cursor.fetchall()) if cursor.description else ()
        reply = Reply(max(0, cursor.rowcount), cursor.lastrowid or 0, rows)
        if not await cursor.nextset():
            return reply


def map_errors(exc: BaseException, what: str) -> BackendError:
    """Return the tenure error for a driver error; ``what`` says what failed (no password in it)."""
    if isinstance(exc, BackendError):
        return exc
    if _timed_out(exc):
        return BackendTimeout(f"{what}: no answer within the timeout ({exc})")
    if isinstance(exc, (aiomysql.OperationalError, aiomysql.InterfaceError, OSError)):
        return BackendUnavailable(f"{what}: {exc}")
    return BackendProtocolError(f"{what}: {exc}")


def connection_lost(exc: BaseException) -> bool:
    """Return whether ``exc`` (a mapped error) says the connection was gone, not slow or refused."""
    cause = exc.__cause__
    if isinstance(cause, (ConnectionError, BrokenPipeError)):
        return True
    return (
        isinstance(cause, aiomysql.OperationalError) and bool(cause.args) and cause.args[0] in CONNECTION_LOST
    )


def _timed_out(exc: BaseException) -> bool:
    """Return whether ``exc`` (or what it wraps) is a timeout."""
    seen: BaseException | None = exc
    for _ in range(4):
        if seen is None:
            return False
        if isinstance(seen, TimeoutError) or "timed out" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
