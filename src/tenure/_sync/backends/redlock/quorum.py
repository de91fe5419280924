# GENERATED from src/tenure/_async/backends/redlock/quorum.py by scripts/unasync.py: do not edit; edit the source and re-run.
"""Redlock without I/O: majorities, the validity rule, the holder a majority reports, permit votes."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from tenure._core.holder import HolderInfo
from tenure._core.renewal import drift_margin
from tenure._exceptions import BackendProtocolError

PermitVote = tuple[int, int] | Exception
"""One instance's answer to PERMIT: (slot, fence), (-1, 0) all held, (-2, its recorded limit)
another limit in use; or what stands for its missing answer."""


def quorum(instances: int) -> int:
    """Return how many of ``instances`` make a majority."""
    return instances // 2 + 1


def validity_left(ttl: float, elapsed: float) -> float:
    """Return Redlock's validity: the TTL less the time the vote took and the clock-drift margin."""
    return ttl - elapsed - drift_margin(ttl)


@dataclass(frozen=True, slots=True)
class Tally:
    """The outcome of one vote: how many instances said yes, no, or did not answer."""

    yes: int
    no: int
    unknown: int

    @property
    def answered(self) -> int:
        """Return how many instances answered at all."""
        return self.yes + self.no

    def majority(self, of: int) -> bool:
        """Return whether the yes votes are a majority of ``of`` instances."""
        return self.yes >= quorum(of)

    def reachable(self, of: int) -> bool:
        """Return whether a majority of ``of`` instances answered."""
        return self.answered >= quorum(of)


@dataclass(frozen=True, slots=True)
class Seen:
    """One instance's view of the holder, as the HOLDER script reports it."""

    owner: str  # digest of the owner token: equal on every instance that one lease holds
    label: str
    fence: int
    remaining: float | None


def parse_seen(reply: object) -> Seen | None:
    """Return the holder one instance reports, or None if the lock is free there."""
    if reply is None:
        return None
    if not isinstance(reply, list) or len(reply) != 4:
        raise ValueError(f"unexpected HOLDER reply {reply!r}")
    label, fence, remaining_ms, owner = reply
    remaining = None if int(remaining_ms) < 0 else int(remaining_ms) / 1000
    return Seen(_text(owner), _text(label), int(fence), remaining)


def majority_holder(views: Sequence[Seen | None], instances: int) -> HolderInfo | None:
    """Return the holder that a majority of ``instances`` report, or None if there is none.

    Its fence is the largest any of those instances reports (the lease's own fence), and its
    remaining time is how long a majority still keeps the lock: the quorum-th longest TTL.
    """
    need = quorum(instances)
    counts = Counter(view.owner for view in views if view is not None)
    winners = [owner for owner, count in counts.items() if count >= need]
    if not winners:
        return None
    mine = [view for view in views if view is not None and view.owner == winners[0]]
    if any(view.remaining is None for view in mine):
        remaining = None
    else:
        remaining = sorted((view.remaining or 0.0 for view in mine), reverse=True)[need - 1]
    return HolderInfo(mine[0].label, max(view.fence for view in mine), remaining)


def permit_vote(reply: object) -> PermitVote:
    """Return one instance's PERMIT answer as a pair, or the error that stands for it."""
    if isinstance(reply, Exception):
        return reply
    try:
        slot, value = (int(part) for part in reply)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        return BackendProtocolError(f"unexpected PERMIT reply {reply!r}")
    return slot, value


def winning_slot(votes: Sequence[PermitVote], instances: int) -> tuple[int, int] | None:
    """Return the slot a majority of ``instances`` took and its fence (the largest of its votes).

    Each instance takes one slot at most, so at most one slot has a majority.
    """
    taken = Counter(vote[0] for vote in votes if not isinstance(vote, Exception) and vote[0] >= 0)
    for slot, count in taken.items():
        if count >= quorum(instances):
            return slot, max(vote[1] for vote in votes if not isinstance(vote, Exception) and vote[0] == slot)
    return None


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
