"""What the checker returns: the holds, faults and findings it read from a history, and the verdict."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Status = Literal["ok", "violation", "inconclusive"]
EXIT_CODES: dict[Status, int] = {"ok": 0, "violation": 1, "inconclusive": 2}
NS = 1_000_000_000
MIN_ACQUISITIONS = 10
FINDINGS_PER_KIND = 1000  # the counts are exact; only the first findings of each kind are kept
Ended = Literal["release", "refused", "crash", "reacquire", "open"]


@dataclass(slots=True)
class Hold:
    """A process believed it held the lock from ``start`` to ``end`` (ns) with ``fence``."""

    process: str
    fence: int | None
    ttl: float | None
    start: int
    end: int = -1
    valid_end: int = -1  # the end of the time it surely held a valid lease; -1 while unknown
    ended: Ended = "open"
    lost_at: int | None = None  # when the holder was first told it had lost the lease
    fault_at: int | None = None  # the start of the first fault that struck it
    superseded_at: int | None = None  # the first acquisition by another process while it held

    @property
    def told(self) -> bool:
        """Whether the holder was told of a loss, by the end of the hold at the latest."""
        return self.lost_at is not None or self.ended == "refused"


@dataclass(frozen=True, slots=True)
class Fault:
    """A fault band: ``kind`` hit ``process`` from ``start`` to ``end`` (ns)."""

    process: str
    kind: str
    start: int
    end: int
    ran: bool  # False: the nemesis could not inject it


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing the checker found; ``violation`` says whether it breaks a guarantee."""

    kind: str
    time: int
    process: str
    fence: int | None
    violation: bool
    message: str


@dataclass(frozen=True)
class Verdict:
    """The outcome: ``status``, the figures in ``summary``, and what to draw."""

    status: Status
    summary: dict[str, Any]
    findings: tuple[Finding, ...]
    holds: tuple[Hold, ...]
    faults: tuple[Fault, ...]
    reasons: tuple[str, ...]

    @property
    def exit_code(self) -> int:
        """0 when every declared guarantee held, 1 on a violation, 2 when inconclusive."""
        return EXIT_CODES[self.status]


@dataclass(frozen=True, slots=True)
class Options:
    """Thresholds of the checks; the defaults suit the workload of ``tenure verify``."""

    min_acquisitions: int = MIN_ACQUISITIONS
    stuck_after: float | None = None  # seconds; default: twice the longest ttl plus one second
