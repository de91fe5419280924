"""The history ``tenure verify`` records and checks: JSON Lines, one event per line.

Each line is one object with exactly these keys::

    {"process": str, "time": int, "type": "acquire" | "release" | "write" | "lost" | "fault",
     "fence": int | null, "ok": bool, "store": "fenced" | "unfenced" | null,
     "ttl": float | null, "detail": str}

``time`` is in nanoseconds of one monotonic clock shared by every process (one host:
``time.monotonic_ns()``). What each type means, and what ``detail`` carries for writes and
faults, is spelled out in docs/verify.md; ``validate`` enforces it and names the offending line.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal, NamedTuple

from tenure._exceptions import ConfigurationError

EventType = Literal["acquire", "release", "write", "lost", "fault"]
Store = Literal["fenced", "unfenced"]
TYPES: frozenset[str] = frozenset({"acquire", "release", "write", "lost", "fault"})
STORES: frozenset[str | None] = frozenset({"fenced", "unfenced", None})
KEYS = ("process", "time", "type", "fence", "ok", "store", "ttl", "detail")
PHASES = ("start", "end")
SERVER = "server"
"""The fault kind that hits the backend's server rather than one process."""
CRASH = "crash"
"""The fault kind that ends a process (SIGKILL): its hold and its wait end with it."""


class Event(NamedTuple):
    """One step of one process; see the module's docstring for the fields."""

    process: str
    time: int
    type: EventType
    fence: int | None = None
    ok: bool = True
    store: Store | None = None
    ttl: float | None = None
    detail: str = ""

    def to_json(self) -> str:
        """Return the event as one JSON line (without the newline), keys in the documented order."""
        return json.dumps(self._asdict(), separators=(",", ":"))


def read_and_written(event: Event) -> tuple[int, int]:
    """Return the counter value a ``write`` read and the value it wrote.

    ``detail`` starts with ``"R->W"``, or with ``"W"`` alone, which stands for ``"W-1->W"``.
    """
    word = event.detail.split(None, 1)[0] if event.detail else ""
    read, arrow, written = word.partition("->")
    return (int(read), int(written)) if arrow else (int(word) - 1, int(word))


def fault_kind(event: Event) -> tuple[str, str, str]:
    """Return the kind, phase and target of a ``fault`` event.

    ``detail`` starts with ``"KIND PHASE [TARGET]"``: ``"pause start w3"`` -> (pause, start, w3).
    Without a target, the event's own process is the one struck. A fault that could not run
    (``ok`` false) only needs its kind: ``"skew could not run: ..."`` -> (skew, "", process).
    """
    words = event.detail.split()
    kind = words[0].rstrip(":") if words else ""
    phase = words[1] if len(words) > 1 and words[1] in PHASES else ""
    target = words[2] if phase and len(words) > 2 and not words[2].startswith("(") else event.process
    return kind, phase, target


def _fast(data: Any) -> Event | None:
    """Return the event ``data`` describes when it is plainly well formed, else None (see ``validate``)."""
    if type(data) is not dict or data.keys() != _KEYSET:
        return None
    process, time, kind = data["process"], data["time"], data["type"]
    fence, ok, store, ttl, detail = data["fence"], data["ok"], data["store"], data["ttl"], data["detail"]
    if not (
        type(process) is str
        and process
        and type(time) is int
        and time >= 0
        and (fence is None or type(fence) is int)
        and type(ok) is bool
        and type(detail) is str
        and (ttl is None or (type(ttl) is float and -_INF < ttl < _INF))
    ):
        return None
    event = Event(process, time, kind, fence, ok, store, ttl, detail)
    if kind == "write":
        if store is None or store not in STORES or (store == "fenced" and fence is None):
            return None
        try:
            read_and_written(event)
        except ValueError:
            return None
    elif store is not None or kind not in TYPES:
        return None
    elif kind == "fault":
        kind_, phase, _ = fault_kind(event)
        if not kind_ or (ok and not phase):
            return None
    return event


_INF = float("inf")


