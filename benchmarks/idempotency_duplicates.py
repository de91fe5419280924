"""Duplicates under concurrency for ``benchmarks.idempotency``: how often does one key run?

``processes`` worker processes of ``threads`` threads each call the same fresh key at the same
instant, key after key: key ``i`` is called by every thread at ``start + i * interval`` on the
host's monotonic clock (one clock for every process of the host), as tests/workers.py
``duplicates`` does. The function sleeps ``work`` seconds and returns who ran it. Per key the
parent adds up how many times the function ran (tenure must run each key exactly once), which
results the callers got back, and the errors the other callers got, by type.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.context import ForkServerContext, SpawnContext
from multiprocessing.queues import Queue
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event
from typing import Any

from benchmarks.contended import SETUP_TIMEOUT, START_DELAY, _gather, _stop
from benchmarks.idempotency_calls import open_keys, powertools_function, short_reason
from benchmarks.registry import Unavailable
from benchmarks.report import Record
from benchmarks.runner import num
from benchmarks.stats import percentile

PROCESSES, THREADS, KEYS = 8, 8, 200
INTERVAL = 0.05  # between two keys' instants: a key's duplicates are all answered well before
WORK = 0.001  # how long the function runs: the window in which a duplicate finds the run going
TIMEOUT = 30.0  # how long a tenure duplicate waits for the first run's result (its default)
RESULT = "result"  # the outcome of a call that returned


@dataclass(frozen=True)
class DuplicateConfig:
    """How many callers per key, how many keys, how far apart, how long the function runs."""

    processes: int = PROCESSES
    threads: int = THREADS
    keys: int = KEYS
    interval: float = INTERVAL
    work: float = WORK
    start_method: str = "spawn"


@dataclass(frozen=True)
class Caller:
    """Who is called: ``kind`` (``tenure`` or ``powertools``), the URL, and a space fresh per run."""

    kind: str
    url: str
    space: str


Report = tuple[int, dict[str, Any]]


def _open(caller: Caller, execute: Callable[[str], str]) -> tuple[Callable[[str], Any], Callable[[], None]]:
    """Return ``call(key)`` (what it returns: who ran the key) and a closer, for the caller's kind."""
    if caller.kind == "tenure":
        coordinator, keys = open_keys(caller.url, caller.space, timeout=TIMEOUT)

        def call_tenure(key: str) -> Any:
            return keys.run(key, execute, key)

        return call_tenure, coordinator.close
    function, close = powertools_function(caller.url, caller.space, execute)

    def call_powertools(key: str) -> Any:
        return function(order={"id": key})

    return call_powertools, close


