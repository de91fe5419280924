"""The SQLite lease table: the blocking operations, which the async store runs in a thread.

Each lock is a row (unique key, owner token, fence, expires_at); rows are never deleted, so a
name's fence keeps growing across releases. Every fence is at least the wall clock in
microseconds, so a file that was deleted, recreated or truncated, or that lost its last commits
to a power loss (``synchronous=NORMAL``), never hands out a fence it gave before, unless the
clock is stepped back across the loss. Expiry is counted on the host's monotonic clock, which
every process of one host shares, and is tagged with the boot id so that a lease written before
a reboot never looks valid after it. Writes are single atomic statements in WAL mode; each takes
SQLite's write lock at its start, as ``BEGIN IMMEDIATE`` would, so no reader-to-writer upgrade
can fail midway.
"""

from __future__ import annotations

import json
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from tenure._async.backends.base import Permit, Renewal
from tenure._async.backends.sqlite.file import (
    DEFAULT_FILE_MODE,
    Identity,
    connect,
    identity,
    map_errors,
    roll_back,
)
from tenure._async.backends.sqlite.sql import (
    ACQUIRE,
    BUMP_FENCE,
    DROP_DEAD_WAITERS,
    HEAD_OF_QUEUE,
    HOLDERS,
    JOIN_QUEUE,
    LEAVE_QUEUE,
    PEEK,
    PERMITS,
    RECORD_LIMIT,
    RELEASE,
    RENEW,
    RENEW_MANY,
    TAKE_SLOT,
    TURN,
)
from tenure._core.clock import boot_id, host_now
from tenure._core.holder import HolderInfo
from tenure._core.semaphore import limit_mismatch, permit_keys, slot_order
from tenure._core.tokens import Owner
from tenure._exceptions import BackendProtocolError, BackendTimeout, BackendUnavailable

