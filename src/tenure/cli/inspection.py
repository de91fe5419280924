"""The ``tenure inspect`` command: show who holds a lock and who leads the election of that name."""

from __future__ import annotations

import argparse
import json

import tenure
from tenure._core.semaphore import MAX_LIMIT


def run_inspect(args: argparse.Namespace) -> int:
    """Print the holder and the leader of ``args.name`` (or "free"), as text or ``--json``; return 0.

    A lock and an election of the same name are apart; both are shown. Raises
    ``ConfigurationError`` for bad input (before any I/O) and ``BackendUnavailable`` when the
    backend cannot be reached.
    """
    coordinator = tenure.Coordinator(args.url)
    try:
        info = coordinator.inspect(args.name)
        leader = coordinator.election(args.name).leader()
        permits: list[tenure.HolderInfo] = []
        if tenure.Capability.COUNTING in coordinator.capabilities:
            # Whatever limit the semaphore has, its permits are among the first MAX_LIMIT slots.
            permits = coordinator.semaphore(args.name, limit=MAX_LIMIT).holders()
        url = coordinator.url
    finally:
        coordinator.close()
    if args.json:
        print(as_json(args.name, url, info, leader, permits))
    else:
        print(as_text(args.name, url, info, leader, permits))
    return 0


def remaining_text(info: tenure.HolderInfo) -> str:
    """Return the seconds of ttl left, or why they are not known."""
    if info.remaining is None:
        return "unknown (the lease lives as long as the holder's session)"
    return f"{info.remaining:.3f} s"


def as_text(
    name: str,
    url: str,
    info: tenure.HolderInfo | None,
    leader: tenure.Leader | None,
    permits: list[tenure.HolderInfo],
) -> str:
    """Return the holder, the permits and the leader as aligned ``key: value`` lines, or "free"."""
    if info is None and leader is None and not permits:
        return "free"
    rows: list[tuple[str, str]] = []
    if info is not None:
        rows += [
            ("lock", name),
            ("backend", url),
            ("holder", info.label),
            ("fence", str(info.fence)),
            ("remaining", remaining_text(info)),
        ]
    if permits:
        if info is None:
            rows += [("semaphore", name), ("backend", url)]
        else:
            rows += [("semaphore", name)]
        rows += [("permits", f"{len(permits)} held")]
        rows += [("permit", f"{p.label}, fence {p.fence}, {remaining_text(p)} left") for p in permits]
    if leader is not None:
        if info is None and not permits:
            rows += [("election", name), ("backend", url)]
        rows += [("leader", leader.value), ("term", str(leader.term))]
    return "\n".join(f"{key + ':':<10} {value}" for key, value in rows)


def as_json(
    name: str,
    url: str,
    info: tenure.HolderInfo | None,
    leader: tenure.Leader | None,
    permits: list[tenure.HolderInfo],
) -> str:
    """Return the holder, the permits and the leader as one JSON object.

    ``held`` is false and ``holder``, ``fence`` and ``remaining`` null when nobody holds the
    lock; ``permits`` lists the semaphore's live permits (``holder``, ``fence``, ``remaining``);
    ``leader`` is ``{"value": ..., "term": ...}``, or null when nobody leads the election.
    """
    return json.dumps(
        {
            "lock": name,
            "backend": url,
            "held": info is not None,
            "holder": None if info is None else info.label,
            "fence": None if info is None else info.fence,
            "remaining": None if info is None else info.remaining,
            "permits": [{"holder": p.label, "fence": p.fence, "remaining": p.remaining} for p in permits],
            "leader": None if leader is None else {"value": leader.value, "term": leader.term},
        }
    )
