"""The SQLite lease table: blocking operations shared by the async and the sync backend.

Each lock is a row (unique key, owner token, fence, expires_at); rows are never deleted, so a
name's fence keeps growing across releases. Every fence is at least the wall clock in
microseconds, so a file that was deleted, recreated or truncated, or that lost its last commits
to a power loss (``synchronous=NORMAL``), never hands out a fence it gave before, unless the
clock is stepped back across the loss. Expiry is measured on
the host's monotonic clock, which every process of one host shares, and is tagged with the
boot id so that a lease written before a reboot never looks valid after it. Writes are single
atomic statements in WAL mode; each takes SQLite's write lock at its start, as
``BEGIN IMMEDIATE`` would, so no reader-to-writer upgrade can fail midway.
"""

from __future__ import annotations

import errno
import os
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
from tenure._exceptions import BackendProtocolError, BackendTimeout, BackendUnavailable, ConfigurationError

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
# The fence is never below :seed, the wall clock in microseconds: with synchronous=NORMAL a power
# loss can undo the last commits, and fences handed out by them, but not turn the clock back.
ACQUIRE = """
INSERT INTO tenure_leases (key, owner, label, fence, boot, expires_at)
VALUES (:key, :owner, :label, :seed, :boot, :expires_at)
ON CONFLICT (key) DO UPDATE SET
    owner = excluded.owner, label = excluded.label, fence = max(fence + 1, excluded.fence),
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


DEFAULT_FILE_MODE = 0o600  # a new lock file is its creator's alone unless the URL says otherwise


class SQLiteLeaseTable:
    """The blocking lease-table operations on one connection, safe to call from any thread.

    Before every operation the path is compared with the file the connection opened (device and
    inode): a file deleted or replaced under us is followed, never written to in its detached
    copy, so a lease held in the old file ends there (its renewal finds no row) instead of living
    on beside a new holder.
    """

    def __init__(self, path: Path, *, busy_timeout: float, file_mode: int = DEFAULT_FILE_MODE) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self.file_mode = file_mode
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._closed = False
        self._identity: tuple[int, int] | None = None  # (device, inode) of the file self._db opened
        self._refused: dict[tuple[str, str], None] = {}  # (key, token) of waiters that were refused
        self._joined: dict[tuple[str, str], float] = {}  # (key, token) -> when last put in line
        # (key, token) whose attempt failed on a busy file: SQLite refused the statement whole,
        # so the clean-up that follows has nothing to undo and must not wait a second time.
        self._untaken: dict[tuple[str, str], bool] = {}

    def open(self) -> None:
        """Open the file (creating it and its folder) and the table; idempotent."""
        with self._lock:
            self._closed = False
            if self._db is None:
                self._db = self._connect()

    def _connect(self) -> sqlite3.Connection:
        try:
            _prepare(self.path, self.file_mode)
            db = sqlite3.connect(
                self.path,
                # Busy waits are ours (_call): SQLite's own handler sleeps 1, 2, 5, 10 ms...,
                # far longer than a lock hand-off takes.
                timeout=0,
                isolation_level=None,  # autocommit: every statement is its own transaction
                check_same_thread=False,  # guarded by self._lock instead
            )
        except (OSError, sqlite3.Error) as exc:
            raise _mapped(exc, f"cannot open the SQLite lock file {self.path}") from exc
        try:
            self._identity = _identity(self.path)
            _while_locked(lambda: _use_wal(db), self.busy_timeout)
            db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across crashes
            _while_locked(lambda: db.execute(SCHEMA), self.busy_timeout)
            _while_locked(lambda: db.execute(WAITERS_SCHEMA), self.busy_timeout)
        except (OSError, sqlite3.Error) as exc:
            db.close()
            raise _mapped(exc, f"cannot open the SQLite lock file {self.path}") from exc
        return db

    def close(self) -> None:
        """Close the connection; idempotent."""
        with self._lock:
            self._closed = True
            if self._db is not None:
                self._db.close()
                self._db = None

    def _current_db(self) -> sqlite3.Connection:
        """Return the connection to the file the path names now, reopening it if it changed."""
        if self._closed:
            raise BackendUnavailable(f"the SQLite lock file {self.path} is closed")
        if self._db is not None and _identity(self.path) != self._identity:
            # Deleted, recreated or restored from a copy: other processes open the path, so
            # follow it (SQLite does not checkpoint into a file that moved when it closes).
            self._db.close()
            self._db = None
        if self._db is None:  # also after a reopen that failed: try again
            self._db = self._connect()
        return self._db

    def _call(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` on the connection, retrying while another process holds the write lock.

        The retries pause 0.1 ms, doubling to 2 ms, jittered, for at most ``busy_timeout``.
        """
        with self._lock:
            db = self._current_db()
            pause, deadline = 0.0001, time.monotonic() + self.busy_timeout
            while True:
                try:
                    return work(db)
                except sqlite3.OperationalError as exc:
                    _roll_back(db)
                    if "locked" not in str(exc) or time.monotonic() >= deadline:
                        raise _mapped(exc, f"SQLite lock file {self.path}") from exc
                    time.sleep(pause * (0.5 + random.random()))
                    pause = min(pause * 2, 0.002)
                except sqlite3.Error as exc:
                    _roll_back(db)
                    raise _mapped(exc, f"SQLite lock file {self.path}") from exc
                except BaseException:
                    _roll_back(db)
                    raise

    def _run(self, sql: str, params: dict[str, object]) -> list[tuple[object, ...]]:
        return self._call(lambda db: db.execute(sql, params).fetchall())

    def _write(self, sql: str, params: dict[str, object]) -> bool:
        """Run an owner-checked UPDATE; return whether it changed the row."""
        return self._call(lambda db: db.execute(sql, params).rowcount == 1)

    def _fence(self, value: object, key: str) -> int:
        """Return a fence read from the file, refusing anything but a 64-bit integer.

        SQLite turns an integer that overflows into a float, which then stays the same: handing
        it out would repeat a fence.
        """
        if type(value) is not int:
            raise BackendProtocolError(
                f"SQLite lock file {self.path}: the fence of {key!r} is {value!r}, not a 64-bit "
                "integer (the counter overflowed or the file was edited); no fence is handed out"
            )
        return value

    def _seconds(self, value: object, key: str) -> float:
        """Return an expiry read from the file, refusing what is not a number."""
        if type(value) not in (int, float):
            raise BackendProtocolError(
                f"SQLite lock file {self.path}: the expiry of {key!r} is {value!r}, not a number "
                "(the file was edited or is corrupt)"
            )
        return float(value)  # type: ignore[arg-type]

    def _mark_untaken(self, key: str, owner: Owner) -> None:
        if len(self._untaken) >= 4096:  # attempts never cleaned up leave entries behind; stay bounded
            self._untaken.clear()
        self._untaken[(key, owner.token)] = True

    def try_acquire(self, key: str, owner: Owner, ttl: float) -> int | None:
        """Take ``key`` if free or expired and return the new fence, else None."""
        now, boot = host_now(), boot_id()
        try:
            if (key, owner.token) in self._refused:
                # A waiter polling again reads first, so contending waiters that find the lock
                # held never take the write lock; a first attempt goes straight to the write.
                rows = self._run(PEEK, {"key": key})
                if (
                    rows
                    and rows[0][0] is not None
                    and rows[0][3] == boot
                    and self._seconds(rows[0][4], key) > now
                ):
                    return None
            params = {
                "key": key,
                "owner": owner.token,
                "label": owner.label,
                "boot": boot,
                "expires_at": now + ttl,
                "now": now,
                "seed": time.time_ns() // 1000,
            }
            rows = self._run(ACQUIRE, params)
        except BackendTimeout:
            self._mark_untaken(key, owner)
            raise
        if rows:
            self._refused.pop((key, owner.token), None)
            self._untaken.pop((key, owner.token), None)  # taken now: its release must run
            return self._fence(rows[0][0], key)
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
                  "alive_until": now + patience, "expires_at": now + ttl,
                  "seed": time.time_ns() // 1000}  # fmt: skip

        def join_and_try(db: sqlite3.Connection) -> int | None:
            db.execute("BEGIN IMMEDIATE")
            db.execute(DROP_DEAD_WAITERS, params)
            db.execute(JOIN_QUEUE, params)
            head = db.execute(HEAD_OF_QUEUE, params).fetchone()
            fence = None
            if head is not None and head[0] == owner.token:
                rows = db.execute(ACQUIRE, params).fetchall()
                if rows:
                    fence = self._fence(rows[0][0], key)  # raising rolls the whole step back
                    db.execute(LEAVE_QUEUE, params)
            db.execute("COMMIT")
            return fence

        try:
            fence = self._call(join_and_try)
        except BackendTimeout:
            if (key, owner.token) not in self._joined:  # never in line: nothing to leave
                self._mark_untaken(key, owner)
            raise
        if fence is None:
            if len(self._joined) >= 4096:  # waiters that gave up leave entries behind; stay bounded
                self._joined.clear()
            self._joined[(key, owner.token)] = now
        else:
            self._joined.pop((key, owner.token), None)
            self._untaken.pop((key, owner.token), None)  # taken now: its release must run
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
        if self._untaken.pop((key, owner.token), False):
            return
        self._run(LEAVE_QUEUE, {"key": key, "owner": owner.token})
        self.release(key, owner)

    def renew(self, key: str, owner: Owner, ttl: float) -> bool:
        """Extend the lease of ``key`` to ``ttl`` from now if ``owner`` still validly holds it."""
        now = host_now()
        params = {"key": key, "owner": owner.token, "boot": boot_id(), "expires_at": now + ttl, "now": now}
        return self._write(RENEW, params)

    def release(self, key: str, owner: Owner) -> bool:
        """Free ``key`` if ``owner`` holds it; return whether the lease was still valid."""
        if self._untaken.pop((key, owner.token), False):
            return False  # the attempt to clean up after was refused whole: nothing was taken
        return self._write(RELEASE, {"key": key, "owner": owner.token, "boot": boot_id(), "now": host_now()})

    def holder(self, key: str) -> HolderInfo | None:
        """Return the current holder of ``key``, or None."""
        rows = self._run(PEEK, {"key": key})
        if not rows:
            return None
        token, label, fence, boot, expires_at = rows[0]
        remaining = self._seconds(expires_at, key) - host_now()
        if token is None or boot != boot_id() or remaining <= 0:
            return None
        return HolderInfo(str(label), self._fence(fence, key), remaining)


