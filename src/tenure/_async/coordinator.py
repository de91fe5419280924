"""Coordinator: one backend connection, one renewer, and the factory of primitives."""

from __future__ import annotations

import logging
from types import TracebackType
from typing import cast

from tenure._async.backends.base import AsyncCounters, AsyncCounting, AsyncLeaseStore, AsyncRecords
from tenure._async.breaker import AsyncSharedCircuitBreaker, breaker_options
from tenure._async.context import AsyncContext
from tenure._async.election import AsyncElection
from tenure._async.idempotency import AsyncIdempotency
from tenure._async.lease import AsyncLease
from tenure._async.lock import AsyncLock
from tenure._async.ratelimit import AsyncRateLimiter, OnUnavailable
from tenure._async.rwlock import AsyncRWLock
from tenure._async.semaphore import AsyncSemaphore
from tenure._async.sequence import AsyncSequence
from tenure._config import default_url
from tenure._core.durations import check_timeout, check_ttl
from tenure._core.guarantees import Capability, Guarantee
from tenure._core.holder import HolderInfo
from tenure._core.idempotency import HEADER_BYTES, JSONSerializer, Serializer, final_errors
from tenure._core.keys import namespaced_key, validate_name
from tenure._core.leader import check_value, election_key
from tenure._core.ratelimit import parse_rates
from tenure._core.semaphore import check_limit
from tenure._core.tokens import holder_label
from tenure._exceptions import BackendIncapable, ConfigurationError, TenureError
from tenure._registry import resolve
from tenure.resilience._common import ExceptionMatch

log = logging.getLogger("tenure")

DEFAULT_TTL = 15.0
DEFAULT_TIMEOUT = 30.0
DEFAULT_RECORD_TTL = 86400.0  # an idempotency record lives a day: longer than clients retry
DEFAULT_RATE_DEADLINE = 0.05  # a rate decision's longest wait for the store: less than a call's cost
DEFAULT_BREAKER_DEADLINE = 0.1  # a breaker step's longest wait for the store (a sync or a failure)


