"""Idempotency keys side by side (issue 15): ``python -m benchmarks.idempotency``.

For each suite (``--suite NAME``, repeatable; default ``sqlite-local``), in the suite's own server
environment (servers with their packaged durability, as ``benchmarks.run`` starts them), if its
backend declares ``Capability.RECORDS`` (else its tenure rows say ``no Records capability``):

- **per call**: one process, the sync API. ``keys.run(key, fn)`` on a key whose record exists
  (a replayed hit), and on a new key each call with a trivial ``fn`` (a first execution), against
  the backend's raw GET of a value of the same size through the same driver; repeated and
  interleaved as ``benchmarks.run`` does, medians with their spread, ratios. Targets: a hit
  ≤ 1.2× the raw GET; a first execution ≤ 2 round trips beyond the function (≤ 2.2× the GET).
  On ``redis-single`` also AWS Powertools' ``idempotent_function`` on the same Redis.
- **duplicates**: ``--processes`` × ``--threads`` callers call the same fresh key at the same
  instant, over ``--keys`` keys: executions per key (tenure: exactly 1), the results the callers
  got back, and what the others got instead (errors by type); Powertools too on ``redis-single``.

Tables to stdout, progress to stderr, every figure to
``benchmarks/results/idempotency-<time>.json``. Nothing is asserted; the exit code is 1 if a
tenure key ran more than once or not at all, a worker crashed, or a call raised in the per-call
loop.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import idempotency_calls as calls
from benchmarks.idempotency_duplicates import (
    Caller,
    DuplicateConfig,
    measure_duplicates,
    progress_line,
    render_duplicates,
)
from benchmarks.registry import BenchContext, Contender, LockHandle, Role, get_suite
from benchmarks.report import Record
from benchmarks.run import progress
from benchmarks.runner import (
    add_common_args,
    add_run_args,
    check_args,
    measure_uncontended_all,
    render_uncontended,
    run_suites,
    single_process_config,
    uncontended_ratios,
)
from benchmarks.uncontended import UncontendedConfig

REPEAT = 5
QUICK = DuplicateConfig(processes=2, threads=2, keys=5)
# Issue 15's targets: computed for the report, never asserted.
TARGET_REPLAY_VS_GET = 1.2  # a replayed hit's p50 ÷ the raw GET's, at most
TARGET_FIRST_VS_GET = 2.2  # a first execution's: two round trips and a little Python, at most
RAW = "raw-get"


@dataclass(frozen=True)
class Plan:
    """What a suite measures: tenure's URL, its raw GET, and whether Powertools runs there."""

    url: Callable[[BenchContext], str]
    raw: Callable[[BenchContext, str], LockHandle]
    powertools: bool = False


def _server_url(ctx: BenchContext) -> str:
    return ctx.params["tenure_url"]


PLANS: dict[str, Plan] = {
    "sqlite-local": Plan(calls.sqlite_url, calls.sqlite_get),
    "redis-single": Plan(_server_url, calls.redis_get, powertools=True),
    "redlock5": Plan(_server_url, calls.redis_get),
    "etcd3": Plan(_server_url, calls.etcd_get),
    "zookeeper3": Plan(_server_url, calls.zookeeper_get),
    "postgresql": Plan(_server_url, calls.postgresql_get),
    "mysql": Plan(_server_url, calls.mysql_get),
}


def _tenure(plan: Plan, replay: bool) -> Callable[[BenchContext, str], LockHandle]:
    def factory(ctx: BenchContext, name: str) -> LockHandle:
        url = plan.url(ctx)
        return calls.TenureReplay(url, name) if replay else calls.TenureFirst(url, name)

    return factory


