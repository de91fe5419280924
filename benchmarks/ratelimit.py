"""Rate limits side by side (issue 16): ``python -m benchmarks.ratelimit``.

For each suite (``--suite NAME``, repeatable; default ``redis-single``), in the suite's own server
environment (servers with their packaged durability, as ``benchmarks.run`` starts them), if its
backend declares ``Capability.COUNTERS`` (else its tenure rows say ``no Counters capability``):

- **per decision**: one process. ``try_acquire(key=)`` of a limiter that admits every call (the
  write path), sync and async, with the default deadline (0.05 s) and without one, against the
  backend's raw floor in the same colour: on Redis an ``EVALSHA`` of a trivial script with
  tenure's client options (issue 16's target: ≤ 1.1×); on the SQL suites the suite's lock
  floor (as ``benchmarks.permits``) and one autocommit upsert. Repeated and interleaved, medians
  with their spread, ratios.
- **throughput** (``redis-single``): decisions/s on one key at 10,000/min from 1 and several
  processes: tenure against ``limits`` (moving window, fixed window, sliding window counter) and
  ``pyrate-limiter`` (``RedisBucket``, and its GCRA on ``RedisStateStore``); targets: tenure ≥ 3×
  limits' moving window and ≥ its fixed window.
- **accuracy** (``redis-single``): twice the limit offered from several processes at once:
  admitted against the most each limiter's own definition allows over the run.

Tables to stdout, progress to stderr, every figure to ``benchmarks/results/ratelimit-<time>.json``.
Nothing is asserted; the exit code is 1 if a worker crashed, a decider raised, or tenure
admitted more than its budget (a peer that does is reported, flagged ``!!``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import ratelimit_report as report
from benchmarks.ratelimit_handles import DECIDERS, Limit, build_async, build_sync
from benchmarks.ratelimit_load import fresh_key, measure_accuracy, measure_throughput, throughput_ratios
from benchmarks.registry import BenchContext, LockHandle, Unavailable, get_suite
from benchmarks.report import Record
from benchmarks.run import pinned, progress
from benchmarks.runner import (
    add_common_args,
    add_run_args,
    check_args,
    run_suites,
    single_process_config,
    spread,
    uncontended_ratios,
)
from benchmarks.stats import percentile
from benchmarks.uncontended import UncontendedConfig, UncontendedResult, measure_uncontended

REPEAT = 5
LOAD_REPEAT = 3
PROCESSES = (1, 4)
LOAD_SECONDS = 3.0
# Every per-decision call is admitted: the step that writes, a decision's dearest path.
ADMIT_ALL = Limit(1_000_000, 1.0, 1_000_000)
# Issue 16's limit. tenure's and pyrate's token buckets get a burst of the whole minute's
# budget, so every contender admits the first 10,000 calls of a fresh key, as the windows do.
AT_LIMIT = Limit(10_000, 60.0, 10_000)
QUICK_AT_LIMIT = Limit(200, 60.0, 200)
# Issue 16's targets: computed for the report, never asserted.
TARGET_VS_FLOOR = 1.1  # a decision's p50 ÷ the raw floor's, at most (the others: ratelimit_load)

# Per suite: the raw floors of one decision (a suite lock floor is named as in its suite).
FLOORS: dict[str, tuple[str, ...]] = {
    "redis-single": ("redis-evalsha", "redis-evalsha-async", "redis-evalsha-rate-step"),
    "sqlite-local": ("sqlite-floor", "sqlite-write"),
    "postgresql": ("postgresql-floor", "postgresql-write"),
    "mysql": ("mysql-floor", "mysql-write"),
}
TENURE = ("tenure", "tenure-no-deadline", "tenure-async", "tenure-async-no-deadline")


def decision_ratios(suite_name: str) -> list[tuple[str, str, float | None]]:
    if suite_name == "redis-single":
        floor, async_floor, script = FLOORS[suite_name]
        return [
            ("tenure", floor, TARGET_VS_FLOOR),
            ("tenure-no-deadline", floor, None),
            ("tenure-async", async_floor, TARGET_VS_FLOOR),
            ("tenure-async-no-deadline", async_floor, None),
            (script, floor, None),  # what tenure's script costs over the trivial one
            ("tenure-no-deadline", script, None),  # what tenure's Python around it costs
        ]
    # SQL: the suite's lock floor (two statements a cycle) and one upsert (an admit's least).
    lock_floor, write = FLOORS[suite_name]
    return [
        ("tenure", lock_floor, None),
        ("tenure", write, None),
        ("tenure-no-deadline", write, None),
        ("tenure-async", write, None),
        ("tenure-async-no-deadline", write, None),
    ]


# -- per decision ----------------------------------------------------------------------------------


async def _measure_async(
    name: str, ctx: BenchContext, key: str, config: UncontendedConfig
) -> UncontendedResult:
    """``measure_uncontended``'s loop inside an event loop: warm-up, bounds, one await per cycle."""
    decider = await build_async(name, ctx, key, ADMIT_ALL)
    try:
        clock = time.perf_counter_ns
        limit = clock() + int(config.warmup_seconds * 1e9)
        for _ in range(config.warmup_cycles):
            await decider.decide()
            if clock() >= limit:
                break
        samples: list[int] = []
        begin = clock()
        limit = begin + int(config.max_seconds * 1e9)
        for _ in range(config.max_cycles):
            started = clock()
            await decider.decide()
            ended = clock()
            samples.append(ended - started)
            if ended >= limit:
                break
        seconds = (clock() - begin) / 1e9
    finally:
        await decider.close()
    micros = [s / 1e3 for s in samples]
    return UncontendedResult(
        cycles=len(samples),
        seconds=seconds,
        cycles_per_s=len(samples) / seconds,
        p50_us=percentile(micros, 50),
        p99_us=percentile(micros, 99),
        mean_us=sum(micros) / len(micros),
        max_us=max(micros),
    )


