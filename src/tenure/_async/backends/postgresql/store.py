r"""The ``postgresql://`` backend: session-level advisory locks (default) or a lease table.

URL: ``postgresql://user[:password]@host[:port]/dbname[?mode=advisory|table]`` plus the common
options (``namespace``, ``connect_timeout``, ``op_timeout``). psycopg 3, autocommit.

**Advisory mode** (``mode=advisory``, the default). A lock is ``pg_try_advisory_lock`` on a
64-bit id hashed from the namespaced name (``tenure._core.keys.key_hash64``; tooz's 16-bit ids
collide). A session lock belongs to a connection, and a server-side wait blocks its connection,
so every *hold* (an owner holding, or waiting for, one key) gets its own connection from a small
pool, checked out at the attempt and given back at release, or closed whenever its state is in
doubt: closing a session frees whatever it held, which is always safe. That is our reading of
DESIGN's "dedicated connection per coordinator": a coordinator holding one lock uses one
dedicated connection, and two locks of one coordinator on the same name exclude each other
because they are different sessions.

One round trip acquires: a statement takes the lock and, only if it got it, draws the fence from
a sequence (``tenure_fence_seq``) and records the owner, label, ttl and server session in an
unlogged table (``tenure_lock_holders``; both created on first use); release is one round trip
too. Neither waits for a WAL flush: the sequence logs ahead, once per 32 values, and the holder
row is not logged. A crash (which frees every lock anyway) empties the unlogged tables; the
first acquisition after it moves the sequence far past every value it could have handed out
before the crash (``sql.FENCE_JUMP``), so fences keep growing across crashes.
``holder()`` trusts a row only while ``pg_locks`` shows its session holding the lock, so a
crashed holder's row reads as free.

*What ttl means here.* The server frees a session lock when the session ends, and nothing else
expires it. The acquisition sets the session's ``idle_session_timeout`` to the ttl, so a holder
that stays silent for ttl (frozen, partitioned, its renewals stuck) has its session ended by the
server, by the server's clock, and its lock freed. A renewal (at ttl/3) is the probe: one round
trip on the hold's own connection that proves with ``pg_locks`` that this session still holds
the lock, and restarts the idle limit for the new ttl. A dead connection or a restarted server
fails it, and the renewal reports the lease lost at once (a session lock cannot outlive its
session): the holder is told within a renewal period, never only at release. A holder that
crashes is freed at once (the server sees its connection close). PostgreSQL 14 or later.

*Waiting.* ``fair=True`` waits on the server: after one refused try, the owner's connection
sends a blocking ``pg_advisory_lock`` statement without waiting for its reply. It stays in
PostgreSQL's lock queue, which grants in arrival order (FIFO; a newcomer's try is refused while
others wait), across as many ``wait_turn`` calls as the caller makes, each reading the reply for
at most its timeout; the fence is bumped in that statement when it is granted. No thread or
task waits for it. Leaving the line (timeout, cancellation) closes that connection and ends its
server session, so a grant that raced the departure is freed too. Plain waiters wait on the
server too, between attempts: each wait queues for a *shared* lock on the key, bounded by its
own ``lock_timeout``, and drops it as soon as it is granted, then tries again. The server grants
it the moment the lock is free, whether its holder released it or its session ended (a crash,
the idle limit): a departure that no NOTIFY could announce. So releases send no NOTIFY (which
would cost every release a transaction id and a commit).

*Timeouts.* Every call is bounded on the client side (see ``postgresql_session``) by
``op_timeout``, a lock wait by its own timeout plus ``op_timeout``, so a frozen server gives
``BackendTimeout``; connecting is bounded by ``connect_timeout``, in whole seconds and at least
2 (libpq's rule).

*Departures from the shared design*, for the reasons given above: plain waiters wait in the
server's lock queue (shared locks) instead of LISTEN/NOTIFY, and advisory releases send no
NOTIFY; table mode keeps LISTEN/NOTIFY.

*Proxies.* A transaction-pooling proxy (PgBouncer ``pool_mode=transaction``) moves a client's
statements between server sessions, which silently breaks session locks. Connecting marks each
server session and refuses with ``ConfigurationError`` when two of our connections turn out to
share one, or one connection's mark does not survive into its next transaction.

**Table mode** (``mode=table``): the SQLite backend's lease table on the server (unique key,
owner token, label, fence, ``expires_at`` by the server's clock), one atomic statement per step,
rows never deleted so fences never repeat. True TTL expiry, no session affinity: it works through
any pooler. A release NOTIFYs the waiters (one LISTENing connection per store); an expiry is
noticed by polling.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from tenure._async.backends.base import AsyncChangeFeed, AsyncLeaseStore
from tenure._async.backends.postgresql_session import AsyncPgListener, AsyncPgPool, AsyncPgSession, Row
from tenure._config import BackendConfig
from tenure._core import postgres_sql as sql
from tenure._core.expiry import HolderExpiries
from tenure._core.guarantees import Capability, Guarantee
from tenure._core.holder import HolderInfo
from tenure._core.tokens import Owner
from tenure._exceptions import BackendError, BackendProtocolError, ConfigurationError

log = logging.getLogger("tenure")

MIN_SERVER_VERSION = 140000  # idle_session_timeout


class AsyncPostgresBase(AsyncLeaseStore):
    """What both modes share: the pool of sessions and the table's creation."""

    scheme: ClassVar[str] = "postgresql"
    table: ClassVar[str]
    schema: ClassVar[str]

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        self._params = sql.connect_params(config)  # raises ConfigurationError, no I/O
        self._pool = self._new_pool()
        # One LISTENing session, started by the first wait on it: table mode's releases and
        # election changes (``announce``) arrive there.
        self._listener = AsyncPgListener(self._pool)
        self._connected = False

    def _new_pool(self) -> AsyncPgPool:
        return AsyncPgPool(self.url, self._params, self.config.common.op_timeout)

    async def connect(self) -> None:
        if self._connected:
            return
        self._pool.start()
        try:
            session = await self._pool.checkout()
            try:
                await self._prepare(session)
            except BaseException:
                await self._pool.discard(session)
                raise
            await self._pool.checkin(session)
        except BaseException:
            await self._pool.aclose()  # stop the watchdog; a later connect starts afresh
            self._pool = self._new_pool()
            self._listener = AsyncPgListener(self._pool)
            raise
        self._connected = True

    async def _prepare(self, session: AsyncPgSession) -> None:
        """Create the table if it is missing (one read when it exists)."""
        rows = await self._pool.run(session, sql.TABLE_EXISTS, {"table": self.table}, "looking for the table")
        if not rows[0][0]:
            # CREATE TABLE IF NOT EXISTS can still fail on the catalog's unique index when two
            # clients race to create it, so creators take turns on a transaction-scoped lock.
            create_lock = sql.lock_id(f"tenure:create:{self.table}")
            script = f"BEGIN; SELECT pg_advisory_xact_lock({create_lock}); {self.schema}; COMMIT"
            await self._pool.run(session, script, None, f"creating the table {self.table}")

    async def _call(self, statement: str, params: dict[str, Any], what: str) -> list[Row]:
        """Run one statement on a pooled session."""
        session = await self._pool.checkout()
        try:
            rows = await self._pool.run(session, statement, params, what)
        except BaseException:
            await self._pool.discard(session)
            raise
        await self._pool.checkin(session)
        return rows

    async def announce(self, key: str) -> None:
        # Lock statements send no NOTIFY (it would cost every release a commit); an election's
        # campaign and resignation announce themselves with one.
        await self._call(sql.ANNOUNCE, {"payload": str(sql.lock_id(key))}, "announcing a change")

    async def watch(self, key: str) -> AsyncChangeFeed:
        await self._listener.listening(self.config.common.op_timeout)  # else a change may be missed
        return AsyncPostgresFeed(self._listener, sql.lock_id(key))

    async def aclose(self) -> None:
        await self._listener.aclose()
        await self._pool.aclose()


