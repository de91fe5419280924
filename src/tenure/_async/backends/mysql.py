"""The ``mysql://`` backend: MariaDB/MySQL ``GET_LOCK`` on a dedicated connection, or a lease table.

URL: ``mysql://user[:password]@host[:port]/database[?mode=advisory|table]`` plus the common
options (``namespace``, ``connect_timeout``, ``op_timeout``). The async store speaks aiomysql,
the generated sync twin PyMySQL (aiomysql is built on it, so the calls line up). Autocommit is
on: every statement is its own transaction.

**Advisory mode** (the default). A lock is a server-side user lock, ``GET_LOCK(name)``, whose
name is ``tenure:`` plus a 224-bit digest of the namespaced key (GET_LOCK takes 64 characters
at most). A user lock belongs to a session (a connection), and a server-side wait blocks its
connection, so the store keeps a small pool of connections and every *hold* (one owner holding
or waiting for one key) gets its own connection, checked out when it starts and returned to the
pool at release (closed instead whenever its state is in doubt: closing a session frees all it
held, which is always safe). This is how DESIGN's "dedicated connection per coordinator" reads
here: a coordinator holding one lock uses one dedicated connection, and two locks of one
coordinator on the same name exclude each other, because they are two sessions.

One round trip acquires: ``GET_LOCK(name, 0)`` in the WHERE clause of a REPLACE that, only when
the lock was taken, draws the fence from a server-wide SEQUENCE and records the holder (owner,
label, ttl, connection id) in a MEMORY table; the fence comes back in the OK packet. One round
trip releases (RELEASE_LOCK in the WHERE clause of the DELETE of the holder row). The fence
departs from the brief's side table: a SEQUENCE hands out values from memory and stores only the
end of its cache, so acquiring writes nothing to disk, and the holder row, in a MEMORY table,
needs no disk write either (a server restart empties it, but also ends every session and so
frees every lock). The stored end of the cache is not flushed when it is stored, so a crash can
make the sequence repeat values: after every restart the first new connection moves it
``sql.FENCE_JUMP`` ahead (see ``sql.FENCE_EPOCH``), and fences keep growing. Measured on
MariaDB 10.11 this is the cheapest way found to take a lock and a fence together: an InnoDB
fence row costs more per acquisition, and splitting the work over a multi-statement round trip
costs more than one statement. It needs MariaDB 10.3 or later (MySQL
has no sequences: use ``?mode=table`` there).

**What ``ttl`` means for a session-bound lock.** The server frees a lock when its session ends,
so a silent holder's session is made to end after ``ttl``: the hold's connection carries
``wait_timeout = ceil(ttl)`` (whole seconds, at least 1), set in the same round trip as the
acquisition. Every renewal (the renewer sends one each ttl/3) is the probe: one statement on the
hold's connection that proves the session still holds the lock and resets the server's idle
timer. A dead connection or a restarted server fails the probe and the lease is reported lost
at once; a holder frozen past ``ceil(ttl)`` has its session ended by the server, and learns it
at its next renewal or release.

**Waiting.** ``fair=True`` waiters block in ``GET_LOCK(name, timeout)`` on their own
connection: the server's wait queue (its metadata-lock queue) is first come, first served and
hands the lock straight to the next waiter. The blocking statement is started once and kept
running across the primitive's short waits, so a waiter keeps its place in line; leaving the
line kills the statement (``KILL QUERY``) and closes the connection. Plain waiters wait on the
server too: a wait that is granted the lock keeps it, parked on its connection with the holder
recorded and the fence drawn for the owner whose attempt failed just before, and the attempt the
primitive always makes next takes it over without another round trip; one release wakes one
waiter rather than a herd. The parked connection carries the hold's idle limit, so a lock parked
for an attempt that never comes frees itself like a silent holder's.

The sync twin reads a fair waiter's reply in the waiting thread itself (``select`` on the
socket, see ``tenure._concurrency.Pending``), so a hand-over costs no thread switch; the async
store awaits it as a task.

**Table mode** (``?mode=table``): the lease-table lock (unique name, owner token, label, fence,
``expires_at`` by the server's UTC clock) in InnoDB, one atomic statement per step, like the
SQLite backend; rows are never deleted, so fences never repeat. Waiters poll.
"""

from __future__ import annotations

import contextlib
import select
import time
from collections.abc import Mapping
from typing import Any, ClassVar

