"""What the demo prints: a live line per scenario on stderr, then the table and the verdicts."""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from tenure.demo.scenarios import Outcome

HEADERS = (
    "scenario",
    "orders accepted",
    "stock left",
    "units oversold",
    "stale writes rejected",
    "lock lost",
)


class Progress:
    """One live status line, redrawn in place on a terminal and printed sparingly elsewhere.

    Piped into a file or a CI log, a line every second (and the final one) stays readable where
    carriage returns would pile up.
    """

    def __init__(self, stream: TextIO, *, tty: bool | None = None) -> None:
        self._stream = stream
        self._tty = stream.isatty() if tty is None else tty
        self._interval = 0.05 if self._tty else 1.0
        self._last = 0.0
        self._text = ""

    def update(self, text: str) -> None:
        """Show ``text`` as the current state (throttled)."""
        self._text = text
        now = time.monotonic()
        if now - self._last < self._interval:
            return
        self._last = now
        self._write(text, final=False)

    def note(self, text: str) -> None:
        """Print a lasting line about something that just happened, below the live one."""
        if self._tty:
            self._stream.write("\r\033[K")
        self._stream.write(f"    {text}\n")
        if self._tty and self._text:
            self._stream.write(self._text[: shutil.get_terminal_size().columns - 1])
        self._stream.flush()

    def done(self, text: str) -> None:
        """Print the final state of the line and start a new one."""
        self._write(text, final=True)
        self._text = ""
        self._last = 0.0

    def _write(self, text: str, *, final: bool) -> None:
        if self._tty:
            # A line wider than the terminal would wrap, and \r would only go back over its last part.
            width = shutil.get_terminal_size().columns - 1
            self._stream.write("\r\033[K" + text[:width] + ("\n" if final else ""))
        else:
            self._stream.write(text + "\n")
        self._stream.flush()


def label(outcome: Outcome) -> str:
    """Return the scenario's name as the table shows it."""
    return f"({outcome.scenario.key}) {outcome.scenario.title}"


def table(outcomes: Sequence[Outcome]) -> str:
    """Return the results as an aligned text table."""
    rows = [HEADERS] + [
        (label(o), str(o.orders), str(o.stock_left), str(o.oversold), str(o.rejected), str(o.history.lost))
        for o in outcomes
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADERS))]

    def line(row: Sequence[str]) -> str:
        numbers = [cell.rjust(w) for cell, w in zip(row[1:], widths[1:], strict=True)]
        return " | ".join([row[0].ljust(widths[0]), *numbers])

    rule = "-+-".join("-" * w for w in widths)
    return "\n".join([line(rows[0]), rule, *(line(row) for row in rows[1:])])


def verdicts(outcomes: Sequence[Outcome]) -> list[tuple[bool, str]]:
    """Return one ``(good, sentence)`` per scenario saying what it showed; False means it failed."""
    return [_verdict(o) for o in outcomes]


def _verdict(o: Outcome) -> tuple[bool, str]:
    name = label(o)
    sold = f"{o.orders} orders for {o.stock} units"
    if o.scenario.mode == "none":
        if o.oversold:
            return True, (
                f"{name}: OVERSOLD by {o.oversold} ({sold}): buyers read the same stock "
                "and each wrote back its own decrement, so sales were counted over each other."
            )
        return True, (
            f"{name}: did not oversell this time ({sold}); the race depends on timing, "
            "try more --workers or a longer --think."
        )
    if not o.exact:
        return False, (
            f"{name}: NOT exact ({sold}, {o.stock_left} left, {o.oversold} oversold): "
            "the lock did not protect the stock."
        )
    if o.scenario.mode == "lock":
        return True, f"{name}: exact ({sold}): the lock let one buyer at a time read, decrement and write."
    pause = o.pause
    if pause is None or not o.paused_write_rejected:
        return False, (
            f"{name}: exact ({sold}), but the demo did not show what it claims: no stale write "
            "of a paused holder reached the shop to be rejected."
        )
    lost = any((m.kind, m.worker, m.fence) == ("lost", pause.worker, pause.fence) for m in o.history.marks)
    return True, (
        f"{name}: exact ({sold}). Worker {pause.worker} checked its lease (fence {pause.fence}) and was "
        f"frozen for {pause.resumed - pause.stopped:.2f} s, past its {o.ttl:g} s ttl; a newer holder sold "
        f"meanwhile; on waking, its write with fence {pause.fence} was rejected by the shop"
        + (", and leaving the lock block raised LockLost." if lost else ".")
    )
