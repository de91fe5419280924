"""The SQLite lease table: blocking operations shared by the async and the sync backend.

Each lock is a row (unique key, owner token, fence, expires_at); rows are never deleted, so a
name's fence keeps growing across releases. Expiry is measured on the host's monotonic clock,
which every process of one host shares, and is tagged with the boot id so that a lease written
before a reboot never looks valid after it. Writes are single atomic statements in WAL mode;
each takes SQLite's write lock at its start, as ``BEGIN IMMEDIATE`` would, so no
reader-to-writer upgrade can fail midway.
"""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from tenure._core.clock import boot_id, host_now
from tenure._core.holder import HolderInfo
from tenure._core.tokens import Owner
from tenure._exceptions import BackendProtocolError, BackendTimeout, BackendUnavailable

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS tenure_leases (
    key        TEXT PRIMARY KEY,
    owner      TEXT,               -- the holder's secret token; NULL while free
    label      TEXT,               -- who holds it, for people (tenure inspect)
    fence      INTEGER NOT NULL,   -- bumped by every acquisition, never reset
    boot       TEXT NOT NULL,      -- boot id of the host clock expires_at is read on
    expires_at REAL NOT NULL       -- host monotonic seconds
) WITHOUT ROWID
"""

# Fair waiters (fair=True), in arrival order; an entry dies unless refreshed before alive_until.
WAITERS_SCHEMA = """
CREATE TABLE IF NOT EXISTS tenure_waiters (
    key         TEXT NOT NULL,
    token       TEXT NOT NULL,
    arrived     REAL NOT NULL,     -- host monotonic seconds of the first attempt
    alive_until REAL NOT NULL,     -- host monotonic seconds
    boot        TEXT NOT NULL,
    PRIMARY KEY (key, token)
) WITHOUT ROWID
"""

DROP_DEAD_WAITERS = "DELETE FROM tenure_waiters WHERE key = :key AND (alive_until <= :now OR boot != :boot)"

JOIN_QUEUE = """
INSERT INTO tenure_waiters (key, token, arrived, alive_until, boot)
VALUES (:key, :owner, :now, :alive_until, :boot)
ON CONFLICT (key, token) DO UPDATE SET alive_until = excluded.alive_until
"""

HEAD_OF_QUEUE = "SELECT token FROM tenure_waiters WHERE key = :key ORDER BY arrived, token LIMIT 1"

LEAVE_QUEUE = "DELETE FROM tenure_waiters WHERE key = :key AND token = :owner"

# How many wait ahead of the caller (NULL if it is not in line) and whether the lock is free:
# one read, no write lock.
TURN = """
SELECT
    (SELECT COUNT(*) FROM tenure_waiters AS other
     WHERE other.key = :key AND (other.arrived < me.arrived
        OR (other.arrived = me.arrived AND other.token < me.token))),
    NOT EXISTS (
        SELECT 1 FROM tenure_leases
        WHERE key = :key AND owner IS NOT NULL AND boot = :boot AND expires_at > :now
    )
FROM (SELECT arrived, token FROM tenure_waiters WHERE key = :key AND token = :owner) AS me
"""

# Take the row if it is free, expired, or from another boot; bump the fence in the same step.
ACQUIRE = """
INSERT INTO tenure_leases (key, owner, label, fence, boot, expires_at)
VALUES (:key, :owner, :label, 1, :boot, :expires_at)
ON CONFLICT (key) DO UPDATE SET
    owner = excluded.owner, label = excluded.label, fence = fence + 1,
    boot = excluded.boot, expires_at = excluded.expires_at
