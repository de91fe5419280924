"""Idempotency keys: one run per key while its record lives; later calls get the record."""

from __future__ import annotations

import contextvars
import functools
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from tenure._async.backends.base import AsyncRecordsInTransaction, Recorded
from tenure._async.lease import AsyncLease, grant
from tenure._async.lock import _UNSET, _Unset
from tenure._async.transaction import check_transactional, roll_back, run_steps
from tenure._concurrency import async_resolve, async_shielded
from tenure._core import idempotency as records
from tenure._core.backoff import Backoff
from tenure._core.deadline import Deadline
from tenure._core.durations import check_timeout
from tenure._core.idempotency import KeyState, Serializer
from tenure._core.keys import namespaced_key
from tenure._core.tokens import Owner
from tenure._exceptions import (
    BackendIncapable,
    ConfigurationError,
    IdempotencyError,
    InProgress,
    LockLost,
    PayloadMismatch,
)

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from tenure._async.backends.base import AsyncRecords
    from tenure._async.context import AsyncContext
    from tenure.observability._instruments import Instruments

log = logging.getLogger("tenure")
F = TypeVar("F", bound=Callable[..., Any])

_RUNNING: contextvars.ContextVar[AsyncLease | None] = contextvars.ContextVar("tenure_run", default=None)


class _Run(NamedTuple):
    """One run of a key that this call took: where it is held, and what it writes through."""

    key: str
    store_key: str
    lease: AsyncLease
    owner: Owner
    fingerprint: bytes
    transaction: Any