def _worker(
    index: int,
    caller: Caller,
    config: DuplicateConfig,
    ready: Queue[tuple[int, str | None]],
    go: Event,
    start_at: Synchronized[float],
    results: Queue[Report],
) -> None:
    """Run in a child process: open the caller, report ready, then call key after key from every thread."""
    lock = threading.Lock()
    executions: Counter[str] = Counter()
    seen: dict[str, set[str]] = {}
    outcomes: Counter[str] = Counter()
    examples: dict[str, str] = {}
    late: list[float] = []
    took: list[float] = []
    pid = os.getpid()

    def execute(key: str) -> str:
        with lock:
            executions[key] += 1
        time.sleep(config.work)
        return f"{pid}-{threading.get_ident()}"

    try:
        call, close = _open(caller, execute)
    except BaseException:
        ready.put((index, traceback.format_exc()))
        return
    error: str | None = None
    try:
        call(f"warm-{index}-{os.urandom(4).hex()}")  # connects, and loads what a first call loads
        executions.clear()
    except BaseException:
        close()
        ready.put((index, traceback.format_exc()))
        return
    ready.put((index, None))

    def call_every_key() -> None:
        start = start_at.value
        for number in range(config.keys):
            instant = start + number * config.interval
            time.sleep(max(0.0, instant - time.monotonic()))
            key = f"dup-{number}"
            began = time.monotonic()
            try:
                who, outcome = str(call(key)), RESULT
            except Exception as exc:
                who, outcome = None, type(exc).__name__
                examples.setdefault(outcome, str(exc)[:300])
            ended = time.monotonic()
            with lock:
                late.append(began - instant)
                took.append(ended - began)
                outcomes[outcome] += 1
                if who is not None:
                    seen.setdefault(key, set()).add(who)

    try:
        if not go.wait(SETUP_TIMEOUT + START_DELAY):
            raise TimeoutError("the parent never gave the start signal")
        if start_at.value > 0:  # else another worker failed to set up: the run is called off
            threads = [threading.Thread(target=call_every_key) for _ in range(config.threads)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    except BaseException:
        error = traceback.format_exc()
    finally:
        close()
        report = {
            "executions": dict(executions),
            "seen": {key: sorted(who) for key, who in seen.items()},
            "outcomes": dict(outcomes),
            "examples": examples,
            "late": late,
            "took": took,
            "error": error,
        }
        results.put((index, report))


def _ms(values: list[float]) -> dict[str, float]:
    return {
        "p50": percentile(values, 50) * 1e3,
        "p99": percentile(values, 99) * 1e3,
        "max": max(values, default=float("nan")) * 1e3,
    }


def summarize(config: DuplicateConfig, reports: list[dict[str, Any]], errors: list[str]) -> Record:
    """Add up the workers' reports: executions per key, results seen, outcomes, timings."""
    executions: Counter[str] = Counter()
    seen: dict[str, set[str]] = {}
    outcomes: Counter[str] = Counter()
    examples: dict[str, str] = {}
    late: list[float] = []
    took: list[float] = []
    for report in reports:
        executions.update(report["executions"])
        for key, who in report["seen"].items():
            seen.setdefault(key, set()).update(who)
        outcomes.update(report["outcomes"])
        for kind, message in report["examples"].items():
            examples.setdefault(kind, message)
        late += report["late"]
        took += report["took"]
    per_key = [executions.get(f"dup-{number}", 0) for number in range(config.keys)]
    histogram = Counter(per_key)
    return {
        "skipped": None,
        "errors": errors,
        "calls": sum(outcomes.values()),
        "calls_expected": config.processes * config.threads * config.keys,
        "executions": sum(per_key),
        "executions_per_key_min": min(per_key, default=0),
        "executions_per_key_max": max(per_key, default=0),
        "keys_run_once": histogram[1],
        "keys_never_run": histogram[0],
        "keys_run_more_than_once": sum(count for runs, count in histogram.items() if runs > 1),
        "executions_histogram": {str(runs): count for runs, count in sorted(histogram.items())},
        "exactly_once": bool(per_key) and all(runs == 1 for runs in per_key),
        "keys_with_several_results": sum(len(who) > 1 for who in seen.values()),
        "outcomes": dict(outcomes.most_common()),
        "error_examples": examples,
        "start_late_ms": _ms(late),
        "call_ms": _ms(took),
    }


def measure_duplicates(caller: Caller, config: DuplicateConfig) -> Record:
    """Start the workers, give them one start instant once all are ready, and add up their reports.

    The parent opens the caller once first: a contender that cannot run here (no Records
    capability, a library missing) is skipped at once.
    """
    try:
        _, close = _open(caller, lambda key: key)
        close()
    except (ImportError, Unavailable) as exc:
        return {"skipped": str(exc), "errors": []}
    mp: SpawnContext | ForkServerContext = (
        multiprocessing.get_context("forkserver")
        if config.start_method == "forkserver"
        else multiprocessing.get_context("spawn")
    )
    ready: Queue[tuple[int, str | None]] = mp.Queue()
    results: Queue[Report] = mp.Queue()
    go = mp.Event()
    start_at = mp.Value("d", 0.0)
    args = (caller, config, ready, go, start_at, results)
    workers = [
        mp.Process(target=_worker, args=(i, *args), name=f"duplicates-{caller.kind}-{i}", daemon=True)
        for i in range(config.processes)
    ]
    for worker in workers:
        worker.start()
    try:
        readiness, setup_errors = _gather(ready, workers, time.monotonic() + SETUP_TIMEOUT, "set up")
        setup_errors += [f"worker {index} setup: {error}" for index, error in readiness if error is not None]
        if setup_errors:
            go.set()  # with start_at still 0: the workers that are ready leave at once
            return {"skipped": None, "errors": setup_errors}
        start_at.value = time.monotonic() + START_DELAY
        go.set()
        deadline = start_at.value + config.keys * config.interval + TIMEOUT + SETUP_TIMEOUT
        gathered, errors = _gather(results, workers, deadline, "finish")
    finally:
        _stop(workers)
    reports = [report for _, report in gathered]
    errors += [f"worker {index}: {report['error']}" for index, report in gathered if report["error"]]
    return summarize(config, reports, errors)


# -- the table -------------------------------------------------------------------------------------


def progress_line(outcome: Record) -> str:
    if outcome.get("skipped"):
        return f"skipped ({outcome['skipped']})"
    if "executions" not in outcome:
        return f"FAILED: {len(outcome['errors'])} worker errors"
    return (
        f"{outcome['executions']} executions over {outcome['calls']} calls, per key "
        f"{outcome['executions_per_key_min']}–{outcome['executions_per_key_max']}"
    )


def render_duplicates(dup: dict[str, Record], cfg: Record) -> list[str]:
    lines = [
        f"duplicates: {cfg['processes']} processes × {cfg['threads']} threads call each of {cfg['keys']} "
        f"fresh keys at one instant ({cfg['interval'] * 1e3:g} ms apart), fn sleeps {cfg['work'] * 1e3:g} ms",
    ]
    cols = (
        f"{'caller':<10} {'calls':>6} {'runs':>5} {'runs/key':>8} {'keys 1×':>7} {'>1×':>4} {'0×':>3} "
        f"{'results':>7} | {'start late p50/p99 ms':>21} | {'call p50/p99/max ms':>21}"
    )
    lines += [cols, "-" * len(cols)]
    for name, rec in dup.items():
        if rec.get("skipped"):
            lines.append(f"{name:<10} {short_reason(rec['skipped'])}")
            continue
        if "executions" not in rec:
            lines.append(f"{name:<10} FAILED: {len(rec['errors'])} worker errors (see the JSON)")
            continue
        late, took = rec["start_late_ms"], rec["call_ms"]
        lines.append(
            f"{name:<10} {rec['calls']:>6} {rec['executions']:>5} "
            f"{rec['executions_per_key_min']}–{rec['executions_per_key_max']:<6} {rec['keys_run_once']:>7} "
            f"{rec['keys_run_more_than_once']:>4} {rec['keys_never_run']:>3} "
            f"{rec['outcomes'].get('result', 0):>7} | "
            f"{num(late['p50'], '.2f'):>10}/{num(late['p99'], '.2f'):<10} | "
            f"{num(took['p50'], '.2f')}/{num(took['p99'], '.1f')}/{num(took['max'], ',.1f')}"
        )
        others = {kind: n for kind, n in rec["outcomes"].items() if kind != "result"}
        if others:
            listed = ", ".join(f"{kind} {n}" for kind, n in others.items())
            lines.append(f"{'':<10} instead of a result: {listed}")
        if rec["keys_with_several_results"] or rec["errors"]:
            lines.append(
                f"{'':<10} !! {rec['keys_with_several_results']} keys answered with several results, "
                f"{len(rec['errors'])} worker errors (see the JSON)"
            )
    return lines