import aiomysql  # type: ignore[import-untyped]
from pymysql.constants import CLIENT, COMMAND  # type: ignore[import-untyped]

from tenure._async.backends.base import AsyncLeaseStore
from tenure._concurrency import AsyncMutex, AsyncPending, async_bounded, async_sleep
from tenure._config import BackendConfig
from tenure._core import mysql_sql as sql
from tenure._core.guarantees import Capability, Guarantee
from tenure._core.holder import HolderInfo
from tenure._core.tokens import Owner
from tenure._exceptions import BackendError, BackendProtocolError, BackendTimeout, BackendUnavailable

# True in the generated sync twin, whose driver (PyMySQL) bounds every read and write with its
# own socket timeouts and names the database ``database``; aiomysql has neither.
BLOCKING_DRIVER = aiomysql.__name__ == "pymysql"
MAX_IDLE = 16  # pooled connections kept open beyond those that hold or wait
IDLE_MARGIN = 0.25  # seconds: a pooled connection this close to its server idle limit is dropped
MAX_LABEL = 255
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

    __slots__ = ("idle_limit", "last_used", "mutex", "raw", "reused", "thread_id")

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.thread_id: int = raw.thread_id()
        self.idle_limit = 28800  # the server default; lowered per hold
        self.last_used = time.monotonic()
        self.mutex = AsyncMutex()  # the renewer and the holder may use a hold's session at once
        self.reused = False


