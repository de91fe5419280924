"""The ``tenure inspect`` command: show who holds a lock, with which fence, for how long."""

from __future__ import annotations

import argparse
import json

import tenure


def run_inspect(args: argparse.Namespace) -> int:
    """Print the holder of ``args.name`` (or "free"), as text or ``--json``; return 0.

    Raises ``ConfigurationError`` for bad input (before any I/O) and ``BackendUnavailable`` when
    the backend cannot be reached.
    """
    coordinator = tenure.Coordinator(args.url)
    try:
        info = coordinator.inspect(args.name)
        url = coordinator.url
    finally:
        coordinator.close()
    print(as_json(args.name, url, info) if args.json else as_text(args.name, url, info))
    return 0


def as_text(name: str, url: str, info: tenure.HolderInfo | None) -> str:
    """Return the holder as aligned ``key: value`` lines, or "free"."""
    if info is None:
        return "free"
    if info.remaining is None:
        remaining = "unknown (the lease lives as long as the holder's session)"
    else:
        remaining = f"{info.remaining:.3f} s"
    rows = [
        ("lock", name),
        ("backend", url),
        ("holder", info.label),
        ("fence", str(info.fence)),
        ("remaining", remaining),
    ]
    return "\n".join(f"{key + ':':<10} {value}" for key, value in rows)


def as_json(name: str, url: str, info: tenure.HolderInfo | None) -> str:
    """Return the holder as one JSON object; ``held`` is false and the rest null when free."""
    return json.dumps(
        {
            "lock": name,
            "backend": url,
            "held": info is not None,
            "holder": None if info is None else info.label,
            "fence": None if info is None else info.fence,
            "remaining": None if info is None else info.remaining,
        }
    )
