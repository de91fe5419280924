"""Exponential backoff with full jitter for polling waits and retries."""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    """Produce delays that grow geometrically from ``initial`` to ``maximum``, fully jittered.

    Full jitter (a uniform draw below the current ceiling) spreads contending waiters apart so
    they do not poll in lockstep; a floor of half the ceiling keeps the first polls prompt.
    """

    __slots__ = ("_ceiling", "_random", "factor", "initial", "maximum")

    def __init__(
        self,
        *,
        initial: float = 0.002,
        maximum: float = 0.05,
        factor: float = 1.6,
        random_source: Callable[[], float] = random.random,
    ) -> None:
        if not 0 < initial <= maximum:
            raise ValueError("backoff needs 0 < initial <= maximum")
        if factor < 1:
            raise ValueError("backoff factor must be >= 1")
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self._random = random_source
        self._ceiling = initial

    def next_delay(self) -> float:
        """Return the next delay in seconds and grow the ceiling for the one after."""
        ceiling = self._ceiling
        self._ceiling = min(self.maximum, ceiling * self.factor)
        return ceiling * (0.5 + 0.5 * self._random())

    def reset(self) -> None:
        """Start again from the initial delay."""
        self._ceiling = self.initial