def validate(data: Any, where: str) -> Event:
    """Return the event that ``data`` (one decoded line) describes, or raise ``ConfigurationError``.

    ``where`` names the line in the message (``"history.jsonl line 12"``).
    """
    if not isinstance(data, dict):
        raise ConfigurationError(f"{where}: expected a JSON object, got {type(data).__name__}")
    if data.keys() != _KEYSET:
        missing = sorted(_KEYSET - data.keys())
        extra = sorted(data.keys() - _KEYSET)
        raise ConfigurationError(f"{where}: keys missing {missing}, unexpected {extra}; expected {KEYS}")
    process, time, kind = data["process"], data["time"], data["type"]
    fence, ok, store, ttl, detail = data["fence"], data["ok"], data["store"], data["ttl"], data["detail"]
    if type(process) is not str or not process:
        raise ConfigurationError(f"{where}: process must be a non-empty string, got {process!r}")
    if type(time) is not int or time < 0:
        raise ConfigurationError(f"{where}: time must be a whole number of nanoseconds >= 0, got {time!r}")
    if kind not in TYPES:
        raise ConfigurationError(f"{where}: type must be one of {sorted(TYPES)}, got {kind!r}")
    if fence is not None and type(fence) is not int:
        raise ConfigurationError(f"{where}: fence must be a whole number or null, got {fence!r}")
    if type(ok) is not bool:
        raise ConfigurationError(f"{where}: ok must be true or false, got {ok!r}")
    if store not in STORES:
        raise ConfigurationError(f"{where}: store must be 'fenced', 'unfenced' or null, got {store!r}")
    if ttl is not None:
        if type(ttl) not in (int, float) or not abs(ttl) < float("inf"):
            raise ConfigurationError(f"{where}: ttl must be a number of seconds or null, got {ttl!r}")
        ttl = float(ttl)
    if type(detail) is not str:
        raise ConfigurationError(f"{where}: detail must be a string, got {detail!r}")
    event = Event(process, time, kind, fence, ok, store, ttl, detail)
    if kind == "write":
        _check_write(event, where)
    elif store is not None:
        raise ConfigurationError(f"{where}: only a write names a store; a {kind} has store null")
    elif kind == "fault":
        _check_fault(event, where)
    return event


_KEYSET = frozenset(KEYS)


def _check_write(event: Event, where: str) -> None:
    if event.store is None:
        raise ConfigurationError(f"{where}: a write names its store: 'fenced' or 'unfenced'")
    if event.store == "fenced" and event.fence is None:
        raise ConfigurationError(f"{where}: a write to the fenced store carries a fence")
    try:
        read_and_written(event)
    except ValueError:
        raise ConfigurationError(
            f"{where}: a write's detail starts with the value read and the value written, "
            f"e.g. '41->42', got {event.detail!r}"
        ) from None


def _check_fault(event: Event, where: str) -> None:
    kind, phase, _ = fault_kind(event)
    if not kind or (event.ok and not phase):
        raise ConfigurationError(
            f"{where}: a fault's detail starts with its kind and phase, then whom it struck, e.g. "
            f"'pause start w3' or 'pause end w3' ('skew could not run: ...' when ok is false), "
            f"got {event.detail!r}"
        )


def parse_lines(lines: Iterable[str], name: str = "history") -> Iterator[Event]:
    """Yield the events of JSON lines; blank lines are skipped.

    A last line without its newline that does not parse is skipped too: a process killed while
    appending leaves one. Any other bad line raises ``ConfigurationError`` naming it.
    """
    loads = json.loads
    pending: tuple[int, str] | None = None  # a line that did not parse, kept until we know it is the last
    for number, line in enumerate(lines, 1):
        if pending is not None:
            raise ConfigurationError(f"{name} line {pending[0]}: not valid JSON ({pending[1]})")
        if not line.strip():
            continue
        try:
            data = loads(line)
        except json.JSONDecodeError as exc:
            if line.endswith("\n"):
                raise ConfigurationError(f"{name} line {number}: not valid JSON ({exc.msg})") from None
            pending = (number, exc.msg)
            continue
        yield _fast(data) or validate(data, f"{name} line {number}")


def parse_text(text: str, name: str = "history") -> list[Event]:
    """Return the events of a whole history's text, as ``parse_lines`` would.

    The common case, every line well formed, is decoded as one JSON array: about twice as fast
    as a line at a time. Anything else is read again a line at a time to name the bad line.
    """
    lines = text.split("\n")
    try:
        decoded = json.loads("[" + ",".join(filter(str.strip, lines)) + "]")
    except json.JSONDecodeError:
        return list(parse_lines((line + "\n" for line in lines[:-1]), name)) + _last(lines[-1], name)
    events = [_fast(data) for data in decoded]
    if all(events):
        return events  # type: ignore[return-value]  # no None left in it
    return list(parse_lines(text.splitlines(keepends=True), name))


def _last(line: str, name: str) -> list[Event]:
    return list(parse_lines([line], name)) if line.strip() else []


def read_history(path: Path | str) -> list[Event]:
    """Return the events of a history file, in file order (the checker sorts them by time)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"cannot read the history {path}: {exc}") from exc
    return parse_text(text, str(path))


def write_history(path: Path | str, events: Iterable[Event]) -> Path:
    """Write ``events`` to ``path`` as JSON Lines and return the path."""
    path = Path(path)
    with path.open("w", encoding="utf-8") as out:
        for event in events:
            out.write(event.to_json() + "\n")
    return path


def merge_histories(paths: Iterable[Path], out: Path) -> Path:
    """Concatenate per-process history files into ``out`` (the checker sorts by time).

    Each file is validated on the way, so a bad line is reported with its own file and number.
    """
    with out.open("w", encoding="utf-8") as merged:
        for path in paths:
            with path.open(encoding="utf-8") as lines:
                for event in parse_lines(lines, str(path)):
                    merged.write(event.to_json() + "\n")
    return out
