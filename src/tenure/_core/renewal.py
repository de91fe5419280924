"""Lease validity and renewal timing, by the local monotonic clock."""

from __future__ import annotations

from dataclasses import dataclass

RENEW_FRACTION = 1 / 3
"""Renew after about a third of the TTL, leaving two more chances before the lease runs out."""


def drift_margin(ttl: float) -> float:
    """Return the clock-drift allowance for a lease of ``ttl`` seconds: 1% of it plus 2 ms."""
    return ttl * 0.01 + 0.002


@dataclass(slots=True)
class Validity:
    """Track until when a lease is surely valid and when it should next be renewed.

    The count starts at ``started``, the local time *before* the request that granted or renewed
    the lease was sent, so the time the request spent in flight is charged against the lease.
    """

    ttl: float
    valid_until: float
    renew_at: float

    @classmethod
    def starting(cls, started: float, ttl: float) -> Validity:
        """Return the validity of a lease granted by a request sent at ``started``."""
        return cls(
            ttl=ttl,
            valid_until=started + ttl - drift_margin(ttl),
            renew_at=started + ttl * RENEW_FRACTION,
        )

    def renewed(self, started: float, ttl: float | None = None) -> Validity:
        """Return the validity after a renewal sent at ``started`` succeeded."""
        return Validity.starting(started, self.ttl if ttl is None else ttl)

    def retry_at(self, now: float) -> float:
        """Return when to retry a renewal that failed at ``now``: soon, but before expiry."""
        gap = max(0.0, self.valid_until - now)
        return now + min(gap / 3, max(0.01, self.ttl * RENEW_FRACTION / 4))

    def remaining(self, now: float) -> float:
        """Return the seconds of surely-valid time left at ``now``, never negative."""
        return max(0.0, self.valid_until - now)

    def expired(self, now: float) -> bool:
        """Return whether the lease can no longer be trusted at ``now``."""
        return now >= self.valid_until