class AsyncMySQLPool:
    """Open, lend, bound and close connections to one server; map driver errors to tenure's."""

    def __init__(self, config: BackendConfig, url: str) -> None:
        self.url = url
        self.connect_timeout = config.common.connect_timeout
        self.op_timeout = config.common.op_timeout
        options = sql.connection_options(config)
        if BLOCKING_DRIVER:
            options["database"] = options.pop("db")
            options["read_timeout"] = self.op_timeout
            options["write_timeout"] = self.op_timeout
        self._options: Mapping[str, object] = {
            **options,
            "autocommit": True,
            "charset": "utf8mb4",
            "connect_timeout": self.connect_timeout,
            "client_flag": CLIENT.MULTI_STATEMENTS,
        }
        self._idle: list[AsyncSession] = []
        self._closed = False
        self.setup: str | None = None  # run on every new connection before it is lent

    async def open(self) -> AsyncSession:
        """Open a new connection; raise BackendUnavailable (or BackendTimeout) within connect_timeout."""
        if self._closed:
            raise BackendUnavailable(f"the connections to {self.url} are closed")
        try:
            raw = await async_bounded(lambda: aiomysql.connect(**self._options), self.connect_timeout)
        except Exception as exc:
            raise self.mapped(exc, "cannot connect") from exc
        session = AsyncSession(raw)
        if self.setup is not None:
            await self.execute(session, self.setup, {})  # closes the connection if it fails
        return session

    async def checkout(self) -> AsyncSession:
        """Lend a pooled connection (the most recently used) or open one."""
        now = time.monotonic()
        while True:
            try:
                session = self._idle.pop()
            except IndexError:
                break
            if now - session.last_used < session.idle_limit - IDLE_MARGIN:
                session.reused = True
                return session
            self.discard(session)  # the server is about to end (or ended) its idle session
        return await self.open()

    def checkin(self, session: AsyncSession) -> None:
        """Take back a connection that holds nothing."""
        if self._closed or len(self._idle) >= MAX_IDLE:
            self.discard(session)
        else:
            self._idle.append(session)

    def discard(self, session: AsyncSession) -> None:
        """Close a connection: the server ends its session and frees whatever it held."""
        with contextlib.suppress(Exception):
            session.raw.close()

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
        limit = self.op_timeout + wait
        if wait and BLOCKING_DRIVER:
            session.raw._read_timeout = limit

        async def round_trip() -> Reply:
            await session.raw._execute_command(COMMAND.COM_QUERY, query)
            return await self._read_reply(session)

        try:
            reply = await async_bounded(round_trip, limit)
        except BaseException as exc:
            raise self._failed(session, exc) from exc
        if wait and BLOCKING_DRIVER:
            session.raw._read_timeout = self.op_timeout
        self._done(session, idle)
        return reply

    async def begin(
        self, session: AsyncSession, statement: str, params: Mapping[str, object], *, idle: int
    ) -> Reply:
        """Send a multi-statement round trip and read only its first statement's reply.

        The rest keeps running on the server (a wait in GET_LOCK); ``rest()`` collects it.
        """
        prefixed = idle != session.idle_limit
        query = self._prepare(session, statement, params, idle)
        raw = session.raw

        async def first_reply() -> Reply:
            await raw._execute_command(COMMAND.COM_QUERY, query)
            await raw._read_query_result()
            if prefixed:
                await raw.next_result()  # past the SET of the idle limit
            return _reply(raw._result)

        try:
            reply = await async_bounded(first_reply, self.op_timeout)
        except BaseException as exc:
            raise self._failed(session, exc) from exc
        self._done(session, idle)
        return reply

    def rest(self, session: AsyncSession, *, wait: float) -> AsyncPending[Reply]:
        """Collect the remaining replies of a round trip started with ``begin()``, in slices."""
        return self._collect(session, None, wait)

    async def send(
        self, session: AsyncSession, statement: str, params: Mapping[str, object], *, idle: int, wait: float
    ) -> AsyncPending[Reply]:
        """Send a round trip whose first statement waits on the server; collect it in slices.

        Nothing is read now: the last statement's reply, once everything ran, is the result.
        Nothing may reply before the wait ends, so a new idle limit is set in a round trip first.
        """
        if idle != session.idle_limit:
            await self.execute(session, "DO 0", {}, idle=idle)
        return self._collect(session, self._prepare(session, statement, params, None), wait)

    def _collect(self, session: AsyncSession, query: str | None, wait: float) -> AsyncPending[Reply]:
        """Send ``query`` (None: ``begin()`` sent it) and read its replies, in slices.

        The last statement's reply is the result. In the async colour a task reads them; in the
        sync colour they are read in the caller's own thread once the socket turns readable, so
        a hand-over costs no thread switch.
        """
        raw = session.raw

        async def sent() -> None:
            if query is None:
                return
            try:
                await raw._execute_command(COMMAND.COM_QUERY, query)
            except BaseException as exc:
                raise self._failed(session, exc) from exc

        async def receive() -> Reply:
            try:
                if query is not None:
                    await raw._read_query_result()
                while raw._result.has_next:
                    await raw.next_result()
            except BaseException as exc:
                raise self._failed(session, exc) from exc
            self._done(session, None)
            return _reply(raw._result)

        return AsyncPending(
            sent, receive, lambda timeout: _readable(session, timeout), self.op_timeout + wait
        )

    def _prepare(
        self, session: AsyncSession, statement: str, params: Mapping[str, object], idle: int | None
    ) -> str:
        """Return the query text with its literals."""
        if idle is not None and idle != session.idle_limit:
            statement = sql.SET_IDLE_LIMIT + statement
            params = {**params, "idle": idle}
        raw = session.raw
        return statement % {name: raw.escape(value) for name, value in params.items()}

    async def _read_reply(self, session: AsyncSession) -> Reply:
        raw = session.raw
        await raw._read_query_result()
        while raw._result.has_next:  # a multi-statement round trip: the last reply counts
            await raw.next_result()
        return _reply(raw._result)

    def _done(self, session: AsyncSession, idle: int | None) -> None:
        if idle is not None:
            session.idle_limit = idle
        session.last_used = time.monotonic()

    def _failed(self, session: AsyncSession, exc: BaseException) -> BaseException:
        """Close a connection whose statement failed or was interrupted; return what to raise."""
        self.discard(session)
        return self.mapped(exc, "a statement failed") if isinstance(exc, Exception) else exc

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
            if not session.reused or not _connection_lost(exc):
                raise
        session = await self.open()
        return session, await self.execute(session, statement, params, idle=idle, wait=wait)

    async def kill_query(self, thread_id: int) -> None:
        """End the statement running on session ``thread_id`` (its own user may)."""
        session, _ = await self.run("KILL QUERY %(id)s", {"id": thread_id})
        self.checkin(session)

    def mapped(self, exc: BaseException, what: str) -> BackendError:
        """Map a driver error to tenure's tree; the URL in the message has no password."""
        if isinstance(exc, BackendError):
            return exc
        if _timed_out(exc):
            return BackendTimeout(f"{what} on {self.url}: no answer within the timeout ({exc})")
        if isinstance(exc, (aiomysql.OperationalError, aiomysql.InterfaceError, OSError)):
            return BackendUnavailable(f"{what} on {self.url}: {exc}")
        return BackendProtocolError(f"{what} on {self.url}: {exc}")


