"""What the per-primitive benchmark commands share: options, the interleaved single-process runs,
their ratios and table, and the loop over suites that writes the JSON.

``benchmarks.permits`` (issue 14) and ``benchmarks.idempotency`` (issue 15) each give their own
lineup, multi-process phase and targets; the rest is here, so both measure and print alike.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import tenure
from benchmarks.registry import SUITES, BenchContext, Contender, Unavailable
from benchmarks.report import Record, machine_info, strict_json
from benchmarks.run import QUICK_UNCONTENDED, RESULTS, pinned, progress
from benchmarks.stats import median
from benchmarks.uncontended import UncontendedConfig, UncontendedResult, measure_uncontended

# -- options -----------------------------------------------------------------------------------


def add_common_args(parser: argparse.ArgumentParser, phase: str, unit: str, repeat: int) -> None:
    """Add the options every command takes; ``phase`` names the single-process runs in the help."""
    parser.add_argument(
        "--suite",
        action="append",
        choices=sorted(SUITES),
        help="suite to run (repeatable; default: sqlite-local)",
    )
    parser.add_argument("--quick", action="store_true", help="tiny runs, for the smoke test")
    parser.add_argument("--cycles", type=int, help=f"{phase}: most {unit} per run (20000)")
    parser.add_argument("--seconds", type=float, help=f"{phase}: longest run in seconds (3)")
    parser.add_argument("--repeat", type=int, help=f"{phase}: runs per contender, interleaved ({repeat})")


def add_run_args(parser: argparse.ArgumentParser, phase: str, workdir: str) -> None:
    """Add the options that place the run: start method, pinning, work dir, JSON path."""
    parser.add_argument("--start-method", choices=("spawn", "forkserver"), default="spawn")
    parser.add_argument("--pin-cpu", type=int, metavar="CPU", help=f"{phase}: on this CPU, with the servers")
    parser.add_argument("--workdir", type=Path, help=f"where {workdir} live (a temp dir)")
    parser.add_argument("--json", type=Path, help="where to write the results")


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace, positive: Iterable[str]) -> None:
    """Refuse non-positive counts and durations, and a CPU this process may not use."""
    for name in positive:
        value = getattr(args, name)
        if value is not None and value <= 0:
            parser.error(f"--{name.replace('_', '-')} must be > 0")
    if args.pin_cpu is not None and (
        not hasattr(os, "sched_setaffinity") or args.pin_cpu not in os.sched_getaffinity(0)
    ):
        parser.error(f"--pin-cpu {args.pin_cpu} is not a CPU this process may use")


def single_process_config(args: argparse.Namespace) -> UncontendedConfig:
    """Return the single-process run bounds: --quick shrinks the defaults, explicit options win."""
    base = QUICK_UNCONTENDED if args.quick else UncontendedConfig()
    return dataclasses.replace(
        base, max_cycles=args.cycles or base.max_cycles, max_seconds=args.seconds or base.max_seconds
    )


# -- single-process runs, interleaved ---------------------------------------------------------------


def spread(values: Sequence[float]) -> dict[str, float]:
    kept = [v for v in values if not math.isnan(v)]
    return {"median": median(kept), "min": min(kept, default=math.nan), "max": max(kept, default=math.nan)}


def measure_uncontended_all(
    contenders: Sequence[Contender],
    ctx: BenchContext,
    config: UncontendedConfig,
    repeat: int,
    pin_cpu: int | None,
) -> dict[str, Record]:
    """Run every contender ``repeat`` times, interleaved, so that drifts of the host hit all alike.

    A contender that cannot run here (``Unavailable``, a library missing) is skipped with the
    reason; one whose primitive raises is recorded with the error and measured no further.
    """
    skipped: dict[str, str] = {}
    errors: dict[str, str] = {}
    runs: dict[str, list[UncontendedResult]] = {c.name: [] for c in contenders}
    with pinned(pin_cpu, ctx):
        for round_ in range(repeat):
            for contender in contenders:
                if contender.name in skipped or contender.name in errors:
                    continue
                try:
                    handle = contender.factory(ctx, "uncontended")
                except (ImportError, Unavailable) as exc:
                    skipped[contender.name] = str(exc)
                    progress(f"  {contender.name}: skipped ({exc})")
                    continue
                try:
                    result = measure_uncontended(handle, config)
                except Exception as exc:
                    errors[contender.name] = f"{type(exc).__name__}: {exc}"
                    progress(f"  {contender.name}: ERROR {errors[contender.name]}")
                    continue
                finally:
                    with contextlib.suppress(Exception):
                        handle.close()
                runs[contender.name].append(result)
                progress(
                    f"  uncontended {round_ + 1}/{repeat} {contender.name}: "
                    f"{result.cycles_per_s:,.0f} cycles/s, p50 {result.p50_us:.1f} µs"
                )
    records: dict[str, Record] = {}
    for contender in contenders:
        results = runs[contender.name]
        records[contender.name] = {
            "role": str(contender.role),
            "summary": contender.summary,
            "skipped": skipped.get(contender.name),
            "error": errors.get(contender.name),
            "p50_us": spread([r.p50_us for r in results]),
            "p99_us": spread([r.p99_us for r in results]),
            "cycles_per_s": spread([r.cycles_per_s for r in results]),
            "runs": [dataclasses.asdict(r) for r in results],
        }
    return records


def uncontended_ratios(
    records: dict[str, Record], ratios: Iterable[tuple[str, str, float | None]]
) -> list[Record]:
    """Return each ratio of p50s: of the medians, and its range over the interleaved rounds."""
    out = []
    for numerator, denominator, target in ratios:
        top, bottom = records.get(numerator), records.get(denominator)
        missing = next(
            (
                (name, str(rec["skipped"] or f"ERROR: {rec['error']}"))
                for name, rec in ((numerator, top), (denominator, bottom))
                if rec is not None and (rec["skipped"] or rec["error"])
            ),
            None,
        )
        value, low, high = math.nan, math.nan, math.nan
        if top is not None and bottom is not None and missing is None:
            value = top["p50_us"]["median"] / bottom["p50_us"]["median"]
            rounds = [a["p50_us"] / b["p50_us"] for a, b in zip(top["runs"], bottom["runs"], strict=False)]
            low, high = min(rounds, default=math.nan), max(rounds, default=math.nan)
        out.append(
            {
                "numerator": numerator,
                "denominator": denominator,
                "p50_ratio": value,
                "per_round_min": low,
                "per_round_max": high,
                "target_at_most": target,
                "met": None if target is None or math.isnan(value) else value <= target,
                "missing": None if missing is None else missing[0],
                "not_measured": None if missing is None else missing[1],
            }
        )
    return out


# -- tables ----------------------------------------------------------------------------------------


def num(value: Any, spec: str) -> str:
    if not isinstance(value, (int, float)) or math.isnan(value):
        return "-"
    return format(value, spec)


def value_range(values: dict[str, float], spec: str) -> str:
    return f"{num(values['median'], spec)} ({num(values['min'], spec)}–{num(values['max'], spec)})"


def render_uncontended(
    records: dict[str, Record],
    ratios: list[Record],
    *,
    phase: str,
    unit: str,
    short: Callable[[str], str],
) -> tuple[list[str], int]:
    """Return the lines of the single-process table and its ratios, and the name column's width.

    ``phase`` heads the name column, ``unit`` the rate's ("cycles/s"); ``short`` shortens a
    skip reason for the table (the JSON keeps all of it).
    """
    w = max([18, *(len(n) for n in records)])
    cols = f"{phase:<{w}} {'role':<6} {'p50 µs (min–max)':>24} {f'{unit} (min–max)':>26} {'p99 µs':>8}"
    lines = [cols, "-" * len(cols)]
    for name, rec in records.items():
        if rec["skipped"] or rec["error"]:
            reason = short(rec["skipped"]) if rec["skipped"] else f"ERROR: {rec['error']}"
            lines.append(f"{name:<{w}} {rec['role']:<6} {reason}")
            continue
        lines.append(
            f"{name:<{w}} {rec['role']:<6} {value_range(rec['p50_us'], '.1f'):>24} "
            f"{value_range(rec['cycles_per_s'], ',.0f'):>26} {num(rec['p99_us']['median'], '.1f'):>8}"
        )
    lines += ["", "ratios of p50 (of the medians; min–max over the interleaved rounds)"]
    for ratio in ratios:
        label = f"{ratio['numerator']} ÷ {ratio['denominator']}"
        if ratio["not_measured"]:
            lines.append(f"  {label:<{2 * w}} n/a ({ratio['missing']}: {short(ratio['not_measured'])})")
            continue
        text = (
            f"  {label:<{2 * w}} {num(ratio['p50_ratio'], '.2f')}× "
            f"({num(ratio['per_round_min'], '.2f')}–{num(ratio['per_round_max'], '.2f')})"
        )
        if ratio["target_at_most"] is not None:
            verdict = "met" if ratio["met"] else "NOT met"
            text += f"   target ≤ {ratio['target_at_most']:g}× → {verdict}"
        lines.append(text)
    return lines, w


# -- the suites' loop ------------------------------------------------------------------------------


def source_info() -> Record:
    """Return which tenure was measured: its path, and the commit of its checkout if it has one."""
    where = Path(tenure.__file__).resolve().parents[2]
    info: Record = {"tenure": str(Path(tenure.__file__).resolve().parent), "commit": None, "dirty": None}
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        git = ["git", "-C", str(where)]
        head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if head.returncode == 0:
            info["commit"] = head.stdout.strip()
            status = subprocess.run(
                [*git, "status", "--porcelain", "--", "src"], capture_output=True, text=True, timeout=10
            )
            info["dirty"] = bool(status.stdout.strip())
    return info


MeasureSuite = Callable[[str, argparse.Namespace, Path, Record], tuple[Record, str]]


def run_suites(
    kind: str,
    args: argparse.Namespace,
    argv: list[str] | None,
    measure_suite: MeasureSuite,
    *,
    versions: Callable[[], dict[str, Any]] | None = None,
) -> Record:
    """Measure each of ``args.suite`` (default sqlite-local) in one temp dir; write and print.

    The JSON goes to ``--json`` or ``benchmarks/results/<kind>-<time>.json`` (schema
    ``tenure-benchmarks-<kind>/1``), the tables to stdout. Return the whole record.
    """
    output: Record = {
        "schema": f"tenure-benchmarks-{kind}/1",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "argv": sys.argv[1:] if argv is None else argv,
        "quick": args.quick,
        "source": source_info(),
        "suites": {},
    }
    tables = []
    with tempfile.TemporaryDirectory(prefix=f"tenure-{kind}-", dir=args.workdir) as tmp:
        output["machine"] = machine_info(Path(tmp))
        if versions is not None:
            output["machine"]["versions"].update(versions())
        for name in args.suite or ["sqlite-local"]:
            output["suites"][name], table = measure_suite(name, args, Path(tmp), output["machine"])
            tables.append(table)
    path = args.json or RESULTS / f"{kind}-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(strict_json(output), indent=2, ensure_ascii=False) + "\n")
    print("\n\n".join(tables))
    print(f"\nJSON: {path}")
    return output
