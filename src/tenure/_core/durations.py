"""Validation of durations in float seconds: TTLs and timeouts."""

from __future__ import annotations

import math

from tenure._exceptions import ConfigurationError

MIN_TTL = 0.01
"""Shortest lease, in seconds. The clock-drift margin (1% + 2 ms) is taken off every lease: a
lease not several times longer is lost before a request to the server can even return."""


def check_ttl(ttl: object) -> float:
    """Return ``ttl`` as float seconds, or raise ``ConfigurationError`` if it is below ``MIN_TTL``."""
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not ttl > 0 or math.isinf(ttl):
        raise ConfigurationError(f"ttl must be a positive, finite number of seconds, got {ttl!r}")
    if ttl < MIN_TTL:
        raise ConfigurationError(
            f"ttl must be at least {MIN_TTL:g} s, got {ttl!r}: the clock-drift margin (1% + 2 ms) "
            "would spend the lease before it could be used"
        )
    return float(ttl)


def check_timeout(timeout: float | None) -> float | None:
    """Return ``timeout`` validated: None (wait without end) or a number >= 0."""
    if timeout is None:
        return None
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, (int, float))
        or math.isnan(timeout)
        or timeout < 0
    ):
        raise ConfigurationError(f"timeout must be >= 0 seconds or None, got {timeout!r}")
    return float(timeout)