class AsyncPostgresFeed(AsyncChangeFeed):
    """Wake an observer on a NOTIFY about its lock (a release in table mode, an announcement)."""

    def __init__(self, listener: AsyncPgListener, lock: int) -> None:
        super().__init__(0.0)
        self._listener, self._lock = listener, lock
        self._mark = listener.mark(lock)

    async def wait(self, timeout: float) -> None:
        # A listener that reconnects wakes every waiter: what it missed, the observer reads.
        await self._listener.wait(self._lock, self._mark, max(0.0, timeout))
        self._mark = self._listener.mark(self._lock)


class _Hold:
    """One owner's claim on one key in advisory mode: its own session, maybe still in line."""

    __slots__ = ("session", "ttl", "waiting")

    def __init__(self, session: AsyncPgSession, ttl: float, *, waiting: bool = False) -> None:
        self.session = session
        self.ttl = ttl
        self.waiting = waiting  # a lock wait was sent on the session and its reply not read yet


class AsyncPostgresStore(AsyncPostgresBase):
    """Serve leases as session-level advisory locks, one server session per hold.

    **Guarantees.** FENCING: the fence is drawn from one sequence in the acquiring statement, after
    the lock was taken; after a crash, fences restart above every value drawn before it. FIFO: fair
    waiters wait in PostgreSQL's lock queue, which grants in arrival order (and a newcomer's try is
    refused while others wait). SESSION_BOUND: a hold ends with its session: a crashed holder's lock
    is freed when its connection closes, a server restart loses every lock and the next renewal says
    so. SERVER_TIME: a holder silent for its ttl loses its session to the server's
    ``idle_session_timeout``, by the server's clock. CROSS_PROCESS, CROSS_HOST. Not
    SURVIVES_FAILOVER: locks live in one server's memory.
    """

    description: ClassVar[str] = (
        "session advisory locks (64-bit ids), a connection per hold; fence from a sequence in the same "
        "statement; a session silent for ttl is ended by the server; waiters queue on the server"
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
    # Waits happen on the server and end the moment the lock is free, so these only bound how
    # long one wait lasts before the waiter looks again (and refreshes its deadline).
    poll_interval: ClassVar[tuple[float, float]] = (0.05, 1.0)
    # A plain lock's blocking acquire waits in the server's lock queue too, as a bare
    # pg_advisory_lock does: the server hands the lock over with the fence bumped, where a plain
    # waiter would wake on a shared lock and then need a try of its own.
    plain_waiters_queue: ClassVar[bool] = True
    table: ClassVar[str] = sql.HOLDERS_TABLE
    schema: ClassVar[str] = sql.FENCES_SCHEMA

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        self._holds: dict[tuple[str, str], _Hold] = {}  # (key, owner token) -> its session

    async def _prepare(self, session: AsyncPgSession) -> None:
        if self._pool.server_version < MIN_SERVER_VERSION:
            raise ConfigurationError(
                f"{self.url}: advisory mode needs PostgreSQL 14 or later (idle_session_timeout ends "
                f"a silent holder's session); this server is {self._pool.server_version}: use mode=table"
            )
        # A second connection at once: behind a transaction-pooling proxy it lands on the same
        # server session (its setup sees the first one's mark), and the first one's mark is gone.
        other = await self._pool.open_session()
        try:
            await self._pool.probe(session)
        finally:
            await self._pool.checkin(other)
        await super()._prepare(session)

    @staticmethod
    def _acquire_params(key: str, lock: int, owner: Owner, ttl: float) -> dict[str, Any]:
        return {
            "id": lock,
            "key": key,
            "owner": owner.token,
            "label": owner.label,
            "ttl": ttl,
            "idle": sql.milliseconds(ttl),
        }

    async def _try(self, key: str, owner: Owner, ttl: float) -> tuple[AsyncPgSession, int | None]:
        """One attempt on a session of its own; return the session and the fence, or None."""
        lock = sql.lock_id(key)
        session = await self._pool.checkout()
        try:
            params = self._acquire_params(key, lock, owner, ttl)
            rows = await self._pool.exchange(session, sql.TRY, params, f"acquiring {key!r}")
            if rows and rows[0][0] is None:  # no epoch: the server crashed, nothing was taken
                await self._recover_fences(session)
                rows = await self._pool.exchange(session, sql.TRY, params, f"acquiring {key!r}")
        except BaseException:
            # Failed or interrupted after the lock may have been taken: a failed statement does
            # not release a session lock, closing the session does.
            await self._pool.discard(session)
            raise
        if not rows:
            return session, None
        if rows[0][0] is None:  # still no epoch, just after starting one: someone removed it
            await self._pool.checkin(session)
            raise BackendProtocolError(f"{self.url}: no fence for {key!r}: {sql.EPOCH_TABLE} stays empty")
        self._holds[(key, owner.token)] = _Hold(session, ttl)
        return session, int(rows[0][0])

    async def _recover_fences(self, session: AsyncPgSession) -> None:
        """Start a new fence epoch after a crash: fences restart above all drawn before it."""
        log.warning("tenure: %s restarted after a crash; fences restart %d higher", self.url, sql.FENCE_JUMP)
        await self._pool.run(session, sql.RECOVER_FENCES, None, "restarting the fences after a crash")

    async def try_acquire(self, key: str, owner: Owner, ttl: float) -> int | None:
        session, fence = await self._try(key, owner, ttl)
        if fence is None:
            await self._pool.checkin(session)
        return fence

    async def renew(self, key: str, owner: Owner, ttl: float) -> bool:
        hold = self._holds.get((key, owner.token))
        if hold is None or hold.waiting:
            return False
        lock = sql.lock_id(key)
        classid, objid = sql.lock_halves(lock)
        params = {
            "id": lock,
            "owner": owner.token,
            "ttl": ttl,
            "idle": sql.milliseconds(ttl),
            "classid": classid,
            "objid": objid,
        }
        try:
            rows = await self._pool.run(hold.session, sql.RENEW, params, f"renewing {key!r}")
        except BackendError as exc:
            # The session is dead, or cut for not answering in time: its lock is gone with it.
            log.warning("tenure: the session holding %r is gone (%s); the lock went with it", key, exc)
            rows = []
        if not rows:
            await self._forget(key, owner)
            return False
        hold.ttl = ttl
        return True

    async def release(self, key: str, owner: Owner) -> bool:
        hold = self._holds.pop((key, owner.token), None)
        if hold is None:
            return False
        if hold.waiting:  # still in line: leave it
            await self._leave(hold)
            return False
        lock = sql.lock_id(key)
        try:
            rows = await self._pool.exchange(hold.session, sql.UNLOCK, {"id": lock}, f"releasing {key!r}")
        except BackendError as exc:
            # Closing the session frees the lock anyway; whether it was still held is unknown.
            log.warning("tenure: releasing %r failed (%s); closed its session, which frees it", key, exc)
            await self._pool.discard(hold.session)
            return False
        released = bool(rows) and rows[0][0] == b"t"  # text: 't' or 'f'
        if released:
            await self._pool.checkin(hold.session)
        else:
            await self._pool.discard(hold.session)
        return released

    async def holder(self, key: str) -> HolderInfo | None:
        lock = sql.lock_id(key)
        classid, objid = sql.lock_halves(lock)
        rows = await self._call(
            sql.HOLDER, {"id": lock, "classid": classid, "objid": objid}, f"reading {key!r}"
        )
        if not rows:
            return None
        label, fence, remaining = rows[0]
        return HolderInfo(str(label), int(fence), max(0.0, float(remaining)))

    async def wait_released(self, key: str, timeout: float) -> None:
        if timeout < 0.001:
            return
        session = await self._pool.checkout()
        params = {"id": sql.lock_id(key), "timeout": sql.milliseconds(timeout)}
        try:
            await self._pool.run(session, sql.WAIT_RELEASED, params, f"waiting for {key!r}", waits=timeout)
        except BaseException:
            await self._pool.discard(session)  # interrupted: a shared lock may be left on it
            raise
        await self._pool.checkin(session)

    # -- fair=True: the server's lock queue ------------------------------------------------------

    async def try_acquire_queued(
        self, key: str, owner: Owner, ttl: float, *, patience: float, will_wait: bool = True
    ) -> int | None:
        # ``patience`` is not needed: a waiter that died leaves the line with its session.
        hold = self._holds.get((key, owner.token))
        if hold is not None and hold.waiting:
            if not self._pool.reply_ready(hold.session):
                return None  # still in line
            return await self._granted(key, owner, hold, self.config.common.op_timeout, early=True)
        if will_wait:
            # Join the server's line at once: its wait ends at once when the lock is free, so a
            # try first would cost every contended acquisition one statement more.
            session = await self._pool.checkout()
        else:
            session, fence = await self._try(key, owner, ttl)
            if fence is not None:
                return fence
        # The wait is sent and stays queued on the server across the caller's waits; its reply
        # is the fence.
        hold = _Hold(session, ttl, waiting=True)
        self._holds[(key, owner.token)] = hold
        params = self._acquire_params(key, sql.lock_id(key), owner, ttl)
        await self._pool.send(session, sql.WAIT, params, f"queueing for {key!r}")
        return None

    async def wait_turn(self, key: str, owner: Owner, timeout: float) -> int | None:
        hold = self._holds.get((key, owner.token))
        if hold is None or not hold.waiting:
            return None
        early = self._pool.reply_ready(hold.session)
        return await self._granted(
            key, owner, hold, self.config.common.op_timeout if early else timeout, early=early
        )

    async def leave_queue(self, key: str, owner: Owner) -> None:
        hold = self._holds.pop((key, owner.token), None)
        if hold is not None:
            await self._leave(hold)

    async def _granted(
        self, key: str, owner: Owner, hold: _Hold, timeout: float, *, early: bool
    ) -> int | None:
        """Read the lock wait's reply within ``timeout``: the fence, or None while in line.

        ``early``: the reply had come before this call began, while nobody was reading. The
        caller counts the lease from this call, so the idle-session limit restarts now too.
        """
        try:
            rows = await self._pool.receive(hold.session, timeout, f"waiting for {key!r}")
        except BaseException:
            self._holds.pop((key, owner.token), None)
            await self._leave(hold)
            raise
        if rows is None:
            return None
        if rows and rows[0][0] is None:  # no epoch (a crash): nothing taken; recover, queue again
            try:
                await self._recover_fences(hold.session)
                params = self._acquire_params(key, sql.lock_id(key), owner, hold.ttl)
                await self._pool.send(hold.session, sql.WAIT, params, f"queueing for {key!r}")
            except BaseException:
                self._holds.pop((key, owner.token), None)
                await self._leave(hold)
                raise
            return None
        hold.waiting = False
        if not rows:
            await self._forget(key, owner)
            raise BackendProtocolError(f"{self.url}: the wait for {key!r} ended without a fence")
        if early:
            try:
                await self._pool.run(
                    hold.session, sql.REFRESH, {"idle": sql.milliseconds(hold.ttl)}, "refreshing"
                )
            except BackendError:
                await self._forget(key, owner)
                return None
        return int(rows[0][0])

    async def _leave(self, hold: _Hold) -> None:
        """Leave the line: end the session, which frees a grant that raced the departure too."""
        session = hold.session
        session.abort()
        await self._pool.discard(session)
        if hold.waiting and session.pid:
            # The server would notice the closed connection at its next check (1 s); end the
            # session now so that it leaves the lock queue at once.
            try:
                await self._call(sql.TERMINATE, {"pid": session.pid}, "ending a waiting session")
            except BackendError as exc:
                log.debug("tenure: ending waiting session %d failed: %s", session.pid, exc)

    async def _forget(self, key: str, owner: Owner) -> None:
        """Drop a hold whose session is gone or in doubt, closing that session."""
        hold = self._holds.pop((key, owner.token), None)
        if hold is not None:
            await self._pool.discard(hold.session)

    async def aclose(self) -> None:
        self._holds.clear()
        await super().aclose()  # closing the sessions frees every lock still held


class AsyncPostgresTableStore(AsyncPostgresBase):
    """Serve leases from a lease table on the server; expiry by the server's clock.

    **Guarantees.** FENCING: rows are never deleted and every acquisition bumps the fence in the
    same statement. SERVER_TIME: ``expires_at`` is set and compared with the server's
    ``clock_timestamp()``. CROSS_PROCESS, CROSS_HOST. Not SESSION_BOUND: a lease outlives its
    connection until its ttl runs out, which is the point of this mode. No FIFO queue.
    """

    description: ClassVar[str] = (
        "lease table, expiry by the server's clock, one statement per step; NOTIFY wake-ups; "
        "works through any pooler"
    )
    guarantees: ClassVar[frozenset[Guarantee]] = frozenset(
        {Guarantee.FENCING, Guarantee.SERVER_TIME, Guarantee.CROSS_PROCESS, Guarantee.CROSS_HOST}
    )
    # A release NOTIFYs; an expiry does not, so waiters also look again within 0.5 s.
    poll_interval: ClassVar[tuple[float, float]] = (0.02, 0.5)
    table: ClassVar[str] = sql.LEASES_TABLE
    schema: ClassVar[str] = sql.LEASES_SCHEMA

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        self._marks: dict[str, int] = {}  # key -> releases heard before its last refused attempt
        self._expiries = HolderExpiries()  # an expiry sends no NOTIFY: waiters wake then

    async def wait_released(self, key: str, timeout: float) -> None:
        lock = sql.lock_id(key)
        mark = self._marks.pop(key, None)
        timeout = self._expiries.cap(key, timeout)
        await self._listener.wait(lock, self._listener.mark(lock) if mark is None else mark, timeout)

    async def try_acquire(self, key: str, owner: Owner, ttl: float) -> int | None:
        mark = self._listener.mark(sql.lock_id(key))
        params = {"key": key, "owner": owner.token, "label": owner.label, "ttl": ttl}
        rows = await self._call(sql.TABLE_ACQUIRE, params, f"acquiring {key!r}")
        if not rows or rows[0][0] is None:
            # Remember the releases heard before this refusal, and when the holder's lease ends,
            # for the wait that follows.
            if len(self._marks) >= 4096:  # waiters that gave up leave entries behind; stay bounded
                self._marks.clear()
            self._marks[key] = min(mark, self._marks.get(key, mark))
            if rows and rows[0][1] is not None:
                self._expiries.saw(key, float(rows[0][1]))
            return None
        self._expiries.forget(key)
        return int(rows[0][0])

    async def renew(self, key: str, owner: Owner, ttl: float) -> bool:
        rows = await self._call(
            sql.TABLE_RENEW, {"key": key, "owner": owner.token, "ttl": ttl}, f"renewing {key!r}"
        )
        return bool(rows)

    async def release(self, key: str, owner: Owner) -> bool:
        params = {"key": key, "owner": owner.token, "payload": str(sql.lock_id(key))}
        return bool(await self._call(sql.TABLE_RELEASE, params, f"releasing {key!r}"))

    async def holder(self, key: str) -> HolderInfo | None:
        rows = await self._call(sql.TABLE_HOLDER, {"key": key}, f"reading {key!r}")
        if not rows:
            return None
        label, fence, remaining = rows[0]
        return HolderInfo(str(label), int(fence), max(0.0, float(remaining)))
