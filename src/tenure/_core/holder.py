"""What a backend reports about the current holder of a lock."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class HolderInfo:
    """The current holder of a key: its readable label, its fence and seconds of TTL left.

    Never carries the owner token: whoever reads this must not be able to act as the holder.
    ``remaining`` is None where the backend cannot tell (session-bound leases).
    """

    label: str
    fence: int
    remaining: float | None
