# GENERATED from src/tenure/_async/backends/postgresql/store.py by scripts/unasync.py: do not edit; edit the source and re-run.
"""Advisory mode: leases as session-level advisory locks, one server session per hold."""

from __future__ import annotations

import logging
import math
from typing import Any, ClassVar

from tenure._sync.backends.postgresql import sql
from tenure._sync.backends.postgresql.common import PostgresBase
from tenure._sync.backends.postgresql.connection import PgSession, Row
from tenure._concurrency import InFlight
from tenure._config import BackendConfig
from tenure._core.guarantees import Capability, Guarantee
from tenure._core.holder import HolderInfo
from tenure._core.tokens import Owner
from tenure._exceptions import BackendError, BackendProtocolError, ConfigurationError

log = logging.getLogger("tenure")

MIN_SERVER_VERSION = 140000  # idle_session_timeout


class _Hold:
    """One owner's claim on one key: its own session, and its lock wait while still in line."""

    __slots__ = ("session", "ttl", "wait")

    def __init__(
        self, session: PgSession, ttl: float, wait: InFlight[list[Row]] | None = None
    ) -> None:
        self.session = session
        self.ttl = ttl
        self.wait = wait  # a pg_advisory_lock statement still running: in the server's line


class PostgresStore(PostgresBase):
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

    def _prepare(self, session: PgSession) -> None:
        if self._pool.server_version < MIN_SERVER_VERSION:
            raise ConfigurationError(
                f"{self.url}: advisory mode needs PostgreSQL 14 or later (idle_session_timeout ends "
                f"a silent holder's session); this server is {self._pool.server_version}: use mode=table"
            )
        # A second connection at once: behind a transaction-pooling proxy it lands on the same
        # server session (its setup sees the first one's mark), and the first one's mark is gone.
        other = self._pool.open_session()
        try:
            self._pool.probe(session)
        finally:
            self._pool.checkin(other)
        super()._prepare(session)

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

    def _try(self, key: str, owner: Owner, ttl: float) -> tuple[PgSession, int | None]:
        """One attempt on a session of its own; return the session and the fence, or None."""
        session = self._pool.checkout()
        try:
            params = self._acquire_params(key, sql.lock_id(key), owner, ttl)
            rows = self._pool.run(session, sql.TRY_ACQUIRE, params, f"acquiring {key!r}")
            if rows and rows[0][0] is None:  # no epoch: the server crashed, nothing was taken
                self._recover_fences(session)
                rows = self._pool.run(session, sql.TRY_ACQUIRE, params, f"acquiring {key!r}")
        except BaseException:
            # Failed or interrupted after the lock may have been taken: a failed statement does
            # not release a session lock, closing the session does.
            self._pool.discard(session)
            raise
        if not rows:
            return session, None
        if rows[0][0] is None:  # still no epoch, just after starting one: someone removed it
            self._pool.checkin(session)
            raise BackendProtocolError(f"{self.url}: no fence for {key!r}: {sql.EPOCH_TABLE} stays empty")
        self._holds[(key, owner.token)] = _Hold(session, ttl)
        return session, int(rows[0][0])

    def _recover_fences(self, session: PgSession) -> None:
        """Start a new fence epoch after a crash: fences restart above all drawn before it."""
        log.warning("tenure: %s restarted after a crash; fences restart %d higher", self.url, sql.FENCE_JUMP)
        self._pool.run(
            session, sql.RECOVER_FENCES, None, "restarting the fences after a crash", rows=False
        )

    def try_acquire(self, key: str, owner: Owner, ttl: float) -> int | None:
        session, fence = self._try(key, owner, ttl)
        if fence is None:
            self._pool.checkin(session)
        return fence

    def renew(self, key: str, owner: Owner, ttl: float) -> bool:
        hold = self._holds.get((key, owner.token))
        if hold is None or hold.wait is not None:
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
            rows = self._pool.run(hold.session, sql.RENEW, params, f"renewing {key!r}")
        except BackendError as exc:
            # The session is dead, or cut for not answering in time: its lock is gone with it.
            log.warning("tenure: the session holding %r is gone (%s); the lock went with it", key, exc)
            rows = []
        if not rows:
            self._forget(key, owner)
            return False
        hold.ttl = ttl
        return True

    def release(self, key: str, owner: Owner) -> bool:
        hold = self._holds.pop((key, owner.token), None)
        if hold is None:
            return False
        if hold.wait is not None:  # still in line: leave it
            self._leave(hold)
            return False
        try:
            rows = self._pool.run(
                hold.session, sql.RELEASE, {"id": sql.lock_id(key)}, f"releasing {key!r}"
            )
        except BackendError as exc:
            # Closing the session frees the lock anyway; whether it was still held is unknown.
            log.warning("tenure: releasing %r failed (%s); closed its session, which frees it", key, exc)
            self._pool.discard(hold.session)
            return False
        released = bool(rows) and rows[0][0] is True
        if released:
            self._pool.checkin(hold.session)
        else:
            self._pool.discard(hold.session)
        return released

    def holder(self, key: str) -> HolderInfo | None:
        lock = sql.lock_id(key)
        classid, objid = sql.lock_halves(lock)
        rows = self._call(
            sql.HOLDER, {"id": lock, "classid": classid, "objid": objid}, f"reading {key!r}"
        )
        if not rows:
            return None
        label, fence, remaining = rows[0]
        return HolderInfo(str(label), int(fence), max(0.0, float(remaining)))

    def wait_released(self, key: str, timeout: float) -> None:
        if timeout < 0.001:
            return
        session = self._pool.checkout()
        params = {"id": sql.lock_id(key), "timeout": sql.milliseconds(timeout)}
        try:
            self._pool.run(session, sql.WAIT_RELEASED, params, f"waiting for {key!r}", waits=timeout)
        except BaseException:
            self._pool.discard(session)  # interrupted: a shared lock may be left on it
            raise
        self._pool.checkin(session)

    # -- Queueing: the server's lock queue --------------------------------------------------------

    def try_acquire_queued(
        self, key: str, owner: Owner, ttl: float, *, patience: float, will_wait: bool = True
    ) -> int | None:
        # ``patience`` is not needed: a waiter that died leaves the line with its session.
        hold = self._holds.get((key, owner.token))
        if hold is not None and hold.wait is not None:
            if not hold.wait.done():
                return None  # still in line
            return self._granted(key, owner, hold, early=True)
        session, fence = self._try(key, owner, ttl)
        if fence is None:
            if will_wait:
                self._queue(key, owner, session, ttl)
            else:
                self._pool.checkin(session)
        return fence

    def _queue(self, key: str, owner: Owner, session: PgSession, ttl: float) -> None:
        """Join the server's line on ``session``: a lock wait left running across the caller's waits.

        Its reply is the fence; it ends when the lock is granted or the session is closed.
        """
        params = self._acquire_params(key, sql.lock_id(key), owner, ttl)
        what = f"waiting for {key!r}"
        wait = InFlight(
            lambda: self._pool.run(session, sql.WAIT_ACQUIRE, params, what, waits=math.inf),
            name="tenure-postgresql-wait",
        )
        self._holds[(key, owner.token)] = _Hold(session, ttl, wait)

    def wait_turn(self, key: str, owner: Owner, timeout: float) -> int | None:
        hold = self._holds.get((key, owner.token))
        if hold is None or hold.wait is None:
            return None
        early = hold.wait.done()
        if not early and not hold.wait.wait(timeout):
            return None
        return self._granted(key, owner, hold, early=early)

    def leave_queue(self, key: str, owner: Owner) -> None:
        hold = self._holds.pop((key, owner.token), None)
        if hold is not None:
            self._leave(hold)

    def _granted(self, key: str, owner: Owner, hold: _Hold, *, early: bool) -> int | None:
        """Take the ended lock wait's reply: the fence, or None when it must queue again.

        ``early``: the reply had come before this call began, while nobody was waiting. The
        caller counts the lease from this call, so the idle-session limit restarts now too.
        """
        assert hold.wait is not None
        try:
            rows = hold.wait.result()
            hold.wait = None
            if rows and rows[0][0] is None:  # no epoch (a crash): nothing taken; recover, queue again
                self._recover_fences(hold.session)
                self._queue(key, owner, hold.session, hold.ttl)
                return None
        except BaseException:
            self._holds.pop((key, owner.token), None)
            self._leave(hold)
            raise
        if not rows:
            self._forget(key, owner)
            raise BackendProtocolError(f"{self.url}: the wait for {key!r} ended without a fence")
        if early:
            try:
                params = {"idle": sql.milliseconds(hold.ttl)}
                self._pool.run(hold.session, sql.REFRESH, params, "refreshing")
            except BackendError:
                self._forget(key, owner)
                return None
        return int(rows[0][0])

    def _leave(self, hold: _Hold) -> None:
        """Leave the line: end the session, which frees a grant that raced the departure too."""
        session, wait = hold.session, hold.wait
        session.abort()
        if wait is not None:
            # Its socket is shut down: the wait fails at once; let it end before the close.
            wait.wait(self.config.common.op_timeout)
            wait.abandon()
        self._pool.discard(session)
        if wait is not None and session.pid:
            # The server would notice the closed connection at its next check (1 s); end the
            # session now so that it leaves the lock queue at once.
            try:
                self._call(sql.TERMINATE, {"pid": session.pid}, "ending a waiting session")
            except BackendError as exc:
                log.debug("tenure: ending waiting session %d failed: %s", session.pid, exc)

    def _forget(self, key: str, owner: Owner) -> None:
        """Drop a hold whose session is gone or in doubt, closing that session."""
        hold = self._holds.pop((key, owner.token), None)
        if hold is not None:
            self._pool.discard(hold.session)

    def close(self) -> None:
        holds, self._holds = list(self._holds.values()), {}
        for hold in holds:
            if hold.wait is not None:  # stop the lock waits before their connections close
                hold.session.abort()
                hold.wait.wait(self.config.common.op_timeout)
                hold.wait.abandon()
        super().close()  # closing the sessions frees every lock still held
