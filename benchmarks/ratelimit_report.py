"""The tables of ``benchmarks.ratelimit``: per decision with ratios, throughput, accuracy, targets."""

from __future__ import annotations

from benchmarks.report import Record
from benchmarks.runner import num as _num
from benchmarks.runner import render_uncontended
from benchmarks.runner import value_range as _range


def _reason(text: str) -> str:
    """A skip reason's head for the table (the JSON keeps all of it)."""
    head = text.split(" declares ", 1)[0] if text.startswith("no Counters capability") else text
    return head.split("\n", 1)[0][:120]


def render(suite_name: str, record: Record, header: str) -> str:
    lines = [f"suite {suite_name} (rate limits): {header}", ""]
    lines += _decisions(record)
    if record["throughput"] is not None:
        lines += ["", *_throughput(record)]
    if record["accuracy"] is not None:
        lines += ["", *_accuracy(record)]
    return "\n".join(lines)


def _decisions(record: Record) -> list[str]:
    lines, _ = render_uncontended(
        record["per_decision"], record["ratios"], phase="per decision", unit="calls/s", short=_reason
    )
    return lines


REGIME_TITLES = {
    "admitting": "admitting: the fresh key's whole budget offered at once, every decision admitted",
    "refusing": "refusing: then the spent key for the window, mostly refused (admits as the budget returns)",
}


def _throughput(record: Record) -> list[str]:
    limit = record["config"]["load"]["limit"]
    lines = [
        f"throughput: decisions/s on one key at {limit['permits']:,} per {limit['period']:g} s "
        "(burst = the limit)"
    ]
    for regime, by_count in record["throughput"].items():
        counts = list(by_count)
        cols = f"  {REGIME_TITLES[regime]}\n  {'decider':<20}" + "".join(
            f" {f'{c} process' + ('es' if c != '1' else '') + ' (min–max)':>30}" for c in counts
        )
        lines += [cols, "  " + "-" * (len(cols.split(chr(10))[1]) - 2)]
        for name in by_count[counts[0]]:
            cells = []
            for count in counts:
                rec = by_count[count][name]
                if rec["skipped"]:
                    cells.append(f"{_reason(rec['skipped'])[:30]:>30}")
                elif rec["errors"]:
                    cells.append(f"{'ERROR':>30}")
                else:
                    cells.append(f"{_range(rec['decisions_per_s'], ',.0f'):>30}")
            lines.append(f"  {name:<20}" + "".join(f" {c}" for c in cells))
        lines.append("")
    lines.append("ratios of decisions/s (of the medians; min–max over the rounds)")
    for ratio in record["throughput_ratios"]:
        label = f"{ratio['regime']} ×{ratio['processes']} {ratio['numerator']} ÷ {ratio['denominator']}"
        text = (
            f"  {label:<54} {_num(ratio['ratio'], '.2f')}× "
            f"({_num(ratio['per_round_min'], '.2f')}–{_num(ratio['per_round_max'], '.2f')})"
        )
        if ratio["target_at_least"] is not None:
            verdict = "not measured" if ratio["met"] is None else ("met" if ratio["met"] else "NOT met")
            text += f"   target ≥ {ratio['target_at_least']:g}× → {verdict}"
        lines.append(text)
    return lines


def _accuracy(record: Record) -> list[str]:
    limit = record["config"]["load"]["limit"]
    lines = [
        f"accuracy: {2 * limit['permits']:,} offers on one fresh key at "
        f"{limit['permits']:,} per {limit['period']:g} s "
        "(burst = the limit), from all processes at once",
        f"{'decider':<20} {'offered':>8} {'made':>8} {'admitted':>9} {'budget':>8} {'over':>6} "
        f"{'span s':>7}  {'budget':<19} deadline",
    ]
    lines.append("-" * len(lines[-1]))
    for name, rec in record["accuracy"].items():
        if rec["skipped"] or rec["errors"]:
            lines.append(f"{name:<20} {_reason(rec['skipped']) if rec['skipped'] else 'ERROR'}")
            continue
        kind = "limit per window" if rec["budget_kind"] == "window" else "burst + rate × span"
        over = rec["over_admitted"]
        figures = f"{rec['offered']:>8,} {rec['decisions']:>8,} {rec['admitted']:>9,} {rec['budget']:>8,}"
        lines.append(
            f"{name:<20} {figures} {over:>+6,} {rec['span_s']:>7.2f}  {kind:<19} "
            f"{rec['unavailable'] or '-'}{'  !!' if over > 0 else ''}"
        )
    return lines