class AsyncIdempotency:
    """Idempotency keys in one space: ``run(key, fn, ...)`` runs ``fn`` once per key.

    **Guarantees.** While a key's record lives (``ttl`` seconds after its run finished), ``fn``
    has run for it once, and every later call gets that run's result (or its final error) back
    without running ``fn``. A run holds the key as a lease of ``lease`` seconds, renewed while
    ``fn`` runs: duplicates that come meanwhile wait for its result (``timeout``, then
    ``InProgress``). If the runner dies, its lease expires and the next call runs ``fn`` again,
    so side effects outside a store that checks the run's fence happen at least once, not exactly
    once; pass ``current_lease().fence`` to such a store. A run that lost its lease (paused past
    it) cannot record its result over a newer run's: it raises ``LockLost`` instead.
    """

    def __init__(
        self,
        context: AsyncContext,
        store: AsyncRecords,
        name: str,
        *,
        namespace: str,
        ttl: float,
        lease: float,
        timeout: float | None,
        serializer: Serializer,
        store_errors: tuple[type[BaseException], ...],
        max_size: int,
    ) -> None:
        self.name = name
        self.ttl = ttl
        self.lease = lease
        self.timeout = timeout
        self.serializer = serializer
        self.store_errors = store_errors
        self.max_size = max_size
        self._context = context
        self._records = store
        # A key's store key is these two prefixes and the key (``_store_key``): computed once.
        self._namespace_prefix = namespaced_key(namespace, "", kind="idempotency")
        self._space_prefix = records.space_prefix(name)

    def __repr__(self) -> str:
        return f"<AsyncIdempotency {self.name!r} ttl={self.ttl} lease={self.lease} on {self._context.url}>"

    @staticmethod
    def current_lease() -> AsyncLease | None:
        """Return the lease of the run this code is inside (its ``fence`` fences its writes), or None."""
        return _RUNNING.get()

    async def run(
        self,
        key: str | int,
        fn: Callable[..., Any],
        /,
        *args: Any,
        payload: bytes | str | None = None,
        timeout: float | _Unset | None = _UNSET,
        transaction: Any = None,
        **kwargs: Any,
    ) -> Any:
        """Return ``fn(*args, **kwargs)``, run once for ``key``; a later call gets the same result.

        ``payload`` is what makes two calls the same request (default: the arguments); the same
        key with another payload raises ``PayloadMismatch`` without running ``fn``. A duplicate
        that comes while the first run is in progress waits up to ``timeout`` seconds (default:
        the space's; 0 raises at once) for its result, then raises ``InProgress``. An exception
        from ``fn`` frees the key (the next call runs ``fn`` again) unless its type is one of
        ``store_errors``: then it is recorded and raised again to every later call.

        ``transaction`` (SQL backends) is your own DB-API connection to the backend's database,
        on which ``fn`` writes without committing: the record is written in the same
        transaction and tenure commits it, so your writes and the record commit together or
        not at all (a run that lost its key is rolled back and raises ``LockLost``; an error
        from ``fn`` rolls it back too).
        """
        key = records.check_key(str(key) if isinstance(key, int) and not isinstance(key, bool) else key)
        if not callable(fn):
            raise ConfigurationError(f"fn must be callable, got {fn!r}")
        timeout = self.timeout if isinstance(timeout, _Unset) else check_timeout(timeout)
        print_ = records.fingerprint(payload, args, kwargs)
        if transaction is not None:
            if not isinstance(self._records, AsyncRecordsInTransaction):
                raise BackendIncapable(
                    f"transaction= needs a SQL backend whose records your connection can write; "
                    f"{self._context.store.scheme}:// is not one"
                )
            check_transactional(transaction)
        await self._context.ensure_connected()
        observer = self._context.observer
        span = None
        if observer is not None:
            span = observer.start_span("tenure.idempotency.run", lambda: self._span_attributes(observer, key))
        if span is None or observer is None:
            return await self._run_key(key, print_, timeout, transaction, fn, args, kwargs, None)
        with observer.use_span(span):  # fn's own spans are the run's children
            try:
                result = await self._run_key(key, print_, timeout, transaction, fn, args, kwargs, span)
            except BaseException as exc:
                observer.end_span(span, exc)
                raise
        observer.end_span(span)
        return result

    async def _run_key(
        self,
        key: str,
        print_: bytes,
        timeout: float | None,
        transaction: Any,
        fn: Callable[..., Any],
        args: Any,
        kwargs: Any,
        span: Span | None,
    ) -> Any:
        store_key = self._store_key(key)
        outcome = await self._claim(key, store_key, timeout)
        if span is not None:
            span.set_attribute("tenure.idempotency.replayed", isinstance(outcome, Recorded))
        if isinstance(outcome, Recorded):
            return self._replay(key, outcome, print_)
        if span is not None:
            span.set_attribute("tenure.fence", outcome[0].fence)
        run = _Run(key, store_key, *outcome, print_, transaction)
        return await self._execute(run, fn, args, kwargs)

    def _span_attributes(self, observer: Instruments, key: str) -> dict[str, Any]:
        attributes = observer.attributes(observer.key(self._context.store.scheme, "idempotency", self.name))
        return {**attributes, "tenure.idempotency.key": key} if observer.names else attributes

    def idempotent(
        self,
        *,
        key: Callable[..., str | int],
        payload: Callable[..., bytes | str] | None = None,
        timeout: float | _Unset | None = _UNSET,
    ) -> Callable[[F], F]:
        """Decorate a function so each call runs through ``run``, keyed by ``key(*args, **kwargs)``.

        ``payload(*args, **kwargs)``, if given, is the request's bytes; else the arguments are.
        """
        if not callable(key) or (payload is not None and not callable(payload)):
            raise ConfigurationError("idempotent(key=, payload=) take functions of the call's arguments")

        def decorate(fn: F) -> F:
            @functools.wraps(fn)
            async def call(*args: Any, **kwargs: Any) -> Any:
                data = None if payload is None else payload(*args, **kwargs)
                return await self.run(
                    key(*args, **kwargs), fn, *args, payload=data, timeout=timeout, **kwargs
                )

            return call  # type: ignore[return-value]

        return decorate

    async def state(self, key: str | int) -> KeyState:
        """Return whether ``key`` is running (holder, fence, lease left) or done (record), or neither."""
        key = records.check_key(str(key) if isinstance(key, int) and not isinstance(key, bool) else key)
        await self._context.ensure_connected()
        store_key = self._store_key(key)
        return KeyState(
            await self._context.store.holder(store_key), await self._records.read_record(store_key)
        )

    # -- internals -------------------------------------------------------------------------------

    def _store_key(self, key: str) -> str:
        """Return ``namespaced_key(namespace, run_name(name, key), kind="idempotency")``."""
        return self._namespace_prefix + records.run_name_in(self._space_prefix, key)

    async def _claim(
        self, key: str, store_key: str, timeout: float | None
    ) -> Recorded | tuple[AsyncLease, Owner]:
        """Take the key's lease for a run, or return its record; wait while another run holds it."""
        owner = Owner()
        deadline: Deadline | None = None  # the wait's, made only when there is a wait
        while True:
            started = time.monotonic()
            try:
                got = await self._records.begin_run(store_key, owner, self.lease)
            except BaseException:
                # Cancelled or failed mid-flight: the step may still have taken the lease.
                await self._give_up(store_key, owner)
                raise
            if isinstance(got, Recorded):
                return got
            if got is not None:
                name = f"{self.name}:{key}"
                return grant(self._context, name, store_key, owner, got, started, self.lease), owner
            store = self._context.store
            if deadline is None:  # another run holds the key: wait from the first attempt on
                deadline = Deadline(timeout, start=started)
                first, slowest = store.poll_interval
                backoff = Backoff(initial=first, maximum=max(first, min(slowest, self.lease / 3)))
            remaining = deadline.remaining()
            if remaining <= 0:
                raise InProgress(
                    f"idempotency key {key!r} of {self.name!r} is being run by another call, whose "
                    f"result did not come within {timeout:g} s; retry later with the same key"
                )
            await store.wait_released(store_key, min(remaining, backoff.next_delay()))

    async def _execute(self, run: _Run, fn: Callable[..., Any], args: Any, kwargs: Any) -> Any:
        """Run ``fn`` under the key's lease; record its result (or final error) as the lease ends."""
        running = _RUNNING.set(run.lease)
        try:
            result = await async_resolve(fn(*args, **kwargs))
        except BaseException as exc:
            if run.transaction is not None:
                await roll_back(run.transaction)
            if not isinstance(exc, self.store_errors):
                await self._free(run.lease)
                raise
            await self._record(run, records.encode(run.fingerprint, records.encode_error(exc), error=True))
            raise
        finally:
            _RUNNING.reset(running)
        try:
            body = self.serializer.dumps(result)
        except BaseException:
            if run.transaction is not None:
                await roll_back(run.transaction)
            await self._free(run.lease)
            raise
        record = records.encode(run.fingerprint, body)
        if run.transaction is None:
            await self._record(run, record)
        else:
            await self._record_in_transaction(run, record)
        return result

    async def _record(self, run: _Run, record: bytes) -> None:
        """Store the record through tenure's own connection as the run's lease ends."""
        try:
            self._check_size(run, record)
        except IdempotencyError:
            await self._free(run.lease)
            raise
        stored = await run.lease.end_with(
            lambda store_key, owner: self._records.finish_run(store_key, owner, record, self.ttl)
        )
        if not stored:
            raise self._lost(run, "this result was not recorded")

    async def _record_in_transaction(self, run: _Run, record: bytes) -> None:
        """Store the record on the caller's connection, in its transaction, and commit it."""
        assert isinstance(self._records, AsyncRecordsInTransaction)
        connection = run.transaction
        try:
            self._check_size(run, record)
            steps = self._records.record_steps(run.store_key, run.owner, run.lease.fence, record, self.ttl)
            held = await run_steps(connection, steps)
            if held:
                await async_resolve(connection.commit())
        except BaseException:
            await roll_back(connection)
            await self._free(run.lease)
            raise
        if not held:
            await roll_back(connection)
            await self._free(run.lease)
            raise self._lost(run, "your transaction was rolled back")
        await run.lease.end_with(self._records.end_after_commit)

    def _check_size(self, run: _Run, record: bytes) -> None:
        if len(record) > self.max_size:
            raise IdempotencyError(
                f"the result of {run.key!r} in {self.name!r} is {len(record)} bytes with its header; "
                f"the limit is {self.max_size} (max_size=): the key was freed, nothing was recorded"
            )

    def _lost(self, run: _Run, what: str) -> LockLost:
        return LockLost(
            f"idempotency key {run.key!r} of {self.name!r} (fence {run.lease.fence}) was lost before "
            f"its result could be recorded (the run outlived its lease): another run may have taken "
            f"over, and {what}"
        )

    async def _free(self, lease: AsyncLease) -> None:
        """Give the key up after a failed run, so that the next call runs again."""
        try:
            await lease.release()
        except LockLost:
            pass  # taken over or expired: free already
        except Exception as exc:
            log.warning(
                "tenure: freeing %r after a failed run failed (%s); its lease expires", lease.name, exc
            )

    async def _give_up(self, store_key: str, owner: Owner) -> None:
        store = self._context.store
        try:
            await async_shielded(lambda: store.release(store_key, owner))
        except Exception as exc:
            log.warning(
                "tenure: cleanup of an interrupted run of %r failed (%s); its lease expires", store_key, exc
            )

    def _replay(self, key: str, found: Recorded, print_: bytes) -> Any:
        outcome = records.decode(found.record)
        if outcome.fingerprint != print_:
            raise PayloadMismatch(
                f"idempotency key {key!r} of {self.name!r} was used with another payload; "
                "nothing was run (use a new key for a new request)"
            )
        if outcome.is_error:
            raise records.decode_error(outcome.body, self.store_errors)
        return self.serializer.loads(outcome.body)
