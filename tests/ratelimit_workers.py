"""Worker processes for the rate-limit tests: ``python -m tests.ratelimit_workers ROLE ...``.

Tests start one with ``rate_worker(ROLE, ...)`` and read what it says with
``tests.workers.read_line``. Every role takes a colour ("async" or "sync") and says
``READY <time.time()>`` once connected (its clock as it sees it: the skew tests check it),
then waits for a line on stdin, so that the test releases all its processes together.

Limiters here use ``deadline=None`` (the backend's op_timeout) and ``on_unavailable="deny"``:
a decision slowed down by load must be a real one, and an unavailable one is never counted as
admitted (they are counted apart).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import tenure
from tests.workers import ROOT

SYNC_CALLERS = 16  # threads per sync process: concurrent enough, and not a thread per request


def rate_worker(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start ``python -m tests.ratelimit_workers *args`` with its stdin and output piped."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.ratelimit_workers", *args],
        cwd=ROOT,
        env=None if env is None else {**os.environ, **env},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def ready_and_wait() -> str:
    """Say READY with this process's wall clock, then wait for the test's go; return its line."""
    print(f"READY {time.time():.6f}", flush=True)
    return sys.stdin.readline()


def end_of(go: str) -> float:
    """Return the end of a run from a ``go <monotonic time>`` line: one for every process.

    The host's monotonic clock is one for all its processes, so all stop together: a process
    that started late does not run on alone (offering less than the rate) after the others.
    """
    return float(go.split()[1])


# -- burst: many requests at once against one budget ---------------------------------------


def burst(url: str, name: str, colour: str, rate: str, size: str, requests: str, log: Path) -> int:
    """Make ``requests`` decisions at once on key "k"; log how many were admitted."""
    args = (url, name, rate, int(size), int(requests))
    outcome = asyncio.run(_burst_async(*args)) if colour == "async" else _burst_sync(*args)
    log.write_text(json.dumps(outcome))
    return 0


async def _burst_async(url: str, name: str, rate: str, size: int, requests: int) -> dict[str, object]:
    async with tenure.AsyncCoordinator(url) as coord:
        limiter = coord.rate_limiter(name, rate=rate, burst=size, deadline=None, on_unavailable="deny")
        await limiter.peek(key="k")  # connected: the go releases decisions, not connections
        await asyncio.to_thread(ready_and_wait)
        started = time.time()
        states = await asyncio.gather(
            *(limiter.decide(key="k") for _ in range(requests)), return_exceptions=True
        )
        return _tally(list(states), started)


def _burst_sync(url: str, name: str, rate: str, size: int, requests: int) -> dict[str, object]:
    with tenure.Coordinator(url) as coord:
        limiter = coord.rate_limiter(name, rate=rate, burst=size, deadline=None, on_unavailable="deny")
        limiter.peek(key="k")
        with ThreadPoolExecutor(SYNC_CALLERS) as pool:
            ready_and_wait()
            started = time.time()
            futures = [pool.submit(limiter.decide, key="k") for _ in range(requests)]
            states: list[object] = []
            for future in futures:
                try:
                    states.append(future.result())
                except Exception as exc:
                    states.append(exc)
        return _tally(states, started)


def _tally(states: list[object], started: float) -> dict[str, object]:
    decided = [state for state in states if isinstance(state, tenure.RateState)]
    return {
        "admitted": sum(state.allowed and not state.unavailable for state in decided),
        "refused": sum(not state.allowed and not state.unavailable for state in decided),
        "unavailable": sum(state.unavailable for state in decided),
        "errors": [f"{type(exc).__name__}: {exc}" for exc in states if isinstance(exc, BaseException)],
        "started": started,
        "ended": time.time(),
    }


# -- sustain: a steady load above the rate for a while -------------------------------------


class Load:
    """What one process offered and was admitted, by the host's wall clock (the servers' too)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.offered = 0  # decisions made (an acquire that slept and retried counts once)
        self.admitted = 0
        self.refused = 0
        self.unavailable = 0
        self.errors: list[str] = []
        self.first_sent = float("inf")
        self.last_admitted = 0.0
        self.refusals: list[tuple[float, float]] = []  # (sent, answered) of each refused decision

    def record(self, sent: float, allowed: bool, unavailable: bool = False, one_step: bool = True) -> None:
        """Count a decision sent at ``sent`` (``one_step``: one store step, not an acquire's wait)."""
        answered = time.time()
        with self.lock:
            self.offered += 1
            self.first_sent = min(self.first_sent, sent)
            if unavailable:
                self.unavailable += 1
            elif allowed:
                self.admitted += 1
                self.last_admitted = max(self.last_admitted, answered)
            else:
                self.refused += 1
                if one_step:
                    self.refusals.append((sent, answered))

    def report(self) -> dict[str, object]:
        return {key: value for key, value in vars(self).items() if key != "lock"}


