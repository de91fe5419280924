"""The highest fence a coordinator has seen per lock name, to refuse one that goes back.

A backend that lost or rewound its counter (a restored backup, a reset server) would hand out
fences again; a coordinator that already saw a higher one for the name knows, and refuses it.
"""

from __future__ import annotations

import enum
import threading
from collections import OrderedDict

NAMES_KEPT = 4096
"""Names remembered per coordinator, the most recently acquired first.

Bounded so that a process acquiring millions of names keeps a fixed amount of memory (some
hundreds of kilobytes); a name not acquired for this many others is checked again from its
next acquisition on.
"""


class Floor(enum.Enum):
    """The floor a new fence must be above: the highest seen when it is checked."""

    NOW = "now"


class FenceHighWater:
    """The highest fence seen per key, for the ``size`` keys acquired most recently."""

    def __init__(self, size: int = NAMES_KEPT) -> None:
        self._size = size
        self._seen: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()  # sync coordinators acquire from many threads

    def highest(self, key: str) -> int | None:
        """Return the highest fence seen for ``key``, or None."""
        with self._lock:
            return self._seen.get(key)

    def admit(self, key: str, fence: int, *, floor: int | Floor | None = Floor.NOW) -> int | None:
        """Record ``fence`` for ``key``; if it is not above the floor, return the floor instead.

        The floor is the highest fence seen now (``Floor.NOW``), or the one given: what was
        highest when the request was sent (``highest()``). A name held by several holders of
        one coordinator at once (a semaphore's permits) is granted in one order on the server
        and may be answered in another, so only the fences seen before the request must be
        below it.
        """
        with self._lock:
            seen = self._seen.get(key)
            limit = seen if floor is Floor.NOW else floor
            if limit is not None and fence <= limit:
                return limit
            self._seen[key] = fence if seen is None else max(seen, fence)
            self._seen.move_to_end(key)
            if len(self._seen) > self._size:
                self._seen.popitem(last=False)
            return None
