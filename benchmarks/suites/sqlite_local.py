"""The ``sqlite-local`` suite: locks between processes of one host, no server.

tenure's SQLite backend against the file locks people reach for (filelock, portalocker), with two
floors: the same lease table driven by one hand-written statement per step, and a bare
``fcntl.flock`` on a file descriptor kept open, which is what both file-lock peers wrap.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import time

from benchmarks.registry import BenchContext, Contender, Role, Suite
from benchmarks.suites.common import TIMEOUT, TTL, TenureHandle


def tenure_sqlite(ctx: BenchContext, name: str) -> TenureHandle:
    return TenureHandle(f"sqlite:///{ctx.path('tenure.db')}", name)


def tenure_sqlite_fair(ctx: BenchContext, name: str) -> TenureHandle:
    return TenureHandle(f"sqlite:///{ctx.path('tenure.db')}", name, fair=True)


class FileLockHandle:
    """``filelock.FileLock`` with its defaults: its blocking acquire polls every 0.05 s."""

    def __init__(self, ctx: BenchContext, name: str) -> None:
        import filelock  # an optional extra (tenure[bench]): missing, this contender is skipped

        # timeout only bounds a stuck run; the default (-1) would wait forever.
        self._lock = filelock.FileLock(str(ctx.path(f"filelock-{name}.lock")), timeout=TIMEOUT)

    def acquire(self) -> None:
        self._lock.acquire()

    def release(self) -> None:
        self._lock.release()

    def close(self) -> None:
        """Nothing to close: filelock closes its descriptor at each release."""


class PortalockerHandle:
    """``portalocker.Lock`` with ``flags=LockFlags.EXCLUSIVE``: the kernel queues the waiters.

    Its default flags add ``NON_BLOCKING`` and poll every 0.25 s (failing after 5 s), which would
    measure the poll interval; blocking flags are its documented way to wait in the kernel. A
    timeout has no effect with blocking flags (portalocker warns), so none is given.
    """

    def __init__(self, ctx: BenchContext, name: str) -> None:
        import portalocker  # an optional extra (tenure[bench]): missing, this contender is skipped

        self._lock = portalocker.Lock(
            str(ctx.path(f"portalocker-{name}.lock")), mode="a", flags=portalocker.LockFlags.EXCLUSIVE
        )

    def acquire(self) -> None:
        self._lock.acquire()

    def release(self) -> None:
        self._lock.release()

    def close(self) -> None:
        """Nothing to close: portalocker closes its file at each release."""


class RawFlockHandle:
    """The file-lock floor: ``flock(LOCK_EX)``/``flock(LOCK_UN)`` on a descriptor opened once."""

    def __init__(self, ctx: BenchContext, name: str) -> None:
        self._fd = os.open(ctx.path(f"flock-{name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)

    def acquire(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def release(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        os.close(self._fd)


# The floor's lease table: what tenure's backend stores, minus the label and boot id.
FLOOR_SCHEMA = """
CREATE TABLE IF NOT EXISTS floor_leases (
    key TEXT PRIMARY KEY, owner TEXT, fence INTEGER NOT NULL, expires_at REAL NOT NULL
) WITHOUT ROWID
"""
FLOOR_ACQUIRE = """
INSERT INTO floor_leases (key, owner, fence, expires_at) VALUES (:key, :owner, 1, :expires_at)
ON CONFLICT (key) DO UPDATE SET owner = excluded.owner, fence = fence + 1, expires_at = excluded.expires_at
WHERE owner IS NULL OR expires_at <= :now
RETURNING fence
"""
FLOOR_RELEASE = "UPDATE floor_leases SET owner = NULL WHERE key = :key AND owner = :owner"
FLOOR_POLL = 0.002  # tenure's SQLite backend starts polling at 2 ms too (then backs off to 50 ms)


class RawSQLiteHandle:
    """The SQLite floor: one upsert to acquire (TTL and fence included), one update to release.

    Same connection settings as tenure's backend (WAL, synchronous=NORMAL, autocommit), one
    owner token per handle, and a fixed 2 ms sleep between attempts while the lease is held.
    """

    def __init__(self, ctx: BenchContext, name: str) -> None:
        self._db = sqlite3.connect(ctx.path("floor.db"), timeout=TIMEOUT, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(FLOOR_SCHEMA)
        self._key = name
        self._owner = os.urandom(16).hex()
        self.last_fence = 0

    def acquire(self) -> None:
        deadline = time.monotonic() + TIMEOUT
        while True:
            now = time.monotonic()  # CLOCK_MONOTONIC: shared by every process of the host
            params = {"key": self._key, "owner": self._owner, "expires_at": now + TTL, "now": now}
            # fetchall steps the statement to its end, which commits it (autocommit).
            rows = self._db.execute(FLOOR_ACQUIRE, params).fetchall()
            if rows:
                self.last_fence = int(rows[0][0])
                return
            if now > deadline:
                raise TimeoutError(f"floor lock {self._key!r} not acquired within {TIMEOUT} s")
            time.sleep(FLOOR_POLL)

    def release(self) -> None:
        self._db.execute(FLOOR_RELEASE, {"key": self._key, "owner": self._owner})

    def close(self) -> None:
        self._db.close()


SUITE = Suite(
    name="sqlite-local",
    description="locks between processes of one host, no server",
    baseline="filelock",
    contenders=(
        Contender(
            "tenure-sqlite",
            Role.TENURE,
            tenure_sqlite,
            floor="sqlite-floor",
            ttl=True,
            fence=True,
            summary="tenure.Coordinator('sqlite:///…').lock(name, ttl=10).acquire() / lease.release()",
            notes="waiters poll the table: 2 ms backing off to 50 ms, jittered",
        ),
        Contender(
            "tenure-sqlite-fair",
            Role.TENURE,
            tenure_sqlite_fair,
            floor="sqlite-floor",
            ttl=True,
            fence=True,
            summary="the same with lock(name, ttl=10, fair=True): a line in the file, served in order",
            notes="waiters poll a lock-free read every (1 + place in line) ms",
        ),
        Contender(
            "filelock",
            Role.PEER,
            FileLockHandle,
            floor="flock-floor",
            summary="filelock.FileLock(path).acquire() / .release() (open + flock, close)",
            notes="blocking acquire polls flock(LOCK_NB) every 0.05 s (its default)",
        ),
        Contender(
            "portalocker",
            Role.PEER,
            PortalockerHandle,
            floor="flock-floor",
            summary="portalocker.Lock(path, flags=LockFlags.EXCLUSIVE).acquire() / .release()",
            notes="blocking flock: waiters queue in the kernel",
        ),
        Contender(
            "sqlite-floor",
            Role.FLOOR,
            RawSQLiteHandle,
            ttl=True,
            fence=True,
            summary="raw sqlite3: one upsert (TTL + fence) to acquire, one update to release",
            notes="waiters sleep a fixed 2 ms between attempts",
        ),
        Contender(
            "flock-floor",
            Role.FLOOR,
            RawFlockHandle,
            summary="raw fcntl.flock(LOCK_EX) / flock(LOCK_UN) on a descriptor kept open",
            notes="blocking flock: waiters queue in the kernel",
        ),
    ),
)
