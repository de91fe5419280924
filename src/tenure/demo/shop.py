"""The shop: stock and orders in a SQLite file of their own, shared by every worker process.

It stands for the protected resource of the flash sale (a database the lock service does not own).
Buying is deliberately two steps, a read and a later write, so that workers can race. The fenced
write is the resource's own defence: it remembers the highest fence it has accepted and refuses
any write that carries a lower one, in the same atomic statement that changes the stock.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    sku       TEXT PRIMARY KEY,
    stock     INTEGER NOT NULL,
    max_fence INTEGER NOT NULL DEFAULT 0   -- highest fence a write was accepted with
);
CREATE TABLE IF NOT EXISTS orders (
    id     INTEGER PRIMARY KEY,
    sku    TEXT NOT NULL,
    worker INTEGER NOT NULL,
    fence  INTEGER,                        -- NULL for writes made without a lock
    at     REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS rejections (
    id        INTEGER PRIMARY KEY,
    sku       TEXT NOT NULL,
    worker    INTEGER NOT NULL,
    fence     INTEGER NOT NULL,
    max_fence INTEGER NOT NULL,             -- what the store had seen when it refused
    at        REAL NOT NULL
);
"""

# One statement checks and moves the fence with the stock, so no other write can slip between.
# A holder may write several times under one lease (equal fence); only a lower fence is stale.
FENCED_WRITE = """
UPDATE items SET stock = :stock, max_fence = :fence
WHERE sku = :sku AND max_fence <= :fence
"""


class Shop:
    """Open the shop file; one instance per process (SQLite connections do not cross forks)."""

    def __init__(self, path: Path, *, busy_timeout: float = 15.0) -> None:
        self.path = path
        # Autocommit, with explicit BEGIN IMMEDIATE where a write must be atomic with its order row.
        self._db = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")  # readers (the progress line) never block writers

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    def create(self, sku: str, stock: int) -> None:
        """Create the tables and put ``stock`` units of ``sku`` on sale, replacing any earlier run."""
        self._db.executescript(SCHEMA)
        self._db.execute("BEGIN IMMEDIATE")
        self._db.execute("DELETE FROM orders WHERE sku = ?", (sku,))
        self._db.execute("DELETE FROM rejections WHERE sku = ?", (sku,))
        self._db.execute("INSERT OR REPLACE INTO items (sku, stock) VALUES (?, ?)", (sku, stock))
        self._db.execute("COMMIT")

    def read_stock(self, sku: str) -> int:
        """Return the units left of ``sku`` (step one of read-decrement-write)."""
        row = self._db.execute("SELECT stock FROM items WHERE sku = ?", (sku,)).fetchone()
        return int(row[0])

    def write_stock(self, sku: str, stock: int, *, worker: int, fence: int | None = None) -> bool:
        """Set the stock of ``sku`` and record the order, trusting the caller (no fence check)."""
        with self._transaction():
            self._db.execute("UPDATE items SET stock = ? WHERE sku = ?", (stock, sku))
            self._record_order(sku, worker, fence)
        return True

    def write_stock_fenced(self, sku: str, stock: int, *, worker: int, fence: int) -> bool:
        """Set the stock and record the order unless a higher fence wrote first; return if accepted.

        A refused write is logged in ``rejections``, with the highest fence the store had seen.
        """
        with self._transaction():
            params = {"sku": sku, "stock": stock, "fence": fence}
            accepted = self._db.execute(FENCED_WRITE, params).rowcount == 1
            if accepted:
                self._record_order(sku, worker, fence)
            else:
                self._db.execute(
                    "INSERT INTO rejections (sku, worker, fence, max_fence, at) "
                    "SELECT sku, ?, ?, max_fence, ? FROM items WHERE sku = ?",
                    (worker, fence, time.monotonic(), sku),
                )
        return accepted

    def tally(self, sku: str) -> tuple[int, int, int, int]:
        """Return ``(stock left, orders accepted, writes rejected, highest fence seen)`` for ``sku``."""
        row = self._db.execute(
            "SELECT stock, max_fence, (SELECT count(*) FROM orders WHERE sku = :sku), "
            "(SELECT count(*) FROM rejections WHERE sku = :sku) FROM items WHERE sku = :sku",
            {"sku": sku},
        ).fetchone()
        return int(row[0]), int(row[2]), int(row[3]), int(row[1])

    def _record_order(self, sku: str, worker: int, fence: int | None) -> None:
        self._db.execute(
            "INSERT INTO orders (sku, worker, fence, at) VALUES (?, ?, ?, ?)",
            (sku, worker, fence, time.monotonic()),
        )

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """Run the body as one ``BEGIN IMMEDIATE`` transaction, rolled back if it fails."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
