"""``tenure.retry``: try a call again after failures, within one deadline and a retry budget."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar, overload

from tenure._core.retrying import RetryBudget, full_jitter
from tenure._exceptions import ConfigurationError
from tenure.observability._events import retry_decided
from tenure.resilience._common import ExceptionMatch, check_seconds, exception_matcher, wrap

P = ParamSpec("P")
T = TypeVar("T")

MAX_ATTEMPTS = 1000


class RetryAttempts:
    """One logical call's attempts: its deadline, how many were made, and when to try again.

    ``Retry.call`` and ``Retry.acall`` drive one; code that is not a plain function call (an HTTP
    transport that also retries on some responses) can drive its own from ``Retry.begin()``::

        attempts = policy.begin()
        while True:
            try:
                return send(timeout=attempts.remaining())
            except Exception as exc:
                delay = attempts.next_delay(exc)
                if delay is None:
                    raise
                time.sleep(delay)
    """

    __slots__ = ("_retry", "deadline", "made")

    def __init__(self, retry: Retry) -> None:
        self._retry = retry
        timeout = retry.timeout
        self.deadline = None if timeout is None else retry.clock() + timeout
        """When the whole call must be over (``Retry.clock`` seconds), or None."""
        self.made = 1
        """Attempts made so far, counting the one running."""
        if retry.budget is not None:
            retry.budget.deposit()

    def remaining(self) -> float | None:
        """Return the seconds left before the deadline (never negative), or None without one."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - self._retry.clock())

    def next_delay(
        self, exc: BaseException | None = None, *, retry_after: float | None = None
    ) -> float | None:
        """Return how long to sleep before the next attempt, or None to give up now.

        ``exc``, when given, must be one ``on=`` names (else None) and is shown to the
        ``retry_after`` hook; ``retry_after`` (seconds) asks for that wait instead of the backoff.
        Gives up when attempts are spent, when the wait would reach the deadline, or when the
        budget refuses; only a retry that will be made is withdrawn from the budget.
        """
        retry = self._retry
        if exc is not None:
            if not retry.matches(exc):
                return None
            if retry_after is None and retry.retry_after is not None:
                retry_after = retry.retry_after(exc)
        if self.made >= retry.attempts:
            retry_decided("attempts_spent", retry.budget)
            return None
        if retry_after is not None and retry_after >= 0:
            delay = float(retry_after)  # the server said when; it beats our guess
        else:
            delay = full_jitter(self.made - 1, retry.backoff, retry.max_backoff, retry.rand)
        left = self.remaining()
        if left is not None and delay >= left:
            retry_decided("past_deadline", retry.budget)
            return None  # no sleep past the deadline, and no attempt begun at it
        if retry.budget is not None and not retry.budget.try_withdraw():
            retry_decided("budget_spent", retry.budget)
            return None
        self.made += 1
        retry_decided("retry", retry.budget)
        return delay


class Retry:
    """Retry a call on the exceptions ``on`` names: backoff with full jitter, one deadline, a budget.

    Use it as a decorator of a def or an async def, or call ``call(fn, ...)`` / ``await
    acall(fn, ...)``. ``attempts`` counts the first one; ``timeout`` is one deadline over all
    attempts and the sleeps between them; ``backoff`` is the first retry's ceiling (doubling up to
    ``max_backoff``); ``retry_after(exc)`` may return the seconds a server asked to wait.

    **Guarantees:** never more than ``attempts`` calls; never sleeps past the deadline nor starts
    an attempt after it (an attempt already running is bounded by the function itself); with a
    ``budget``, retries stay within its ratio of calls plus its floor; when it gives up it raises
    the last exception itself, not a wrapper. Exceptions it does not retry pass through at once,
    and so does ``asyncio.CancelledError`` (a ``BaseException``) unless ``on`` names it.
    """

    def __init__(
        self,
        *,
        attempts: int = 3,
        timeout: float | None = None,
        on: ExceptionMatch = (Exception,),
        backoff: float = 0.1,
        max_backoff: float = 10.0,
        budget: RetryBudget | None = None,
        retry_after: Callable[[BaseException], float | None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if isinstance(attempts, bool) or not isinstance(attempts, int) or not 1 <= attempts <= MAX_ATTEMPTS:
            raise ConfigurationError(
                f"attempts must be a whole number from 1 to {MAX_ATTEMPTS}, got {attempts!r}"
            )
        self.attempts = attempts
        self.timeout = check_seconds(timeout, "timeout", none=True, zero=False)
        self.matches = exception_matcher(on, "on")
        self.backoff = check_seconds(backoff, "backoff") or 0.0
        self.max_backoff = check_seconds(max_backoff, "max_backoff") or 0.0
        if self.max_backoff < self.backoff:
            raise ConfigurationError(f"max_backoff ({max_backoff!r}) must be >= backoff ({backoff!r})")
        if budget is not None and not isinstance(budget, RetryBudget):
            raise ConfigurationError(f"budget must be a tenure.RetryBudget or None, got {budget!r}")
        if retry_after is not None and not callable(retry_after):
            raise ConfigurationError(
                f"retry_after must be a function of the exception or None, got {retry_after!r}"
            )
        self.budget = budget
        self.retry_after = retry_after
        self.clock = clock
        self.rand = rand

    def __repr__(self) -> str:
        return (
            f"Retry(attempts={self.attempts}, timeout={self.timeout!r}, backoff={self.backoff:g}, "
            f"max_backoff={self.max_backoff:g}, budget={self.budget!r})"
        )

    def begin(self) -> RetryAttempts:
        """Start one logical call: its deadline starts now, and the budget counts it."""
        return RetryAttempts(self)

    def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Return ``fn(*args, **kwargs)``, retried as this policy says."""
        attempts = self.begin()
        while True:
            try:
                return fn(*args, **kwargs)
            except BaseException as exc:
                delay = attempts.next_delay(exc)
                if delay is None:
                    raise
            time.sleep(delay)

    async def acall(self, fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        """Return ``await fn(*args, **kwargs)``, retried as this policy says."""
        attempts = self.begin()
        while True:
            try:
                return await fn(*args, **kwargs)
            except BaseException as exc:
                delay = attempts.next_delay(exc)
                if delay is None:
                    raise
            await asyncio.sleep(delay)

    @overload
    def __call__(self, fn: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]: ...
    @overload
    def __call__(self, fn: Callable[P, T]) -> Callable[P, T]: ...
    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        """Decorate a def or an async def so each call is retried as this policy says."""
        return wrap(fn, self.call, self.acall)


def retry(
    *,
    attempts: int = 3,
    timeout: float | None = None,
    on: ExceptionMatch = (Exception,),
    backoff: float = 0.1,
    max_backoff: float = 10.0,
    budget: RetryBudget | None = None,
    retry_after: Callable[[BaseException], float | None] | None = None,
) -> Retry:
    """Return a ``Retry`` policy: a decorator for def and async def, with ``call`` and ``acall``.

    Defaults are bounded: 3 attempts, backoff ceilings 0.1, 0.2, 0.4 ... s capped at 10 s, no
    deadline unless ``timeout`` is given. See ``Retry`` for what each option means.
    """
    return Retry(
        attempts=attempts,
        timeout=timeout,
        on=on,
        backoff=backoff,
        max_backoff=max_backoff,
        budget=budget,
        retry_after=retry_after,
    )
