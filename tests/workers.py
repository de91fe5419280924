"""Worker processes for the multi-process tests: ``python -m tests.workers ROLE ...``."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import tenure


def count(url: str, name: str, counter: Path, log: Path, rounds: int) -> int:
    """Increment a counter file ``rounds`` times under the lock, logging every hold."""
    holds = []
    with tenure.Coordinator(url) as coord:
        lock = coord.lock(name, ttl=5, timeout=60)
        for _ in range(rounds):
            with lock as lease:
                acquired = time.monotonic()
                value = int(counter.read_text() or "0")
                time.sleep(0.001)  # widen the read-modify-write window
                counter.write_text(str(value + 1))
                released = time.monotonic()
            holds.append({"fence": lease.fence, "acquired": acquired, "released": released})
    log.write_text(json.dumps(holds))
    return 0


def hold_and_check(url: str, name: str, ttl: str) -> int:
    """Hold the lock and check it every 20 ms; say LOST when told the lease is gone."""
    called = []
    with tenure.Coordinator(url) as coord:
        lease = coord.lock(name, ttl=float(ttl)).acquire(timeout=5)
        lease.on_lost(called.append)
        print(f"HELD {lease.fence}", flush=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                lease.check()
            except tenure.LockLost:
                # The renewer may be running the callbacks right now, on its own thread.
                waited = time.monotonic() + 2
                while not called and time.monotonic() < waited:
                    time.sleep(0.01)
                print(f"LOST {lease.fence} callback={bool(called)}", flush=True)
                try:
                    lease.release()
                except tenure.LockLost:
                    print("RELEASE-REFUSED", flush=True)
                return 0
            time.sleep(0.02)
    return 1


def hold_forever(url: str, name: str, ttl: str) -> int:
    """Hold the lock until killed."""
    with tenure.Coordinator(url) as coord, coord.lock(name, ttl=float(ttl)) as lease:
        print(f"HELD {lease.fence}", flush=True)
        time.sleep(60)
    return 1


if __name__ == "__main__":
    role, *args = sys.argv[1:]
    if role == "count":
        sys.exit(count(args[0], args[1], Path(args[2]), Path(args[3]), int(args[4])))
    if role == "hold-and-check":
        sys.exit(hold_and_check(*args))
    if role == "hold-forever":
        sys.exit(hold_forever(*args))
    sys.exit(f"unknown role {role}")