def sustain(url: str, name: str, colour: str, mode: str, rate: str, size: str, offer: str, log: Path) -> int:
    """Offer load on key "k" until the go line's end: ``try`` paces try_acquire at ``offer`` calls/s,
    ``acquire`` keeps callers asking (each sleeps until its permit is due)."""
    args = (url, name, mode, rate, int(size), float(offer))
    load = asyncio.run(_sustain_async(*args)) if colour == "async" else _sustain_sync(*args)
    log.write_text(json.dumps(load.report()))
    return 0


CALLERS = 4  # concurrent callers per process (tasks or threads)


async def _sustain_async(url: str, name: str, mode: str, rate: str, size: int, offer: float) -> Load:
    load = Load()
    async with tenure.AsyncCoordinator(url) as coord:
        limiter = coord.rate_limiter(name, rate=rate, burst=size, deadline=None, on_unavailable="deny")
        await limiter.peek(key="k")
        ends = end_of(await asyncio.to_thread(ready_and_wait))

        async def pace(caller: int) -> None:  # CALLERS callers, offer calls a second in all
            due = time.monotonic() + caller / offer
            while due < ends:
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                sent = time.time()
                state = await limiter.decide(key="k")
                load.record(sent, state.allowed, state.unavailable)
                due = max(due + CALLERS / offer, time.monotonic())  # late: no catching up

        async def ask() -> None:
            while (left := ends - time.monotonic()) > 0:
                sent = time.time()
                try:
                    await limiter.acquire(key="k", timeout=left)
                except tenure.RateLimited as exc:
                    load.record(sent, False, exc.unavailable, one_step=False)
                    if not exc.unavailable:
                        return  # due past the end
                else:
                    load.record(sent, True)

        async def guarded(caller: Awaitable[None]) -> None:
            try:
                await caller
            except Exception as exc:
                load.errors.append(f"{type(exc).__name__}: {exc}")

        await asyncio.gather(*(guarded(pace(i) if mode == "try" else ask()) for i in range(CALLERS)))
    return load


def _sustain_sync(url: str, name: str, mode: str, rate: str, size: int, offer: float) -> Load:
    load = Load()
    with tenure.Coordinator(url) as coord:
        limiter = coord.rate_limiter(name, rate=rate, burst=size, deadline=None, on_unavailable="deny")
        limiter.peek(key="k")
        ends = end_of(ready_and_wait())

        def pace(caller: int) -> None:
            due = time.monotonic() + caller / offer
            while due < ends:
                time.sleep(max(0.0, due - time.monotonic()))
                sent = time.time()
                state = limiter.decide(key="k")
                load.record(sent, state.allowed, state.unavailable)
                due = max(due + CALLERS / offer, time.monotonic())  # late: no catching up

        def ask(_: int) -> None:
            while (left := ends - time.monotonic()) > 0:
                sent = time.time()
                try:
                    limiter.acquire(key="k", timeout=left)
                except tenure.RateLimited as exc:
                    load.record(sent, False, exc.unavailable, one_step=False)
                    if not exc.unavailable:
                        return
                else:
                    load.record(sent, True)

        def guarded(caller: int) -> None:
            try:
                (pace if mode == "try" else ask)(caller)
            except Exception as exc:
                load.errors.append(f"{type(exc).__name__}: {exc}")

        threads = [threading.Thread(target=guarded, args=(i,)) for i in range(CALLERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return load


# -- decide: one decision per line on stdin (the skew tests drive it) ----------------------


def decide(url: str, name: str, colour: str, rate: str, size: str) -> int:
    """Answer ``try KEY`` and ``peek KEY`` lines with ``STATE <json>``, until ``quit``."""
    if colour == "async":
        asyncio.run(_decide_async(url, name, rate, int(size)))
    else:
        with tenure.Coordinator(url) as coord:
            limiter = coord.rate_limiter(name, rate=rate, burst=int(size), deadline=None)
            limiter.peek(key="warm-up")
            print(f"READY {time.time():.6f}", flush=True)
            for line in sys.stdin:
                if line.strip() == "quit":
                    break
                verb, key = line.split()
                state = limiter.decide(key=key) if verb == "try" else limiter.peek(key=key)
                print(f"STATE {json.dumps(state._asdict())}", flush=True)
    return 0


async def _decide_async(url: str, name: str, rate: str, size: int) -> None:
    async with tenure.AsyncCoordinator(url) as coord:
        limiter = coord.rate_limiter(name, rate=rate, burst=size, deadline=None)
        await limiter.peek(key="warm-up")
        print(f"READY {time.time():.6f}", flush=True)
        while line := await asyncio.to_thread(sys.stdin.readline):
            if line.strip() == "quit":
                break
            verb, key = line.split()
            state = await (limiter.decide(key=key) if verb == "try" else limiter.peek(key=key))
            print(f"STATE {json.dumps(state._asdict())}", flush=True)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(process)d %(levelname)s %(message)s")  # to stderr
    role, *args = sys.argv[1:]
    if role == "burst":
        sys.exit(burst(*args[:6], Path(args[6])))
    if role == "sustain":
        sys.exit(sustain(*args[:7], Path(args[7])))
    if role == "decide":
        sys.exit(decide(*args))
    sys.exit(f"unknown role {role}")
