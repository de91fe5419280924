"""Retry arithmetic: jittered backoff, reading ``Retry-After``, and a retry budget.

Nothing here sleeps or calls anything: ``tenure.retry`` and the HTTP transport decide when to
try again from these answers.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from email.utils import parsedate_to_datetime

from tenure._exceptions import ConfigurationError


def full_jitter(attempt: int, base: float, cap: float, rand: Callable[[], float]) -> float:
    """Return the delay before retry number ``attempt`` (0 for the first retry), full jitter.

    A uniform draw in ``[0, min(cap, base * 2**attempt)]`` (AWS's "full jitter"): callers that
    failed together spread out instead of retrying in lockstep. Once the ceiling reaches ``cap``
    it stays there, however large ``attempt`` grows (no overflow).
    """
    if attempt < 0:
        attempt = 0
    # 2**attempt past 1024 overflows a float; base * 2**64 is past any sane cap already.
    ceiling = cap if attempt >= 64 else min(cap, base * 2.0**attempt)
    return max(0.0, rand() * ceiling)


_DELTA = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*$")
MAX_RETRY_AFTER = 10 * 365 * 86400.0
"""Longest ``Retry-After`` read (ten years): beyond that a number is more likely garbage."""


def parse_retry_after(value: str, now: float) -> float | None:
    """Return the seconds a ``Retry-After`` header asks to wait, or None if it cannot be read.

    Both forms of RFC 9110: delta-seconds ("120"; decimals are accepted too) and an HTTP-date
    ("Wed, 21 Oct 2015 07:28:00 GMT"), the latter measured from ``now`` (wall-clock seconds,
    ``time.time()``). Never negative: a date in the past means "now" (0.0).
    """
    if not isinstance(value, str):
        return None
    match = _DELTA.match(value)
    if match:
        seconds = float(match.group(1))
        return seconds if seconds <= MAX_RETRY_AFTER else None
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000" dates come back naive; HTTP dates are GMT
        return None
    seconds = when.timestamp() - now
    if not math.isfinite(seconds):
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER)


_SCALE = 1000  # Finagle's: a deposit is worth 1000, so a withdrawal of 1000 / ratio stays whole
_SLOTS = 10  # the ttl is kept as this many slots; a slot expires whole


class RetryBudget:
    """Allow retries as at most ``ratio`` of the calls over ``ttl`` seconds, plus a floor.

    Finagle's RetryBudget: each first attempt ``deposit()``s, each retry must ``try_withdraw()``;
    a deposit counts for ``ttl`` seconds, a withdrawal costs ``1 / ratio`` deposits, and a
    reserve of ``min_per_second * ttl`` retries lets a quiet client retry at all. During an outage
    every call fails, so retries stop at ``ratio`` x calls (plus the floor): total calls stay
    within ``(1 + ratio)`` x offered calls, not ``attempts`` x.

    **Guarantees:** thread-safe (a lock held only for the arithmetic, never over I/O); over any
    ``ttl`` seconds, withdrawals granted <= ``ratio`` x deposits + ``min_per_second * ttl``
    (deposits and withdrawals expire by slots of ``ttl / 10`` seconds, so the bound holds over
    windows aligned to those slots, and is off by at most one slot's worth otherwise).
    """

    def __init__(
        self,
        ratio: float = 0.2,
        min_per_second: float = 10.0,
        ttl: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio <= 1000:
            raise ConfigurationError(f"ratio must be from 0 to 1000 (retries per call), got {ratio!r}")
        if (
            isinstance(min_per_second, bool)
            or not isinstance(min_per_second, (int, float))
            or not 0 <= min_per_second < math.inf
        ):
            raise ConfigurationError(f"min_per_second must be a finite number >= 0, got {min_per_second!r}")
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not 0 < ttl < math.inf:
            raise ConfigurationError(f"ttl must be a positive, finite number of seconds, got {ttl!r}")
        self.ratio = float(ratio)
        self.min_per_second = float(min_per_second)
        self.ttl = float(ttl)
        self._clock = clock
        self._deposit = 0 if ratio == 0 else _SCALE  # ratio 0: only the floor's retries
        self._withdrawal = _SCALE if ratio == 0 else max(1, int(_SCALE / ratio))
        self._reserve = int(min_per_second * ttl * self._withdrawal)
        self._width = self.ttl / _SLOTS
        self._slots: deque[list[int]] = deque()  # [slot number, sum of deposits - withdrawals]
        self._lock = threading.Lock()

    def deposit(self) -> None:
        """Count a first attempt: it earns ``ratio`` of a retry for the next ``ttl`` seconds."""
        with self._lock:
            self._add(self._deposit)

    def try_withdraw(self) -> bool:
        """Take one retry from the budget: True if it may be made, False if the budget is spent."""
        with self._lock:
            if self._balance() < self._withdrawal:
                return False
            self._add(-self._withdrawal)
            return True

    def available(self) -> int:
        """Return how many retries the budget would grant now."""
        with self._lock:
            return max(0, self._balance() // self._withdrawal)

    def __repr__(self) -> str:
        return f"RetryBudget(ratio={self.ratio:g}, min_per_second={self.min_per_second:g}, ttl={self.ttl:g})"

    def _balance(self) -> int:
        slot = math.floor(self._clock() / self._width)
        while self._slots and self._slots[0][0] <= slot - _SLOTS:
            self._slots.popleft()
        return self._reserve + sum(amount for _, amount in self._slots)

    def _add(self, amount: int) -> None:
        slot = math.floor(self._clock() / self._width)
        if self._slots and self._slots[-1][0] >= slot:  # the current slot (or a clock that stepped back)
            self._slots[-1][1] += amount
        else:
            self._slots.append([slot, amount])
        while self._slots and self._slots[0][0] <= slot - _SLOTS:
            self._slots.popleft()
