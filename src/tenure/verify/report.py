"""Report a verdict: a table for the terminal, ``summary.json`` and ``timeline.svg``.

``run_check`` is ``tenure verify --check HISTORY``: read a recorded history, check it against
the guarantees the backend of ``--url`` declares, report, and return the exit code.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from tenure._core.guarantees import Guarantee
from tenure._registry import resolve
from tenure.verify.checker import check
from tenure.verify.history import Event, read_history
from tenure.verify.timeline import write_timeline
from tenure.verify.verdict import Verdict

WORDS = {"ok": "HELD", "violation": "VIOLATION", "inconclusive": "INCONCLUSIVE"}
FINDINGS_IN_JSON = 200


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} s"


def rows(verdict: Verdict) -> list[tuple[str, str, str]]:
    """Return the table's rows: what was checked, what was measured, and what it means."""
    s = verdict.summary
    fencing = Guarantee.FENCING.name in s["declared"]
    survives = Guarantee.SURVIVES_FAILOVER.name in s["declared"]

    def judged(count: int, promised: bool = True) -> str:
        if not promised:
            return "measured"
        return "held" if count == 0 else "VIOLATED"

    recovery = s["recovery_seconds"]
    lost = s["lost_updates"]
    superseded = s["superseded_holds"]
    return [
        ("overlapping valid holds", str(s["overlaps"]), judged(s["overlaps"])),
        (
            "fenced writes out of fence order",
            str(s["fence_order_violations"]),
            judged(s["fence_order_violations"]),
        ),
        (
            "fences not growing (FENCING)",
            str(s["fence_regressions"]),
            judged(s["fence_regressions"], fencing),
        ),
        ("lost updates, fenced store", str(lost["fenced"]), judged(lost["fenced"], fencing)),
        ("lost updates, unfenced store", str(lost["unfenced"]), "measured"),
        ("holds told of a loss before writing", f"{s['told_before_write']} of {superseded}", "measured"),
        (
            "stale writes: told / excused",
            f"{s['stale_writes_told']} / {s['stale_writes_excused']}",
            "measured",
        ),
        ("silent stale writes", str(s["silent_stale_writes"]), judged(s["silent_stale_writes"])),
        ("writes outside a hold", str(s["unheld_writes"]), judged(s["unheld_writes"])),
        (
            "recovery after a fault: p50 / max",
            f"{_seconds(recovery['p50'])} / {_seconds(recovery['max'])}",
            f"{recovery['count']} faults"
            + (f", {s['unrecovered_faults']} unrecovered" * bool(s["unrecovered_faults"])),
        ),
        ("stuck waiters", str(s["stuck_waiters"]), judged(s["stuck_waiters"])),
        ("server faults survived (SURVIVES_FAILOVER)", "declared" if survives else "not declared", "-"),
    ]


def table(verdict: Verdict) -> str:
    """Return the summary for the terminal: a headline, the run's size, one line per check."""
    s = verdict.summary
    faults = ", ".join(f"{kind} {n}" for kind, n in s["faults"].items()) or "none"
    lines = [
        f"tenure verify: {WORDS[verdict.status]} (exit {verdict.exit_code})",
        f"  {s['events']:,} events over {s['seconds']:.1f} s from {s['processes']} processes; "
        f"{s['acquisitions']:,} acquisitions ({s['failed_acquisitions']:,} waits gave up); faults: {faults}",
        f"  judged against: {', '.join(s['declared']) or 'no declared guarantees'}",
        "",
    ]
    body = rows(verdict)
    widths = [max(len(r[i]) for r in body) for i in range(2)]
    lines.append(f"  {'check':<{widths[0]}}  {'measured':>{widths[1]}}  verdict")
    for name, measured, meaning in body:
        lines.append(f"  {name:<{widths[0]}}  {measured:>{widths[1]}}  {meaning}")
    if verdict.reasons:
        lines.append("")
        title = "violations" if verdict.status == "violation" else "why inconclusive"
        lines.append(f"  {title} (first {min(len(verdict.reasons), 5)} of {len(verdict.reasons)}):")
        lines += [f"    - {reason}" for reason in verdict.reasons[:5]]
    return "\n".join(lines)


def summary_json(verdict: Verdict) -> dict[str, Any]:
    """Return what ``summary.json`` holds: the summary and the first findings (violations first)."""
    ranked = sorted(verdict.findings, key=lambda f: (not f.violation, f.time))
    first = ranked[:FINDINGS_IN_JSON]
    return {
        **verdict.summary,
        "exit_code": verdict.exit_code,
        "findings": [
            {
                "kind": f.kind,
                "time": f.time / 1e9,
                "process": f.process,
                "fence": f.fence,
                "violation": f.violation,
                "message": f.message,
            }
            for f in first
        ],
        "findings_left_off": len(verdict.findings) - len(first),
    }


def write_report(verdict: Verdict, events: Sequence[Event], directory: Path, *, subtitle: str = "") -> str:
    """Write ``summary.json`` and ``timeline.svg`` into ``directory``; return the table to print."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "summary.json").write_text(json.dumps(summary_json(verdict), indent=1) + "\n")
    write_timeline(directory / "timeline.svg", verdict, events, subtitle=subtitle)
    return table(verdict) + f"\n\n  report: {directory}/summary.json, {directory}/timeline.svg"


def declared_by(url: str | None) -> frozenset[Guarantee]:
    """Return the guarantees the backend of ``url`` declares (no I/O); without a URL, FENCING."""
    if url is None:
        return frozenset({Guarantee.FENCING})
    cls, _ = resolve(url, "_sync")
    declared: frozenset[Guarantee] = getattr(cls, "guarantees", frozenset())
    return declared


def run_check(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Check ``args.check`` against the declarations of ``args.url``, report into ``args.report``."""
    declared = declared_by(getattr(args, "url", None))  # bad URL: ConfigurationError before reading
    events = read_history(args.check)
    verdict = check(events, declared=declared)
    directory = Path(getattr(args, "report", None) or Path(args.check).parent)
    text = write_report(verdict, events, directory, subtitle=f"checked from {args.check}")
    print(text, file=out or sys.stdout)
    return verdict.exit_code
