"""The tenure error tree: one root, shallow, driver errors mapped at the backend seam.

::

    TenureError
    ├── ConfigurationError        bad argument, bad or unknown URL scheme/option, missing extra
    │   │                         (also a ValueError)
    │   └── BackendIncapable      backend lacks a required capability or guarantee
    ├── BackendError
    │   ├── BackendUnavailable    cannot reach the server; retryable
    │   │   └── BackendTimeout    (also a TimeoutError)
    │   └── BackendProtocolError  unexpected reply; not retryable
    ├── LockError
    │   ├── NotAcquired
    │   │   └── AcquireTimeout    (also a TimeoutError)
    │   ├── LockLost              was held, is no longer (expired, taken over, session lost)
    │   ├── NotOwner              renew/release by someone who does not own it
    │   └── AlreadyHeld           acquired again by the thread or task holding it (not reentrant)
    ├── ElectionError
    │   ├── NotLeader
    │   └── LeadershipLost        (also a LockLost)
    ├── IdempotencyError
    │   ├── InProgress
    │   └── PayloadMismatch
    ├── RateLimited               (retry_after)
    ├── CircuitOpen               (opened_until)
    └── BulkheadFull

Driver exceptions are chained with ``raise ... from exc``, never leaked and never swallowed.
"""

from __future__ import annotations

__all__ = [
    "AcquireTimeout",
    "AlreadyHeld",
    "BackendError",
    "BackendIncapable",
    "BackendProtocolError",
    "BackendTimeout",
    "BackendUnavailable",
    "BulkheadFull",
    "CircuitOpen",
    "ConfigurationError",
    "ElectionError",
    "IdempotencyError",
    "InProgress",
    "LeadershipLost",
    "LockError",
    "LockLost",
    "NotAcquired",
    "NotLeader",
    "NotOwner",
    "PayloadMismatch",
    "RateLimited",
    "TenureError",
]


class TenureError(Exception):
    """Root of every error tenure raises."""


class ConfigurationError(TenureError, ValueError):
    """Reject a bad argument, URL, option or missing extra before any I/O."""


class BackendIncapable(ConfigurationError):
    """Report that a backend lacks a capability or guarantee the primitive needs."""


class BackendError(TenureError):
    """Report a failure talking to the coordination server."""


class BackendUnavailable(BackendError):
    """Report that the server cannot be reached; the operation may be retried."""


class BackendTimeout(BackendUnavailable, TimeoutError):
    """Report that the server did not answer within the connect or operation timeout."""


class BackendProtocolError(BackendError):
    """Report an unexpected reply from the server; retrying will not help."""


class LockError(TenureError):
    """Root of lock errors."""


class NotAcquired(LockError):
    """Report that a lock could not be acquired."""


class AcquireTimeout(NotAcquired, TimeoutError):
    """Report that a lock could not be acquired before the timeout."""


class LockLost(LockError):
    """Report that a lock that was held is held no longer (expired, taken over, session lost)."""


class NotOwner(LockError):
    """Report a renew or release by someone who does not own the lock."""


class AlreadyHeld(LockError):
    """Report that a thread or task asked again for a lock it holds, which is not reentrant.

    Waiting would only wait for itself (without end, with ``timeout=None``): it is raised at once.
    """


class ElectionError(TenureError):
    """Root of election errors."""


class NotLeader(ElectionError):
    """Report an action that needs leadership by a candidate that is not leader."""


class LeadershipLost(ElectionError, LockLost):
    """Report that leadership that was held is held no longer."""


class IdempotencyError(TenureError):
    """Root of idempotency-key errors."""


class InProgress(IdempotencyError):
    """Report that another call with the same idempotency key is still running."""


class PayloadMismatch(IdempotencyError):
    """Report an idempotency key reused with a different payload."""


class RateLimited(TenureError):
    """Report that a rate limit is exhausted; ``retry_after`` says when to try again."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class CircuitOpen(TenureError):
    """Report that a circuit breaker is open until ``opened_until`` (monotonic seconds)."""

    def __init__(self, message: str, *, opened_until: float) -> None:
        super().__init__(message)
        self.opened_until = opened_until


class BulkheadFull(TenureError):
    """Report that a bulkhead has no free slot."""
