"""``tenure.circuit_breaker``: stop calling a failing service for a while, in one process.

For a breaker whose state every process of a service shares, see ``coord.circuit_breaker``.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, overload

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
from tenure._exceptions import CircuitOpen, ConfigurationError
from tenure.observability._events import breaker_changed
from tenure.resilience._common import ExceptionMatch, exception_matcher, wrap

P = ParamSpec("P")
T = TypeVar("T")


class BreakerCall:
    """One admitted call: report how it ended with ``succeeded()`` or ``failed()`` (once).

    Its duration is measured from ``admit()``, for the slow-call rule. ``trial`` tells whether it
    is one of a half-open breaker's trial calls. A second report is ignored.
    """

    __slots__ = ("_breaker", "_done", "started", "trial")

    def __init__(self, breaker: CircuitBreaker, started: float, trial: bool) -> None:
        self._breaker = breaker
        self._done = False
        self.started = started
        self.trial = trial

    def succeeded(self) -> None:
        """Report that the call worked (it may still count as slow)."""
        self._report(failed=False)

    def failed(self) -> None:
        """Report that the call failed."""
        self._report(failed=True)

    def abandoned(self) -> None:
        """Report that the call ended with no verdict (cancelled): counted as nothing.

        An abandoned trial counts as failed: the service did not show it was well.
        """
        if self.trial:
            self._report(failed=True)
        else:
            self._done = True

    def _report(self, *, failed: bool) -> None:
        if self._done:
            return
        self._done = True
        self._breaker._report(self, failed)


class CircuitBreaker:
    """Refuse calls to a failing service while it recovers (closed, open, half-open).

    ``with breaker:``, ``async with breaker:`` and ``@breaker`` (def or async def) admit a call or
    raise ``CircuitOpen``, and count how it ended: an exception ``failure=`` names is a failure;
    any other exception counts as a success (the service answered: a 404 or a validation error
    is the caller's business, as in resilience4j and pybreaker) and passes through;
    ``asyncio.CancelledError``, ``KeyboardInterrupt`` and other ``BaseException`` s that are not
    ``Exception`` s count as nothing. ``admit()`` is the lower level: it returns a ``BreakerCall``
    to report on.

    **Guarantees:** thread- and task-safe (one lock, held for the arithmetic only); opens on the
    call that brings the window to ``min_calls`` calls at ``failure_rate`` (or ``slow_call_rate``);
    while open no call is admitted; when half-open at most ``trials`` calls are admitted until they
    report, all must succeed to close, one failure opens it again for ``reset_after``.
    """

    def __init__(
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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not isinstance(name, str) or not name.strip() or len(name) > 1024:
            raise ConfigurationError(f"a breaker needs a name of 1 to 1024 characters, got {name!r}")
        self.name = name
        self.policy: BreakerPolicy = breaker_policy(
            failure_rate=failure_rate,
            min_calls=min_calls,
            window=window,
            reset_after=reset_after,
            trials=trials,
            slow_call_duration=slow_call_duration,
            slow_call_rate=slow_call_rate,
        )
        self.is_failure = exception_matcher(failure, "failure")
        self.clock = clock
        self._record = BreakerRecord()
        self._last_state = BreakerState.CLOSED  # what the last step saw: a change is logged once
        self._lock = threading.Lock()
        # The calls that `with` / `async with` entered, per thread and per task (nested ones stack).
        self._entered: contextvars.ContextVar[tuple[BreakerCall, ...]] = contextvars.ContextVar(
            f"tenure-breaker-{id(self)}", default=()
        )

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.name!r}, state={self.state.value})"

    @property
    def state(self) -> BreakerState:
        """Return where the breaker stands now (an open one whose time is up reads half-open)."""
        return self._step(NO_CALLS).state

    def admit(self) -> BreakerCall:
        """Admit one call, or raise ``CircuitOpen`` saying when trials begin; report on what it returns."""
        if self._last_state is BreakerState.CLOSED:  # only an outcome's step can open it: none needed
            return BreakerCall(self, self.clock(), trial=False)
        view = self._step(NO_CALLS, want_trial=True)
        if view.state is BreakerState.CLOSED:
            return BreakerCall(self, view.now, trial=False)
        if view.trial_granted:
            return BreakerCall(self, view.now, trial=True)
        opened_until = time.time() + max(0.0, view.opened_until - view.now)
        if view.state is BreakerState.OPEN:
            left = view.opened_until - view.now
            message = f"circuit breaker {self.name!r} is open: calls are refused for {left:.3g} s more"
        else:
            message = (
                f"circuit breaker {self.name!r} is half-open and its {self.policy.trials} trial calls are out"
            )
        raise CircuitOpen(message, opened_until)

    def reset(self) -> None:
        """Close the breaker and forget its window (an operator's override)."""
        with self._lock:
            self._record = BreakerRecord()
            last, self._last_state = self._last_state, BreakerState.CLOSED
        if last is not BreakerState.CLOSED:
            breaker_changed(self.name, last, BreakerState.CLOSED)

    def _step(
        self, tally: Tally, *, want_trial: bool = False, trial_outcome: bool | None = None
    ) -> BreakerView:
        with self._lock:
            self._record, view = breaker_step(
                self._record,
                self.clock(),
                self.policy,
                tally,
                want_trial=want_trial,
                trial_outcome=trial_outcome,
            )
            last, self._last_state = self._last_state, view.state
        if view.state is not last:
            breaker_changed(self.name, last, view.state)
        return view

    def _report(self, call: BreakerCall, failed: bool) -> None:
        limit = self.policy.slow_call_duration
        slow = limit is not None and self.clock() - call.started > limit
        if call.trial:
            self._step(NO_CALLS, trial_outcome=not (failed or slow))
        else:
            self._step(Tally(1, int(failed), int(slow)))

    def _settle(self, call: BreakerCall, exc: BaseException | None) -> None:
        if exc is None:
            call.succeeded()
        elif not isinstance(exc, Exception):
            call.abandoned()
        elif self.is_failure(exc):
            call.failed()
        else:
            call.succeeded()

    # -- with, async with, decorator -------------------------------------------------------------

    def __enter__(self) -> CircuitBreaker:
        call = self.admit()
        self._entered.set((*self._entered.get(), call))
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        entered = self._entered.get()
        if not entered:
            raise RuntimeError(f"circuit breaker {self.name!r} left without being entered in this context")
        self._entered.set(entered[:-1])
        self._settle(entered[-1], exc)

    async def __aenter__(self) -> CircuitBreaker:
        return self.__enter__()

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(kind, exc, tb)

    def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Return ``fn(*args, **kwargs)`` through the breaker (``CircuitOpen`` if refused)."""
        call = self.admit()
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            self._settle(call, exc)
            raise
        call.succeeded()
        return result

    async def acall(self, fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        """Return ``await fn(*args, **kwargs)`` through the breaker (``CircuitOpen`` if refused)."""
        call = self.admit()
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            self._settle(call, exc)
            raise
        call.succeeded()
        return result

    @overload
    def __call__(self, fn: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]: ...
    @overload
    def __call__(self, fn: Callable[P, T]) -> Callable[P, T]: ...
    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        """Decorate a def or an async def so each call goes through the breaker."""
        return wrap(fn, self.call, self.acall)


def circuit_breaker(
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
) -> CircuitBreaker:
    """Return an in-process ``CircuitBreaker`` named ``name`` (the name is for messages and logs).

    Defaults: open when half the calls of the last 60 s failed, once 20 calls were seen (fewer
    is noise); stay open 30 s (long enough for a restart or a failover); then admit 3 trials.
    """
    return CircuitBreaker(
        name,
        failure_rate=failure_rate,
        min_calls=min_calls,
        window=window,
        reset_after=reset_after,
        trials=trials,
        slow_call_duration=slow_call_duration,
        slow_call_rate=slow_call_rate,
        failure=failure,
    )
