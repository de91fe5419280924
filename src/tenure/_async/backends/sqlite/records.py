"""Idempotency records in the SQLite file: a run is a lease row, its record a row beside it."""

from __future__ import annotations

import sqlite3
import time

from tenure._async.backends.base import Recorded, SQLStep
from tenure._async.backends.sqlite.sql import (
    ACQUIRE,
    DROP_EXPIRED_RECORDS,
    END_RUN,
    READ_RECORD,
    STORE_RECORD,
)
from tenure._async.backends.sqlite.table import SQLiteLeaseTable
from tenure._core.clock import boot_id, host_now
from tenure._core.tokens import Owner
from tenure._exceptions import BackendProtocolError

RECORD_LIMIT = 16 * 1024 * 1024
"""Largest record kept: far below SQLite's own limit (1 GB), and a row read whole on every hit."""


class SQLiteRecords:
    """The blocking record steps, on the lease table's connection and under its lock."""

    def __init__(self, table: SQLiteLeaseTable) -> None:
        self._table = table

    def begin_run(self, key: str, owner: Owner, ttl: float) -> Recorded | int | None:
        """Return ``key``'s live record, else take its lease (fence) if free, else None.

        A hit is one read (WAL readers take no lock); a miss reads again inside ``BEGIN
        IMMEDIATE`` before taking the lease, so a record stored in between is not run again.
        """
        found = self.read_record(key)
        if found is not None:
            return found
        wall = time.time()
        params = {**self._table.acquire_params(key, owner, ttl, now=host_now(), boot=boot_id()), "wall": wall}

        def begin(db: sqlite3.Connection) -> Recorded | int | None:
            db.execute("BEGIN IMMEDIATE")
            row = db.execute(READ_RECORD, params).fetchone()
            taken = None if row is not None else db.execute(ACQUIRE, params).fetchone()
            db.execute("COMMIT")
            if row is not None:
                return self._recorded(key, row, wall)
            return None if taken is None else self._table.fence(taken[0], key)

        return self._table.call(begin)

    def finish_run(self, key: str, owner: Owner, record: bytes, ttl: float) -> bool:
        """Store ``record`` and delete ``owner``'s lease row, if it still holds it; one transaction."""
        params = _finish_params(key, owner, record, ttl)

        def finish(db: sqlite3.Connection) -> bool:
            db.execute("BEGIN IMMEDIATE")
            ended = db.execute(END_RUN, params).fetchone()
            if ended is None:
                db.execute("ROLLBACK")
                return False
            db.execute(STORE_RECORD, {**params, "fence": self._table.fence(ended[0], key)})
            db.execute(DROP_EXPIRED_RECORDS, params)
            db.execute("COMMIT")
            return True

        return self._table.call(finish)

    def record_steps(self, key: str, owner: Owner, fence: int, record: bytes, ttl: float) -> list[SQLStep]:
        """Return ``finish_run``'s statements, for the caller's own connection to the same file.

        Its open transaction already holds (or takes, with the first statement) the file's write
        lock, so no run can take the key between the check and the commit.
        """
        params = {**_finish_params(key, owner, record, ttl), "fence": fence}
        return [
            SQLStep(END_RUN, params, proves_hold=True),
            SQLStep(STORE_RECORD, params),
            SQLStep(DROP_EXPIRED_RECORDS, params),
        ]

    def read_record(self, key: str) -> Recorded | None:
        """Return ``key``'s live record, or None."""
        wall = time.time()
        row = self._table.call(lambda db: db.execute(READ_RECORD, {"key": key, "wall": wall}).fetchone())
        return None if row is None else self._recorded(key, row, wall)

    def _recorded(self, key: str, row: tuple[object, ...], wall: float) -> Recorded:
        record, fence, expires_at = row
        if not isinstance(record, bytes) or not isinstance(expires_at, int | float):
            raise BackendProtocolError(
                f"SQLite lock file {self._table.path}: the record of {key!r} is corrupt"
            )
        return Recorded(record, self._table.fence(fence, key), float(expires_at) - wall)


def _finish_params(key: str, owner: Owner, record: bytes, ttl: float) -> dict[str, object]:
    """Return the parameters of a run's end (END_RUN, STORE_RECORD, DROP_EXPIRED_RECORDS)."""
    wall = time.time()
    return {
        "key": key,
        "owner": owner.token,
        "boot": boot_id(),
        "now": host_now(),
        "record": record,
        "expires_at": wall + ttl,
        "wall": wall,
    }
