"""Worker processes for the shared-breaker tests: ``python -m tests.breaker_workers ROLE ...``.

Tests start one with ``breaker_worker(ROLE, ...)``; each says ``READY`` once connected, waits for
a line on stdin (so that all start together) and writes what it measured as JSON to its log.
Roles, each in a colour ("async" or "sync"):

- ``increment URL KEY ROUNDS LOG``: ROUNDS increments of a counter kept as bytes (update_state);
- ``fleet URL NAME FAILING LOG``: one caller through the shared breaker ``NAME``; a failing
  process (FAILING "1") fails every call, a watcher ("0") succeeds every 10 ms, until refused;
  then all keep calling, a trial call taking 0.3 s and succeeding, until a call is admitted as
  closed again. Times are the host's monotonic clock (one for every process).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import tenure
from tests.workers import ROOT

FLEET = {"min_calls": 20, "failure_rate": 0.5, "reset_after": 2.0, "trials": 3, "sync_interval": 0.5,
         "deadline": None}  # fmt: skip
RUN_LIMIT = 30.0  # seconds a fleet worker runs at most


def breaker_worker(*args: str) -> subprocess.Popen[str]:
    """Start ``python -m tests.breaker_workers *args`` with its stdin and output piped."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.breaker_workers", *args],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def ready_and_wait() -> None:
    print("READY", flush=True)
    sys.stdin.readline()


def increment(current: bytes | None, now: float) -> tuple[bytes, int]:
    count = 1 + (0 if current is None else int(current))
    return str(count).encode(), count


def sync_increments(url: str, key: str, rounds: int) -> list[int]:
    with tenure.Coordinator(url) as coord:
        store: Any = coord._store
        ready_and_wait()
        return [store.update_state(key, increment, 60) for _ in range(rounds)]


async def async_increments(url: str, key: str, rounds: int) -> list[int]:
    async with tenure.AsyncCoordinator(url) as coord:
        store: Any = coord._store
        ready_and_wait()
        return [await store.update_state(key, increment, 60) for _ in range(rounds)]


class Fleet:
    """What one fleet worker saw."""

    def __init__(self, failing: bool) -> None:
        self.failing = failing
        self.failures = 0  # calls it made that failed (before it saw the breaker open)
        self.successes = 0
        self.refused = 0
        self.trials = 0
        self.opened_seen: float | None = None  # its first refusal
        self.closed_seen: float | None = None  # its first call admitted as closed after that
        self.ends = time.monotonic() + RUN_LIMIT

    def running(self) -> bool:
        return self.closed_seen is None and time.monotonic() < self.ends

    def refused_now(self) -> None:
        self.refused += 1
        if self.opened_seen is None:
            self.opened_seen = time.monotonic()

    def report(self) -> dict[str, Any]:
        return dict(vars(self))


def sync_fleet(url: str, name: str, failing: bool) -> Fleet:
    seen = Fleet(failing)
    with tenure.Coordinator(url) as coord:
        breaker = coord.circuit_breaker(name, **FLEET)
        ready_and_wait()
        seen.ends = time.monotonic() + RUN_LIMIT
        while seen.running():
            try:
                call = breaker.admit()
            except tenure.CircuitOpen:
                seen.refused_now()
                time.sleep(0.01)
                continue
            if call.trial:
                seen.trials += 1
                time.sleep(0.3)
                call.succeeded()
            elif seen.opened_seen is not None:
                seen.closed_seen = time.monotonic()
                call.succeeded()
            elif failing:
                seen.failures += 1
                call.failed()
            else:
                seen.successes += 1
                call.succeeded()
                time.sleep(0.01)
    return seen


async def async_fleet(url: str, name: str, failing: bool) -> Fleet:
    seen = Fleet(failing)
    async with tenure.AsyncCoordinator(url) as coord:
        breaker = coord.circuit_breaker(name, **FLEET)
        ready_and_wait()
        seen.ends = time.monotonic() + RUN_LIMIT
        while seen.running():
            try:
                call = await breaker.admit()
            except tenure.CircuitOpen:
                seen.refused_now()
                await asyncio.sleep(0.01)
                continue
            if call.trial:
                seen.trials += 1
                await asyncio.sleep(0.3)
                await call.succeeded()
            elif seen.opened_seen is not None:
                seen.closed_seen = time.monotonic()
                await call.succeeded()
            elif failing:
                seen.failures += 1
                await call.failed()
            else:
                seen.successes += 1
                await call.succeeded()
                await asyncio.sleep(0.01)
    return seen


def main(role: str, colour: str, url: str, name: str, arg: str, log: str) -> None:
    report: dict[str, Any]
    if role == "increment":
        run = sync_increments if colour == "sync" else lambda *a: asyncio.run(async_increments(*a))
        report = {"seen": run(url, name, int(arg))}
    else:
        if colour == "sync":
            fleet = sync_fleet(url, name, arg == "1")
        else:
            fleet = asyncio.run(async_fleet(url, name, arg == "1"))
        report = fleet.report()
    Path(log).write_text(json.dumps(report))


if __name__ == "__main__":
    main(*sys.argv[1:7])