def _role_summary(suite_name: str, name: str) -> tuple[str, str]:
    if name in DECIDERS:
        return DECIDERS[name].role, DECIDERS[name].summary
    contender = get_suite(suite_name).contender(name)
    return str(contender.role), f"the suite's lock floor: {contender.summary}"


def _measure_one(
    suite_name: str, name: str, ctx: BenchContext, config: UncontendedConfig
) -> UncontendedResult:
    key = fresh_key("decision")
    if name in DECIDERS and DECIDERS[name].make_async is not None:
        return asyncio.run(_measure_async(name, ctx, key, config))
    handle: LockHandle
    if name in DECIDERS:
        handle = build_sync(name, ctx, key, ADMIT_ALL)
    else:
        handle = get_suite(suite_name).contender(name).factory(ctx, key)
    try:
        return measure_uncontended(handle, config)
    finally:
        with contextlib.suppress(Exception):
            handle.close()


def measure_decisions(
    suite_name: str, ctx: BenchContext, config: UncontendedConfig, repeat: int, pin_cpu: int | None
) -> dict[str, Record]:
    """Run every decider ``repeat`` times, interleaved round by round; records as ``permits``' own."""
    names = [*TENURE, *FLOORS[suite_name]]
    skipped: dict[str, str] = {}
    errors: dict[str, str] = {}
    runs: dict[str, list[UncontendedResult]] = {name: [] for name in names}
    with pinned(pin_cpu, ctx):
        for round_ in range(repeat):
            for name in names:
                if name in skipped or name in errors:
                    continue
                try:
                    result = _measure_one(suite_name, name, ctx, config)
                except (ImportError, Unavailable) as exc:
                    skipped[name] = str(exc)
                    progress(f"  {name}: skipped ({exc})")
                    continue
                except Exception as exc:
                    errors[name] = f"{type(exc).__name__}: {exc}"
                    progress(f"  {name}: ERROR {errors[name]}")
                    continue
                runs[name].append(result)
                progress(
                    f"  decision {round_ + 1}/{repeat} {name}: {result.cycles_per_s:,.0f}/s, "
                    f"p50 {result.p50_us:.1f} µs"
                )
    records: dict[str, Record] = {}
    for name in names:
        role, summary = _role_summary(suite_name, name)
        results = runs[name]
        records[name] = {
            "role": role,
            "summary": summary,
            "skipped": skipped.get(name),
            "error": errors.get(name),
            "p50_us": spread([r.p50_us for r in results]),
            "p99_us": spread([r.p99_us for r in results]),
            "cycles_per_s": spread([r.cycles_per_s for r in results]),
            "runs": [dataclasses.asdict(r) for r in results],
        }
    return records


# -- the command -----------------------------------------------------------------------------------


