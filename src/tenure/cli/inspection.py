"""The ``tenure inspect`` command: who holds a name's lock, permits, read-write lock, election."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field

import tenure
from tenure._core.idempotency import decode
from tenure._core.semaphore import MAX_LIMIT


def run_inspect(args: argparse.Namespace) -> int:
    """Print who holds ``args.name`` (or "free"), as text or ``--json``; return 0.

    A lock, a semaphore, a read-write lock and an election of the same name are apart; each is
    shown. Raises ``ConfigurationError`` for bad input (before any I/O) and
    ``BackendUnavailable`` when the backend cannot be reached.
    """
    if getattr(args, "watch", False):
        from tenure.cli.watch import run_watch  # imports rich only here

        args.names = [args.name, *args.more]
        return run_watch(args)
    if getattr(args, "more", None):
        raise tenure.ConfigurationError("tenure inspect shows one NAME at a time; several need --watch")
    if getattr(args, "key", None) is not None:
        return run_inspect_key(args)
    coordinator = tenure.Coordinator(args.url)
    try:
        holder = coordinator.inspect(args.name)
        seen = Seen(coordinator.url, holder, coordinator.election(args.name).leader())
        if tenure.Capability.COUNTING in coordinator.capabilities:
            # Whatever limit the semaphore has, its permits are among the first MAX_LIMIT slots.
            seen.permits = coordinator.semaphore(args.name, limit=MAX_LIMIT).holders()
            rwlock = coordinator.rwlock(args.name)
            seen.writer, seen.readers = rwlock.writer(), rwlock.readers()
    finally:
        coordinator.close()
    print(as_json(args.name, seen) if args.json else as_text(args.name, seen))
    return 0


@dataclass
class Seen:
    """What holds a name: its lock's holder, its election's leader, permits, readers, writer."""

    url: str
    holder: tenure.HolderInfo | None
    leader: tenure.Leader | None
    permits: list[tenure.HolderInfo] = field(default_factory=list)
    readers: list[tenure.HolderInfo] = field(default_factory=list)
    writer: tenure.HolderInfo | None = None


def remaining_text(info: tenure.HolderInfo) -> str:
    """Return the seconds of ttl left, or why they are not known."""
    if info.remaining is None:
        return "unknown (the lease lives as long as the holder's session)"
    return f"{info.remaining:.3f} s"


def lease_text(info: tenure.HolderInfo) -> str:
    """Return one lease on one line: its holder, fence and ttl left."""
    return f"{info.label}, fence {info.fence}, {remaining_text(info)} left"


def as_text(name: str, seen: Seen) -> str:
    """Return what holds the name as aligned ``key: value`` lines, or "free" if nothing does."""
    rows: list[tuple[str, str]] = []

    def section(title: str) -> None:
        rows.append((title, name))
        if len(rows) == 1:  # the first section says where
            rows.append(("backend", seen.url))

    if seen.holder is not None:
        section("lock")
        info = seen.holder
        rows += [("holder", info.label), ("fence", str(info.fence)), ("remaining", remaining_text(info))]
    if seen.permits:
        section("semaphore")
        rows += [("permits", f"{len(seen.permits)} held")] + [("permit", lease_text(p)) for p in seen.permits]
    if seen.writer is not None or seen.readers:
        section("rwlock")
        if seen.writer is not None:
            rows.append(("writer", lease_text(seen.writer)))
        if seen.readers:
            rows.append(("readers", f"{len(seen.readers)} held"))
            rows += [("reader", lease_text(r)) for r in seen.readers]
    if seen.leader is not None:
        if not rows:
            section("election")
        rows += [("leader", seen.leader.value), ("term", str(seen.leader.term))]
    if not rows:
        return "free"
    return "\n".join(f"{key + ':':<10} {value}" for key, value in rows)


def as_json(name: str, seen: Seen) -> str:
    """Return what holds the name as one JSON object.

    ``held`` is false and ``holder``, ``fence`` and ``remaining`` null when nobody holds the
    lock; ``permits`` and ``readers`` list the semaphore's permits and the read-write lock's
    read leases (``holder``, ``fence``, ``remaining``), ``writer`` is its write lease or null;
    ``leader`` is ``{"value": ..., "term": ...}``, or null when nobody leads the election.
    """
    info, leader = seen.holder, seen.leader
    return json.dumps(
        {
            "lock": name,
            "backend": seen.url,
            "held": info is not None,
            "holder": None if info is None else info.label,
            "fence": None if info is None else info.fence,
            "remaining": None if info is None else info.remaining,
            "permits": [lease_json(p) for p in seen.permits],
            "readers": [lease_json(r) for r in seen.readers],
            "writer": None if seen.writer is None else lease_json(seen.writer),
            "leader": None if leader is None else {"value": leader.value, "term": leader.term},
        }
    )


def lease_json(info: tenure.HolderInfo) -> dict[str, object]:
    """Return one lease as a JSON object: holder, fence, remaining."""
    return {"holder": info.label, "fence": info.fence, "remaining": info.remaining}


def run_inspect_key(args: argparse.Namespace) -> int:
    """Print the state of the idempotency key ``args.key`` of the space ``args.name``; return 0."""
    coordinator = tenure.Coordinator(args.url)
    try:
        state = coordinator.idempotency(args.name).state(args.key)
        url = coordinator.url
    finally:
        coordinator.close()
    running, done = state.running, state.done
    outcome = None if done is None else ("error" if decode(done.record).is_error else "result")
    if args.json:
        print(
            json.dumps(
                {
                    "idempotency": args.name,
                    "key": args.key,
                    "backend": url,
                    "state": "running" if running else "done" if done else "unused",
                    "running": None if running is None else lease_json(running),
                    "done": None
                    if done is None
                    else {"fence": done.fence, "remaining": done.remaining, "outcome": outcome,
                          "bytes": len(done.record)},
                }
            )
        )  # fmt: skip
        return 0
    rows = [("key", args.key), ("space", args.name), ("backend", url)]
    if running is not None:
        rows.append(("running", lease_text(running)))
    if done is not None:
        rows.append(("done", f"{outcome} of {len(done.record)} bytes, fence {done.fence}, "
                             f"kept {done.remaining:.0f} s more"))  # fmt: skip
    if running is None and done is None:
        rows.append(("state", "unused (never run, or its record expired)"))
    print("\n".join(f"{key + ':':<10} {value}" for key, value in rows))
    return 0
