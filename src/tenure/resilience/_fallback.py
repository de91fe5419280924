"""``tenure.fallback``: answer with a value (or a function of the error) when a call fails."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Generic, ParamSpec, TypeVar, overload

from tenure._exceptions import ConfigurationError
from tenure.resilience._common import ExceptionMatch, exception_matcher, is_async, resolve, wrap

P = ParamSpec("P")
T = TypeVar("T")
R = TypeVar("R")


class Fallback(Generic[R]):
    """Return a stand-in answer when a call raises one of the exceptions ``on`` names.

    ``value_or_fn`` is the answer itself, or a function called with the exception that returns
    it (an ``async def`` one for async calls only). To fall back to a value that is itself
    callable, wrap it: ``fallback(lambda exc: handler)``. Other exceptions pass through.

    Put it outermost: ``@fallback(...)`` above ``@breaker`` and ``@retry(...)``, so a refused call
    (``CircuitOpen``, ``BulkheadFull``, ``RateLimited``) and a call whose retries ran out both
    get the stand-in.
    """

    def __init__(
        self, value_or_fn: R | Callable[[BaseException], R | Awaitable[R]], *, on: ExceptionMatch
    ) -> None:
        self.matches = exception_matcher(on, "on")
        self.value_or_fn = value_or_fn

    def __repr__(self) -> str:
        return f"Fallback({self.value_or_fn!r})"

    def answer(self, exc: BaseException) -> Any:
        """Return the stand-in for ``exc`` (an awaitable if the function is an async def)."""
        if callable(self.value_or_fn):
            return self.value_or_fn(exc)
        return self.value_or_fn

    def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T | R:
        """Return ``fn(*args, **kwargs)``, or the stand-in if it raises what ``on`` names."""
        if is_async(self.value_or_fn):
            raise ConfigurationError(
                "an async def fallback serves async calls only (use acall or an async def)"
            )
        try:
            return fn(*args, **kwargs)
        except BaseException as exc:
            if not self.matches(exc):
                raise
            return self.answer(exc)  # type: ignore[no-any-return]

    async def acall(self, fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T | R:
        """Return ``await fn(*args, **kwargs)``, or the stand-in if it raises what ``on`` names."""
        try:
            return await fn(*args, **kwargs)
        except BaseException as exc:
            if not self.matches(exc):
                raise
            return await resolve(self.answer(exc))

    @overload
    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, T]]
    ) -> Callable[P, Coroutine[Any, Any, T | R]]: ...
    @overload
    def __call__(self, fn: Callable[P, T]) -> Callable[P, T | R]: ...
    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        """Decorate a def or an async def so its matching failures return the stand-in."""
        if is_async(self.value_or_fn) and callable(fn) and not is_async(fn):
            raise ConfigurationError(f"an async def fallback cannot serve the plain def {fn!r}")
        return wrap(fn, self.call, self.acall)


def fallback(
    value_or_fn: R | Callable[[BaseException], R | Awaitable[R]], *, on: ExceptionMatch = (Exception,)
) -> Fallback[R]:
    """Return a ``Fallback``: a decorator (def and async def) answering ``value_or_fn`` on failure.

    ``on`` defaults to every ``Exception``: a fallback is the last line, so it catches what the
    layers inside it let through (never ``asyncio.CancelledError`` or ``KeyboardInterrupt``).
    """
    return Fallback(value_or_fn, on=on)
