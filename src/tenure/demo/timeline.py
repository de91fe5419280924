"""Draw the timeline picture: one group of rows per scenario, one row per worker, as plain SVG.

Bars show who held the lock when, labelled with their fences (or, without a lock, each buyer's
read-to-write window); the hatched band is the SIGSTOP pause, the dashed outline the time the
paused worker still believed it held the lock, the cross its stale write that the shop rejected
and the diamond the ``LockLost`` it then received.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from tenure.demo.events import Hold, Mark, Pause, Window
from tenure.demo.report import label
from tenure.demo.scenarios import Outcome

WIDTH = 1000
LEFT = 96  # room for the row labels
RIGHT = 24
ROW = 26
BAR = 14
FONT = "font-family='DejaVu Sans, Helvetica, Arial, sans-serif'"
Scale = Callable[[float], float]  # seconds since the scenario started -> x
Row = Callable[[int], float]  # worker -> y of the middle of its row
COLOURS = {
    "hold": "#3f8f5a",
    "window": "#4a78b5",
    "idle": "#9aa5a0",
    "pause": "#e08a1e",
    "stale": "#c62828",
    "lost": "#7b1fa2",
    "text": "#222222",
    "grid": "#dddddd",
    "stripe": "#f4f6f8",
}


class Canvas:
    """Collect SVG elements; every number is rounded so the file stays small and diffable."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def add(self, tag: str, body: str = "", title: str = "", **attrs: object) -> None:
        """Add one element; ``title`` becomes a tooltip and ``body`` its text content.

        Attribute names are written the Python way: ``font_size`` for ``font-size``, ``class_``.
        """
        self._element(tag, body, title, attrs)

    def text(self, x: float, y: float, body: str, *, size: int = 12, **attrs: object) -> None:
        """Add a text label with a white halo, legible over bars."""
        halo = {"stroke": "white", "stroke_width": 3, "paint_order": "stroke", "stroke_linejoin": "round"}
        base = {"x": x, "y": y, "font_size": size, "fill": COLOURS["text"]}
        self._element("text", body, "", {**base, **halo, **attrs})

    def _element(self, tag: str, body: str, title: str, attrs: dict[str, object]) -> None:
        text = " ".join(f"{k.rstrip('_').replace('_', '-')}={quoteattr(_fmt(v))}" for k, v in attrs.items())
        inner = (f"<title>{escape(title)}</title>" if title else "") + escape(body)
        self.parts.append(f"<{tag} {text}>{inner}</{tag}>" if inner else f"<{tag} {text}/>")


def _fmt(value: object) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)


def nice_step(span: float, ticks: int = 8) -> float:
    """Return a round tick spacing (1, 2 or 5 times a power of ten) giving about ``ticks`` ticks."""
    raw = max(span, 1e-6) / ticks
    power = 10.0 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def write_timeline(path: Path, outcomes: Sequence[Outcome], *, workers: int, subtitle: str) -> Path:
    """Write the picture of ``outcomes`` to ``path`` and return it."""
    canvas = Canvas()
    y = 34.0
    canvas.text(16, y, "tenure demo: the flash-sale oversell, per buyer process", size=17, font_weight="bold")
    canvas.text(16, y + 20, subtitle, size=12, fill="#555555")
    y += 44
    for outcome in outcomes:
        canvas.parts.append(f"<g class='scenario' id='scenario-{outcome.scenario.key}'>")
        y = _group(canvas, outcome, workers, y) + 26
        canvas.parts.append("</g>")
    y = _legend(canvas, y)
    height = y + 12
    defs = (
        "<defs><pattern id='hatch' width='6' height='6' patternUnits='userSpaceOnUse' "
        "patternTransform='rotate(45)'>"
        f"<rect width='6' height='6' fill='{COLOURS['pause']}' fill-opacity='0.25'/>"
        f"<line x1='0' y1='0' x2='0' y2='6' stroke='{COLOURS['pause']}' stroke-width='3'/></pattern></defs>"
    )
    svg = (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{WIDTH}' height='{height:.0f}' "
        f"viewBox='0 0 {WIDTH} {height:.0f}' {FONT}>\n{defs}\n"
        f"<rect width='100%' height='100%' fill='white'/>\n" + "\n".join(canvas.parts) + "\n</svg>\n"
    )
    path.write_text(svg, encoding="utf-8")
    return path


