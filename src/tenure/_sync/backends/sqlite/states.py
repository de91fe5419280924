# GENERATED from src/tenure/_async/backends/sqlite/states.py by scripts/unasync.py: do not edit; edit the source and re-run.
"""Small states in the SQLite file (``update_state``): a row per key, by the host's wall clock.

One ``BEGIN IMMEDIATE`` transaction per update: it takes the file's write lock before the read,
so no other process's update of any key comes between this one's read and write. The wall
clock, as rate limits (``ratelimit.py``): every process on the host reads the same one.
"""

from __future__ import annotations

import sqlite3
import time

from tenure._sync.backends.base import StateChange, T
from tenure._sync.backends.sqlite.sql import DROP_EXPIRED_STATES, READ_STATE, STORE_STATE
from tenure._sync.backends.sqlite.table import SQLiteLeaseTable


class SQLiteStates:
    """The blocking ``update_state``, on the lease table's connection and under its lock."""

    def __init__(self, table: SQLiteLeaseTable) -> None:
        self._table = table

    def update_state(self, key: str, change: StateChange[T], ttl: float) -> T:
        """Read ``key``'s bytes, run ``change`` and store what it returns, in one transaction."""

        def step(db: sqlite3.Connection) -> T:
            db.execute("BEGIN IMMEDIATE")
            now = time.time()
            row = db.execute(READ_STATE, {"key": key, "now": now}).fetchone()
            value, result = change(None if row is None else bytes(row[0]), now)
            if value is not None:
                db.execute(STORE_STATE, {"key": key, "value": value, "expires_at": now + ttl})
                db.execute(DROP_EXPIRED_STATES, {"now": now})
            db.execute("COMMIT")
            return result

        return self._table.call(step)  # a busy file is retried; a failure rolls back
