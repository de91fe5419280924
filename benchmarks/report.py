"""Turn measurements into the JSON record and the side-by-side table, with ratios."""

from __future__ import annotations

import math
import os
import platform
import sqlite3
import sys
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks.contended import ContendedResult
from benchmarks.registry import Contender, Role, Suite, Target
from benchmarks.stats import median
from benchmarks.uncontended import UncontendedResult

Record = dict[str, Any]

# metric key -> (section, field): the figures ratios are taken of.
RATIO_METRICS = {
    "uncontended_cycles_per_s": ("uncontended", "cycles_per_s"),
    "uncontended_p50_us": ("uncontended", "p50_us"),
    "contended_handoffs_per_s": ("contended", "handoffs_per_s"),
    "contended_gap_p50_us": ("contended", "gap_p50_us"),
}


def contender_record(
    contender: Contender,
    uncontended: list[UncontendedResult],
    contended: ContendedResult | None,
    skipped: str | None,
) -> Record:
    """Return one contender's figures: medians over the uncontended repeats, every run kept."""
    record: Record = {
        "role": str(contender.role),
        "summary": contender.summary,
        "notes": contender.notes,
        "floor": contender.floor,
        "ttl": contender.ttl,
        "fence": contender.fence,
        "skipped": skipped,
        "uncontended": None,
        "contended": None,
        "ratios": {"vs_baseline": None, "vs_floor": None},
    }
    if uncontended:
        record["uncontended"] = {
            "cycles_per_s": median([r.cycles_per_s for r in uncontended]),
            "p50_us": median([r.p50_us for r in uncontended]),
            "p99_us": median([r.p99_us for r in uncontended]),
            "mean_us": median([r.mean_us for r in uncontended]),
            "cycles": sum(r.cycles for r in uncontended),
            "runs": [asdict(r) for r in uncontended],
        }
    if contended is not None:
        summary = asdict(contended.summary) if contended.summary is not None else {}
        summary["per_worker"] = list(summary.get("per_worker", ()))
        summary["failed_attempts"] = contended.failed_attempts
        summary["errors"] = list(contended.errors)
        record["contended"] = summary
    return record


def _figure(record: Record, section: str, key: str) -> float:
    value = (record.get(section) or {}).get(key)
    return float(value) if isinstance(value, (int, float)) else math.nan


def _ratio(value: float, reference: float) -> float:
    return value / reference if reference and not math.isnan(reference) else math.nan


def _ratios(record: Record, reference: Record | None) -> dict[str, float] | None:
    if reference is None or reference.get("skipped"):
        return None
    return {
        metric: _ratio(_figure(record, *where), _figure(reference, *where))
        for metric, where in RATIO_METRICS.items()
    }


def add_ratios(suite: Suite, records: dict[str, Record], hold_ms: float | None = 0.0) -> list[Record]:
    """Fill each record's ratios against the suite's baseline and its own floor; return targets.

    Targets are the suite's own (``Suite.targets``; ``hold_ms`` is the contended runs' hold, None
    if none ran) or by default: a tenure contender at least as fast uncontended as the baseline
    while also giving a TTL and a fence (the goal of the issue that asked for the runner).
    """
    baseline = records.get(suite.baseline)
    targets = []
    for contender in suite.contenders:
        record = records.get(contender.name)
        if record is None:
            continue
        record["ratios"]["vs_baseline"] = _ratios(record, baseline)
        if contender.floor is not None:
            record["ratios"]["vs_floor"] = _ratios(record, records.get(contender.floor))
        if suite.targets is not None:
            continue
        if contender.role is Role.TENURE and record["ratios"]["vs_baseline"] is not None:
            ratio = record["ratios"]["vs_baseline"]["uncontended_cycles_per_s"]
            targets.append(
                {
                    "contender": contender.name,
                    "baseline": suite.baseline,
                    "uncontended_cycles_per_s_ratio": ratio,
                    "gives_ttl_and_fence": contender.ttl and contender.fence,
                    "met": bool(ratio >= 1.0 and contender.ttl and contender.fence),
                }
            )
    for target in suite.targets or ():
        checked = check_target(target, records, hold_ms)
        if checked is not None:
            targets.append(checked)
    return targets


def check_target(target: Target, records: dict[str, Record], hold_ms: float | None) -> Record | None:
    """Return how ``target`` fares, or None if it does not apply (contender not chosen, other hold).

    ``met`` is None, and ``not_measured`` says why, when the figure is missing: the contender or
    its reference was skipped, or the contended runs were left out.
    """
    record = records.get(target.contender)
    if record is None or (target.hold_ms is not None and target.hold_ms != hold_ms):
        return None
    section, key = target.metric.split(".")
    value = _figure(record, section, key)
    skipped = record.get("skipped")
    if target.reference is not None:
        reference = records.get(target.reference) or {"skipped": "not chosen"}
        value = _ratio(value, _figure(reference, section, key))
        skipped = skipped or (reference.get("skipped") and f"{target.reference}: {reference['skipped']}")
    met = None if math.isnan(value) else (value <= target.limit if target.at_most else value >= target.limit)
    return {
        "contender": target.contender,
        "label": target.label,
        "metric": target.metric,
        "reference": target.reference,
        "value": value,
        "limit": target.limit,
        "comparison": "<=" if target.at_most else ">=",
        "hold_ms": target.hold_ms,
        "met": met,
        "not_measured": None if met is not None else skipped or "no figure in this run",
    }


