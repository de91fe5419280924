"""Contended: N worker processes compete for one name for a fixed duration.

Each worker records four readings of ``time.monotonic()`` per acquisition. On Linux that clock is
CLOCK_MONOTONIC, one clock for the whole host, so records of different processes can be merged
and compared. Workers are started with ``spawn`` (or ``forkserver``), never ``fork``, so no lock
state, connection or thread is inherited from the parent.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import queue
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.context import ForkServerContext, SpawnContext
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event
from typing import Any, TypeVar

from benchmarks.registry import BenchContext, get_suite
from benchmarks.stats import ContendedSummary, Hold, summarize_contended

SETUP_TIMEOUT = 60.0  # spawning 8 interpreters and importing a client can be slow on a busy host
START_DELAY = 0.2  # lets every worker come back from its wait before the window opens
LATE_GRACE = 30.0  # a waiter inside acquire() at the end of the window still finishes its wait


@dataclass(frozen=True)
class ContendedConfig:
    """How many processes, for how long, and how long each holds the lock."""

    processes: int = 8
    duration: float = 3.0
    hold: float = 0.0
    start_method: str = "spawn"


@dataclass(frozen=True)
class ContendedResult:
    """The summary (None if the workers could not start), attempts that raised, worker errors."""

    summary: ContendedSummary | None
    failed_attempts: int
    errors: tuple[str, ...]


def _worker(
    index: int,
    suite_name: str,
    contender_name: str,
    ctx: BenchContext,
    lock_name: str,
    config: ContendedConfig,
    ready: Queue[tuple[int, str | None]],
    go: Event,
    start_at: Synchronized[float],
    results: Queue[tuple[int, list[float], list[float], str | None]],
) -> None:
    """Run in a child process: set up, report ready, then acquire/hold/release until the window ends."""
    flat: list[float] = []  # wait_started, acquired, releasing, released, ... (cheaper than objects)
    failed: list[float] = []  # how long each attempt that raised had waited
    try:
        handle = get_suite(suite_name).contender(contender_name).factory(ctx, lock_name)
        handle.acquire()  # connects and creates files, so the window measures only hand-offs
        handle.release()
    except BaseException:
        ready.put((index, traceback.format_exc()))
        return
    ready.put((index, None))
    error: str | None = None
    try:
        if not go.wait(SETUP_TIMEOUT + START_DELAY):
            raise TimeoutError("the parent never gave the start signal")
        if start_at.value <= 0:
            return  # another worker failed to set up: the run is called off
        end = start_at.value + config.duration
        time.sleep(max(0.0, start_at.value - time.monotonic()))
        monotonic, hold, append = time.monotonic, config.hold, flat.append
        while (wait_started := monotonic()) < end:
            try:
                handle.acquire()
            except Exception:
                failed.append(monotonic() - wait_started)  # e.g. a timeout; the worker competes on
                continue
            acquired = monotonic()
            if hold > 0:
                time.sleep(hold)
            releasing = monotonic()
            handle.release()
            append(wait_started)
            append(acquired)
            append(releasing)
            append(monotonic())
    except BaseException:
        error = traceback.format_exc()
    finally:
        handle.close()
        results.put((index, flat, failed, error))


def measure_contended(
    suite_name: str, contender_name: str, ctx: BenchContext, lock_name: str, config: ContendedConfig
) -> ContendedResult:
    """Start the workers, open the window once all are ready, and merge what they recorded."""
    mp: SpawnContext | ForkServerContext = (
        multiprocessing.get_context("forkserver")
        if config.start_method == "forkserver"
        else multiprocessing.get_context("spawn")
    )
    ready: Queue[tuple[int, str | None]] = mp.Queue()
    results: Queue[tuple[int, list[float], list[float], str | None]] = mp.Queue()
    go = mp.Event()
    start_at = mp.Value("d", 0.0)
    args = (suite_name, contender_name, ctx, lock_name, config, ready, go, start_at, results)
    workers = [
        mp.Process(target=_worker, args=(i, *args), name=f"bench-{contender_name}-{i}", daemon=True)
        for i in range(config.processes)
    ]
    for worker in workers:
        worker.start()
    errors: list[str] = []
    holds: list[Hold] = []
    failed: list[float] = []
    try:
        readiness, setup_errors = _gather(ready, workers, time.monotonic() + SETUP_TIMEOUT, "set up")
        setup_errors += [f"worker {index} setup: {error}" for index, error in readiness if error is not None]
        if setup_errors:
            go.set()  # with start_at still 0: the workers that are ready leave at once
            return ContendedResult(None, 0, tuple(setup_errors))
        start_at.value = time.monotonic() + START_DELAY
        go.set()
        # Drain the queue before joining: a child blocks at exit until its queued data is read.
        deadline = start_at.value + config.duration + LATE_GRACE
        reports, errors = _gather(results, workers, deadline, "finish")
        for index, flat, worker_failed, error in reports:
            failed += worker_failed
            if error is not None:
                errors.append(f"worker {index}: {error}")
            holds.extend(Hold(index, *flat[i : i + 4]) for i in range(0, len(flat), 4))
    finally:
        _stop(workers)
    summary = summarize_contended(holds, config.processes, start_at.value, config.duration, failed)
    return ContendedResult(summary, len(failed), tuple(errors))


Report = TypeVar("Report", bound=tuple[Any, ...])


def _gather(
    source: Queue[Report], workers: Sequence[BaseProcess], deadline: float, what: str
) -> tuple[list[Report], list[str]]:
    """Take one report (led by its worker's index) from each worker, until the deadline.

    A worker that dies without reporting (a crash while importing, a kill) is noticed at once,
    so a broken contender fails its run in seconds instead of waiting out the deadline.
    """
    reports: list[Report] = []
    seen: set[int] = set()
    while len(seen) < len(workers):
        try:
            report = source.get(timeout=0.2)
        except queue.Empty:
            dead = [i for i, w in enumerate(workers) if i not in seen and w.exitcode is not None]
            if dead:
                # It may have reported just before exiting: give the queue one last look.
                with contextlib.suppress(queue.Empty):
                    while True:
                        report = source.get(timeout=0.2)
                        reports.append(report)
                        seen.add(report[0])
                dead = [i for i in dead if i not in seen]
                if dead:
                    return reports, [f"workers {dead} exited before they could {what}"]
            if time.monotonic() > deadline:
                return reports, [f"workers did not {what} in time ({len(seen)}/{len(workers)} did)"]
            continue
        reports.append(report)
        seen.add(report[0])
    return reports, []


def _stop(workers: Sequence[BaseProcess]) -> None:
    """Join the workers; terminate only those that overstay (they are ours, started above)."""
    for worker in workers:
        worker.join(timeout=10.0)
    for worker in workers:
        if worker.is_alive():
            worker.terminate()
            worker.join(timeout=5.0)
