"""One monotonic deadline for a whole wait."""

from __future__ import annotations

import math

from tenure._core.clock import Clock, monotonic


class Deadline:
    """Count down a timeout on a monotonic clock; ``None`` means wait without end."""

    __slots__ = ("_clock", "_end", "timeout")

    def __init__(
        self, timeout: float | None, *, clock: Clock = monotonic, start: float | None = None
    ) -> None:
        self.timeout = timeout
        self._clock = clock
        begun = clock() if start is None else start
        self._end = math.inf if timeout is None else begun + max(0.0, timeout)

    def remaining(self) -> float:
        """Return the seconds left, never negative; ``math.inf`` when unbounded."""
        return max(0.0, self._end - self._clock())

    def expired(self) -> bool:
        """Return whether no time is left."""
        return self._clock() >= self._end

    def cap(self, seconds: float) -> float:
        """Return ``seconds`` shortened so that it does not run past the deadline."""
        return min(seconds, self.remaining())
