"""The highest fence a coordinator has seen per lock name, to refuse one that goes back.

A backend that lost or rewound its counter (a restored backup, a reset server) would hand out
fences again; a coordinator that already saw a higher one for the name knows, and refuses it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

NAMES_KEPT = 4096
"""Names remembered per coordinator, the most recently acquired first.

Bounded so that a process acquiring millions of names keeps a fixed amount of memory (some
hundreds of kilobytes); a name not acquired for this many others is checked again from its
next acquisition on.
"""


class FenceHighWater:
    """The highest fence seen per key, for the ``size`` keys acquired most recently."""

    def __init__(self, size: int = NAMES_KEPT) -> None:
        self._size = size
        self._seen: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()  # sync coordinators acquire from many threads

    def admit(self, key: str, fence: int) -> int | None:
        """Record ``fence`` for ``key``; if it is not above the highest seen, return that instead."""
        with self._lock:
            seen = self._seen.get(key)
            if seen is not None and fence <= seen:
                return seen
            self._seen[key] = fence
            self._seen.move_to_end(key)
            if len(self._seen) > self._size:
                self._seen.popitem(last=False)
            return None