WHERE owner IS NULL OR boot != excluded.boot OR expires_at <= :now
RETURNING fence
"""

PEEK = "SELECT owner, label, fence, boot, expires_at FROM tenure_leases WHERE key = :key"

# Renew and release check the owner; an expired lease is never revived.
RENEW = """
UPDATE tenure_leases SET expires_at = :expires_at
WHERE key = :key AND owner = :owner AND boot = :boot AND expires_at > :now
"""

# Only a valid lease is freed; an expired row left with the old token already counts as free.
RELEASE = """
UPDATE tenure_leases SET owner = NULL, label = NULL, expires_at = 0
WHERE key = :key AND owner = :owner AND boot = :boot AND expires_at > :now
"""


class SQLiteLeaseTable:
    """The blocking lease-table operations on one connection, safe to call from any thread."""

    def __init__(self, path: Path, *, busy_timeout: float) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._refused: dict[tuple[str, str], None] = {}  # (key, token) of waiters that were refused
        self._joined: dict[tuple[str, str], float] = {}  # (key, token) -> when last put in line

    def open(self) -> None:
        """Open the file (creating it and its folder) and the table; idempotent."""
        with self._lock:
            if self._db is not None:
                return
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(
                    self.path,
                    # Busy waits are ours (_call): SQLite's own handler sleeps 1, 2, 5, 10 ms...,
                    # far longer than a lock hand-off takes.
                    timeout=0,
                    isolation_level=None,  # autocommit: every statement is its own transaction
                    check_same_thread=False,  # guarded by self._lock instead
                )
                _while_locked(lambda: _use_wal(db), self.busy_timeout)
                db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across crashes
                _while_locked(lambda: db.execute(SCHEMA), self.busy_timeout)
                _while_locked(lambda: db.execute(WAITERS_SCHEMA), self.busy_timeout)
            except (OSError, sqlite3.Error) as exc:
                raise _mapped(exc, f"cannot open the SQLite lock file {self.path}") from exc
            self._db = db

    def close(self) -> None:
        """Close the connection; idempotent."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def _open_db(self) -> sqlite3.Connection:
        if self._db is None:
            raise BackendUnavailable(f"the SQLite lock file {self.path} is closed")
        return self._db

    def _call(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` on the connection, retrying while another process holds the write lock.

        The retries pause 0.1 ms, doubling to 2 ms, jittered, for at most ``busy_timeout``.
        """
        with self._lock:
            db = self._open_db()
            pause, deadline = 0.0001, time.monotonic() + self.busy_timeout
            while True:
                try:
                    return work(db)
                except sqlite3.OperationalError as exc:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    if "locked" not in str(exc) or time.monotonic() >= deadline:
                        raise _mapped(exc, f"SQLite lock file {self.path}") from exc
                    time.sleep(pause * (0.5 + random.random()))
                    pause = min(pause * 2, 0.002)
                except sqlite3.Error as exc:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise _mapped(exc, f"SQLite lock file {self.path}") from exc

    def _run(self, sql: str, params: dict[str, object]) -> list[tuple[object, ...]]:
        return self._call(lambda db: db.execute(sql, params).fetchall())

    def _write(self, sql: str, params: dict[str, object]) -> bool:
        """Run an owner-checked UPDATE; return whether it changed the row."""
        return self._call(lambda db: db.execute(sql, params).rowcount == 1)

    def try_acquire(self, key: str, owner: Owner, ttl: float) -> int | None:
        """Take ``key`` if free or expired and return the new fence, else None."""
        now, boot = host_now(), boot_id()
        if (key, owner.token) in self._refused:
            # A waiter polling again reads first, so contending waiters that find the lock
            # held never take the write lock; a first attempt goes straight to the write.
            rows = self._run(PEEK, {"key": key})
            if rows and rows[0][0] is not None and rows[0][3] == boot and float(rows[0][4]) > now:  # type: ignore[arg-type]
                return None
        params = {
            "key": key,
            "owner": owner.token,
            "label": owner.label,
            "boot": boot,
            "expires_at": now + ttl,
            "now": now,
        }
        rows = self._run(ACQUIRE, params)
        if rows:
            self._refused.pop((key, owner.token), None)
            fence: int = rows[0][0]  # type: ignore[assignment]
            return fence
        if len(self._refused) >= 4096:  # waiters that gave up leave entries behind; stay bounded
            self._refused.clear()
        self._refused[(key, owner.token)] = None
        return None

    def try_acquire_queued(self, key: str, owner: Owner, ttl: float, *, patience: float) -> int | None:
        """Join or stay in ``key``'s line; take the lock only when it is free and we are first.

        One ``BEGIN IMMEDIATE`` transaction, so no other process sees the line half-updated.
        """
        now, boot = host_now(), boot_id()
        joined = self._joined.get((key, owner.token))
        if joined is not None and now - joined < patience / 3:
            # In line and refreshed lately: write only if it is our turn (reads take no lock).
            ahead, free = self.turn(key, owner)
            if ahead is not None and not (ahead == 0 and free):
                return None
        params = {"key": key, "owner": owner.token, "label": owner.label, "boot": boot, "now": now,
                  "alive_until": now + patience, "expires_at": now + ttl}  # fmt: skip

        def join_and_try(db: sqlite3.Connection) -> int | None:
            db.execute("BEGIN IMMEDIATE")
            db.execute(DROP_DEAD_WAITERS, params)
            db.execute(JOIN_QUEUE, params)
            head = db.execute(HEAD_OF_QUEUE, params).fetchone()
            fence = None
            if head is not None and head[0] == owner.token:
                rows = db.execute(ACQUIRE, params).fetchall()
                if rows:
                    fence = int(rows[0][0])
                    db.execute(LEAVE_QUEUE, params)
            db.execute("COMMIT")
            return fence

        fence = self._call(join_and_try)
        if fence is None:
            if len(self._joined) >= 4096:  # waiters that gave up leave entries behind; stay bounded
                self._joined.clear()
            self._joined[(key, owner.token)] = now
        else:
            self._joined.pop((key, owner.token), None)
        return fence

    def turn(self, key: str, owner: Owner) -> tuple[int | None, bool]:
        """Return how many wait ahead of ``owner`` (None: not in line) and whether it is free."""
        rows = self._run(TURN, {"key": key, "owner": owner.token, "boot": boot_id(), "now": host_now()})
        if not rows:
            return None, False
        ahead, free = rows[0]
        return int(ahead), bool(free)  # type: ignore[call-overload]

    def leave_queue(self, key: str, owner: Owner) -> None:
        """Leave ``key``'s line after a timeout, an error or a cancellation.

        An attempt interrupted after it took the lock leaves it held by a token nobody will
        renew: free it too.
        """
        self._joined.pop((key, owner.token), None)
        self._run(LEAVE_QUEUE, {"key": key, "owner": owner.token})
        self.release(key, owner)

    def renew(self, key: str, owner: Owner, ttl: float) -> bool:
        """Extend the lease of ``key`` to ``ttl`` from now if ``owner`` still validly holds it."""
        now = host_now()
        params = {"key": key, "owner": owner.token, "boot": boot_id(), "expires_at": now + ttl, "now": now}
        return self._write(RENEW, params)

    def release(self, key: str, owner: Owner) -> bool:
        """Free ``key`` if ``owner`` holds it; return whether the lease was still valid."""
        return self._write(RELEASE, {"key": key, "owner": owner.token, "boot": boot_id(), "now": host_now()})

    def holder(self, key: str) -> HolderInfo | None:
        """Return the current holder of ``key``, or None."""
        rows = self._run(PEEK, {"key": key})
        if not rows:
            return None
        token, label, fence, boot, expires_at = rows[0]
        remaining = float(expires_at) - host_now()  # type: ignore[arg-type]
        if token is None or boot != boot_id() or remaining <= 0:
            return None
        return HolderInfo(str(label), int(fence), remaining)  # type: ignore[call-overload]


def _mapped(exc: BaseException, what: str) -> Exception:
    """Map a driver error to tenure's tree (busy means the file stayed locked too long)."""
    if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
        return BackendTimeout(f"{what}: still locked by another process after the busy timeout")
    if isinstance(exc, (OSError, sqlite3.OperationalError)):
        return BackendUnavailable(f"{what}: {exc}")
    return BackendProtocolError(f"{what}: {exc}")


def _use_wal(db: sqlite3.Connection) -> None:
    """Switch the file to WAL mode (it persists in the file, so check first)."""
    if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        db.execute("PRAGMA journal_mode=WAL")


def _while_locked(step: Callable[[], object], busy_timeout: float) -> None:
    """Run ``step``, retrying while processes that create the same file at once hold it.

    Changing the journal mode needs the file to itself, and the connection does not wait on
    its own (timeout=0), so a few processes opening a new file together can see "locked".
    """
    deadline = time.monotonic() + busy_timeout
    while True:
        try:
            step()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.001 * (0.5 + random.random()))
