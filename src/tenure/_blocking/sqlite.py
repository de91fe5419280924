"""The SQLite lease table: blocking operations shared by the async and the sync backend.

Each lock is a row (unique key, owner token, fence, expires_at); rows are never deleted, so a
name's fence keeps growing across releases. Expiry is measured on the host's monotonic clock,
which every process of one host shares, and is tagged with the boot id so that a lease written
before a reboot never looks valid after it. Writes are single atomic statements in WAL mode;
each takes SQLite's write lock at its start, as ``BEGIN IMMEDIATE`` would, so no
reader-to-writer upgrade can fail midway.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from tenure._core.clock import boot_id, host_now
from tenure._core.holder import HolderInfo
from tenure._core.tokens import Owner
from tenure._exceptions import BackendProtocolError, BackendTimeout, BackendUnavailable

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

    def open(self) -> None:
        """Open the file (creating it and its folder) and the table; idempotent."""
        with self._lock:
            if self._db is not None:
                return
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(
                    self.path,
                    timeout=self.busy_timeout,
                    isolation_level=None,  # autocommit: every statement is its own transaction
                    check_same_thread=False,  # guarded by self._lock instead
                )
                _use_wal(db, self.busy_timeout)
                db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across crashes
                db.execute(SCHEMA)
            except (OSError, sqlite3.Error) as exc:
                raise _mapped(exc, f"cannot open the SQLite lock file {self.path}") from exc
            self._db = db

    def close(self) -> None:
        """Close the connection; idempotent."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def _run(self, sql: str, params: dict[str, object]) -> list[tuple[object, ...]]:
        with self._lock:
            if self._db is None:
                raise BackendUnavailable(f"the SQLite lock file {self.path} is closed")
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise _mapped(exc, f"SQLite lock file {self.path}") from exc

    def _write(self, sql: str, params: dict[str, object]) -> bool:
        """Run an owner-checked UPDATE; return whether it changed the row."""
        with self._lock:
            if self._db is None:
                raise BackendUnavailable(f"the SQLite lock file {self.path} is closed")
            try:
                return self._db.execute(sql, params).rowcount == 1
            except sqlite3.Error as exc:
                raise _mapped(exc, f"SQLite lock file {self.path}") from exc

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


def _use_wal(db: sqlite3.Connection, busy_timeout: float) -> None:
    """Switch the file to WAL mode, waiting out processes that are creating it at the same time.

    Changing the journal mode needs the file to itself and does not wait on the busy handler,
    so several processes opening a new file at once can see "database is locked".
    """
    deadline = time.monotonic() + busy_timeout
    while True:
        try:
            if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":  # persists in the file
                db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.005)