def _prepare(path: Path, file_mode: int) -> None:
    """Create the lock file with ``file_mode`` if it is missing; refuse files this user cannot write.

    SQLite opens a file it cannot write read-only and creates its ``-wal`` and ``-shm`` files
    beside it, owned by this user: in a shared (sticky) folder the file's owner can then neither
    write nor remove them. So look first, and fail leaving nothing behind.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, file_mode)
        except FileExistsError:
            pass
        else:
            try:
                os.fchmod(fd, file_mode)  # the umask must not change what was asked for
            finally:
                os.close(fd)
        for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            try:
                os.close(os.open(name, os.O_RDWR | os.O_CLOEXEC))
            except FileNotFoundError:
                if name == path:
                    raise
        if not Path(f"{path}-wal").exists() and not os.access(path.parent, os.W_OK | os.X_OK):
            raise PermissionError(errno.EACCES, "cannot create its -wal and -shm files", str(path.parent))
    except PermissionError as exc:
        raise ConfigurationError(_no_write_access(path, exc)) from None


def _no_write_access(path: Path, exc: PermissionError) -> str:
    """Explain which file this user cannot write, and whose it is."""
    name = exc.filename or path
    try:
        st = os.stat(name)
        whose = f" (owner uid {st.st_uid}, mode {st.st_mode & 0o7777:04o})"
    except OSError:
        whose = ""
    return (
        f"the SQLite lock file {path} is not writable by this user: {exc.strerror or exc}: {name}{whose}; "
        "every user of a lock file needs write access to it and its folder (share it with "
        "?file_mode=0660 and a common group) or use a path of your own"
    )


def _identity(path: Path) -> tuple[int, int] | None:
    """Return (device, inode) of the file ``path`` names now, or None if there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _roll_back(db: sqlite3.Connection) -> None:
    if db.in_transaction:
        db.execute("ROLLBACK")


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
