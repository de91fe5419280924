"""Draw a verify run as SVG, in the demo's style: one row per process, holds by fence, faults as bands.

A solid bar is the time a lease was surely valid, labelled with its fence; the dashed outline
after it the time its holder only believed it held the lock (after a fault struck it, or after
it was told). Hatched bands are faults (a server fault spans every row), a black cross a crash.
Marks: a red cross is a write the fenced store rejected, a red dot a silent stale write, a
triangle a lost update, a purple diamond a ``lost`` event, a red bar an overlap. A long history
is drawn in a window of at most MAX_HOLDS holds, starting a little before the first violation.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence
from pathlib import Path

from tenure.demo.timeline import COLOURS, FONT, WIDTH, Canvas, nice_step
from tenure.verify.history import Event
from tenure.verify.verdict import NS, Finding, Hold, Verdict

LEFT = 110  # room for the row labels
RIGHT = 24
ROW = 24
BAR = 12
MAX_HOLDS = 1500
MAX_ROWS = 48
LEAD = 2 * NS  # how much of the history to show before the first violation
MARKS = {  # finding kind -> (shape, colour, legend)
    "silent-stale-write": ("dot", COLOURS["stale"], "silent stale write"),
    "lost-update-fenced": ("triangle", COLOURS["stale"], "lost update, fenced store"),
    "lost-update-unfenced": ("triangle", "#e08a1e", "lost update, unfenced store"),
    "unheld-write": ("dot", "#000000", "write outside a hold"),
    "stuck-waiter": ("square", "#555555", "stuck waiter"),
}


def window(verdict: Verdict, events: Sequence[Event]) -> tuple[int, int]:
    """Return the span (ns) to draw: all of it, or MAX_HOLDS holds from just before trouble."""
    if not events:
        return 0, 1
    first, last = min(e.time for e in events), max(e.time for e in events)
    holds = verdict.holds
    if len(holds) <= MAX_HOLDS:
        return first, max(last, first + 1)
    trouble = [f.time for f in verdict.findings if f.violation]
    start = max(first, min(trouble) - LEAD) if trouble else first
    i = bisect.bisect_left([h.start for h in holds], start)
    i = min(i, len(holds) - MAX_HOLDS)
    return holds[i].start, max(h.end for h in holds[i : i + MAX_HOLDS])


def write_timeline(path: Path, verdict: Verdict, events: Sequence[Event], *, subtitle: str = "") -> Path:
    """Write the picture of a checked history to ``path`` and return it."""
    t0, t1 = window(verdict, events)
    rows = _rows(verdict, events, t0, t1)
    canvas = Canvas()
    status = {"ok": "every declared guarantee held", "violation": "VIOLATION", "inconclusive": "inconclusive"}
    canvas.text(16, 30, f"tenure verify: {status[verdict.status]}", size=17, font_weight="bold")
    s = verdict.summary
    line = (
        f"{s['acquisitions']} acquisitions, {s['overlaps']} overlaps, lost updates "
        f"{s['lost_updates']['fenced']} fenced / {s['lost_updates']['unfenced']} unfenced, "
        f"{s['silent_stale_writes']} silent stale writes"
    )
    canvas.text(16, 50, line + (f"; {subtitle}" if subtitle else ""), size=12, fill="#555555")
    shown = f"showing {(t1 - t0) / NS:.2f} s"
    if (t0, t1) != (min((e.time for e in events), default=t0), max((e.time for e in events), default=t1)):
        shown += f" of {s['seconds']:.2f} s (from {(t0 - min(e.time for e in events)) / NS:.2f} s)"
    canvas.text(16, 68, shown, size=11, fill="#777777")
    bottom = _plot(canvas, verdict, events, rows, t0, t1, top=84)
    height = _legend(canvas, bottom + 30) + 12
    defs = (
        "<defs><pattern id='hatch' width='6' height='6' patternUnits='userSpaceOnUse' "
        "patternTransform='rotate(45)'>"
        f"<rect width='6' height='6' fill='{COLOURS['pause']}' fill-opacity='0.25'/>"
        f"<line x1='0' y1='0' x2='0' y2='6' stroke='{COLOURS['pause']}' stroke-width='3'/></pattern></defs>"
    )
    path.write_text(
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{WIDTH}' height='{height:.0f}' "
        f"viewBox='0 0 {WIDTH} {height:.0f}' {FONT}>\n{defs}\n"
        "<rect width='100%' height='100%' fill='white'/>\n" + "\n".join(canvas.parts) + "\n</svg>\n",
        encoding="utf-8",
    )
    return path


def _rows(verdict: Verdict, events: Sequence[Event], t0: int, t1: int) -> dict[str, int]:
    """Return the row of each process seen in the window, in order of first appearance."""
    order: dict[str, int] = {}
    for hold in verdict.holds:
        if hold.end >= t0 and hold.start <= t1 and hold.process not in order:
            order[hold.process] = len(order)
    for event in events:
        if t0 <= event.time <= t1 and event.type != "fault" and event.process not in order:
            order[event.process] = len(order)
    for fault in verdict.faults:
        if fault.kind != "server" and fault.start <= t1 and fault.end >= t0 and fault.process not in order:
            order[fault.process] = len(order)
    return {p: r for p, r in order.items() if r < MAX_ROWS}


def _plot(
    canvas: Canvas,
    verdict: Verdict,
    events: Sequence[Event],
    rows: dict[str, int],
    t0: int,
    t1: int,
    *,
    top: float,
) -> float:
    span = (t1 - t0) / NS * 1.02
    step = nice_step(span)
    span = math.ceil(span / step) * step
    plot = WIDTH - LEFT - RIGHT

    def x(t: int) -> float:
        return LEFT + max(0.0, min((t - t0) / NS, span)) / span * plot

    def mid(process: str) -> float:
        return top + rows[process] * ROW + ROW / 2

    for process, row in rows.items():
        y = top + row * ROW
        if row % 2 == 0:
            canvas.add("rect", x=LEFT, y=y, width=plot, height=ROW, fill=COLOURS["stripe"])
        canvas.text(16, y + ROW / 2 + 4, process[:16], size=12)
    bottom = top + max(len(rows), 1) * ROW
    t = 0.0
    while t <= span + step / 2:
        px = LEFT + t / span * plot
        canvas.add("line", x1=px, y1=top, x2=px, y2=bottom + 4, stroke=COLOURS["grid"])
        canvas.add(
            "text", f"{t:g} s", x=px, y=bottom + 17, font_size=11, text_anchor="middle", fill="#555555"
        )
        t += step
    for fault in verdict.faults:
        if fault.ran and fault.end >= t0 and fault.start <= t1:
            if fault.kind == "server":
                _band(
                    canvas, x(fault.start), x(fault.end), top, bottom - top, f"server fault ({fault.process})"
                )
            elif fault.process in rows:
                if fault.kind == "crash":
                    _cross(canvas, x(fault.start), mid(fault.process), "#000000", f"crash of {fault.process}")
                else:
                    y = mid(fault.process) - ROW / 2 + 2
                    _band(
                        canvas, x(fault.start), x(fault.end), y, ROW - 4, f"{fault.kind} of {fault.process}"
                    )
    for hold in verdict.holds:
        if hold.process in rows and hold.end >= t0 and hold.start <= t1:
            _hold(canvas, hold, x, mid(hold.process))
    for event in events:
        if event.process in rows and t0 <= event.time <= t1:
            if event.type == "write" and not event.ok:
                tip = f"{event.process}: write with fence {event.fence} rejected by the fenced store"
                _cross(canvas, x(event.time), mid(event.process), COLOURS["stale"], tip)
            elif event.type == "lost":
                _diamond(canvas, x(event.time), mid(event.process), f"{event.process} told: {event.detail}")
    for finding in verdict.findings:
        if finding.process in rows and t0 <= finding.time <= t1:
            _finding(canvas, finding, x(finding.time), mid(finding.process))
    return bottom


def _hold(canvas: Canvas, hold: Hold, x: Callable[[int], float], cy: float) -> None:
    start, valid, end = x(hold.start), x(hold.valid_end), x(hold.end)
    tip = f"{hold.process} held fence {hold.fence} for {(hold.end - hold.start) / NS:.3f} s"
    if hold.valid_end < hold.end:
        tip += f", surely valid for {(hold.valid_end - hold.start) / NS:.3f} s"
    if hold.valid_end > hold.start:
        width = max(1.0, valid - start)
        canvas.add(
            "rect", x=start, y=cy - BAR / 2, width=width, height=BAR, fill=COLOURS["hold"],
            stroke="white", stroke_width=0.6, class_="hold", title=tip, data_fence=hold.fence,
        )  # fmt: skip
        label = str(hold.fence)
        if width >= 6.5 * len(label) + 3:
            canvas.add(
                "text", label, x=start + width / 2, y=cy + 4, font_size=10, fill="white",
                text_anchor="middle", font_weight="bold",
            )  # fmt: skip
    if end - valid >= 1.0:
        canvas.add(
            "rect", x=valid, y=cy - BAR / 2 - 2, width=end - valid, height=BAR + 4, fill="none",
            stroke=COLOURS["stale"], stroke_width=1.2, stroke_dasharray="4 2", class_="stale-hold", title=tip,
        )  # fmt: skip


def _band(canvas: Canvas, x0: float, x1: float, y: float, height: float, tip: str) -> None:
    canvas.add(
        "rect", x=x0, y=y, width=max(2.0, x1 - x0), height=height, fill="url(#hatch)",
        stroke=COLOURS["pause"], class_="fault", title=tip, fill_opacity=0.8,
    )  # fmt: skip


def _cross(canvas: Canvas, cx: float, cy: float, colour: str, tip: str, r: float = 4.5) -> None:
    x0, x1, y0, y1 = (f"{v:.1f}" for v in (cx - r, cx + r, cy - r, cy + r))
    d = f"M{x0},{y0} L{x1},{y1} M{x0},{y1} L{x1},{y0}"
    canvas.add(
        "path", d=d, stroke=colour, stroke_width=2.5, stroke_linecap="round", class_="cross", title=tip
    )


def _diamond(canvas: Canvas, cx: float, cy: float, tip: str) -> None:
    points = f"{cx:.1f},{cy - 6:.1f} {cx + 5:.1f},{cy:.1f} {cx:.1f},{cy + 6:.1f} {cx - 5:.1f},{cy:.1f}"
    canvas.add("polygon", points=points, fill=COLOURS["lost"], class_="lost", title=tip)


def _finding(canvas: Canvas, finding: Finding, cx: float, cy: float) -> None:
    if finding.kind in ("overlap", "fence-order"):
        canvas.add(
            "rect", x=cx - 1.5, y=cy - ROW / 2, width=3, height=ROW, fill=COLOURS["stale"],
            class_=finding.kind, title=finding.message,
        )  # fmt: skip
        return
    if finding.kind not in MARKS:
        return
    shape, colour, _ = MARKS[finding.kind]
    _shape(canvas, shape, cx, cy - 9, colour, finding.message, finding.kind)


def _shape(canvas: Canvas, shape: str, cx: float, cy: float, colour: str, tip: str, kind: str) -> None:
    if shape == "dot":
        canvas.add("circle", cx=cx, cy=cy, r=4, fill=colour, stroke="white", class_=kind, title=tip)
    elif shape == "triangle":
        points = f"{cx:.1f},{cy - 5:.1f} {cx + 5:.1f},{cy + 4:.1f} {cx - 5:.1f},{cy + 4:.1f}"
        canvas.add("polygon", points=points, fill=colour, stroke="white", class_=kind, title=tip)
    else:
        canvas.add("rect", x=cx - 4, y=cy - 4, width=8, height=8, fill=colour, class_=kind, title=tip)


def _legend(canvas: Canvas, y: float) -> float:
    """Draw the key to the symbols, wrapping as needed; return the y below it."""
    items = [
        ("hold", "lease surely valid (fence)"),
        ("stale-hold", "held only in the holder's belief"),
        ("fault", "fault (pause, partition, skew; server: all rows)"),
        ("crash", "crash"),
        ("rejected", "write rejected by the fenced store"),
        ("lost", "holder told of the loss"),
        ("overlap", "overlap of valid leases"),
        *((kind, legend) for kind, (_, _, legend) in MARKS.items()),
    ]
    x = 16.0
    for kind, text in items:
        width = 24 + 6.8 * len(text) + 22
        if x + width > WIDTH - RIGHT:
            x, y = 16.0, y + 22
        _swatch(canvas, kind, x, y)
        canvas.text(x + 24, y, text, size=12)
        x += width
    return y + 10


def _swatch(canvas: Canvas, kind: str, x: float, y: float) -> None:
    if kind == "hold":
        canvas.add("rect", x=x, y=y - 10, width=18, height=12, fill=COLOURS["hold"])
    elif kind == "stale-hold":
        canvas.add(
            "rect", x=x, y=y - 11, width=18, height=14, fill="none", stroke=COLOURS["stale"],
            stroke_dasharray="4 2", stroke_width=1.2,
        )  # fmt: skip
    elif kind == "fault":
        _band(canvas, x, x + 18, y - 11, 14, "")
    elif kind in ("crash", "rejected"):
        _cross(canvas, x + 9, y - 4, "#000000" if kind == "crash" else COLOURS["stale"], "")
    elif kind == "lost":
        _diamond(canvas, x + 9, y - 4, "")
    elif kind == "overlap":
        canvas.add("rect", x=x + 7.5, y=y - 12, width=3, height=16, fill=COLOURS["stale"])
    else:
        shape, colour, _ = MARKS[kind]
        _shape(canvas, shape, x + 9, y - 4, colour, "", "legend")
