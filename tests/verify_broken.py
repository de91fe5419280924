"""Deliberately broken locks on SQLite, and a worker that records a verify history with one.

``python tests/verify_broken.py DB HISTORY NAME MODE TTL WORK SECONDS`` runs one worker process.
MODE is the lock's flaw:

- ``correct``: a lease with a growing fence, renewed every ttl/3, checked against its local
  deadline before writing, and a release that reports a lost lease (the control);
- ``nofence``: as correct, but every acquisition gets fence 0;
- ``norenew``: never renewed, and the holder is never told (its work outlasts the ttl);
- ``ignoreloss``: renewed, but a failed renewal, an expired deadline and a release that found
  the lock taken are all ignored.

The lock and both stores live in one SQLite file: each step is one ``BEGIN IMMEDIATE``
transaction, and a write's time is taken inside it, so the history has the stores' order.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import threading
import time
from pathlib import Path

NS = 1_000_000_000
MODES = ("correct", "nofence", "norenew", "ignoreloss")


def create(db: Path) -> None:
    """Create the lock's table and the two stores."""
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE lock (id INTEGER PRIMARY KEY, holder TEXT, fence INTEGER, expires INTEGER)")
        con.execute("INSERT INTO lock VALUES (1, NULL, 0, 0)")
        con.execute("CREATE TABLE store (name TEXT PRIMARY KEY, value INTEGER, floor INTEGER)")
        con.execute("INSERT INTO store VALUES ('fenced', 0, -1), ('unfenced', 0, -1)")


def holder(db: Path) -> str | None:
    """Return who holds the lock now (its row, whether or not its lease has expired)."""
    with sqlite3.connect(db, timeout=5) as con:
        row = con.execute("SELECT holder, expires FROM lock WHERE id = 1").fetchone()
    return row[0] if row[0] is not None and row[1] > time.monotonic_ns() else None


class Worker:
    def __init__(self, db: Path, history: Path, name: str, mode: str, ttl: float, work: float) -> None:
        self.con = sqlite3.connect(db, timeout=10, isolation_level=None, check_same_thread=False)
        self.out = history.open("a", buffering=1, encoding="utf-8")
        self.name, self.mode, self.ttl, self.work = name, mode, ttl, work
        self.mutex = threading.Lock()  # one SQLite connection shared with the renewer thread
        self.deadline = 0  # the local end of the lease (ns)
        self.renewal_failed = False

    def emit(self, kind: str, at: int | None = None, **fields: object) -> None:
        event = {"process": self.name, "time": at or time.monotonic_ns(), "type": kind, "fence": None}
        event.update({"ok": True, "store": None, "ttl": None, "detail": ""}, **fields)
        self.out.write(json.dumps(event) + "\n")

    def step(self, sql: str, *args: object) -> sqlite3.Cursor:
        """Run one statement in its own immediate transaction."""
        with self.mutex:
            self.con.execute("BEGIN IMMEDIATE")
            try:
                cursor = self.con.execute(sql, args)
                rows = cursor.fetchall()
                self.con.execute("COMMIT")
            except BaseException:
                self.con.execute("ROLLBACK")
                raise
        return rows  # type: ignore[return-value]

    def acquire(self) -> int | None:
        now = time.monotonic_ns()
        grow = 0 if self.mode == "nofence" else 1
        rows = self.step(
            "UPDATE lock SET holder = ?, fence = fence + ?, expires = ? "
            "WHERE id = 1 AND (holder IS NULL OR expires <= ?) RETURNING fence",
            self.name, grow, now + int(self.ttl * NS), now,
        )  # fmt: skip
        if not rows:
            return None
        self.deadline, self.renewal_failed = now + int(self.ttl * NS), False
        return int(rows[0][0])

    def renew_until(self, done: threading.Event) -> None:
        while not done.wait(self.ttl / 3):
            now = time.monotonic_ns()
            rows = self.step(
                "UPDATE lock SET expires = ? WHERE id = 1 AND holder = ? AND expires > ? RETURNING 1",
                now + int(self.ttl * NS), self.name, now,
            )  # fmt: skip
            if rows:
                self.deadline = now + int(self.ttl * NS)
            else:
                self.renewal_failed = True

    def lost(self) -> bool:
        if self.mode in ("norenew", "ignoreloss"):
            return False  # the flaw: never told
        return self.renewal_failed or time.monotonic_ns() >= self.deadline

    def write(self, store: str, fence: int, read: int) -> None:
        with self.mutex:
            self.con.execute("BEGIN IMMEDIATE")
            at = time.monotonic_ns()
            floor = self.con.execute("SELECT floor FROM store WHERE name = ?", (store,)).fetchone()[0]
            ok = store == "unfenced" or fence >= floor
            if ok:
                self.con.execute(
                    "UPDATE store SET value = ?, floor = ? WHERE name = ?", (read + 1, fence, store)
                )
            self.con.execute("COMMIT")
        self.emit("write", at, fence=fence, ok=ok, store=store, detail=f"{read}->{read + 1}")

    def one_round(self) -> None:
        fence = self.acquire()
        if fence is None:
            time.sleep(0.01)
            return
        self.emit("acquire", fence=fence, ttl=self.ttl)
        done = threading.Event()
        renewer = threading.Thread(target=self.renew_until, args=(done,), daemon=True)
        if self.mode != "norenew":
            renewer.start()
        try:
            values = dict(self.step("SELECT name, value FROM store"))
            time.sleep(self.work)
            if self.lost():
                self.emit("lost", fence=fence, detail="the lease expired")
            else:
                self.write("fenced", fence, values["fenced"])
                self.write("unfenced", fence, values["unfenced"])
        finally:
            done.set()
            if renewer.is_alive():
                renewer.join()
        released = self.step(
            "UPDATE lock SET holder = NULL WHERE id = 1 AND holder = ? RETURNING 1", self.name
        )
        if released or self.mode in ("norenew", "ignoreloss"):
            self.emit("release", fence=fence)
        else:
            self.emit("release", fence=fence, ok=False, detail="it had been lost")
        time.sleep(0.02)


def main(argv: list[str]) -> int:
    db, history, name, mode = Path(argv[1]), Path(argv[2]), argv[3], argv[4]
    ttl, work, seconds = float(argv[5]), float(argv[6]), float(argv[7])
    assert mode in MODES, mode
    worker = Worker(db, history, name, mode, ttl, work)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        worker.one_round()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
