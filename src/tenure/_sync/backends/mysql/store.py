# GENERATED from src/tenure/_async/backends/mysql/store.py by scripts/unasync.py: do not edit; edit the source and re-run.
"""Advisory mode (the default): MariaDB user locks, ``GET_LOCK``, on a few shared sessions."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import ClassVar, TypeVar

from tenure._sync.backends.base import LeaseStore, Renewal, RenewOutcome
from tenure._sync.backends.mysql import permit_sql, sql
from tenure._sync.backends.mysql.connection import (
    IDLE_MARGIN,
    MySQLPool,
    Session,
    connection_lost,
)
from tenure._sync.backends.mysql.holds import Hold, HoldSteps
from tenure._sync.backends.mysql.permits import MySQLPermits
from tenure._sync.backends.mysql.rates import MySQLRates
from tenure._sync.backends.mysql.records import MySQLRecords
from tenure._sync.backends.mysql.states import MySQLStates
from tenure._concurrency import Mutex, Returning
from tenure._config import BackendConfig
from tenure._core.guarantees import Capability, Guarantee
from tenure._core.holder import HolderInfo
from tenure._core.tokens import Owner
from tenure._exceptions import BackendError, BackendProtocolError, BackendUnavailable

SHARED = 4  # sessions per idle limit that hold the locks taken without waiting
MAX_SHARED = 8  # past this many shared sessions, an idle limit new to the store gets only one
T = TypeVar("T")


class MySQLStore(
    HoldSteps, MySQLRecords, MySQLPermits, MySQLRates, MySQLStates, LeaseStore
):
    """Serve leases as MariaDB user locks (GET_LOCK) on a few sessions shared by many holds.

    **Sessions.** A lock taken without waiting is held on one of a few shared sessions: up to
    ``SHARED`` per idle limit ``ceil(ttl)`` (fewer once the store has ``MAX_SHARED``), picked
    in turn, so 1,000 held locks need a handful of connections and a new name none of its own.
    Keying sessions by ``ceil(ttl)`` keeps each session's ``wait_timeout`` that of every lease
    on it: a lease never ends earlier than its ttl says, nor later. Locks on one session stay
    independent (RELEASE_LOCK frees one name). GET_LOCK is reentrant within a session, so the
    store refuses a name its session already holds without asking the server; two stores (or a
    name on two sessions) are kept apart by the server. Only a blocking wait in the server's
    line takes a session of its own, and keeps the lock on it once handed it. When a session
    dies (a failed or timed-out call closes it, or the server ends it), every lease on it is
    lost at once: the next renewal of each reports False.

    **Renewal.** ``renew_many`` renews all due holds of one session in one round trip (an
    UPDATE per distinct ttl and a SELECT of the names the session still holds; ``holds.py``).

    **Semaphores** (``permits.py``): a permit is a lock on a slot's key, taken on a shared
    session in one round trip that checks the name's recorded limit under a guard lock.

    **Guarantees.** FENCING: fences come from one server-wide SEQUENCE, drawn in the acquiring
    statement after the lock was taken; after a restart (a crash included) the sequence jumps
    past every value it may have handed out. FIFO: waiters block in the server's lock queue,
    which serves them in arrival order. SESSION_BOUND: a lock ends with its session, which the
    server ends after ``ceil(ttl)`` seconds of silence (wait_timeout, the same for every lease on
    the session); a restart or a dead connection loses it and the next renewal reports the loss.
    SERVER_TIME: a silent holder's hold ends by the server's clock (the session's idle limit),
    so a frozen holder cannot keep it by its own. CROSS_PROCESS, CROSS_HOST: clients reach the
    server over TCP. Not SURVIVES_FAILOVER: user locks are not replicated.
    """

    scheme: ClassVar[str] = "mysql"
    description: ClassVar[str] = (
        "GET_LOCK on a few shared sessions (name = digest, <= 64 chars); fence from a SEQUENCE "
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
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {
            Capability.QUEUEING,
            Capability.SESSIONS,
            Capability.COUNTING,
            Capability.RECORDS,
            Capability.COUNTERS,
        }
    )
    # Waits end on the server when the holder lets go; the slices only bound each statement.
    poll_interval: ClassVar[tuple[float, float]] = (0.05, 1.0)
    # The server's line wakes one waiter per release, where retries would wake a herd.
    plain_waiters_queue: ClassVar[bool] = True

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        self._pool = MySQLPool(config, self.url)
        self._holds: dict[tuple[str, str], Hold] = {}
        self._shared: dict[int, list[Session]] = {}  # idle limit -> its shared sessions
        self._picking = Mutex()
        self._turn = 0
        self._ready = False

    def connect(self) -> None:
        if self._ready:
            return
        session = self._pool.open()
        try:
            version = self._pool.execute(session, "SELECT VERSION()", {})
            if "mariadb" not in str(version.rows[0][0]).lower():
                raise BackendProtocolError(
                    f"{self.url} is not MariaDB ({version.rows[0][0]}): advisory mode draws fences "
                    "from a SEQUENCE (MariaDB >= 10.3); use ?mode=table on MySQL"
                )
            self._pool.execute(session, sql.QUIET_NOTES, {})  # "already exists" is no news
            creates = (sql.CREATE_SEQUENCE, sql.CREATE_HOLDERS, sql.CREATE_EPOCH, sql.CREATE_EPOCHS)
            for statement in (*creates, permit_sql.CREATE_SEMAPHORES):
                self._pool.execute(session, statement, {})
            self._pool.execute(session, sql.FENCE_EPOCH, {})
            self._start_records(session)
            self._start_rates(session)
            self._start_states(session)
        except BackendError:
            self._pool.discard(session)
            raise
        self._pool.setup = sql.FENCE_EPOCH  # after a restart, fences restart higher
        self._pool.checkin(session)
        self._ready = True

    def try_acquire(self, key: str, owner: Owner, ttl: float) -> int | None:
        return (self._acquire(key, owner, ttl))[0]

    def renew_many(self, renewals: Sequence[Renewal]) -> list[RenewOutcome]:
        return list(self._renew_batch(renewals))

    def release(self, key: str, owner: Owner) -> bool:
        try:
            return self._end(key, owner, sql.RELEASE, {})
        except BackendError:
            return False  # the connection is closed: its session, and the lock, end with it

    def holder(self, key: str) -> HolderInfo | None:
        reply = self._pool.call(sql.HOLDER, {"name": sql.lock_name(key)})
        if not reply.rows:
            return None
        label, fence, remaining = reply.rows[0]
        return HolderInfo(sql.label_text(label), int(fence), max(0.0, float(remaining)))

    def wait_released(self, key: str, timeout: float) -> None:
        # Only a hint: wait in the server's line and give the lock back at once if granted.
        if timeout <= 0:
            return
        params = {"name": sql.lock_name(key), "wait": round(timeout, 3)}
        session, _ = self._pool.run(sql.WAIT_RELEASED, params, wait=timeout)
        self._pool.checkin(session)

    def try_acquire_queued(
        self, key: str, owner: Owner, ttl: float, *, patience: float, will_wait: bool = True
    ) -> int | None:
        # ``patience`` is not needed: a waiter that dies leaves the server's queue with its session.
        hold = self._holds.get((key, owner.token))
        if hold is not None:
            if hold.pending is not None and hold.pending.done():
                return self._take_turn(key, owner, hold)
            return None
        # A free lock is taken at once. A held one has nobody in line or is handed straight to
        # the first in line on release, so this attempt never passes anyone who waits.
        fence, session = self._acquire(key, owner, ttl, to_wait=will_wait)
        if fence is not None or not will_wait:
            return fence
        # The wait blocks its session on the server: it gets one of its own.
        if session is None:
            session = self._pool.checkout()
        hold = Hold(session, sql.lock_name(key), ttl, held=False, shared=False)
        self._holds[(key, owner.token)] = hold
        self._line_up(hold, owner)
        return None

    def wait_turn(self, key: str, owner: Owner, timeout: float) -> int | None:
        hold = self._holds.get((key, owner.token))
        if hold is None or hold.pending is None:
            return None
        if not hold.pending.wait(timeout):
            return None
        return self._take_turn(key, owner, hold)

    def leave_queue(self, key: str, owner: Owner) -> None:
        hold = self._holds.pop((key, owner.token), None)
        if hold is not None:
            self._abandon(hold)

    def close(self) -> None:
        holds = list(self._holds.values())
        self._holds.clear()
        for hold in holds:
            if not hold.shared:
                self._abandon(hold)
        with self._picking:
            for sessions in self._shared.values():
                for session in sessions:
                    self._pool.discard(session)
            self._shared.clear()
        self._pool.close()

    # -- internals -------------------------------------------------------------------------------

    def _acquire(
        self, key: str, owner: Owner, ttl: float, *, to_wait: bool = False
    ) -> tuple[int | None, Session | None]:
        """Take the lock on a shared session without waiting; return the fence, else None.

        With ``to_wait``, a miss also returns a session to wait on: the one just used if it
        holds nothing and nobody else picked it (a new coordinator's, say), else None.
        """
        name = sql.lock_name(key)
        limit = sql.idle_limit(ttl)

        def step(session: Session) -> tuple[int | None, Session | None]:
            if name in session.names:
                return None, None  # held here on this very session: GET_LOCK would re-enter
            reply = self._pool.execute(
                session, sql.ACQUIRE, {"name": name, **sql.holder_params(owner, ttl)}, idle=limit
            )
            if reply.rowcount == 0:
                return None, (self._detach(session, limit) if to_wait else None)
            self._keep(session, key, owner, name, ttl)
            return reply.inserted, None

        return self._on_shared(ttl, step)

    def _on_shared(self, ttl: float, step: Returning[T]) -> T:
        """Return ``step(session)``, run under the mutex of a shared session for holds of ``ttl``."""
        limit = sql.idle_limit(ttl)
        for attempt in range(2):
            session = self._shared_session(limit)
            try:
                with session.mutex:
                    return step(session)
            except BackendUnavailable as exc:
                # A session the server ended (idle, restarted): what the statement did died with
                # it, so try once more on a fresh one.
                if attempt or not connection_lost(exc):
                    raise
            finally:
                with self._picking:  # threads pick sessions in the sync twin
                    session.users -= 1
        raise AssertionError("unreachable")  # pragma: no cover

    def _keep(self, session: Session, key: str, owner: Owner, name: str, ttl: float) -> None:
        """Record that ``owner`` holds ``key`` (lock ``name``) on shared ``session``, under its mutex."""
        session.names.add(name)
        self._holds[(key, owner.token)] = Hold(session, name, ttl, held=True, shared=True)

    def _shared_session(self, limit: int) -> Session:
        """Return the next shared session for holds of idle limit ``limit``, opening one if due.

        The caller gives it back by decrementing its ``users``.
        """
        with self._picking:
            now = time.monotonic()
            sessions = []
            for session in self._shared.get(limit, ()):
                fresh = now - session.last_used < session.idle_limit - IDLE_MARGIN
                if session.alive and (session.names or session.users or fresh):
                    sessions.append(session)
                else:
                    self._pool.discard(session)  # dead, or unused and about to be ended
            self._shared[limit] = sessions
            self._turn += 1
            index = self._turn % SHARED
            if index < len(sessions):
                session = sessions[index]
            elif not sessions or sum(map(len, self._shared.values())) < MAX_SHARED:
                session = self._pool.checkout()  # an idle pooled one holds nothing
                sessions.append(session)
            else:
                session = sessions[index % len(sessions)]
            session.users += 1
            return session

    def _detach(self, session: Session, limit: int) -> Session | None:
        """Take ``session`` out of the shared ones if it holds nothing and only the caller uses it."""
        with self._picking:
            sessions = self._shared.get(limit, [])
            if session.names or session.users != 1 or session not in sessions:
                return None
            sessions.remove(session)
            return session

    def _line_up(self, hold: Hold, owner: Owner) -> None:
        """Start waiting in the server's line on the hold's session; ``wait_turn`` collects it."""
        params = {"name": hold.name, **sql.holder_params(owner, hold.ttl), "wait": sql.LONGEST_SERVER_WAIT}
        hold.pending = self._pool.start(
            hold.session, sql.WAIT_TURN, params, idle=sql.idle_limit(hold.ttl), wait=sql.LONGEST_SERVER_WAIT
        )

    def _take_turn(self, key: str, owner: Owner, hold: Hold) -> int | None:
        """Collect a finished wait: the fence if the lock was granted, else line up again."""
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
        self._line_up(hold, owner)  # the server's wait ran out (an hour)
        return None