def lineup(suite_name: str) -> tuple[list[Contender], list[tuple[str, str, float | None]]]:
    """Return the per-call contenders of ``suite_name`` and the ratios to take of their p50s."""
    plan = PLANS[suite_name]
    doc = (plan.raw.__doc__ or "").strip().split("\n")[0]
    contenders = [
        Contender(
            "tenure-replay",
            Role.TENURE,
            _tenure(plan, replay=True),
            summary="keys.run(key, fn) on a key whose record exists (fn must not run)",
        ),
        Contender(
            "tenure-first",
            Role.TENURE,
            _tenure(plan, replay=False),
            summary="keys.run(new_key, fn), fn returns a small dict",
        ),
        Contender(RAW, Role.FLOOR, plan.raw, summary=f"{doc} ({calls.RECORD_BYTES} bytes)"),
    ]
    ratios: list[tuple[str, str, float | None]] = [
        ("tenure-replay", RAW, TARGET_REPLAY_VS_GET),
        ("tenure-first", RAW, TARGET_FIRST_VS_GET),
    ]
    if plan.powertools:
        contenders += [
            Contender(
                "powertools-replay",
                Role.PEER,
                calls.powertools_replay,
                summary="AWS Powertools idempotent_function(order=) on a recorded key (SET NX + GET)",
            ),
            Contender(
                "powertools-first",
                Role.PEER,
                calls.powertools_first,
                summary="AWS Powertools idempotent_function(order=) on a new key (SET NX + SET)",
            ),
        ]
        ratios += [
            ("powertools-replay", RAW, None),
            ("powertools-first", RAW, None),
            ("tenure-replay", "powertools-replay", None),
            ("tenure-first", "powertools-first", None),
        ]
    return contenders, ratios


def measure_suite(name: str, args: argparse.Namespace, tmp: Path, machine: Record) -> tuple[Record, str]:
    """Run one suite's measurements in its environment; return its record and tables."""
    per_call, duplicates, repeat = configs(args)
    suite = get_suite(name)
    plan = PLANS[name]
    contenders, ratio_specs = lineup(name)
    workdir = Path(tmp, name)
    workdir.mkdir()
    progress(f"suite {name} (idempotency): {len(contenders)} per-call contenders in {workdir}")
    calls.STORED_BYTES.clear()
    dup: dict[str, Record] | None = None
    with suite.environment(workdir) as params:
        ctx = BenchContext(suite.name, str(workdir), params)
        unc = measure_uncontended_all(contenders, ctx, per_call, repeat, args.pin_cpu)
        if not args.no_duplicates:
            space = f"dup-{os.urandom(4).hex()}"
            callers = [Caller("tenure", plan.url(ctx), space)]
            if plan.powertools:
                callers.append(Caller("powertools", ctx.params["redis_url"], f"powertools-{space}"))
            dup = {}
            for caller in callers:
                dup[caller.kind] = outcome = measure_duplicates(caller, duplicates)
                progress(f"  duplicates {caller.kind}: {progress_line(outcome)}")
    ratios = uncontended_ratios(unc, ratio_specs)
    record: Record = {
        "environment": params,
        "config": {
            "repeat": repeat,
            "pin_cpu": args.pin_cpu,
            "per_call": dataclasses.asdict(per_call),
            "duplicates": None if dup is None else dataclasses.asdict(duplicates),
        },
        "stored_bytes": {"raw-get": calls.RECORD_BYTES, **calls.STORED_BYTES},
        "per_call": unc,
        "ratios": ratios,
        "duplicates": dup,
        "targets": targets(ratios, dup),
    }
    header = (
        f"nproc {machine['nproc']}, load {machine['loadavg_at_start']}, {repeat}× per call "
        f"≤{per_call.max_cycles} calls/≤{per_call.max_seconds:g} s"
        f"{'' if args.pin_cpu is None else f' on CPU {args.pin_cpu}'}"
    )
    return record, render(name, record, header)


def targets(ratios: list[Record], dup: dict[str, Record] | None) -> list[Record]:
    """Issue 15's targets: the two ratios, and tenure running each key exactly once."""
    out: list[Record] = [
        {
            "metric": f"{r['numerator']} p50 ÷ {r['denominator']} p50",
            "at_most": r["target_at_most"],
            "value": r["p50_ratio"],
            "met": r["met"],
            "not_measured": r["not_measured"],
        }
        for r in ratios
        if r["target_at_most"] is not None
    ]
    tenure = (dup or {}).get("tenure")
    if tenure is not None:
        measured = "exactly_once" in tenure and not tenure["errors"]
        out.append(
            {
                "metric": "tenure duplicates: executions per key",
                "equals": 1,
                "value": [tenure["executions_per_key_min"], tenure["executions_per_key_max"]]
                if "exactly_once" in tenure
                else None,
                "met": tenure["exactly_once"] if measured else None,
                "not_measured": None if measured else tenure.get("skipped") or "errors in the run",
            }
        )
    return out


