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
    ├── IdempotencyError          a run's result is too large, or cannot be stored or replayed
    │   ├── InProgress            another run of the key holds it; its result is not there yet
    │   └── PayloadMismatch       the key was used with another payload
    ├── RateLimited (retry_after) no permit within the timeout (or the store was down: "deny")
    ├── CircuitOpen (opened_until) a circuit breaker refused the call: the service is failing
    └── BulkheadFull              no place among a bulkhead's calls in flight within its timeout

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
    """Root of idempotency-key errors; raised itself when a result cannot be recorded or replayed."""


class InProgress(IdempotencyError):
    """Report that another run of the key holds it and its result did not come within the timeout."""


class PayloadMismatch(IdempotencyError):
    """Report that an idempotency key was used before with another payload: nothing was run."""


class RateLimited(TenureError):
    """Report that a rate limit admits no permit in time; ``retry_after`` says when it would.

    ``retry_after`` is exact (seconds by the store's clock until the refused cost is due) unless
    ``unavailable`` is true: then the store did not answer within the limiter's deadline, the
    limiter was made with ``on_unavailable="deny"``, and ``retry_after`` is only a hint.
    """

    def __init__(self, message: str, retry_after: float, unavailable: bool = False) -> None:
        super().__init__(message, retry_after, unavailable)  # all in args: it pickles whole
        self.retry_after = retry_after
        self.unavailable = unavailable

    def __str__(self) -> str:
        return str(self.args[0])


class CircuitOpen(TenureError):
    """Report that a circuit breaker refused a call: it is open, or half-open with its trials taken.

    ``opened_until`` is when the breaker admits trial calls again, in wall-clock seconds
    (``time.time()``), for logs and ``Retry-After`` headers; nothing was sent to the service.
    """

    def __init__(self, message: str, opened_until: float) -> None:
        super().__init__(message, opened_until)  # all in args: it pickles whole
        self.opened_until = opened_until

    def __str__(self) -> str:
        return str(self.args[0])


class BulkheadFull(TenureError):
    """Report that a bulkhead had no place for a call within its timeout; the call was not made."""
