"""What the in-process protections share: reading ``on=`` options and wrapping def and async def."""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar, cast

from tenure._exceptions import ConfigurationError

P = ParamSpec("P")
T = TypeVar("T")

ExceptionMatch = type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool]
"""Which exceptions an option means: a type, a tuple of types, or a predicate on the exception."""


def exception_matcher(on: object, option: str) -> Callable[[BaseException], bool]:
    """Return a test for the exceptions ``on`` names, or raise ``ConfigurationError``."""
    if isinstance(on, type) and issubclass(on, BaseException):
        on = (on,)
    if isinstance(on, tuple):
        if not on or not all(isinstance(t, type) and issubclass(t, BaseException) for t in on):
            raise ConfigurationError(f"{option} must name exception types, got {on!r}")
        types = cast(tuple[type[BaseException], ...], on)
        return lambda exc: isinstance(exc, types)
    if callable(on):
        predicate = cast(Callable[[BaseException], object], on)
        return lambda exc: bool(predicate(exc))
    raise ConfigurationError(
        f"{option} must be an exception type, a tuple of them or a function of the exception, got {on!r}"
    )


def check_seconds(value: object, option: str, *, none: bool = False, zero: bool = True) -> float | None:
    """Return ``value`` as float seconds (finite, >= 0, or > 0 unless ``zero``; None if ``none``)."""
    if value is None and none:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
        or (value == 0 and not zero)
    ):
        bound = ">= 0" if zero else "> 0"
        raise ConfigurationError(
            f"{option} must be a finite number of seconds {bound}{' or None' if none else ''}, got {value!r}"
        )
    return float(value)


def is_async(fn: object) -> bool:
    """Tell whether calling ``fn`` returns a coroutine (``async def``, also behind partial or a method)."""
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None))  # noqa: B004


def wrap(
    fn: Callable[P, Any],
    run: Callable[..., Any],
    arun: Callable[..., Coroutine[Any, Any, Any]],
) -> Callable[P, Any]:
    """Return ``fn`` decorated: ``run(fn, ...)`` for a def, ``await arun(fn, ...)`` for an async def."""
    if not callable(fn):
        raise ConfigurationError(f"only a function can be decorated, got {fn!r}")
    if is_async(fn):

        @functools.wraps(fn)
        async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            return await arun(fn, *args, **kwargs)

        return async_wrapper

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
        return run(fn, *args, **kwargs)

    return wrapper


async def resolve(value: Awaitable[T] | T) -> T:
    """Return ``value``, awaited first if it is awaitable."""
    if inspect.isawaitable(value):
        return cast(T, await value)
    return value