# -- the tables ------------------------------------------------------------------------------------


def render(suite_name: str, record: Record, header: str) -> str:
    """Return one suite's tables: per call with ratios, duplicates, targets."""
    sizes = ", ".join(f"{k} {v}" for k, v in record["stored_bytes"].items())
    lines = [f"suite {suite_name} (idempotency): {header}", f"stored bytes per key: {sizes}", ""]
    table, _ = render_uncontended(
        record["per_call"], record["ratios"], phase="per call", unit="calls/s", short=calls.short_reason
    )
    lines += table
    if record["duplicates"] is not None:
        lines += ["", *render_duplicates(record["duplicates"], record["config"]["duplicates"])]
    for target in record["targets"]:
        if target["met"] is None:
            lines.append(
                f"target: {target['metric']} not measured ({calls.short_reason(target['not_measured'])})"
            )
        elif "equals" in target:
            low, high = target["value"]
            verdict = "met" if target["met"] else "NOT met"
            lines.append(f"target: {target['metric']} = 1: {low}–{high} → {verdict}")
    return "\n".join(lines)


# -- the command -----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.idempotency", description=(__doc__ or "").split("\n")[0]
    )
    add_common_args(parser, "per call", "calls", REPEAT)
    default = DuplicateConfig()
    parser.add_argument("--processes", type=int, help=f"duplicates: processes ({default.processes})")
    parser.add_argument("--threads", type=int, help=f"duplicates: threads per process ({default.threads})")
    parser.add_argument("--keys", type=int, help=f"duplicates: fresh keys ({default.keys})")
    parser.add_argument(
        "--interval-ms", type=float, help=f"duplicates: ms between keys ({default.interval * 1e3:g})"
    )
    parser.add_argument("--work-ms", type=float, help=f"duplicates: fn's ms ({default.work * 1e3:g})")
    parser.add_argument("--no-duplicates", action="store_true", help="skip the multi-process runs")
    add_run_args(parser, "per call", "files and servers' data")
    args = parser.parse_args(argv)
    check_args(parser, args, ("cycles", "seconds", "repeat", "processes", "threads", "keys", "interval_ms"))
    if args.work_ms is not None and args.work_ms < 0:
        parser.error("--work-ms must be >= 0")
    return args


def configs(args: argparse.Namespace) -> tuple[UncontendedConfig, DuplicateConfig, int]:
    """Return the run bounds: --quick shrinks the defaults, explicit options override both."""
    per_call = single_process_config(args)
    dup = QUICK if args.quick else DuplicateConfig()
    duplicates = DuplicateConfig(
        processes=args.processes or dup.processes,
        threads=args.threads or dup.threads,
        keys=args.keys or dup.keys,
        interval=dup.interval if args.interval_ms is None else args.interval_ms / 1e3,
        work=dup.work if args.work_ms is None else args.work_ms / 1e3,
        start_method=args.start_method,
    )
    return per_call, duplicates, args.repeat or (1 if args.quick else REPEAT)


def failed(output: Record) -> bool:
    """True if a tenure key ran other than once, a worker crashed, or a per-call loop raised."""
    for suite in output["suites"].values():
        if any(rec["error"] for rec in suite["per_call"].values()):
            return True
        for name, rec in (suite["duplicates"] or {}).items():
            if rec.get("errors") or (name == "tenure" and rec.get("exactly_once") is False):
                return True
    return False


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return 1 if failed(run_suites("idempotency", args, argv, measure_suite, versions=_peer_versions)) else 0


def _peer_versions() -> dict[str, Any]:
    from importlib import metadata

    found: dict[str, Any] = {}
    for dist in ("aws-lambda-powertools",):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[dist] = None
    return found


if __name__ == "__main__":
    # Run as the importable module, so that what workers unpickle is benchmarks.idempotency's own.
    from benchmarks.idempotency import main as idempotency_main

    sys.exit(idempotency_main())
