"""When the holders that refused attempts saw will lose their leases: when their waiters look again."""

from __future__ import annotations

import time

EXPIRY_SLACK = 0.001  # seconds after a holder's lease should end that its waiters look again


class HolderExpiries:
    """The local time at which each key's holder, as a refused attempt last saw it, runs out.

    An expiry, unlike a release, notifies nobody, so a waiter caps its wait here. Only hints: a
    waiter that wakes early tries and waits again, and a table that fills up (waiters that gave up
    leave entries behind) is emptied.
    """

    LIMIT = 4096

    def __init__(self) -> None:
        self._ends: dict[str, float] = {}

    def saw(self, key: str, remaining: float) -> None:
        """Note that ``key``'s holder has ``remaining`` seconds of lease left as of now."""
        if len(self._ends) >= self.LIMIT:
            self._ends.clear()
        self._ends[key] = time.monotonic() + max(0.0, remaining)

    def forget(self, key: str) -> None:
        """Drop ``key``'s entry (an attempt succeeded)."""
        if self._ends:  # the hot, uncontended path has nothing to drop
            self._ends.pop(key, None)

    def wake_at(self, key: str) -> float | None:
        """Return when ``key``'s waiters should look again, or None if no holder was seen."""
        ends = self._ends.get(key)
        return None if ends is None else ends + EXPIRY_SLACK

    def cap(self, key: str, timeout: float) -> float:
        """Return ``timeout`` shortened to end when ``key``'s holder would run out."""
        wake_at = self.wake_at(key)
        return timeout if wake_at is None else min(timeout, max(0.0, wake_at - time.monotonic()))
