"""Rate limits in the SQLite file: each key's GCRA times in a row, by the host's wall clock.

Every process on the host reads one clock, so the decision is the same whoever takes it; the
wall clock (not the monotonic one the leases use) because a bucket outlives a reboot. A clock
set back makes buckets look fuller than they are until it catches up: it never over-admits.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence

from tenure._async.backends.sqlite.sql import DROP_IDLE_RATES, READ_TATS, STORE_TATS
from tenure._async.backends.sqlite.table import SQLiteLeaseTable
from tenure._core.ratelimit import Rate, RateStep, decode_tats, encode_tats, gcra_step


class SQLiteRates:
    """The blocking rate step, on the lease table's connection and under its lock."""

    def __init__(self, table: SQLiteLeaseTable) -> None:
        self._table = table

    def rate_step(self, key: str, rates: Sequence[Rate], cost: int) -> RateStep:
        """Run the GCRA step on ``key``: a refusal or a look is one read, a permit one transaction.

        A WAL read takes no lock, and a refusal it decides is as true as any later one (time
        only refills buckets); only a step that takes permits reads again under ``BEGIN
        IMMEDIATE`` and writes, so no two processes take the same permits.
        """

        def look(db: sqlite3.Connection) -> RateStep:
            return gcra_step(_stored(db, key), time.time(), rates, cost)

        looked = self._table.call(look)
        if not (looked.allowed and cost):
            return looked

        def take(db: sqlite3.Connection) -> RateStep:
            db.execute("BEGIN IMMEDIATE")
            now = time.time()
            step = gcra_step(_stored(db, key), now, rates, cost)
            if step.allowed:
                tats = encode_tats(step.tats)
                params = {"key": key, "tats": tats, "expires_at": max(step.tats), "now": now}
                db.execute(STORE_TATS, params)
                db.execute(DROP_IDLE_RATES, params)
            db.execute("COMMIT")
            return step

        return self._table.call(take)


def _stored(db: sqlite3.Connection, key: str) -> tuple[float, ...]:
    row = db.execute(READ_TATS, {"key": key}).fetchone()
    return () if row is None else decode_tats(row[0])
