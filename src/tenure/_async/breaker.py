"""Shared circuit breaker: one breaker record per name in the store, seen by every process.

The record (``tenure._core.breaker``) lives in the store and changes only through
``update_state``, which runs ``breaker_step`` atomically by the store's clock. A process keeps a
local view of it (state, and until when it is open, translated to its monotonic clock when read)
and goes to the store only when it must:

- closed: successes are tallied here and sent with the next sync, at most once per
  ``sync_interval``, which also refreshes the view (so an opening is seen within that interval
  by every process that has calls); a failure is sent at once, and its reply tells whether the
  breaker opened, so a fleet opens within ``min_calls`` failures in all;
- open: calls are refused here, with no I/O, until the view's ``opened_until``;
- after it (half-open): a call asks the store for a trial (at most ``trials`` are granted across
  every process), at most once per ``sync_interval`` per process once refused; trial outcomes are
  sent at once.

The store not answering within ``deadline`` (or failing) never fails a call: the step runs on a
record kept in this process instead (by the local clock), so a failing service still opens this
process's breaker, and the outage is logged once.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from tenure._concurrency import AsyncReturning, async_within
from tenure._core.breaker import (
    NO_CALLS,
    BreakerPolicy,
    BreakerRecord,
    BreakerState,
    BreakerView,
    Tally,
    breaker_policy,
    breaker_step,
)
from tenure._exceptions import BackendError, CircuitOpen, ConfigurationError
from tenure.observability._events import breaker_changed
from tenure.resilience._common import ExceptionMatch, exception_matcher

if TYPE_CHECKING:
    from tenure._async.backends.base import AsyncCounters, StateChange
    from tenure._async.context import AsyncContext

log = logging.getLogger("tenure")
T = TypeVar("T")


class AsyncSharedBreakerCall:
    """One admitted call: report how it ended with ``succeeded()`` or ``failed()`` (once).

    Its duration is measured from ``admit()``, for the slow-call rule; ``trial`` tells whether it
    is one of a half-open breaker's trial calls. A second report is ignored.
    """

    __slots__ = ("_breaker", "_done", "started", "trial")

    def __init__(self, breaker: AsyncSharedCircuitBreaker, started: float, trial: bool) -> None:
        self._breaker = breaker
        self._done = False
        self.started = started
        self.trial = trial

    async def succeeded(self) -> None:
        """Report that the call worked (it may still count as slow)."""
        await self._report(failed=False)

    async def failed(self) -> None:
        """Report that the call failed: sent to the store at once."""
        await self._report(failed=True)

    async def abandoned(self) -> None:
        """Report that the call ended with no verdict (cancelled); an abandoned trial failed."""
        if self.trial:
            await self._report(failed=True)
        self._done = True

    async def _report(self, *, failed: bool) -> None:
        if not self._done:
            self._done = True
            await self._breaker._report(self, failed)


class AsyncSharedCircuitBreaker:
    """A circuit breaker whose state every process on the backend shares (``coord.circuit_breaker``).

    ``async with breaker:``, ``@breaker`` (an async def) and ``await breaker.call(fn, ...)`` admit
    a call or raise ``CircuitOpen``, and count how it ended: an exception ``failure=`` names is a
    failure, any other a success, a ``BaseException`` that is not an ``Exception`` nothing.
    ``await breaker.admit()`` is the lower level: report on the call it returns.

    **Guarantees.** No round trip per call while closed (one per ``sync_interval`` per process,
    plus one per failure); a fleet opens within ``min_calls`` failures in all (plus at most one
    call in flight per process and caller); every process with calls sees an opening within
    ``sync_interval``; when half-open, at most ``trials`` trial calls across all processes. A
    store that does not answer within ``deadline`` never fails or stalls a call past it.
    """

    def __init__(
        self,
        context: AsyncContext,
        counters: AsyncCounters,
        name: str,
        key: str,
        *,
        policy: BreakerPolicy,
        is_failure: Callable[[BaseException], bool],
        sync_interval: float,
        deadline: float | None,
    ) -> None:
        self.name = name
        self.key = key
        self.policy = policy
        self.is_failure = is_failure
        self.sync_interval = sync_interval
        self.deadline = deadline
        self._context = context
        self._counters = counters
        self._ttl = 2 * (policy.window + policy.reset_after)  # an idle record may go: it is as new
        self._lock = threading.Lock()  # guards the fields below, never held over I/O
        self._state = BreakerState.CLOSED  # the local view, as the store last told it
        self._until = 0.0  # OPEN: refuse calls until then (this process's monotonic clock)
        self._synced = float("-inf")  # when the view was last refreshed (or a refresh claimed)
        self._next_ask = float("-inf")  # half-open and refused: do not ask again before then
        self._pending = NO_CALLS  # outcomes not yet sent to the store
        self._local: bytes | None = None  # the record stepped here while the store is away
        self._outage = False
        self._entered: contextvars.ContextVar[tuple[AsyncSharedBreakerCall, ...]] = contextvars.ContextVar(
            f"tenure-shared-breaker-{id(self)}", default=()
        )

    def __repr__(self) -> str:
        return f"<AsyncSharedCircuitBreaker {self.name!r} {self._state.value} on {self._context.url}>"

    @property
    def state(self) -> BreakerState:
        """Return the local view: where the breaker stood when the store was last asked."""
        with self._lock:
            if self._state is BreakerState.OPEN and time.monotonic() >= self._until:
                return BreakerState.HALF_OPEN
            return self._state

    async def admit(self) -> AsyncSharedBreakerCall:
        """Admit one call, or raise ``CircuitOpen`` saying when trials begin; report on what it returns."""
        now = time.monotonic()
        with self._lock:
            state = self._state
            if state is BreakerState.OPEN and now < self._until:
                raise self._refusal(state, self._until - now)
            if state is BreakerState.CLOSED:
                if now - self._synced < self.sync_interval:
                    return AsyncSharedBreakerCall(self, now, trial=False)
                self._synced = now  # this caller refreshes the view; the others go on with it
            elif now < self._next_ask:
                raise self._refusal(BreakerState.HALF_OPEN, 0.0)
            else:
                self._next_ask = now + self.sync_interval
            tally, self._pending = self._pending, NO_CALLS
        view = await self._step(tally, want_trial=state is not BreakerState.CLOSED)
        if view.state is BreakerState.CLOSED:
            return AsyncSharedBreakerCall(self, now, trial=False)
        if view.trial_granted:
            return AsyncSharedBreakerCall(self, now, trial=True)
        left = max(0.0, view.opened_until - view.now) if view.state is BreakerState.OPEN else 0.0
        raise self._refusal(view.state, left)

    def _refusal(self, state: BreakerState, left: float) -> CircuitOpen:
        if state is BreakerState.OPEN:
            message = f"circuit breaker {self.name!r} is open: calls are refused for {left:.3g} s more"
        else:
            message = (
                f"circuit breaker {self.name!r} is half-open and its {self.policy.trials} trial calls are out"
            )
        return CircuitOpen(message, time.time() + left)

    async def _report(self, call: AsyncSharedBreakerCall, failed: bool) -> None:
        limit = self.policy.slow_call_duration
        slow = int(limit is not None and time.monotonic() - call.started > limit)
        with self._lock:
            if not (failed or call.trial):
                self._pending = self._pending.plus(Tally(1, 0, slow))  # sent with the next sync
                return
            tally, self._pending = self._pending, NO_CALLS
        if call.trial:
            await self._step(tally, trial_outcome=not (failed or slow))
        else:
            await self._step(tally.plus(Tally(1, 1, slow)))

    async def _step(
        self, tally: Tally, *, want_trial: bool = False, trial_outcome: bool | None = None
    ) -> BreakerView:
        """Run one breaker step on the store (else on the local record); update the local view."""
        change = _change(self.policy, tally, want_trial, trial_outcome)

        async def in_store() -> BreakerView:  # connecting too: a first call must not stall either
            await self._context.ensure_connected()
            return await self._counters.update_state(self.key, change, self._ttl)

        try:
            deadline = self.deadline
            view = await (in_store() if deadline is None else async_within(deadline, in_store))
            local_now = time.monotonic()  # the store's now maps to about the reply's arrival
        except (TimeoutError, BackendError) as exc:  # BackendTimeout is both
            self._unavailable(exc)
            with self._lock:
                self._local, view = change(self._local, time.monotonic())
            local_now = view.now
        else:
            if self._outage:
                self._outage = False
                log.warning(
                    "tenure: circuit breaker %r: its store %s answers again", self.name, self._context.url
                )
        with self._lock:
            last, self._state = self._state, view.state
            self._until = local_now + (view.opened_until - view.now)
            self._synced = max(self._synced, local_now)
            if view.state is BreakerState.CLOSED:
                self._next_ask = float("-inf")
        if view.state is not last:
            breaker_changed(self.name, last, view.state, backend=self._context.store.scheme)
        return view

    def _unavailable(self, exc: Exception) -> None:
        if not self._outage:
            self._outage = True
            log.warning(
                "tenure: circuit breaker %r: its store %s did not answer within %s s (%s); "
                "this process decides alone until it does",
                self.name,
                self._context.url,
                self.deadline,
                type(exc).__name__,
            )

    # -- async with, decorator ------------------------------------------------------------------

    async def call(self, fn: AsyncReturning[T], *args: Any, **kwargs: Any) -> T:
        """Return ``await fn(*args, **kwargs)`` through the breaker (``CircuitOpen`` if refused)."""
        call = await self.admit()
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            await self._settle(call, exc)
            raise
        await call.succeeded()
        return result

    def __call__(self, fn: AsyncReturning[T]) -> AsyncReturning[T]:
        """Decorate a function so that each call goes through the breaker."""

        @functools.wraps(fn)
        async def guarded(*args: Any, **kwargs: Any) -> T:
            return await self.call(fn, *args, **kwargs)

        return guarded

    async def _settle(self, call: AsyncSharedBreakerCall, exc: BaseException | None) -> None:
        if exc is None or (isinstance(exc, Exception) and not self.is_failure(exc)):
            await call.succeeded()
        elif isinstance(exc, Exception):
            await call.failed()
        else:
            await call.abandoned()

    async def __aenter__(self) -> AsyncSharedCircuitBreaker:
        call = await self.admit()
        self._entered.set((*self._entered.get(), call))
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        entered = self._entered.get()
        if not entered:
            raise RuntimeError(f"circuit breaker {self.name!r} left without being entered in this context")
        self._entered.set(entered[:-1])
        await self._settle(entered[-1], exc)


def _change(
    policy: BreakerPolicy, tally: Tally, want_trial: bool, trial_outcome: bool | None
) -> StateChange[BreakerView]:
    """Return the pure change ``update_state`` runs: one ``breaker_step`` on the stored record."""

    def change(current: bytes | None, now: float) -> tuple[bytes | None, BreakerView]:
        try:
            record = BreakerRecord.decode(current)
        except ValueError:  # not a record of this version: start afresh rather than fail calls
            record, current = BreakerRecord(), None
        new, view = breaker_step(
            record, now, policy, tally, want_trial=want_trial, trial_outcome=trial_outcome
        )
        return (None if new == record and current is not None else new.encode()), view

    return change


def breaker_options(
    *,
    failure: ExceptionMatch,
    sync_interval: float,
    deadline: float | None,
    **policy: object,
) -> dict[str, Any]:
    """Return the validated options of ``coord.circuit_breaker`` (``ConfigurationError`` if bad)."""
    for option, value in (("sync_interval", sync_interval), ("deadline", deadline)):
        if value is None and option == "deadline":
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 60:
            raise ConfigurationError(f"{option} must be a number of seconds, > 0 and <= 60, got {value!r}")
    return {
        "policy": breaker_policy(**policy),
        "is_failure": exception_matcher(failure, "failure"),
        "sync_interval": float(sync_interval),
        "deadline": None if deadline is None else float(deadline),
    }