def _group(canvas: Canvas, outcome: Outcome, workers: int, top: float) -> float:
    """Draw one scenario's rows and axis below ``top``; return the y where it ends."""
    history = outcome.history
    ends = [h.end for h in history.holds] + [w.end for w in history.windows] + [m.at for m in history.marks]
    span = max([outcome.duration, 0.05, *ends]) * 1.05  # room for the markers' labels at the end
    step = nice_step(span)
    span = math.ceil(span / step) * step
    plot = WIDTH - LEFT - RIGHT

    def x(t: float) -> float:
        return LEFT + max(0.0, min(t, span)) / span * plot

    summary = f"{outcome.orders} orders for {outcome.stock} units"
    if outcome.oversold:
        summary += f", OVERSOLD by {outcome.oversold}"
    if outcome.scenario.mode == "fenced":
        summary += f", {outcome.rejected} stale write{'s' * (outcome.rejected != 1)} rejected"
    canvas.text(16, top, f"{label(outcome)}: {summary}", size=14, font_weight="bold")
    top += 10
    for n in range(workers):
        row_y = top + n * ROW
        if n % 2 == 0:
            canvas.add("rect", x=LEFT, y=row_y, width=plot, height=ROW, fill=COLOURS["stripe"])
        canvas.text(16, row_y + ROW / 2 + 4, f"worker {n}", size=12)
    bottom = top + workers * ROW
    t = 0.0
    while t <= span + step / 2:
        canvas.add("line", x1=x(t), y1=top, x2=x(t), y2=bottom + 4, stroke=COLOURS["grid"])
        canvas.add(
            "text", f"{t:g} s", x=x(t), y=bottom + 17, font_size=11, text_anchor="middle", fill="#555555"
        )
        t += step

    def mid(worker: int) -> float:
        return top + worker * ROW + ROW / 2

    if outcome.scenario.mode == "none":
        for window in history.windows:
            _window(canvas, window, x, mid(window.worker))
    for hold in history.holds:
        _hold(canvas, hold, outcome.pause, outcome.ttl, x, mid(hold.worker))
    if outcome.pause is not None:
        _pause(canvas, outcome.pause, outcome.ttl, x, mid(outcome.pause.worker))
        _takeover(canvas, history.holds, outcome.pause, x, mid)
    _marks(canvas, history.marks, x, mid)
    return bottom + 22


def _window(canvas: Canvas, window: Window, x: Scale, cy: float) -> None:
    """Draw one unlocked read-to-write stretch, labelled with the stock it read."""
    width = max(1.0, x(window.end) - x(window.start))
    canvas.add(
        "rect",
        x=x(window.start),
        y=cy - BAR / 2,
        width=width,
        height=BAR,
        fill=COLOURS["window"],
        stroke="white",
        stroke_width=0.6,
        class_="window",
        title=f"worker {window.worker} read {window.qty} left at {window.start:.3f} s "
        f"and wrote {window.qty - 1} at {window.end:.3f} s",
    )
    _inside(canvas, str(window.qty), x(window.start), width, cy)


def _hold(canvas: Canvas, hold: Hold, pause: Pause | None, ttl: float, x: Scale, cy: float) -> None:
    """Draw one hold: solid while the lease was good, outlined where the worker only believed so."""
    frozen = None
    if pause is not None and pause.worker == hold.worker and hold.start <= pause.stopped <= hold.end:
        frozen = pause
    tip = f"worker {hold.worker} held fence {hold.fence} from {hold.start:.3f} s to {hold.end:.3f} s"
    if not hold.wrote:
        tip += ", found the stock sold out"
    if hold.lost:
        tip += ", then learnt it had lost the lease"
    if frozen is not None or not hold.lost:
        solid_end = frozen.stopped if frozen is not None else hold.end
        width = max(1.0, x(solid_end) - x(hold.start))
        canvas.add(
            "rect",
            x=x(hold.start),
            y=cy - BAR / 2,
            width=width,
            height=BAR,
            fill=COLOURS["hold"] if hold.wrote else COLOURS["idle"],
            stroke="white",
            stroke_width=0.6,
            class_="hold",
            title=tip,
            data_fence=hold.fence,
        )
        _inside(canvas, str(hold.fence), x(hold.start), width, cy)
    if hold.lost:
        # Renewals stop with the process, so one ttl after SIGSTOP the lease had surely expired;
        # from then on the worker only believed it held the lock.
        start = min(frozen.stopped + ttl, hold.end) if frozen is not None else hold.start
        canvas.add(
            "rect",
            x=x(start),
            y=cy - BAR / 2 - 3,
            width=max(2.0, x(hold.end) - x(start)),
            height=BAR + 6,
            fill="none",
            stroke=COLOURS["stale"],
            stroke_width=1.5,
            stroke_dasharray="4 2",
            class_="stale-hold",
            title=tip,
        )


def _inside(canvas: Canvas, text: str, left: float, width: float, cy: float) -> None:
    """Label a bar in white if the text fits inside it."""
    if width >= 6.5 * len(text) + 3:
        canvas.add(
            "text",
            text,
            x=left + width / 2,
            y=cy + 4,
            font_size=10.5,
            fill="white",
            text_anchor="middle",
            font_weight="bold",
        )


def _pause(canvas: Canvas, pause: Pause, ttl: float, x: Scale, cy: float) -> None:
    """Draw the SIGSTOP band over the frozen worker's row."""
    x0, x1 = x(pause.stopped), x(pause.resumed)
    canvas.add(
        "rect",
        x=x0,
        y=cy - ROW / 2 + 2,
        width=max(2.0, x1 - x0),
        height=ROW - 4,
        fill="url(#hatch)",
        stroke=COLOURS["pause"],
        class_="pause",
        title=f"SIGSTOP at {pause.stopped:.3f} s, SIGCONT at {pause.resumed:.3f} s",
    )
    text = f"SIGSTOP {pause.resumed - pause.stopped:.2f} s, holding fence {pause.fence}"
    canvas.text(
        (x0 + x1) / 2, cy + 4, text, size=11, text_anchor="middle", font_weight="bold", fill="#8a4b00"
    )


