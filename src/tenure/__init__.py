"""tenure: distributed locks with leases and fencing tokens, one API over many backends.

    import tenure

    with tenure.Coordinator("sqlite:///tmp/locks.db") as coord:
        with coord.lock("orders:42", ttl=10, timeout=5) as lease:
            store.write(order, fence=lease.fence)
            lease.check()

See ``AsyncCoordinator`` for the asyncio twin, and the README for the guarantees per backend.
"""

from tenure import asgi  # tenure.asgi.IdempotencyMiddleware without a second import
from tenure._async.breaker import AsyncSharedBreakerCall, AsyncSharedCircuitBreaker
from tenure._async.coordinator import AsyncCoordinator
from tenure._async.election import AsyncElection, AsyncLeadership
from tenure._async.idempotency import AsyncIdempotency
from tenure._async.lease import AsyncLease
from tenure._async.lock import AsyncLock
from tenure._async.ratelimit import AsyncRateLimiter
from tenure._async.rwlock import AsyncRWLock, AsyncWriteLease
from tenure._async.semaphore import AsyncSemaphore
from tenure._async.sequence import AsyncSequence
from tenure._core.guarantees import Capability, Guarantee
from tenure._core.holder import HolderInfo
from tenure._core.idempotency import KeyState
from tenure._core.leader import Leader
from tenure._core.ratelimit import RateState
from tenure._default import lock, try_lock
from tenure._exceptions import (
    AcquireTimeout,
    AlreadyHeld,
    BackendError,
    BackendIncapable,
    BackendProtocolError,
    BackendTimeout,
    BackendUnavailable,
    BulkheadFull,
    CircuitOpen,
    ConfigurationError,
    ElectionError,
    IdempotencyError,
    InProgress,
    LeadershipLost,
    LockError,
    LockLost,
    NotAcquired,
    NotLeader,
    NotOwner,
    PayloadMismatch,
    RateLimited,
    TenureError,
)
from tenure._sync.breaker import SharedBreakerCall, SharedCircuitBreaker
from tenure._sync.coordinator import Coordinator
from tenure._sync.election import Election, Leadership
from tenure._sync.idempotency import Idempotency
from tenure._sync.lease import Lease
from tenure._sync.lock import Lock
from tenure._sync.ratelimit import RateLimiter
from tenure._sync.rwlock import RWLock, WriteLease
from tenure._sync.semaphore import Semaphore
from tenure._sync.sequence import Sequence
from tenure._url import BackendURL, parse_url
from tenure.observability import observe
from tenure.resilience import (
    BreakerCall,
    BreakerState,
    Bulkhead,
    CircuitBreaker,
    Fallback,
    Retry,
    RetryAttempts,
    RetryBudget,
    bulkhead,
    circuit_breaker,
    fallback,
    retry,
)

__version__ = "0.1.0"

__all__ = [
    "AcquireTimeout",
    "AlreadyHeld",
    "AsyncCoordinator",
    "AsyncElection",
    "AsyncIdempotency",
    "AsyncLeadership",
    "AsyncLease",
    "AsyncLock",
    "AsyncRWLock",
    "AsyncRateLimiter",
    "AsyncSemaphore",
    "AsyncSequence",
    "AsyncSharedBreakerCall",
    "AsyncSharedCircuitBreaker",
    "AsyncWriteLease",
    "BackendError",
    "BackendIncapable",
    "BackendProtocolError",
    "BackendTimeout",
    "BackendURL",
    "BackendUnavailable",
    "BreakerCall",
    "BreakerState",
    "Bulkhead",
    "BulkheadFull",
    "Capability",
    "CircuitBreaker",
    "CircuitOpen",
    "ConfigurationError",
    "Coordinator",
    "Election",
    "ElectionError",
    "Fallback",
    "Guarantee",
    "HolderInfo",
    "Idempotency",
    "IdempotencyError",
    "InProgress",
    "KeyState",
    "Leader",
    "Leadership",
    "LeadershipLost",
    "Lease",
    "Lock",
    "LockError",
    "LockLost",
    "NotAcquired",
    "NotLeader",
    "NotOwner",
    "PayloadMismatch",
    "RWLock",
    "RateLimited",
    "RateLimiter",
    "RateState",
    "Retry",
    "RetryAttempts",
    "RetryBudget",
    "Semaphore",
    "Sequence",
    "SharedBreakerCall",
    "SharedCircuitBreaker",
    "TenureError",
    "WriteLease",
    "__version__",
    "asgi",
    "bulkhead",
    "circuit_breaker",
    "fallback",
    "lock",
    "observe",
    "parse_url",
    "retry",
    "try_lock",
]