class Parked:
    """A lock a plain wait was granted on its session, held for the attempt that comes next."""

    __slots__ = ("fence", "owner", "session", "ttl")

    def __init__(self, session: AsyncSession, fence: int, owner: str, ttl: float) -> None:
        self.session = session
        self.fence = fence
        self.owner = owner  # the token the holder row was recorded for
        self.ttl = ttl


class AsyncHold:
    """One owner holding, or queued for, one key on its own connection."""

    __slots__ = ("held", "name", "pending", "session", "ttl")

    def __init__(self, session: AsyncSession, name: str, ttl: float, *, held: bool) -> None:
        self.session = session
        self.name = name
        self.ttl = ttl
        self.held = held
        self.pending: AsyncPending[Reply] | None = None  # a queued GET_LOCK still running


class AsyncMySQLStore(AsyncLeaseStore):
    """Serve leases as MariaDB user locks (GET_LOCK), one connection per hold.

    **Guarantees.** FENCING: fences come from one server-wide SEQUENCE, drawn in the acquiring
    statement after the lock was taken; after a restart (a crash included) the sequence jumps
    past every value it may have handed out. FIFO: ``fair=True`` waiters block in the server's lock queue,
    which serves them in arrival order. SESSION_BOUND: a lock ends with its session, which the
    server ends after ``ceil(ttl)`` seconds of silence (wait_timeout); a restart or a dead
    connection loses it and the next renewal reports the loss. SERVER_TIME: a silent holder's
    hold ends by the server's clock (the session's idle limit), so a frozen holder cannot keep
    it by its own. CROSS_PROCESS, CROSS_HOST: clients reach the server over TCP. Not
    SURVIVES_FAILOVER: user locks are not replicated.
    """

    scheme: ClassVar[str] = "mysql"
    description: ClassVar[str] = (
        "GET_LOCK on a connection per hold (name = digest, <= 64 chars); fence from a SEQUENCE "
        "in the same statement; session ends after ceil(ttl) s of silence; waits on the server"
    )
    guarantees: ClassVar[frozenset[Guarantee]] = frozenset(
        {
            Guarantee.FENCING,
            Guarantee.FIFO,
            Guarantee.SERVER_TIME,
            Guarantee.SESSION_BOUND,
            Guarantee.CROSS_PROCESS,
            Guarantee.CROSS_HOST,
        }
    )
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.QUEUEING, Capability.SESSIONS})
    # Waits end on the server when the holder lets go; the slices only bound each statement.
    poll_interval: ClassVar[tuple[float, float]] = (0.05, 1.0)

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        self._pool = AsyncMySQLPool(config, self.url)
        self._holds: dict[tuple[str, str], AsyncHold] = {}
        self._parked: dict[str, Parked] = {}  # key -> a lock a plain wait was granted, not yet taken
        self._tried: dict[str, tuple[Owner, float]] = {}  # key -> the owner whose attempt failed last
        self._ready = False

    async def connect(self) -> None:
        if self._ready:
            return
        session = await self._pool.open()
        try:
            version = await self._pool.execute(session, "SELECT VERSION()", {})
            if "mariadb" not in str(version.rows[0][0]).lower():
                self._pool.discard(session)
                raise BackendProtocolError(
                    f"{self.url} is not MariaDB ({version.rows[0][0]}): advisory mode draws fences "
                    "from a SEQUENCE (MariaDB >= 10.3); use ?mode=table on MySQL"
                )
            await self._pool.execute(session, sql.QUIET_NOTES, {})  # "already exists" is no news
            await self._pool.execute(session, sql.CREATE_SEQUENCE, {})
            await self._pool.execute(session, sql.CREATE_HOLDERS, {})
            await self._pool.execute(session, sql.CREATE_EPOCH, {})
            await self._pool.execute(session, sql.CREATE_EPOCHS, {})
            await self._pool.execute(session, sql.FENCE_EPOCH, {})
        except BackendError:
            self._pool.discard(session)
            raise
        self._pool.setup = sql.FENCE_EPOCH  # after a restart, fences restart higher
        self._pool.checkin(session)
        self._ready = True

    async def try_acquire(self, key: str, owner: Owner, ttl: float) -> int | None:
        name = sql.lock_name(key)
        parked = self._parked.pop(key, None)
        if parked is not None:  # a wait of this store was granted the lock: take it over
            self._tried.pop(key, None)
            if parked.owner == owner.token and parked.ttl == ttl:
                self._holds[(key, owner.token)] = AsyncHold(parked.session, name, ttl, held=True)
                return parked.fence
            params = _params(name, owner, ttl)
            reply = await self._pool.execute(parked.session, sql.ADOPT, params, idle=sql.idle_limit(ttl))
            if reply.rowcount > 0:
                self._holds[(key, owner.token)] = AsyncHold(parked.session, name, ttl, held=True)
                return reply.inserted
            self._pool.discard(parked.session)  # its session no longer holds it: try the usual way
        session, reply = await self._pool.run(
            sql.ACQUIRE, _params(name, owner, ttl), idle=sql.idle_limit(ttl)
        )
        if reply.rowcount == 0:
            self._pool.checkin(session)
            if len(self._tried) >= 4096:  # waiters that gave up leave entries behind; stay bounded
                self._tried.clear()
            self._tried[key] = (owner, ttl)  # what a wait that is granted the lock records
            return None
        self._holds[(key, owner.token)] = AsyncHold(session, name, ttl, held=True)
        return reply.inserted

    async def renew(self, key: str, owner: Owner, ttl: float) -> bool:
        hold = self._holds.get((key, owner.token))
        if hold is None or not hold.held:
            return False
        async with hold.session.mutex:
            try:
                reply = await self._pool.execute(
                    hold.session, sql.RENEW, {"name": hold.name, "ttl": ttl}, idle=sql.idle_limit(ttl)
                )
            except BackendError:
                # The connection is closed now, so whatever it held is gone with its session.
                self._holds.pop((key, owner.token), None)
                return False
        if reply.rowcount != 1:
            self._holds.pop((key, owner.token), None)
            self._pool.discard(hold.session)
            return False
        return True

    async def release(self, key: str, owner: Owner) -> bool:
        hold = self._holds.pop((key, owner.token), None)
        if hold is None:
            return False
        if not hold.held:
            await self._abandon(hold)
            return False
        async with hold.session.mutex:
            try:
                reply = await self._pool.execute(hold.session, sql.RELEASE, {"name": hold.name})
            except BackendError:
                return False  # the connection is closed: its session, and the lock, end with it
        if reply.rowcount == 1:
            self._pool.checkin(hold.session)
            return True
        self._pool.discard(hold.session)  # not ours any more; make sure the session keeps nothing
        return False

    async def holder(self, key: str) -> HolderInfo | None:
        session, reply = await self._pool.run(sql.HOLDER, {"name": sql.lock_name(key)})
        self._pool.checkin(session)
        if not reply.rows:
            return None
        label, fence, remaining = reply.rows[0]
        return HolderInfo(_text(label), int(fence), max(0.0, float(remaining)))

    async def wait_released(self, key: str, timeout: float) -> None:
        # Wait in the server's queue; granted, keep the lock parked, recorded for the owner whose
        # attempt failed last, for the attempt the lock always makes next (see WAIT_AND_RECORD).
        if timeout <= 0 or key in self._parked:
            return
        name, tried = sql.lock_name(key), self._tried.get(key)
        params: dict[str, object] = {"name": name, "wait": round(timeout, 3)}
        if tried is None:
            session, _ = await self._pool.run(sql.WAIT_RELEASED, params, wait=timeout)
            self._pool.checkin(session)
            return
        owner, ttl = tried
        params.update(_params(name, owner, ttl))
        session, reply = await self._pool.run(
            sql.WAIT_AND_RECORD, params, idle=sql.idle_limit(ttl), wait=timeout
        )
        if reply.rowcount > 0:
            self._parked[key] = Parked(session, reply.inserted, owner.token, ttl)
        else:
            self._pool.checkin(session)

    async def try_acquire_queued(
        self, key: str, owner: Owner, ttl: float, *, patience: float, will_wait: bool = True
    ) -> int | None:
        # ``patience`` is not needed: a waiter that dies leaves the server's queue with its session.
        hold = self._holds.get((key, owner.token))
        if hold is not None:
            if hold.pending is not None and hold.pending.done():
                return await self._take_turn(key, owner, hold)
            return None
        session = await self._pool.checkout()
        hold = self._holds[(key, owner.token)] = AsyncHold(session, sql.lock_name(key), ttl, held=False)
        try:
            try:
                return await self._join(key, owner, hold, at_once=will_wait)
            except BackendUnavailable as exc:
                if not session.reused or not _connection_lost(exc):
                    raise
            hold.session = await self._pool.open()  # the pooled one had died: whatever it did, too
            return await self._join(key, owner, hold, at_once=will_wait)
        except BaseException:
            self._holds.pop((key, owner.token), None)
            self._pool.discard(hold.session)
            raise

    async def wait_turn(self, key: str, owner: Owner, timeout: float) -> int | None:
        hold = self._holds.get((key, owner.token))
        if hold is None or hold.pending is None:
            return None
        if not await hold.pending.wait(timeout):
            return None
        return await self._take_turn(key, owner, hold)

    async def leave_queue(self, key: str, owner: Owner) -> None:
        hold = self._holds.pop((key, owner.token), None)
        if hold is not None:
            await self._abandon(hold)

    async def aclose(self) -> None:
        holds = list(self._holds.values())
        self._holds.clear()
        for hold in holds:
            await self._abandon(hold)
        parked = list(self._parked.values())
        self._parked.clear()
        for entry in parked:
            self._pool.discard(entry.session)
        await self._pool.aclose()

    # -- internals -------------------------------------------------------------------------------

    async def _join(self, key: str, owner: Owner, hold: AsyncHold, *, at_once: bool = False) -> int | None:
        """Try for the lock and, in the same round trip, line up on the server if it is held.

        The first reply says whether the lock was free; the rest (granted: the fence) is
        collected by ``wait_turn`` or, when the lock was free, at once. ``at_once``: a caller
        that will wait lines up without trying first and reads nothing now (the wait ends at
        once when the lock is free), which spares a contended acquisition a round trip.
        """
        params = {**_params(hold.name, owner, hold.ttl), "wait": sql.LONGEST_SERVER_WAIT}
        if at_once:
            hold.pending = await self._pool.send(
                hold.session,
                sql.WAIT_AND_RECORD,
                params,
                idle=sql.idle_limit(hold.ttl),
                wait=sql.LONGEST_SERVER_WAIT,
            )
            return None
        first = await self._pool.begin(hold.session, sql.QUEUE, params, idle=sql.idle_limit(hold.ttl))
        hold.pending = self._pool.rest(hold.session, wait=sql.LONGEST_SERVER_WAIT)
        if not first.rows or first.rows[0][0] != 1:
            return None
        if not await hold.pending.wait(self._pool.op_timeout):  # sent right behind the first reply
            raise BackendTimeout(f"recording the holder of {key!r} on {self.url} took too long")
        return await self._take_turn(key, owner, hold)

    async def _take_turn(self, key: str, owner: Owner, hold: AsyncHold) -> int | None:
        """Collect a finished queued GET_LOCK: the fence if granted, else line up again."""
        assert hold.pending is not None
        pending, hold.pending = hold.pending, None
        try:
            reply = pending.result()
        except BaseException:
            self._holds.pop((key, owner.token), None)
            self._pool.discard(hold.session)
            raise
        if reply.rowcount > 0:
            hold.held = True
            return reply.inserted
        return await self._join(key, owner, hold)  # the server's wait ran out (an hour)

    async def _abandon(self, hold: AsyncHold) -> None:
        """Leave the queue and drop the connection: anything granted meanwhile goes with it."""
        pending, hold.pending = hold.pending, None
        if pending is not None and not pending.done():
            try:
                await self._pool.kill_query(hold.session.thread_id)
                await pending.wait(self._pool.op_timeout)
            except BackendError:
                pass  # closing the connection below ends the wait too, once the server notices
            pending.cancel()
        self._pool.discard(hold.session)


