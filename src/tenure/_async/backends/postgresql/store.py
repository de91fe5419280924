"""Advisory mode: leases as session-level advisory locks on a few shared server sessions."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any, ClassVar

from tenure._async.backends.base import Permit, Renewal, RenewOutcome
from tenure._async.backends.postgresql import permits, ratelimit, record_sql, records, sql, states
from tenure._async.backends.postgresql.common import AsyncPostgresBase
from tenure._async.backends.postgresql.connection import AsyncPgPool, AsyncPgSession
from tenure._async.backends.postgresql.lock_queue import AsyncLockQueue
from tenure._async.backends.postgresql.shared import SHARED_SESSIONS, AsyncHold, AsyncSharedSessions
from tenure._concurrency import AsyncMutex
from tenure._config import BackendConfig
from tenure._core.guarantees import Capability, Guarantee
from tenure._core.holder import HolderInfo
from tenure._core.tokens import Owner
from tenure._exceptions import BackendError, BackendProtocolError, ConfigurationError

log = logging.getLogger("tenure")

MIN_SERVER_VERSION = 140000  # idle_session_timeout
IDLE_SESSIONS = 3  # pooled sessions kept for lock waits and reads, beside the shared ones


class AsyncPostgresStore(
    AsyncLockQueue,
    records.AsyncAdvisoryRecords,
    ratelimit.AsyncPostgresCounters,
    states.AsyncPostgresStates,
    AsyncPostgresBase,
):
    """Serve leases as session-level advisory locks, held on a few sessions shared by many leases.

    **Sessions.** At most ``SHARED_SESSIONS`` per store; a blocking wait in the server's queue
    takes one of its own, which keeps the lock once granted (``lock_queue.py``). Advisory locks
    are reentrant per session, so a second claim on a key this store holds is refused locally. A
    session that dies loses every lock on it, and each lease's next renewal says so (one
    statement per session).

    **ttl on a shared session.** Its ``idle_session_timeout`` is the smallest ttl it holds, set
    again by every step on it: a silent holder loses a lock no later than its ttl. A lease whose
    renewals stop while its session lives is freed by the next renewal statement on that session
    once its row is a ttl old by the server's clock.

    **Guarantees.** FENCING: the fence is drawn from one sequence in the acquiring statement, after
    the lock was taken; after a crash, fences restart above every value drawn before it. FIFO: fair
    waiters wait in PostgreSQL's lock queue, which grants in arrival order (and a newcomer's try is
    refused while others wait). SESSION_BOUND: a hold ends with its session: a crashed holder's lock
    is freed when its connection closes, a server restart loses every lock and the next renewal says
    so. SERVER_TIME: a holder silent for its ttl loses its session to the server's
    ``idle_session_timeout``, by the server's clock. CROSS_PROCESS, CROSS_HOST. Not SURVIVES_FAILOVER.
    Records: a run is a lock (records.py); ``transaction=`` as in table mode (table.py).
    """

    description: ClassVar[str] = (
        "session advisory locks (64-bit ids) on a few shared sessions; fence from a sequence in the same "
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
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {
            Capability.QUEUEING,
            Capability.SESSIONS,
            Capability.COUNTING,
            Capability.RECORDS,
            Capability.COUNTERS,
        }
    )
    # Waits happen on the server and end the moment the lock is free, so these only bound how
    # long one wait lasts before the waiter looks again (and refreshes its deadline).
    poll_interval: ClassVar[tuple[float, float]] = (0.05, 1.0)
    # A plain lock's blocking acquire waits in the server's lock queue too, as a bare
    # pg_advisory_lock does: the server hands the lock over with the fence bumped, where a plain
    # waiter would wake on a shared lock and then need a try of its own.
    plain_waiters_queue: ClassVar[bool] = True
    tables: ClassVar[tuple[str, ...]] = (
        permits.LIMITS_TABLE,
        record_sql.RECORDS_TABLE,
        ratelimit.RATES_TABLE,
        states.STATES_TABLE,
    )
    schema: ClassVar[str] = ";\n".join(
        [sql.FENCES_SCHEMA, permits.SCHEMA, record_sql.SCHEMA, ratelimit.SCHEMA, states.SCHEMA]
    )

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        self._holds: dict[tuple[str, str], AsyncHold] = {}  # (key, owner token) -> its session
        # Keys held, or being taken, on the shared sessions: a second claim is refused here, as
        # the server would grant it again to the session that holds it.
        self._keys: set[str] = set()
        self._mutex = threading.Lock()
        self._turns = [AsyncMutex() for _ in range(permits.TURNS)]  # permit attempts, by name
        self._marks: dict[str, int] = {}  # semaphore key -> releases heard before it was found full

    def _new_pool(self) -> AsyncPgPool:
        pool = AsyncPgPool(
            self.url, self._params, self.config.common.op_timeout, IDLE_SESSIONS, size=self._pool_size
        )
        self._shared = AsyncSharedSessions(pool, SHARED_SESSIONS)
        return pool

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
    def _acquire_params(key: str, owner: Owner, ttl: float, session: AsyncPgSession) -> dict[str, Any]:
        return {
            "id": sql.lock_id(key),
            "key": key,
            "owner": owner.token,
            "label": owner.label,
            "ttl": ttl,
            "idle": session.idle(),  # read when the statement runs: what the session holds then
        }

    async def try_acquire(self, key: str, owner: Owner, ttl: float) -> int | None:
        """One attempt on a shared session; the fence, or None (at once while this store has ``key``)."""
        with self._mutex:
            if key in self._keys:
                return None
            self._keys.add(key)
        lock = sql.lock_id(key)
        try:
            session = await self._shared.pick()
        except BaseException:
            self._untake(key)
            raise
        session.hold(lock, ttl)  # counted in the session's idle limit from now on
        try:

            def params() -> dict[str, Any]:
                return self._acquire_params(key, owner, ttl, session)

            rows = await self._pool.run(session, sql.TRY_ACQUIRE, params, f"acquiring {key!r}")
            if rows and rows[0][0] is None:  # no epoch: the server crashed, nothing was taken
                await self._recover_fences(session)
                rows = await self._pool.run(session, sql.TRY_ACQUIRE, params, f"acquiring {key!r}")
        except BaseException:
            # Failed or interrupted after the lock may have been taken: a failed statement does
            # not release a session lock, closing the session does (and every lock it holds).
            self._untake(key, session)
            await self._pool.discard(session)
            raise
        if not rows or rows[0][0] is None:
            self._untake(key, session)
            if rows:  # still no epoch, just after starting one: someone removed it
                raise BackendProtocolError(f"{self.url}: no fence for {key!r}: {sql.EPOCH_TABLE} stays empty")
            return None
        self._holds[(key, owner.token)] = AsyncHold(session, ttl)
        return int(rows[0][0])

    def _untake(self, key: str, session: AsyncPgSession | None = None) -> None:
        """Forget that ``key`` is held or being taken on a shared session (``session``)."""
        if session is not None:
            session.unhold(sql.lock_id(key))
        with self._mutex:
            self._keys.discard(key)

    async def _recover_fences(self, session: AsyncPgSession) -> None:
        """Start a new fence epoch after a crash: fences restart above all drawn before it."""
        log.warning("tenure: %s restarted after a crash; fences restart %d higher", self.url, sql.FENCE_JUMP)
        await self._pool.run(
            session, sql.RECOVER_FENCES, None, "restarting the fences after a crash", rows=False
        )

    async def renew_many(self, renewals: Sequence[Renewal]) -> list[RenewOutcome]:
        return [*await self._renew_sessions(renewals)]

    async def _renew_sessions(self, renewals: Sequence[Renewal]) -> list[bool]:
        """Renew in one statement per session; a lease that session no longer holds is lost.

        A session whose statement fails is closed (its state is unknown), losing every lock on it.
        """
        outcomes = [False] * len(renewals)
        by_session: dict[AsyncPgSession, list[int]] = {}
        for index, (key, owner, _) in enumerate(renewals):
            hold = self._holds.get((key, owner.token))
            if hold is None or hold.wait is not None:
                continue
            if hold.session.broken:  # its session died earlier: so did its lock
                await self._forget(key, owner)
                continue
            by_session.setdefault(hold.session, []).append(index)
        for session, indexes in by_session.items():
            asked = [renewals[index] for index in indexes]
            for key, _, ttl in asked:
                session.hold(sql.lock_id(key), ttl)

            def params(session: AsyncPgSession = session, asked: list[Renewal] = asked) -> dict[str, Any]:
                return {
                    "ids": [sql.lock_id(key) for key, _, _ in asked],
                    "owners": [owner.token for _, owner, _ in asked],
                    "ttls": [ttl for _, _, ttl in asked],
                    "idle": session.idle(),
                }

            try:
                rows = await self._pool.run(session, sql.RENEW_MANY, params, f"renewing {len(asked)} leases")
            except BackendError as exc:
                # The session is dead, or cut for not answering in time: its locks went with it.
                log.warning(
                    "tenure: a session holding %d locks is gone (%s); they went with it",
                    len(session.holds),
                    exc,
                )
                rows = []
                await self._pool.discard(session)
            renewed = {int(row[0]) for row in rows if row[1] is True}
            swept = {int(row[0]) for row in rows if row[1] is False}
            if swept:  # leases their holder stopped renewing: their locks are free now
                stale = [
                    k for k, h in self._holds.items() if h.session is session and sql.lock_id(k[0]) in swept
                ]
                for key, token in stale:
                    self._holds.pop((key, token), None)
                    self._untake(key, session)
            for index, (key, owner, ttl) in zip(indexes, asked, strict=True):
                hold = self._holds.get((key, owner.token))
                if hold is not None and sql.lock_id(key) in renewed:
                    hold.ttl = ttl
                    outcomes[index] = True
                else:
                    await self._forget(key, owner)
        return outcomes

    async def release(self, key: str, owner: Owner) -> bool:
        hold = self._holds.pop((key, owner.token), None)
        if hold is None:
            return False
        if hold.wait is not None:  # still in line: leave it
            await self._leave(hold)
            return False
        session, lock = hold.session, sql.lock_id(key)
        session.unhold(lock)
        channel = sql.release_channel(key)  # a permit's release wakes its semaphore's waiters

        def params() -> dict[str, Any]:
            if channel is not None:
                return permits.release_params(key, channel, session)
            return {"id": lock, "idle": session.idle()}

        statement = sql.RELEASE if channel is None else permits.RELEASE
        try:
            rows = await self._pool.run(session, statement, params, f"releasing {key!r}")
        except BaseException as exc:
            # Closing the session frees the lock anyway (and any other it holds: each of those
            # leases is told at its next renewal); whether it was still held is unknown.
            await self._pool.discard(session)
            if not isinstance(exc, BackendError):
                raise
            log.warning("tenure: releasing %r failed (%s); closed its session, which frees it", key, exc)
            return False
        finally:
            if session.shared:
                self._untake(key)
        released = bool(rows) and rows[0][0] is True
        if session.shared:
            return released
        if released:
            await self._pool.checkin(session)
        else:
            await self._pool.discard(session)
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

    # -- Counting: permits are locks on slot keys, taken in one statement (permits.py) -------------

    async def try_acquire_permit(self, key: str, limit: int, owner: Owner, ttl: float) -> Permit | None:
        return await permits.try_acquire_permit(self, key, limit, owner, ttl)

    async def wait_permit_released(self, key: str, limit: int, timeout: float) -> None:
        await permits.wait_permit_released(self, key, limit, timeout)

    async def permit_holders(self, key: str, limit: int) -> list[HolderInfo]:
        return await permits.permit_holders(self, key, limit)

    async def _forget(self, key: str, owner: Owner) -> None:
        """Drop a hold whose lock is gone; close its session unless shared (it holds others)."""
        hold = self._holds.pop((key, owner.token), None)
        if hold is None:
            return
        if hold.session.shared:
            self._untake(key, hold.session)  # a dead shared session was closed when found out
        else:
            await self._pool.discard(hold.session)

    async def aclose(self) -> None:
        holds, self._holds = list(self._holds.values()), {}
        with self._mutex:
            self._keys.clear()
        for hold in holds:
            if hold.wait is not None:  # stop the lock waits before their connections close
                hold.session.abort()
                await hold.wait.wait(self.config.common.op_timeout)
                hold.wait.abandon()
        await super().aclose()  # closing the sessions frees every lock still held
