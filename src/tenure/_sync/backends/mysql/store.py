# GENERATED from src/tenure/_async/backends/mysql/store.py by scripts/unasync.py: do not edit; edit the source and re-run.
"""Advisory mode (the default): MariaDB user locks, ``GET_LOCK``, one connection per hold."""

from __future__ import annotations

from typing import ClassVar

from tenure._sync.backends.base import LeaseStore
from tenure._sync.backends.mysql import sql
from tenure._sync.backends.mysql.connection import MySQLPool, Session, Reply
from tenure._concurrency import InFlight
from tenure._config import BackendConfig
from tenure._core.guarantees import Capability, Guarantee
from tenure._core.holder import HolderInfo
from tenure._core.tokens import Owner
from tenure._exceptions import BackendError, BackendProtocolError


class Hold:
    """One owner holding, or queued for, one key on its own connection."""

    __slots__ = ("held", "name", "pending", "session", "ttl")

    def __init__(self, session: Session, name: str, ttl: float, *, held: bool) -> None:
        self.session = session
        self.name = name
        self.ttl = ttl
        self.held = held
        self.pending: InFlight[Reply] | None = None  # a queued GET_LOCK still running


class MySQLStore(LeaseStore):
    """Serve leases as MariaDB user locks (GET_LOCK), one connection per hold.

    **Guarantees.** FENCING: fences come from one server-wide SEQUENCE, drawn in the acquiring
    statement after the lock was taken; after a restart (a crash included) the sequence jumps
    past every value it may have handed out. FIFO: waiters block in the server's lock queue,
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
    # The server's line wakes one waiter per release, where retries would wake a herd.
    plain_waiters_queue: ClassVar[bool] = True

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        self._pool = MySQLPool(config, self.url)
        self._holds: dict[tuple[str, str], Hold] = {}
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
            for statement in (sql.CREATE_SEQUENCE, sql.CREATE_HOLDERS, sql.CREATE_EPOCH, sql.CREATE_EPOCHS):
                self._pool.execute(session, statement, {})
            self._pool.execute(session, sql.FENCE_EPOCH, {})
        except BackendError:
            self._pool.discard(session)
            raise
        self._pool.setup = sql.FENCE_EPOCH  # after a restart, fences restart higher
        self._pool.checkin(session)
        self._ready = True

    def try_acquire(self, key: str, owner: Owner, ttl: float) -> int | None:
        session, reply = self._acquire(key, owner, ttl)
        if reply.rowcount == 0:
            self._pool.checkin(session)
            return None
        return reply.inserted

    def renew(self, key: str, owner: Owner, ttl: float) -> bool:
        hold = self._holds.get((key, owner.token))
        if hold is None or not hold.held:
            return False
        with hold.session.mutex:
            try:
                reply = self._pool.execute(
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

    def release(self, key: str, owner: Owner) -> bool:
        hold = self._holds.pop((key, owner.token), None)
        if hold is None:
            return False
        if not hold.held:
            self._abandon(hold)
            return False
        with hold.session.mutex:
            try:
                reply = self._pool.execute(hold.session, sql.RELEASE, {"name": hold.name})
            except BackendError:
                return False  # the connection is closed: its session, and the lock, end with it
        if reply.rowcount == 1:
            self._pool.checkin(hold.session)
            return True
        self._pool.discard(hold.session)  # not ours any more; make sure the session keeps nothing
        return False

    def holder(self, key: str) -> HolderInfo | None:
        session, reply = self._pool.run(sql.HOLDER, {"name": sql.lock_name(key)})
        self._pool.checkin(session)
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
        session, reply = self._acquire(key, owner, ttl)
        if reply.rowcount > 0:
            return reply.inserted
        if not will_wait:
            self._pool.checkin(session)
            return None
        hold = self._holds[(key, owner.token)] = Hold(session, sql.lock_name(key), ttl, held=False)
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
            self._abandon(hold)
        self._pool.close()

    # -- internals -------------------------------------------------------------------------------

    def _acquire(self, key: str, owner: Owner, ttl: float) -> tuple[Session, Reply]:
        """Take the lock without waiting; if taken, record the hold. Return the session and reply."""
        name = sql.lock_name(key)
        session, reply = self._pool.run(
            sql.ACQUIRE, _params(name, owner, ttl), idle=sql.idle_limit(ttl)
        )
        if reply.rowcount > 0:
            self._holds[(key, owner.token)] = Hold(session, name, ttl, held=True)
        return session, reply

    def _line_up(self, hold: Hold, owner: Owner) -> None:
        """Start waiting in the server's line on the hold's session; ``wait_turn`` collects it."""
        params = {**_params(hold.name, owner, hold.ttl), "wait": sql.LONGEST_SERVER_WAIT}
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

    def _abandon(self, hold: Hold) -> None:
        """Leave the line and drop the connection: anything granted meanwhile goes with it."""
        pending, hold.pending = hold.pending, None
        if pending is not None and not pending.done():
            try:
                self._pool.kill_query(hold.session.thread_id)
                pending.wait(self._pool.op_timeout)
            except BackendError:
                pass  # closing the connection below ends the wait too, once the server notices
            pending.cancel()
        self._pool.discard(hold.session)


def _params(name: str, owner: Owner, ttl: float) -> dict[str, object]:
    # At most 255 bytes of UTF-8 (a byte column keeps the MEMORY table's fixed-width rows small).
    label = owner.label.encode("utf-8", "replace")[: sql.MAX_LABEL].decode("utf-8", "ignore")
    return {"name": name, "owner": owner.token, "label": label, "ttl": ttl}