def machine_info(workdir: Path) -> Record:
    """Return what the figures depend on: CPUs, Python, SQLite, library versions, file system."""
    versions: dict[str, str | None] = {}
    for dist in ("tenure", "filelock", "portalocker", "redis", "python-redis-lock", "pottery"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return {
        "nproc": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": _cpu_model(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "sqlite": sqlite3.sqlite_version,
        "versions": versions,
        "workdir_fs": _filesystem(workdir),
        # Other work on the host skews every figure; servers and workers share these CPUs.
        "loadavg_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _filesystem(path: Path) -> str | None:
    """Return the type of the file system holding ``path`` (SQLite's cost depends on it)."""
    try:
        mounts = [line.split() for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return None
    resolved = str(path.resolve())
    under = [m for m in mounts if len(m) > 2 and (resolved + "/").startswith(m[1].rstrip("/") + "/")]
    return max(under, key=lambda m: len(m[1]))[2] if under else None


def strict_json(value: Any) -> Any:
    """Replace nan and infinities by None, which JSON can carry."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


# -- the human table -----------------------------------------------------------------------------


def _num(value: float, spec: str) -> str:
    return "-" if math.isnan(value) else format(value, spec)


def render_suite(suite: Suite, records: dict[str, Record], targets: list[Record], header: str) -> str:
    """Return the side-by-side table of one suite, its ratios and its target lines."""
    lines = [f"suite {suite.name}: {suite.description}  ({header})", ""]
    w = _name_width(records)
    cols = (
        f"{'contender':<{w}} {'role':<6} {'cycles/s':>9} {'p50 µs':>7} {'p99 µs':>7} | "
        f"{'hand-offs/s':>11} {'gap p50 µs':>10} {'switch':>6} {'sw.gap µs':>9} {'fairness':>8} "
        f"{'max wait ms':>11}"
    )
    lines += [cols, "-" * len(cols)]
    for name, rec in records.items():
        if rec["skipped"]:
            lines.append(f"{name:<{w}} {rec['role']:<6} skipped: {rec['skipped']}")
            continue

        def u(key: str, spec: str, scale: float = 1.0, rec: Record = rec) -> str:
            return _num(_figure(rec, "uncontended", key) * scale, spec)

        def c(key: str, spec: str, scale: float = 1.0, rec: Record = rec) -> str:
            return _num(_figure(rec, "contended", key) * scale, spec)

        lines.append(
            f"{name:<{w}} {rec['role']:<6} {u('cycles_per_s', ',.0f'):>9} {u('p50_us', '.1f'):>7} "
            f"{u('p99_us', '.1f'):>7} | {c('handoffs_per_s', ',.0f'):>11} {c('gap_p50_us', ',.0f'):>10} "
            f"{c('switches', '.0f', 100) + '%':>6} {c('switch_gap_p50_us', ',.0f'):>9} "
            f"{c('fairness', '.3f'):>8} {c('max_wait_ms', ',.1f'):>11}"
        )
        contended = rec.get("contended") or {}
        problems = contended.get("errors") or []
        overlaps = contended.get("overlaps") or 0
        failed = contended.get("failed_attempts") or 0
        if problems or overlaps or failed:
            lines.append(
                f"{'':<{w}} !! {overlaps} overlapping holds, {failed} failed attempts, "
                f"{len(problems)} worker errors (see the JSON)"
            )
    lines += ["", _render_ratios(suite, records)]
    for target in targets:
        if "metric" in target:
            lines.append(_render_target(target))
            continue
        verdict = "met" if target["met"] else "NOT met"
        lines.append(
            f"target: {target['contender']} uncontended cycles/s ÷ {target['baseline']} = "
            f"{_num(target['uncontended_cycles_per_s_ratio'], '.2f')}× with TTL and fence "
            f"{'yes' if target['gives_ttl_and_fence'] else 'no'} → {verdict}"
        )
    return "\n".join(lines)


def _name_width(records: dict[str, Record]) -> int:
    return max([14, *(len(name) for name in records)])


def _render_target(target: Record) -> str:
    """Return one suite-declared target line: the figure or ratio, the limit and the verdict."""
    figure = target["metric"].replace(".", " ")
    if target["reference"]:
        figure = f"{figure} ÷ {target['reference']}"
    limit = format(target["limit"], "g") + ("×" if target["reference"] else "")
    if target["met"] is None:
        verdict = f"not measured ({target['not_measured']})"
    else:
        value = format(target["value"], ".3g") + ("×" if target["reference"] else "")
        verdict = f"= {value} → {'met' if target['met'] else 'NOT met'}"
    label = f"{target['label']}: " if target["label"] else ""
    return f"target: {label}{target['contender']} {figure} {target['comparison']} {limit} {verdict}"


def _render_ratios(suite: Suite, records: dict[str, Record]) -> str:
    w = _name_width(records)
    cols = (
        f"{'ratios':<{w}} {'reference':<{w}} {'cycles/s':>9} {'p50 µs':>8} "
        f"{'hand-offs/s':>11} {'gap p50 µs':>10}"
    )
    lines = [cols + "   (×; above 1 is faster for /s, slower for µs)", "-" * len(cols)]
    for name, rec in records.items():
        against = [(suite.baseline, rec["ratios"]["vs_baseline"]), (rec["floor"], rec["ratios"]["vs_floor"])]
        for reference, ratios in [] if rec["skipped"] else against:
            if ratios is None or reference == name:
                continue
            lines.append(
                f"{name:<{w}} {reference:<{w}} {_num(ratios['uncontended_cycles_per_s'], '.2f'):>9} "
                f"{_num(ratios['uncontended_p50_us'], '.2f'):>8} "
                f"{_num(ratios['contended_handoffs_per_s'], '.2f'):>11} "
                f"{_num(ratios['contended_gap_p50_us'], '.2f'):>10}"
            )
    return "\n".join(lines)