class AsyncMySQLTableStore(AsyncLeaseStore):
    """Serve leases from an InnoDB lease table; expiry by the server's clock.

    **Guarantees.** FENCING: each acquisition bumps the row's fence in the same statement and
    rows are never deleted. SERVER_TIME: ``expires_at`` is set and compared with the server's
    UTC_TIMESTAMP, so a frozen holder cannot extend its lease by its own clock.
    CROSS_PROCESS, CROSS_HOST: clients reach the server over TCP. Not SESSION_BOUND: a crashed
    holder's lease ends at its TTL, not with its connection. Waiters poll.
    """

    scheme: ClassVar[str] = "mysql"
    description: ClassVar[str] = (
        "InnoDB lease table, one statement per step, expiry by the server's clock; waiters poll"
    )
    guarantees: ClassVar[frozenset[Guarantee]] = frozenset(
        {Guarantee.FENCING, Guarantee.SERVER_TIME, Guarantee.CROSS_PROCESS, Guarantee.CROSS_HOST}
    )
    capabilities: ClassVar[frozenset[Capability]] = frozenset()
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
        except BackendError:
            self._pool.discard(session)
            raise
        self._pool.checkin(session)
        self._ready = True

    async def try_acquire(self, key: str, owner: Owner, ttl: float) -> int | None:
        params = {
            "name": sql.lock_name(key),
            "owner": owner.token,
            "label": owner.label[:MAX_LABEL],
            "ttl_us": sql.micros(ttl),
        }
        reply = await self._call(sql.TABLE_ACQUIRE, params)
        if reply.rowcount == 1:
            return 1  # a new row: the name's first fence
        if reply.rowcount == 2:
            return reply.inserted
        return None

    async def renew(self, key: str, owner: Owner, ttl: float) -> bool:
        params = {"name": sql.lock_name(key), "owner": owner.token, "ttl_us": sql.micros(ttl)}
        return (await self._call(sql.TABLE_RENEW, params)).rowcount == 1

    async def release(self, key: str, owner: Owner) -> bool:
        params = {"name": sql.lock_name(key), "owner": owner.token}
        return (await self._call(sql.TABLE_RELEASE, params)).rowcount == 1

    async def holder(self, key: str) -> HolderInfo | None:
        reply = await self._call(sql.TABLE_HOLDER, {"name": sql.lock_name(key)})
        if not reply.rows:
            return None
        label, fence, remaining = reply.rows[0]
        return HolderInfo(_text(label), int(fence), max(0.0, float(remaining)))

    async def wait_released(self, key: str, timeout: float) -> None:
        await async_sleep(timeout)

    async def aclose(self) -> None:
        await self._pool.aclose()

    async def _call(self, statement: str, params: Mapping[str, object]) -> Reply:
        session, reply = await self._pool.run(statement, params)
        self._pool.checkin(session)
        return reply


