"""Rate limits as GCRA: parsing rates, the one atomic step a store runs, and what it means.

GCRA (the generic cell rate algorithm) is a token bucket kept as one timestamp per key and
rate: the *theoretical arrival time* (TAT), when the bucket would be full again. A permit of
``cost`` on a rate of one permit per ``interval`` seconds and a bucket of ``burst`` permits::

    tat = max(stored tat, now)          # an idle key's bucket is full
    new = tat + cost * interval
    allowed = new - burst * interval <= now

If every rate of the limiter allows it, every rate's ``new`` is stored (the key may be dropped
at the latest ``new``: it means a full bucket from then on); else nothing changes and the call
may come back when the latest ``new - burst * interval`` is reached. One read and one
conditional write of a few numbers per decision, whatever the limit, decided by the store's
clock: each store runs ``gcra_step`` (or its Lua or SQL twin) as one atomic step.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import NamedTuple

from tenure._exceptions import ConfigurationError

UNITS = {
    "ms": 0.001,
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*([a-z]+)\s*$")
MAX_RATES = 8
"""Most rates on one limiter (each is a number stored per key)."""
MIN_INTERVAL = 1e-6
"""Shortest time between two permits: a microsecond is what a double holding today's Unix time
still tells apart (about 2e-7 s), with room."""


class Rate(NamedTuple):
    """One rate of a limiter: ``permits`` per ``period`` seconds, a bucket of ``burst``."""

    permits: int
    period: float
    burst: int

    @property
    def interval(self) -> float:
        """Return the seconds one permit takes to come back (the emission interval)."""
        return self.period / self.permits

    @property
    def capacity(self) -> float:
        """Return the bucket's size in seconds of the rate (``burst`` intervals)."""
        return self.burst * self.interval

    def __str__(self) -> str:
        return f"{self.permits}/{self.period:g}s (burst {self.burst})"


def parse_rates(rate: object, burst: object = None) -> tuple[Rate, ...]:
    """Return the rates of ``rate`` ("100/s", "6000/min", "10/s;100/min", "5/10s").

    ``burst`` is the first rate's bucket: how many permits may be taken at once after an idle
    period (default one second of that rate, at least 1). Each further rate is a quota whose
    bucket is its count: "10/s;100/min" admits 10 at once, at most 10 a second, and at most 100
    in any minute. Raises ``ConfigurationError`` for anything else.
    """
    if not isinstance(rate, str) or not rate.strip():
        raise ConfigurationError(f'rate must be text like "100/s" or "10/s;100/min", got {rate!r}')
    parts = [part for part in rate.split(";") if part.strip()]
    if len(parts) > MAX_RATES:
        raise ConfigurationError(f"a limiter takes at most {MAX_RATES} rates, got {len(parts)}: {rate!r}")
    rates = []
    for index, part in enumerate(parts):
        match = _RATE.match(part.lower())
        unit = _unit(match.group(3)) if match else None
        if match is None or unit is None:
            raise ConfigurationError(
                f'cannot read the rate {part.strip()!r}: write COUNT/PERIOD, like "100/s", "6000/min", '
                f'"5/10s"; periods: {", ".join(sorted(UNITS))}'
            )
        count = int(match.group(1))
        period = float(match.group(2) or 1) * UNITS[unit]
        if count < 1 or period <= 0:
            raise ConfigurationError(f"a rate needs at least 1 permit in a positive period: {part!r}")
        if period / count < MIN_INTERVAL:
            raise ConfigurationError(
                f"the rate {part.strip()!r} is over {1 / MIN_INTERVAL:,.0f} a second: too fast to count"
            )
        size = _check_burst(burst, count, period) if index == 0 else count
        rates.append(Rate(count, period, size))
    return tuple(rates)


def _unit(word: str) -> str | None:
    if word in UNITS:
        return word
    if word.endswith("s") and word[:-1] in UNITS:  # plurals: "mins", "seconds"
        return word[:-1]
    return None


def _check_burst(burst: object, count: int, period: float) -> int:
    if burst is None:
        return max(1, math.floor(count / period))  # one second of the rate
    if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
        raise ConfigurationError(f"burst must be an int >= 1 (permits at once), got {burst!r}")
    return burst


def check_cost(cost: object, rates: Sequence[Rate]) -> int:
    """Return ``cost`` if it is a number of permits every rate's bucket can ever hold."""
    if isinstance(cost, bool) or not isinstance(cost, int) or cost < 1:
        raise ConfigurationError(f"cost must be an int >= 1, got {cost!r}")
    smallest = min(rate.burst for rate in rates)
    if cost > smallest:
        raise ConfigurationError(
            f"cost {cost} can never be admitted: the smallest bucket holds {smallest} (raise burst)"
        )
    return cost


class RateStep(NamedTuple):
    """What a store's atomic step answers: admitted or not, its clock, each rate's TAT after it.

    ``tats`` are the stored times after the step: the new ones when admitted, else the ones
    that stand (an idle key's being ``now``).
    """

    allowed: bool
    now: float
    tats: tuple[float, ...]


def gcra_step(stored: Sequence[float], now: float, rates: Sequence[Rate], cost: int) -> RateStep:
    """Run the GCRA step on ``stored`` TATs at ``now`` (``cost`` 0 only looks).

    A store keeping fewer TATs than there are rates (the limiter gained a rate) treats the
    missing ones as idle. The caller stores ``tats`` when ``allowed and cost``, to expire at
    ``max(tats)``.
    """
    current = tuple(max(stored[i], now) if i < len(stored) else now for i in range(len(rates)))
    new = tuple(tat + cost * rate.interval for tat, rate in zip(current, rates, strict=True))
    allowed = all(tat - rate.capacity <= now for tat, rate in zip(new, rates, strict=True))
    return RateStep(allowed, now, new if allowed else current)


class RateState(NamedTuple):
    """A limiter's answer for one key: admitted or not, and the bucket as it stands.

    ``remaining`` is how many permits could be taken at once now; ``reset_after`` seconds until
    the bucket is full again; ``retry_after`` seconds until the refused cost would be admitted
    (0 when admitted); ``limit`` the first rate's bucket. ``unavailable`` says the store did not
    answer in time and the limiter's ``on_unavailable`` choice decided instead.
    """

    allowed: bool
    remaining: int
    reset_after: float
    retry_after: float
    limit: int
    unavailable: bool = False


def rate_state(step: RateStep, rates: Sequence[Rate], cost: int) -> RateState:
    """Return what ``step`` (of ``cost`` permits) means for the caller."""
    remaining = min(
        max(0, math.floor((step.now - tat + rate.capacity) / rate.interval + 1e-9))
        for tat, rate in zip(step.tats, rates, strict=True)
    )
    reset_after = max(0.0, max(step.tats) - step.now)
    retry_after = 0.0
    if not step.allowed:
        retry_after = max(
            max(0.0, tat + cost * rate.interval - rate.capacity - step.now)
            for tat, rate in zip(step.tats, rates, strict=True)
        )
    return RateState(step.allowed, remaining, reset_after, retry_after, rates[0].burst)


def encode_tats(tats: Sequence[float]) -> str:
    """Return TATs as stored in a text column or value: comma-separated, full precision."""
    return ",".join(repr(tat) for tat in tats)


def decode_tats(text: str | bytes | None) -> tuple[float, ...]:
    """Return the TATs that ``encode_tats`` wrote (none for a missing value)."""
    if not text:
        return ()
    if isinstance(text, bytes):
        text = text.decode("ascii")
    return tuple(float(part) for part in text.split(","))
