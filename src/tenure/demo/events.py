"""What the worker processes and the orchestrator tell each other, and the history they leave.

Everything goes through small files in the scenario's work folder rather than pipes or queues:
a worker may be frozen with SIGSTOP at any instant, and a frozen process holding the lock of a
shared queue would freeze the orchestrator too. Each worker appends JSON lines to its own log,
stamped with ``time.monotonic()``, which every process of a host reads from the same clock.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

Mode = Literal["none", "lock", "fenced"]

GO = "go"  # created by the orchestrator: every worker starts buying at once
CLAIM = "claim"  # created exclusively by the holder that offers itself to be paused
CLAIM_INFO = "claim.json"  # then its worker number and fence, written atomically
RESUME = "resume"  # created by the orchestrator just before SIGCONT


@dataclass(frozen=True, slots=True)
class WorkerPlan:
    """Everything a worker process needs, written once to ``plan.json`` by the orchestrator."""

    mode: Mode
    url: str
    lock_name: str
    ttl: float
    shop_path: str
    sku: str
    stock: int
    workdir: str
    think: float  # seconds between the read and the write: the window in which workers race
    acquire_timeout: float
    max_run: float  # seconds a worker may run in all, so a lost orchestrator never leaves it behind
    pause_after: int | None  # sales after which a holder offers itself to be paused; None: never

    def save(self, path: Path) -> None:
        """Write the plan as JSON."""
        path.write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path: Path) -> WorkerPlan:
        """Read a plan written by ``save``."""
        return cls(**json.loads(path.read_text()))


def ready_file(workdir: Path, worker: int) -> Path:
    """Return the file a worker creates once it is ready to start."""
    return workdir / f"ready-{worker}"


def event_file(workdir: Path, worker: int) -> Path:
    """Return the JSON-lines history of one worker."""
    return workdir / f"worker-{worker}.jsonl"


def log_file(workdir: Path, worker: int) -> Path:
    """Return the file a worker's stdout and stderr go to."""
    return workdir / f"worker-{worker}.log"


def touch(path: Path) -> None:
    """Create an empty marker file."""
    path.touch()


def write_atomically(path: Path, data: dict[str, Any]) -> None:
    """Write JSON so that a reader sees either nothing or all of it."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


class EventLog:
    """Append one JSON object per line, flushed at once: the worker may be stopped or killed."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("a", buffering=1, encoding="utf-8")

    def emit(self, event: str, **data: object) -> None:
        """Record ``event`` with the time it happened and its data."""
        self._file.write(json.dumps({"t": time.monotonic(), "ev": event, **data}) + "\n")

    def close(self) -> None:
        """Close the log."""
        self._file.close()


def read_events(path: Path) -> list[dict[str, Any]]:
    """Return a worker's events; a half-written last line (killed worker) is skipped."""
    if not path.exists():
        return []
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events


# -- the history drawn in the timeline ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hold:
    """A worker held (or believed it held) the lock from ``start`` to ``end`` with ``fence``."""

    worker: int
    fence: int
    start: float
    end: float
    lost: bool  # the worker learnt at the end that it had lost the lease meanwhile
    wrote: bool  # False when it only found the stock sold out


@dataclass(frozen=True, slots=True)
class Window:
    """A worker read ``qty`` units left at ``start`` and wrote back ``qty - 1`` at ``end``."""

    worker: int
    qty: int
    start: float
    end: float
    accepted: bool


@dataclass(frozen=True, slots=True)
class Mark:
    """A point event on a worker's row: a rejected stale write or a ``LockLost``."""

    worker: int
    at: float
    kind: Literal["rejected", "lost"]
    fence: int


@dataclass(frozen=True, slots=True)
class Pause:
    """The orchestrator froze ``worker`` (holding ``fence``) from ``stopped`` to ``resumed``."""

    worker: int
    fence: int
    stopped: float
    resumed: float


@dataclass(slots=True)
class History:
    """Every hold, read-write window and mark of one scenario, times relative to its start."""

    holds: list[Hold] = field(default_factory=list)
    windows: list[Window] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def add_worker(self, worker: int, events: list[dict[str, Any]], t0: float) -> None:
        """Fold one worker's events into the history."""
        hold: tuple[int, float] | None = None
        read: tuple[int, float] | None = None
        wrote = False
        for event in events:
            kind, at = event["ev"], float(event["t"]) - t0
            if kind == "acquired":
                hold, wrote = (int(event["fence"]), at), False
            elif kind == "read":
                read = (int(event["qty"]), at)
            elif kind == "write":
                wrote = True
                if read is not None:
                    self.windows.append(Window(worker, read[0], read[1], at, bool(event["ok"])))
                read = None
                if not event["ok"]:
                    self.marks.append(Mark(worker, at, "rejected", int(event["fence"])))
            elif kind in ("released", "lost") and hold is not None:
                self.holds.append(Hold(worker, hold[0], hold[1], at, kind == "lost", wrote))
                if kind == "lost":
                    self.marks.append(Mark(worker, at, "lost", hold[0]))
                hold = None
            elif kind == "error":
                self.errors.append(f"worker {worker}: {event.get('error')}")

    @property
    def lost(self) -> int:
        """Return how many ``LockLost`` the workers reported."""
        return sum(1 for mark in self.marks if mark.kind == "lost")
