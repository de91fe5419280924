"""A fenced resource for tests: it remembers the highest fence it has seen and rejects lower ones."""

from __future__ import annotations

import threading


class FencedRegister:
    """One value guarded by fences (or terms), as a storage service that honours them would be."""

    def __init__(self) -> None:
        self.value: str | None = None
        self.highest = 0
        self._lock = threading.Lock()

    def write(self, value: str, *, term: int) -> bool:
        """Store ``value`` unless a write with a higher term was seen; return whether it was stored."""
        with self._lock:
            if term < self.highest:
                return False
            self.highest, self.value = term, value
            return True
