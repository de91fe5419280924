"""The ``tenure inspect`` command: show who holds a lock and who leads the election of that name."""

from __future__ import annotations

import argparse
import json

import tenure


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
        url = coordinator.url
    finally:
        coordinator.close()
    if args.json:
        print(as_json(args.name, url, info, leader))
    else:
        print(as_text(args.name, url, info, leader))
    return 0


def as_text(name: str, url: str, info: tenure.HolderInfo | None, leader: tenure.Leader | None) -> str:
    """Return the holder and the leader as aligned ``key: value`` lines, or "free" if neither exists."""
    if info is None and leader is None:
        return "free"
    rows: list[tuple[str, str]] = []
    if info is not None:
        if info.remaining is None:
            remaining = "unknown (the lease lives as long as the holder's session)"
        else:
            remaining = f"{info.remaining:.3f} s"
        rows += [
            ("lock", name),
            ("backend", url),
            ("holder", info.label),
            ("fence", str(info.fence)),
            ("remaining", remaining),
        ]
    if leader is not None:
        if info is None:
            rows += [("election", name), ("backend", url)]
        rows += [("leader", leader.value), ("term", str(leader.term))]
    return "\n".join(f"{key + ':':<10} {value}" for key, value in rows)


def as_json(name: str, url: str, info: tenure.HolderInfo | None, leader: tenure.Leader | None) -> str:
    """Return the holder and the leader as one JSON object.

    ``held`` is false and ``holder``, ``fence`` and ``remaining`` null when nobody holds the
    lock; ``leader`` is ``{"value": ..., "term": ...}``, or null when nobody leads the election.
    """
    return json.dumps(
        {
            "lock": name,
            "backend": url,
            "held": info is not None,
            "holder": None if info is None else info.label,
            "fence": None if info is None else info.fence,
            "remaining": None if info is None else info.remaining,
            "leader": None if leader is None else {"value": leader.value, "term": leader.term},
        }
    )
