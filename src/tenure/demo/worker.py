"""One buyer of the flash sale, run as its own process: ``python -m tenure.demo.worker PLAN N``.

It buys one unit at a time by read-decrement-write until it reads a stock of zero: without a lock,
under a tenure lock, or under a lock with the lease's fence passed to the shop. In the paused
scenario one holder, after checking its lease, offers itself to the orchestrator to be frozen
just before its write, as a long GC pause or a swapped-out VM would freeze it.
"""

from __future__ import annotations

import os
import random
import sys
import time
import traceback
from pathlib import Path

import tenure
from tenure.demo.events import (
    CLAIM,
    CLAIM_INFO,
    GO,
    RESUME,
    EventLog,
    WorkerPlan,
    event_file,
    ready_file,
    touch,
    write_atomically,
)
from tenure.demo.shop import Shop

POLL = 0.005  # seconds between looks at a marker file


class Buyer:
    """Buy until sold out, following one plan."""

    def __init__(self, plan: WorkerPlan, worker: int) -> None:
        self.plan = plan
        self.worker = worker
        self.workdir = Path(plan.workdir)
        self.log = EventLog(event_file(self.workdir, worker))
        self.shop = Shop(Path(plan.shop_path))
        self.deadline = time.monotonic() + plan.max_run

    def run(self) -> None:
        """Wait for the start signal, then buy until sold out or out of time."""
        touch(ready_file(self.workdir, self.worker))
        if not self._wait_for(self.workdir / GO):
            raise TimeoutError("the orchestrator never gave the start signal")
        self.log.emit("start")
        if self.plan.mode == "none":
            while self._in_time() and self._buy_unlocked():
                pass
        else:
            with tenure.Coordinator(self.plan.url) as coord:
                lock = coord.lock(self.plan.lock_name, ttl=self.plan.ttl, timeout=self.plan.acquire_timeout)
                while self._in_time() and self._buy_locked(lock):
                    # Step back a moment so that the lock changes hands instead of staying with us
                    # (waiters poll the lock with a backoff, so a quick re-acquire would starve them).
                    time.sleep(random.uniform(1, 4) * max(self.plan.think, 0.005))
        self.log.emit("done")

    def close(self) -> None:
        """Close the shop and the event log."""
        self.shop.close()
        self.log.close()

    def _buy_unlocked(self) -> bool:
        qty = self._read()
        if qty <= 0:
            return False
        time.sleep(self.plan.think)  # meanwhile other buyers read the same stock
        self._write(qty - 1, fence=None)
        return True

    def _buy_locked(self, lock: tenure.Lock) -> bool:
        """Make one purchase under the lock; return False once sold out."""
        try:
            with lock.acquire() as lease:
                self.log.emit("acquired", fence=lease.fence)
                more = self._buy_under(lease)
            self.log.emit("released", fence=lease.fence)
            return more
        except tenure.LockLost as exc:
            # Leaving the block reports the loss: whatever we did since was unprotected.
            self.log.emit("lost", error=str(exc))
            return True
        except tenure.AcquireTimeout:
            self.log.emit("timeout")
            return True

    def _buy_under(self, lease: tenure.Lease) -> bool:
        qty = self._read()
        if qty <= 0:
            return False
        time.sleep(self.plan.think)
        lease.check()  # a careful client checks before writing...
        if self._claim_pause(qty, lease.fence):
            self._wait_for(self.workdir / RESUME)  # ...and may be frozen right after checking
        # The write goes ahead without checking again, as it would after a real pause.
        self._write(qty - 1, fence=lease.fence)
        return True

    def _claim_pause(self, qty: int, fence: int) -> bool:
        """Offer ourselves to be frozen, once per scenario, after enough sales; return if chosen."""
        pause_after = self.plan.pause_after
        if pause_after is None or self.plan.stock - qty < pause_after:
            return False
        try:
            os.close(os.open(self.workdir / CLAIM, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return False  # someone was paused already
        self.log.emit("offered", fence=fence)
        claim = {"worker": self.worker, "fence": fence, "pid": os.getpid()}
        write_atomically(self.workdir / CLAIM_INFO, claim)
        return True

    def _read(self) -> int:
        qty = self.shop.read_stock(self.plan.sku)
        self.log.emit("read", qty=qty)
        return qty

    def _write(self, qty: int, *, fence: int | None) -> None:
        if self.plan.mode == "fenced" and fence is not None:
            ok = self.shop.write_stock_fenced(self.plan.sku, qty, worker=self.worker, fence=fence)
        else:
            ok = self.shop.write_stock(self.plan.sku, qty, worker=self.worker, fence=fence)
        self.log.emit("write", ok=ok, qty=qty, fence=fence)

    def _in_time(self) -> bool:
        if time.monotonic() < self.deadline:
            return True
        self.log.emit("error", error=f"still buying after {self.plan.max_run:g} s; gave up")
        return False

    def _wait_for(self, marker: Path) -> bool:
        while not marker.exists():
            if time.monotonic() > self.deadline:
                return False
            time.sleep(POLL)
        return True


def main(argv: list[str]) -> int:
    """Run worker ``argv[2]`` of the plan in file ``argv[1]``; return the exit code."""
    if len(argv) != 3:
        print("usage: python -m tenure.demo.worker PLAN.json WORKER", file=sys.stderr)
        return 2
    buyer = Buyer(WorkerPlan.load(Path(argv[1])), int(argv[2]))
    try:
        buyer.run()
    except Exception as exc:
        buyer.log.emit("error", error=f"{type(exc).__name__}: {exc}")
        traceback.print_exc()
        return 1
    finally:
        buyer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