def measure_suite(name: str, args: argparse.Namespace, tmp: Path, machine: Record) -> tuple[Record, str]:
    """Run one suite's measurements in its environment; return its record and tables."""
    per_decision = single_process_config(args)
    repeat = args.repeat or (1 if args.quick else REPEAT)
    suite = get_suite(name)
    workdir = Path(tmp, name)
    workdir.mkdir()
    progress(f"suite {name} (rate limits) in {workdir}")
    load = name == "redis-single" and not args.no_load
    processes = tuple(args.processes or ((2,) if args.quick else PROCESSES))
    at_limit = QUICK_AT_LIMIT if args.quick else AT_LIMIT
    throughput: dict[str, dict[str, dict[str, Record]]] | None = None
    accuracy: dict[str, Record] | None = None
    with suite.environment(workdir) as params:
        ctx = BenchContext(suite.name, str(workdir), params)
        decisions = measure_decisions(name, ctx, per_decision, repeat, args.pin_cpu)
        if load:
            seconds = args.load_seconds or (0.3 if args.quick else LOAD_SECONDS)
            load_repeat = args.load_repeat or (1 if args.quick else LOAD_REPEAT)
            throughput = measure_throughput(ctx, at_limit, processes, seconds, load_repeat, args.start_method)
            accuracy = measure_accuracy(ctx, at_limit, max(processes), args.start_method)
    ratios = uncontended_ratios(decisions, decision_ratios(name))
    record: Record = {
        "environment": params,
        "config": {
            "repeat": repeat,
            "pin_cpu": args.pin_cpu,
            "per_decision": dataclasses.asdict(per_decision),
            "per_decision_limit": dataclasses.asdict(ADMIT_ALL),
            "load": None
            if not load
            else {"limit": dataclasses.asdict(at_limit), "processes": list(processes)},
        },
        "per_decision": decisions,
        "ratios": ratios,
        "throughput": throughput,
        "throughput_ratios": None if throughput is None else throughput_ratios(throughput),
        "accuracy": accuracy,
    }
    header = (
        f"nproc {machine['nproc']}, load {machine['loadavg_at_start']}, {repeat}× per decision "
        f"≤{per_decision.max_cycles} calls/≤{per_decision.max_seconds:g} s"
        f"{'' if args.pin_cpu is None else f' on CPU {args.pin_cpu}'}"
    )
    return record, report.render(name, record, header)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.ratelimit", description=(__doc__ or "").split("\n")[0]
    )
    add_common_args(parser, "per decision", "calls", REPEAT)
    parser.add_argument(
        "--processes", type=int, action="append", help=f"throughput: process counts (repeatable; {PROCESSES})"
    )
    parser.add_argument(
        "--load-seconds", type=float, help=f"throughput: window in seconds ({LOAD_SECONDS:g})"
    )
    parser.add_argument("--load-repeat", type=int, help=f"throughput: runs per contender ({LOAD_REPEAT})")
    parser.add_argument("--no-load", action="store_true", help="skip throughput and accuracy")
    add_run_args(parser, "per decision", "files and servers' data")
    args = parser.parse_args(argv)
    check_args(parser, args, ("cycles", "seconds", "repeat", "load_seconds", "load_repeat"))
    if any(p <= 0 for p in args.processes or ()):
        parser.error("--processes must be > 0")
    unknown = sorted(set(args.suite or ()) - set(FLOORS))
    if unknown:
        parser.error(
            f"no rate-limit floor for suite(s) {', '.join(unknown)}; choose from {', '.join(FLOORS)}"
        )
    args.suite = args.suite or ["redis-single"]
    return args


def failed(output: Record) -> bool:
    """True if a decider raised, a worker crashed, or tenure admitted more than its budget."""
    for suite in output["suites"].values():
        if any(rec["error"] for rec in suite["per_decision"].values()):
            return True
        for by_count in (suite["throughput"] or {}).values():
            if any(rec["errors"] for by_name in by_count.values() for rec in by_name.values()):
                return True
        for name, rec in (suite["accuracy"] or {}).items():
            # A peer's over-admission is a finding; tenure's is a fault.
            if rec["errors"] or (name.startswith("tenure") and rec.get("over_admitted", 0) > 0):
                return True
    return False


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    output = run_suites("ratelimit", args, argv, measure_suite, versions=_peer_versions)
    return 1 if failed(output) else 0


def _peer_versions() -> dict[str, Any]:
    from importlib import metadata

    found: dict[str, Any] = {}
    for dist in ("limits", "pyrate-limiter", "redis"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[dist] = None
    return found


if __name__ == "__main__":
    # Run as the importable module, so that what workers unpickle is benchmarks.ratelimit's own.
    from benchmarks.ratelimit import main as ratelimit_main

    sys.exit(ratelimit_main())