T = TypeVar("T")
# Renewals in one statement need RETURNING (3.35) and JSON's ->> (built in from 3.38).
BATCHED_RENEWALS = sqlite3.sqlite_version_info >= (3, 38)


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
        self._identity: Identity = None  # (device, inode) of the file self._db opened
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
        db, self._identity = connect(self.path, busy_timeout=self.busy_timeout, file_mode=self.file_mode)
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
        if self._db is not None and identity(self.path) != self._identity:
            # Deleted, recreated or restored from a copy: other processes open the path, so
            # follow it (SQLite does not checkpoint into a file that moved when it closes).
            self._db.close()
            self._db = None
        if self._db is None:  # also after a reopen that failed: try again
            self._db = self._connect()
        return self._db

    def call(self, work: Callable[[sqlite3.Connection], T]) -> T:
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
                    roll_back(db)
                    if "locked" not in str(exc) or time.monotonic() >= deadline:
                        raise map_errors(exc, f"SQLite lock file {self.path}") from exc
                    time.sleep(pause * (0.5 + random.random()))
                    pause = min(pause * 2, 0.002)
                except sqlite3.Error as exc:
                    roll_back(db)
                    raise map_errors(exc, f"SQLite lock file {self.path}") from exc
                except BaseException:
                    roll_back(db)
                    raise

    def _run(self, sql: str, params: dict[str, object]) -> list[tuple[object, ...]]:
        return self.call(lambda db: db.execute(sql, params).fetchall())

    def _write(self, sql: str, params: dict[str, object]) -> bool:
        """Run an owner-checked UPDATE; return whether it changed the row."""
        return self.call(lambda db: db.execute(sql, params).rowcount == 1)

    def fence(self, value: object, key: str) -> int:
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

    @staticmethod
    def acquire_params(key: str, owner: Owner, ttl: float, *, now: float, boot: str) -> dict[str, object]:
        """Return ACQUIRE's parameters: ``owner`` takes ``key`` for ``ttl`` s from ``now`` (host clock)."""
        return {
            "key": key,
            "owner": owner.token,
            "label": owner.label,
            "boot": boot,
            "expires_at": now + ttl,
            "now": now,
            "seed": time.time_ns() // 1000,  # the least fence a new row may get: wall clock, µs
        }

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
            rows = self._run(ACQUIRE, self.acquire_params(key, owner, ttl, now=now, boot=boot))
        except BackendTimeout:
            self._mark_untaken(key, owner)
            raise
        if rows:
            self._refused.pop((key, owner.token), None)
            self._untaken.pop((key, owner.token), None)  # taken now: its release must run
            return self.fence(rows[0][0], key)
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
        params = {**self.acquire_params(key, owner, ttl, now=now, boot=boot), "alive_until": now + patience}

        def join_and_try(db: sqlite3.Connection) -> int | None:
            db.execute("BEGIN IMMEDIATE")
            db.execute(DROP_DEAD_WAITERS, params)
            db.execute(JOIN_QUEUE, params)
            head = db.execute(HEAD_OF_QUEUE, params).fetchone()
            fence = None
            if head is not None and head[0] == owner.token:
                rows = db.execute(ACQUIRE, params).fetchall()
                if rows:
                    fence = self.fence(rows[0][0], key)  # raising rolls the whole step back
                    db.execute(LEAVE_QUEUE, params)
            db.execute("COMMIT")
            return fence

        try:
            fence = self.call(join_and_try)
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

    def try_acquire_permit(self, key: str, limit: int, owner: Owner, ttl: float) -> Permit | None:
        """Take a free slot of semaphore ``key`` while fewer than ``limit`` are held; else None.

        One ``BEGIN IMMEDIATE`` transaction: read the recorded limit and the live slots, refuse
        another limit while any permit of either is live, bump the name's fence and take a slot.
        """
        now, boot = host_now(), boot_id()
        slots = permit_keys(key, limit)
        params: dict[str, object] = {"key": key, "slots": json.dumps(slots), "boot": boot, "now": now}
        if (key, owner.token) in self._refused:
            # A waiter polling again reads first: no write lock while every permit is held.
            recorded, live = self._run(PERMITS, params)[0]
            if recorded == limit and len(json.loads(str(live))) >= limit:
                return None

        def take(db: sqlite3.Connection) -> Permit | None:
            db.execute("BEGIN IMMEDIATE")
            recorded, live = db.execute(PERMITS, params).fetchone()
            held = set(json.loads(live))
            if recorded != limit:
                if recorded is not None and recorded > limit:  # slots above ours may be live too
                    wider = {**params, "slots": json.dumps(permit_keys(key, recorded))}
                    held = set(json.loads(db.execute(PERMITS, wider).fetchone()[1]))
                if recorded is not None and held:
                    db.execute("ROLLBACK")
                    raise limit_mismatch(key, limit, recorded)
                db.execute(RECORD_LIMIT, {"key": key, "limit": limit})
            free = [slots[slot] for slot in slot_order(limit) if slots[slot] not in held]
            if not free:
                db.execute("COMMIT")
                return None
            seed = time.time_ns() // 1000
            bumped = db.execute(BUMP_FENCE, {"key": key, "seed": seed, "boot": boot}).fetchone()[0]
            fence = self.fence(bumped, key)
            db.execute(TAKE_SLOT, {"slot": free[0], "owner": owner.token, "label": owner.label,
                                   "fence": fence, "boot": boot, "expires_at": now + ttl})  # fmt: skip
            db.execute("COMMIT")
            return Permit(free[0], fence)

        try:
            permit = self.call(take)
        except BackendTimeout:
            for slot in slots:  # refused whole: the clean-up has nothing to free
                self._mark_untaken(slot, owner)
            raise
        if permit is None:
            if len(self._refused) >= 4096:  # waiters that gave up leave entries behind; stay bounded
                self._refused.clear()
            self._refused[(key, owner.token)] = None
        else:
            self._refused.pop((key, owner.token), None)
        return permit

    def permit_holders(self, key: str, limit: int) -> list[HolderInfo]:
        """Return the live permits of semaphore ``key``, oldest fence first."""
        now = host_now()
        params = {"slots": json.dumps(permit_keys(key, limit)), "boot": boot_id(), "now": now}
        return [
            HolderInfo(str(label), self.fence(fence, key), self._seconds(expires_at, key) - now)
            for label, fence, expires_at in self._run(HOLDERS, params)
        ]

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

    def renew_many(self, renewals: Sequence[Renewal]) -> list[bool]:
        """Extend each lease to its ttl from now if its owner still validly holds it.

        One statement for them all (one transaction of one statement each on a SQLite older
        than 3.38); return whether each lease was renewed, in order.
        """
        now, boot = host_now(), boot_id()
        if not BATCHED_RENEWALS:
            return self.call(lambda db: self._renew_each(db, renewals, now, boot))
        batch = json.dumps([(key, owner.token, now + ttl) for key, owner, ttl in renewals])
        rows = self._run(RENEW_MANY, {"batch": batch, "boot": boot, "now": now})
        renewed = set(rows)
        return [(key, owner.token) in renewed for key, owner, _ in renewals]

    @staticmethod
    def _renew_each(db: sqlite3.Connection, renewals: Sequence[Renewal], now: float, boot: str) -> list[bool]:
        db.execute("BEGIN IMMEDIATE")
        renewed = [
            db.execute(
                RENEW, {"key": key, "owner": owner.token, "boot": boot, "expires_at": now + ttl, "now": now}
            ).rowcount
            == 1
            for key, owner, ttl in renewals
        ]
        db.execute("COMMIT")
        return renewed

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
        return HolderInfo(str(label), self.fence(fence, key), remaining)