class AsyncCoordinator:
    """Connect to one coordination backend, chosen by URL, and make primitives on it.

    The URL is the argument, else ``$TENURE_URL``, else an embedded SQLite file in the user's
    state directory. Construction validates the URL and options without any I/O; the first
    operation (or ``async with``) connects. Closing releases every lease still held.
    """

    def __init__(self, url: str | None = None) -> None:
        cls, config = resolve(default_url(url), "_async")
        self._store = cast(AsyncLeaseStore, cls(config))  # type: ignore[call-arg]
        self._context = AsyncContext(self._store)  # all that the primitives it makes share

    def __repr__(self) -> str:
        return f"<AsyncCoordinator {self._store.url}>"

    @property
    def url(self) -> str:
        """Return the backend URL, password redacted."""
        return self._store.url

    @property
    def namespace(self) -> str:
        """Return the key prefix this coordinator's names live under."""
        return self._store.config.common.namespace

    @property
    def guarantees(self) -> frozenset[Guarantee]:
        """Return what the backend guarantees (see the README's guarantee table)."""
        return self._store.guarantees

    @property
    def capabilities(self) -> frozenset[Capability]:
        """Return the optional operations the backend offers."""
        return self._store.capabilities

    @property
    def _connected(self) -> bool:  # what tests check: bad input must be refused before connecting
        return self._context.connected

    def lock(
        self,
        name: str,
        *,
        ttl: float = DEFAULT_TTL,
        timeout: float | None = DEFAULT_TIMEOUT,
        reentrant: bool = False,
        fair: bool = False,
    ) -> AsyncLock:
        """Return a lock on ``name`` (no I/O yet): a lease lasts ``ttl`` seconds unless renewed.

        ``timeout`` is how long ``acquire()`` and ``async with`` wait by default. ``fair=True``
        serves waiters in arrival order and needs a backend with the Queueing capability.
        Raises ``ConfigurationError`` for a bad name, ttl or timeout and ``BackendIncapable``
        when the backend cannot be fair.
        """
        validate_name(name)
        for option, flag in (("reentrant", reentrant), ("fair", fair)):
            if not isinstance(flag, bool):  # fair="no" is truthy: it would mean fair
                raise ConfigurationError(f"{option} must be True or False, got {flag!r}")
        if fair and self._context.queueing is None:
            raise BackendIncapable(
                f"fair=True needs a backend that queues waiters (Queueing); {self._store.scheme}:// does not"
            )
        key = namespaced_key(self.namespace, name)
        return AsyncLock(
            self._context,
            name,
            key,
            ttl=check_ttl(ttl),
            timeout=check_timeout(timeout),
            reentrant=reentrant,
            fair=fair,
        )

    def semaphore(
        self,
        name: str,
        *,
        limit: int,
        ttl: float = DEFAULT_TTL,
        timeout: float | None = DEFAULT_TIMEOUT,
        fair: bool = False,
    ) -> AsyncSemaphore:
        """Return a semaphore of ``limit`` permits on ``name`` (no I/O yet); a permit lasts ``ttl`` s.

        ``timeout`` is how long ``acquire()`` and ``async with`` wait by default; ``fair=True``
        serves waiters in arrival order. Semaphores and locks of the same name are apart.
        Raises ``ConfigurationError`` for a bad name, limit, ttl or timeout and
        ``BackendIncapable`` when the backend cannot count permits (or queue, for fair=True).
        """
        validate_name(name, what="semaphore name")
        limit = check_limit(limit)
        if not isinstance(fair, bool):
            raise ConfigurationError(f"fair must be True or False, got {fair!r}")
        if not isinstance(self._store, AsyncCounting):
            raise BackendIncapable(
                f"semaphores need a backend that counts permits (Counting); {self._store.scheme}:// does not"
            )
        if fair and self._context.queueing is None:
            raise BackendIncapable(
                f"fair=True needs a backend that queues waiters (Queueing); {self._store.scheme}:// does not"
            )
        key = namespaced_key(self.namespace, name, kind="semaphore")
        return AsyncSemaphore(
            self._context,
            self._store,
            name,
            key,
            limit=limit,
            ttl=check_ttl(ttl),
            timeout=check_timeout(timeout),
            fair=fair,
        )

    def rwlock(
        self, name: str, *, ttl: float = DEFAULT_TTL, timeout: float | None = DEFAULT_TIMEOUT
    ) -> AsyncRWLock:
        """Return a read-write lock on ``name`` (no I/O yet): ``read()`` shares it, ``write()`` excludes.

        A lease lasts ``ttl`` seconds unless renewed; ``timeout`` is how long ``read()`` and
        ``write()`` wait by default. Read-write locks, semaphores and locks of one name are
        apart. Raises ``ConfigurationError`` for a bad name, ttl or timeout and
        ``BackendIncapable`` when the backend cannot count readers (Counting).
        """
        validate_name(name, what="read-write lock name")
        if not isinstance(self._store, AsyncCounting):
            raise BackendIncapable(
                "read-write locks need a backend that counts readers (Counting); "
                f"{self._store.scheme}:// does not"
            )
        key = namespaced_key(self.namespace, name, kind="rwlock")
        return AsyncRWLock(
            self._context, self._store, name, key, ttl=check_ttl(ttl), timeout=check_timeout(timeout)
        )

    def sequence(
        self, name: str, *, ttl: float = DEFAULT_TTL, timeout: float | None = DEFAULT_TIMEOUT
    ) -> AsyncSequence:
        """Return ordered turns on ``name`` (no I/O yet): ``ticket()``, then ``turn(ticket)``.

        A ticket lives ``ttl`` seconds unless renewed (its holder renews it while it waits);
        ``timeout`` is how long ``turn()`` waits by default. Raises ``ConfigurationError`` for a
        bad name, ttl or timeout and ``BackendIncapable`` when the backend cannot count tickets.
        """
        validate_name(name, what="sequence name")
        if not isinstance(self._store, AsyncCounting):
            raise BackendIncapable(
                f"sequences need a backend that counts tickets (Counting); {self._store.scheme}:// does not"
            )
        key = namespaced_key(self.namespace, name, kind="sequence")
        return AsyncSequence(
            self._context, self._store, name, key, ttl=check_ttl(ttl), timeout=check_timeout(timeout)
        )

    def idempotency(
        self,
        name: str,
        *,
        ttl: float = DEFAULT_RECORD_TTL,
        lease: float = DEFAULT_TTL,
        timeout: float | None = DEFAULT_TIMEOUT,
        serializer: Serializer | None = None,
        store_errors: type[BaseException] | tuple[type[BaseException], ...] = (),
        max_size: int | None = None,
    ) -> AsyncIdempotency:
        """Return the idempotency keys of the space ``name`` (no I/O yet): ``run(key, fn, ...)``.

        A finished run's record lives ``ttl`` seconds (default one day); a run holds its key as a
        lease of ``lease`` seconds, renewed while it runs; ``timeout`` is how long a duplicate
        waits for the first run's result. Results are JSON unless ``serializer`` (``dumps`` to
        bytes, ``loads`` back) says otherwise; errors of the ``store_errors`` types are recorded
        and raised again on replay; a record over ``max_size`` bytes (default and most: what the
        backend keeps) is refused. Raises ``ConfigurationError`` for a bad argument and
        ``BackendIncapable`` when the backend keeps no records.
        """
        validate_name(name, what="idempotency space name")
        ttl, lease = check_ttl(ttl), check_ttl(lease)
        final = final_errors(store_errors)
        serializer = JSONSerializer() if serializer is None else serializer
        if not all(callable(getattr(serializer, method, None)) for method in ("dumps", "loads")):
            raise ConfigurationError(
                f"serializer needs dumps(value) -> bytes and loads(bytes): {serializer!r}"
            )
        if not isinstance(self._store, AsyncRecords):
            raise BackendIncapable(
                "idempotency keys need a backend that keeps records (Records); "
                f"{self._store.scheme}:// does not"
            )
        most = self._store.record_limit
        if max_size is None:
            max_size = most
        elif type(max_size) is not int or not HEADER_BYTES < max_size <= most:
            raise ConfigurationError(
                f"max_size must be an int from {HEADER_BYTES + 1} to {most} (what {self._store.scheme}:// "
                f"keeps), got {max_size!r}"
            )
        return AsyncIdempotency(
            self._context,
            self._store,
            name,
            namespace=self.namespace,
            ttl=ttl,
            lease=lease,
            timeout=check_timeout(timeout),
            serializer=serializer,
            store_errors=final,
            max_size=max_size,
        )

    def rate_limiter(
        self,
        name: str,
        *,
        rate: str,
        burst: int | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        on_unavailable: OnUnavailable = "allow",
        deadline: float | None = DEFAULT_RATE_DEADLINE,
    ) -> AsyncRateLimiter:
        """Return the rate limiter ``name`` (no I/O yet): ``rate`` permits per key, GCRA.

        ``rate`` is "100/s", "6000/min", "5/10s" or several, "10/s;100/min" (all must admit a
        call). ``burst`` is how many permits may be taken at once after an idle period: the
        first rate's bucket (default one second of it, at least 1); further rates are quotas
        whose bucket is their count. ``timeout`` is how long ``acquire()`` waits by default;
        ``deadline`` how long one decision may wait for the store before ``on_unavailable``
        ("allow" or "deny") decides instead (None: the backend's op_timeout). Every process
        must use the same rates for a name. Raises ``ConfigurationError`` for a bad argument
        and ``BackendIncapable`` when the backend cannot take a rate step atomically.
        """
        validate_name(name, what="rate limiter name")
        rates = parse_rates(rate, burst)
        if on_unavailable not in ("allow", "deny"):
            raise ConfigurationError(f'on_unavailable must be "allow" or "deny", got {on_unavailable!r}')
        if deadline is not None:
            deadline = check_timeout(deadline)
            if deadline == 0:
                raise ConfigurationError("deadline must be > 0 seconds (or None: the backend's op_timeout)")
        if not isinstance(self._store, AsyncCounters):
            raise BackendIncapable(
                "rate limits need a backend that takes a rate step atomically (Counters); "
                f"{self._store.scheme}:// does not"
            )
        # The name's ':' and '%' are escaped so that the first ':' after it starts the caller's key.
        escaped = name.replace("%", "%25").replace(":", "%3A")
        return AsyncRateLimiter(
            self._context,
            self._store,
            name,
            namespaced_key(self.namespace, escaped, kind="ratelimit"),
            rates=rates,
            timeout=check_timeout(timeout),
            on_unavailable=on_unavailable,
            deadline=deadline,
        )

    def circuit_breaker(
        self,
        name: str,
        *,
        failure_rate: float = 0.5,
        min_calls: int = 20,
        window: float = 60.0,
        reset_after: float = 30.0,
        trials: int = 3,
        slow_call_duration: float | None = None,
        slow_call_rate: float = 1.0,
        failure: ExceptionMatch = (Exception,),
        sync_interval: float = 0.5,
        deadline: float | None = DEFAULT_BREAKER_DEADLINE,
    ) -> AsyncSharedCircuitBreaker:
        """Return the circuit breaker ``name`` (no I/O yet), its state shared by every process.

        Options as ``tenure.circuit_breaker``'s (every process must use the same for a name);
        ``sync_interval``: how often a process sends its successes and refreshes its view of the
        state (failures are sent at once); ``deadline``: how long one step may wait for the store
        before this process decides alone (None: the backend's op_timeout). Raises
        ``ConfigurationError`` for a bad argument and ``BackendIncapable`` when the backend keeps
        no shared state (Counters).
        """
        validate_name(name, what="circuit breaker name")
        options = breaker_options(
            failure=failure, sync_interval=sync_interval, deadline=deadline, failure_rate=failure_rate,
            min_calls=min_calls, window=window, reset_after=reset_after, trials=trials,
            slow_call_duration=slow_call_duration, slow_call_rate=slow_call_rate,
        )  # fmt: skip
        if not isinstance(self._store, AsyncCounters):
            raise BackendIncapable(
                "shared circuit breakers need a backend that updates a state atomically (Counters); "
                f"{self._store.scheme}:// does not"
            )
        key = namespaced_key(self.namespace, name, kind="breaker")
        return AsyncSharedCircuitBreaker(self._context, self._store, name, key, **options)

    def election(self, name: str, *, value: str | None = None, ttl: float = DEFAULT_TTL) -> AsyncElection:
        """Return a candidate in the election ``name`` (no I/O yet) that proclaims ``value``.

        ``value`` is what ``leader()`` shows while this candidate leads (default: host, pid and
        thread); ``ttl`` is how long a leader that stopped renewing keeps the leadership.
        Elections and locks of the same name are apart. Raises ``ConfigurationError`` for a bad
        name, value or ttl.
        """
        validate_name(name, what="election name")
        value = holder_label() if value is None else check_value(value)
        key = election_key(self.namespace, name)
        return AsyncElection(self._context, name, key, value=value, ttl=check_ttl(ttl))

    async def try_lock(self, name: str, *, ttl: float = DEFAULT_TTL) -> AsyncLease | None:
        """Make one attempt at ``name``; return the lease or None if it is held elsewhere."""
        return await self.lock(name, ttl=ttl).try_acquire()

    async def inspect(self, name: str) -> HolderInfo | None:
        """Return who holds ``name`` (label, fence, seconds left), or None if it is free."""
        validate_name(name)
        await self._context.ensure_connected()
        return await self._store.holder(namespaced_key(self.namespace, name))

    async def connect(self) -> None:
        """Connect to the backend now (otherwise the first operation does)."""
        await self._context.ensure_connected()

    async def aclose(self) -> None:
        """Release every lease still held, stop the renewer and disconnect; idempotent.

        Afterwards every operation raises ``ConfigurationError``: make a new coordinator.
        """
        context = self._context
        if context.closed:
            return
        context.closed = True
        context.check_loop()  # another loop's tasks and connections cannot be closed from here
        for holding, lease in context.held():
            holding.depth = 1  # reentered or not, it goes
            try:
                await lease.release()
            except TenureError as exc:
                log.warning("tenure: releasing %r at close: %s", lease.name, exc)
        await context.renewer.close()
        await self._store.aclose()

    async def __aenter__(self) -> AsyncCoordinator:
        await self._context.ensure_connected()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
