"""Run benchmark suites side by side: ``python -m benchmarks.run [--suite NAME] [--quick] ...``.

Prints one table per suite to stdout (progress goes to stderr) and writes every figure, with the
machine it ran on, to a JSON file (default: ``benchmarks/results/<suite>-<time>.json``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.contended import ContendedConfig, ContendedResult, measure_contended
from benchmarks.registry import SUITES, BenchContext, Contender, Suite, Unavailable, get_suite
from benchmarks.report import Record, add_ratios, contender_record, machine_info, render_suite, strict_json
from benchmarks.uncontended import UncontendedConfig, UncontendedResult, measure_uncontended

RESULTS = Path(__file__).resolve().parent / "results"
QUICK_UNCONTENDED = UncontendedConfig(max_cycles=300, max_seconds=0.3, warmup_cycles=20, warmup_seconds=0.1)
QUICK_PROCESSES, QUICK_DURATION = 3, 0.5


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--suite",
        action="append",
        choices=sorted(SUITES),
        help="suite to run (repeatable; default: sqlite-local)",
    )
    parser.add_argument(
        "--only",
        action="append",
        metavar="CONTENDER",
        help="measure only these contenders (repeatable; ratios need the references)",
    )
    parser.add_argument("--list", action="store_true", help="list suites and contenders, then exit")
    parser.add_argument("--quick", action="store_true", help="tiny runs, for the smoke test")
    parser.add_argument("--cycles", type=int, help="uncontended: most cycles per run (20000)")
    parser.add_argument("--seconds", type=float, help="uncontended: longest run in seconds (3)")
    parser.add_argument("--repeat", type=int, help="uncontended: runs per contender, interleaved (3)")
    parser.add_argument("--processes", type=int, help="contended: worker processes (8)")
    parser.add_argument("--duration", type=float, help="contended: measured window in seconds (3)")
    parser.add_argument("--hold-ms", type=float, default=0.0, help="contended: hold time per acquisition")
    parser.add_argument("--start-method", choices=("spawn", "forkserver"), default="spawn")
    parser.add_argument(
        "--pin-cpu",
        type=int,
        metavar="CPU",
        help="uncontended: run on this CPU, with the suite's servers (Linux; default: unpinned)",
    )
    parser.add_argument("--no-contended", action="store_true", help="skip the multi-process runs")
    parser.add_argument("--workdir", type=Path, help="where lock files live (default: a temp dir)")
    parser.add_argument("--json", type=Path, help="where to write the results")
    args = parser.parse_args(argv)
    for name in ("cycles", "seconds", "repeat", "processes", "duration"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            parser.error(f"--{name} must be > 0")
    if args.hold_ms < 0:
        parser.error("--hold-ms must be >= 0")
    if args.pin_cpu is not None:
        if not hasattr(os, "sched_setaffinity"):
            parser.error("--pin-cpu needs sched_setaffinity (Linux)")
        if args.pin_cpu not in os.sched_getaffinity(0):
            parser.error(f"--pin-cpu {args.pin_cpu} is not a CPU this process may use")
    return args


def configs(args: argparse.Namespace) -> tuple[UncontendedConfig, ContendedConfig, int]:
    """Return the run bounds: --quick shrinks the defaults, explicit options override both."""
    base_u = QUICK_UNCONTENDED if args.quick else UncontendedConfig()
    uncontended = dataclasses.replace(
        base_u,
        max_cycles=args.cycles or base_u.max_cycles,
        max_seconds=args.seconds or base_u.max_seconds,
    )
    contended = ContendedConfig(
        processes=args.processes or (QUICK_PROCESSES if args.quick else ContendedConfig.processes),
        duration=args.duration or (QUICK_DURATION if args.quick else ContendedConfig.duration),
        hold=args.hold_ms / 1e3,
        start_method=args.start_method,
    )
    return uncontended, contended, args.repeat or (1 if args.quick else 3)


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def pinned(cpu: int | None, ctx: BenchContext) -> Iterator[None]:
    """Run the block on ``cpu`` together with the suite's servers (``server_pids``), then unpin.

    A round trip between processes on two CPUs pays a wake-up of the other CPU (on a VM, a
    vCPU wake-up: over 100 µs), and the scheduler places client and server together or apart
    from run to run, so unpinned p50s of server-backed suites can jump between two modes.
    """
    if cpu is None:
        yield
        return
    pids = [0, *(int(pid) for pid in ctx.params.get("server_pids", "").split(",") if pid)]
    saved = {pid: os.sched_getaffinity(pid) for pid in pids}
    try:
        for pid in pids:
            os.sched_setaffinity(pid, {cpu})
        yield
    finally:
        for pid, cpus in saved.items():
            with contextlib.suppress(OSError):  # a server that has exited needs no unpinning
                os.sched_setaffinity(pid, cpus)


def run_suite(
    suite: Suite,
    ctx: BenchContext,
    chosen: list[Contender],
    uncontended: UncontendedConfig,
    contended: ContendedConfig | None,
    repeat: int,
    pin_cpu: int | None = None,
) -> dict[str, Record]:
    """Measure every chosen contender: uncontended repeats interleaved, then one contended run each."""
    skipped: dict[str, str] = {}
    runs: dict[str, list[UncontendedResult]] = {c.name: [] for c in chosen}
    # Interleaving the repeats spreads slow drifts of the machine (thermal, neighbours) evenly.
    with pinned(pin_cpu, ctx):
        for round_ in range(repeat):
            for contender in chosen:
                if contender.name in skipped:
                    continue
                try:
                    handle = contender.factory(ctx, "uncontended")
                except (ImportError, Unavailable) as exc:  # a library not installed, a backend not built
                    skipped[contender.name] = str(exc)
                    progress(f"  {contender.name}: skipped ({exc})")
                    continue
                try:
                    result = measure_uncontended(handle, uncontended)
                finally:
                    handle.close()
                runs[contender.name].append(result)
                progress(
                    f"  uncontended {round_ + 1}/{repeat} {contender.name}: "
                    f"{result.cycles_per_s:,.0f} cycles/s, p50 {result.p50_us:.1f} µs"
                )
    outcomes: dict[str, ContendedResult] = {}
    for contender in chosen:
        if contended is None or contender.name in skipped:
            continue
        outcome = measure_contended(suite.name, contender.name, ctx, "contended", contended)
        outcomes[contender.name] = outcome
        summary = outcome.summary
        figures = (
            "failed"
            if summary is None
            else (f"{summary.handoffs_per_s:,.0f} hand-offs/s, fairness {summary.fairness:.3f}")
        )
        progress(f"  contended {contender.name}: {figures}, {len(outcome.errors)} worker errors")
    return {
        c.name: contender_record(c, runs[c.name], outcomes.get(c.name), skipped.get(c.name)) for c in chosen
    }


def measure_suite(name: str, args: argparse.Namespace, tmp: Path, machine: Record) -> tuple[Record, str]:
    """Run one suite in its own environment; return its JSON record and its table."""
    uncontended, contended, repeat = configs(args)
    suite = get_suite(name)
    chosen = [c for c in suite.contenders if not args.only or c.name in args.only]
    if not chosen:
        raise SystemExit(f"suite {name}: none of {args.only} is one of its contenders")
    workdir = Path(tmp, name)
    workdir.mkdir()
    progress(f"suite {name}: {len(chosen)} contenders in {workdir}")
    with suite.environment(workdir) as params:
        ctx = BenchContext(suite.name, str(workdir), params)
        contended_or_none = None if args.no_contended else contended
        records = run_suite(suite, ctx, chosen, uncontended, contended_or_none, repeat, args.pin_cpu)
    targets = add_ratios(suite, records, hold_ms=None if args.no_contended else args.hold_ms)
    record = {
        "description": suite.description,
        "baseline": suite.baseline,
        "environment": params,
        "contenders": records,
        "targets": targets,
    }
    header = (
        f"nproc {machine['nproc']}, Python {machine['python']}, {repeat}× uncontended "
        f"≤{uncontended.max_cycles} cycles/≤{uncontended.max_seconds:g} s"
        f"{'' if args.pin_cpu is None else f' on CPU {args.pin_cpu}'}, "
        f"{contended.processes} processes × {contended.duration:g} s, hold {contended.hold * 1e3:g} ms"
    )
    return record, render_suite(suite, records, targets, header)


def list_suites() -> None:
    for name in sorted(SUITES):
        suite = get_suite(name)
        print(f"{name}: {suite.description} (baseline {suite.baseline})")
        for c in suite.contenders:
            print(f"  {c.name:<17} {c.role:<6} {c.summary}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        list_suites()
        return 0
    uncontended, contended, repeat = configs(args)
    suite_names = args.suite or ["sqlite-local"]
    output: dict[str, Any] = {
        "schema": "tenure-benchmarks/1",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "argv": sys.argv[1:] if argv is None else argv,
        "config": {
            "quick": args.quick,
            "repeat": repeat,
            "pin_cpu": args.pin_cpu,
            "uncontended": dataclasses.asdict(uncontended),
            "contended": None if args.no_contended else dataclasses.asdict(contended),
        },
        "suites": {},
    }
    tables = []
    with tempfile.TemporaryDirectory(prefix="tenure-bench-", dir=args.workdir) as tmp:
        output["machine"] = machine_info(Path(tmp))
        for name in suite_names:
            output["suites"][name], table = measure_suite(name, args, Path(tmp), output["machine"])
            tables.append(table)
    path = args.json or RESULTS / f"{'+'.join(suite_names)}-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(strict_json(output), indent=2, ensure_ascii=False) + "\n")
    print("\n\n".join(tables))
    print(f"\nJSON: {path}")
    # Overlapping holds (a broken lock) or crashed workers make the run fail loudly.
    contended_records = [
        record.get("contended") or {}
        for suite in output["suites"].values()
        for record in suite["contenders"].values()
    ]
    return 1 if any(c.get("errors") or c.get("overlaps") for c in contended_records) else 0


if __name__ == "__main__":
    sys.exit(main())