def _params(name: str, owner: Owner, ttl: float) -> dict[str, object]:
    # At most 255 bytes of UTF-8 (a byte column keeps the MEMORY table's fixed-width rows small).
    label = owner.label.encode("utf-8", "replace")[:MAX_LABEL].decode("utf-8", "ignore")
    return {"name": name, "owner": owner.token, "label": label, "ttl": ttl}


def _text(label: object) -> str:
    """Return a label read back from a byte column (advisory) or a text column (table)."""
    return label.decode("utf-8", "replace") if isinstance(label, (bytes, bytearray)) else str(label)


def _reply(result: Any) -> Reply:
    return Reply(result.affected_rows or 0, result.insert_id or 0, tuple(result.rows or ()))


def _readable(session: AsyncSession, timeout: float) -> bool:
    """Return whether a reply arrives on a blocking driver's connection within ``timeout``.

    Only the sync colour calls this (its ``Pending`` reads in the caller's thread). PyMySQL
    reads through a buffered file, which may already hold the reply that followed the first one;
    the socket is checked only when that buffer is empty. A closed connection counts as
    readable, so that reading it raises.
    """
    raw = session.raw
    sock, buffered = getattr(raw, "_sock", None), getattr(raw, "_rfile", None)
    if sock is None or buffered is None:
        return True
    restore = sock.gettimeout()
    sock.settimeout(0.0)  # a peek that finds the buffer empty must not wait for the socket
    try:
        if buffered.peek(1):
            return True
    except OSError:
        return True
    finally:
        sock.settimeout(restore)
    if hasattr(select, "poll"):  # unlike select(), poll takes descriptors above 1023
        poller = select.poll()
        poller.register(sock, select.POLLIN | select.POLLERR | select.POLLHUP)
        return bool(poller.poll(max(0.0, timeout) * 1000))
    readable, _, _ = select.select([sock], [], [], max(0.0, timeout))
    return bool(readable)


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


def _connection_lost(exc: BaseException) -> bool:
    """Return whether ``exc`` says the connection was gone (rather than slow or refused)."""
    cause = exc.__cause__
    if isinstance(cause, (ConnectionError, BrokenPipeError)):
        return True
    return (
        isinstance(cause, aiomysql.OperationalError) and bool(cause.args) and cause.args[0] in CONNECTION_LOST
    )