def _takeover(canvas: Canvas, holds: Sequence[Hold], pause: Pause, x: Scale, mid: Row) -> None:
    """Name the fence of the first holder after the frozen one: the fence the shop will compare."""
    later = [h for h in holds if h.worker != pause.worker and h.start > pause.stopped]
    if later:
        first = min(later, key=lambda h: h.start)
        # On its own row, just before its bar: nobody held the lock there, the row is empty.
        canvas.text(
            x(first.start) - 5,
            mid(first.worker) + 4,
            f"fence {first.fence} takes over →",
            size=11,
            fill=COLOURS["hold"],
            font_weight="bold",
            text_anchor="end",
        )


def _marks(canvas: Canvas, marks: Sequence[Mark], x: Scale, mid: Row) -> None:
    """Draw the crosses of rejected writes and the diamonds of ``LockLost``, with their labels."""
    crosses: dict[int, float] = {}
    for mark in sorted(marks, key=lambda m: (m.kind != "rejected", m.at)):
        cx, cy = x(mark.at), mid(mark.worker)
        if mark.kind == "rejected":
            crosses[mark.worker] = cx
            canvas.add(
                "path",
                d=_cross(cx, cy, 5),
                stroke=COLOURS["stale"],
                stroke_width=3,
                stroke_linecap="round",
                class_="rejected",
                title=f"worker {mark.worker}: write with fence {mark.fence} rejected by the shop "
                f"at {mark.at:.3f} s",
            )
            _side_label(canvas, cx, cy - 7, f"stale write (fence {mark.fence}) rejected", COLOURS["stale"])
        else:
            # Raised a moment after the rejected write: keep the diamond beside the cross, not on it.
            cx = max(cx, crosses.get(mark.worker, -1e9) + 12)
            points = f"{cx},{cy - 6} {cx + 6},{cy} {cx},{cy + 6} {cx - 6},{cy}"
            canvas.add(
                "polygon",
                points=points,
                fill=COLOURS["lost"],
                class_="lost",
                title=f"worker {mark.worker}: LockLost for fence {mark.fence} at {mark.at:.3f} s",
            )
            _side_label(canvas, cx, cy + 13, "LockLost", COLOURS["lost"])


def _cross(cx: float, cy: float, r: float) -> str:
    """Return the path of an X of half-size ``r`` centred on (cx, cy)."""
    x0, x1, y0, y1 = (f"{v:.1f}" for v in (cx - r, cx + r, cy - r, cy + r))
    return f"M{x0},{y0} L{x1},{y1} M{x0},{y1} L{x1},{y0}"


def _side_label(canvas: Canvas, cx: float, y: float, text: str, colour: str) -> None:
    """Label a marker on its right, or on its left where the right edge would cut the text."""
    if cx + 10 + 6.6 * len(text) < WIDTH - 4:
        canvas.text(cx + 10, y, text, size=11, fill=colour, font_weight="bold")
    else:
        canvas.text(cx - 10, y, text, size=11, fill=colour, font_weight="bold", text_anchor="end")


def _legend(canvas: Canvas, y: float) -> float:
    """Draw the key to the symbols, wrapping as needed; return the y below it."""
    items = [
        ("hold", "held the lock (fence)"),
        ("idle", "held it, found the stock sold out"),
        ("window", "read → write without a lock (stock read)"),
        ("pause", "frozen by SIGSTOP"),
        ("stale-hold", "believed it held the lock after its lease expired"),
        ("rejected", "stale write rejected by the shop"),
        ("lost", "LockLost raised"),
    ]
    x = 16.0
    for kind, text in items:
        width = 24 + 6.8 * len(text) + 22
        if x + width > WIDTH - RIGHT:
            x, y = 16.0, y + 24
        _swatch(canvas, kind, x, y)
        canvas.text(x + 24, y, text, size=12)
        x += width
    return y + 10


def _swatch(canvas: Canvas, kind: str, x: float, y: float) -> None:
    if kind in ("hold", "idle", "window"):
        canvas.add("rect", x=x, y=y - 10, width=18, height=12, fill=COLOURS[kind])
    elif kind == "pause":
        canvas.add("rect", x=x, y=y - 11, width=18, height=14, fill="url(#hatch)", stroke=COLOURS["pause"])
    elif kind == "stale-hold":
        canvas.add(
            "rect",
            x=x,
            y=y - 11,
            width=18,
            height=14,
            fill="none",
            stroke=COLOURS["stale"],
            stroke_dasharray="4 2",
            stroke_width=1.5,
        )
    elif kind == "rejected":
        canvas.add(
            "path", d=_cross(x + 9, y - 4, 5), stroke=COLOURS["stale"], stroke_width=3, stroke_linecap="round"
        )
    else:
        canvas.add(
            "polygon",
            points=f"{x + 9},{y - 10} {x + 15},{y - 4} {x + 9},{y + 2} {x + 3},{y - 4}",
            fill=COLOURS["lost"],
        )
