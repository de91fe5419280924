"""What the HTTP transports of both colours decide alike: no I/O here, no sleeping.

Which calls may be retried and after how long, what counts as a failure, what is left of the
deadline for each phase of an attempt, and how a fallback answers.
"""

from __future__ import annotations

import math
import random
import sys
import time
from collections.abc import Callable, Collection
from typing import Any, NamedTuple

import httpx

from tenure._core.deadline import Deadline
from tenure._core.retrying import RetryBudget, full_jitter, parse_retry_after
from tenure._exceptions import ConfigurationError
from tenure.observability._events import retry_decided
from tenure.observability._instruments import Instruments, current

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})
"""The methods retried by default (RFC 9110 §9.2.2): sending them twice means what once does."""

DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=5.0)
PHASES = ("connect", "read", "write", "pool")
BUFFER_LIMIT = 1 << 20  # bodies read within the attempt (Content-Length up to this)
MIN_PHASE = 0.001  # a phase started with nothing left still gets a sliver: then times out at once

Fallback = httpx.Response | Callable[[httpx.Request, BaseException | httpx.Response], Any]


def retry_status(status: int) -> bool:
    """A response retry tries again: the server failed (5xx) or asked to slow down (429)."""
    return status >= 500 or status == 429


def failed_status(status: int) -> bool:
    """A response the breaker counts as a failure: the server's fault; a 4xx is the caller's."""
    return status >= 500


def to_buffer(response: httpx.Response) -> bool:
    """Whether to read this body within the attempt, as part of it.

    A reset mid-body is then retried, counted by the breaker and answered by the fallback, and
    the read is inside the deadline.

    Only bodies that announce their size, up to ``BUFFER_LIMIT``: a larger or chunked body is
    left to stream to the caller (a failure while reading it then reaches the caller alone).
    """
    length = response.headers.get("content-length")
    return length is not None and length.isdigit() and int(length) <= BUFFER_LIMIT


class Flavour(NamedTuple):
    """The classes of the httpx package a request comes from: httpx itself or its fork httpx2."""

    transport_error: type[Exception]
    timeout_error: Callable[..., Exception]
    byte_stream: type[Any]


_FLAVOURS: dict[str, Flavour] = {}


def flavour_of(request: httpx.Request) -> Flavour:
    """Return the exception and stream classes of the package ``request`` belongs to."""
    package = type(request).__module__.partition(".")[0]
    found = _FLAVOURS.get(package)
    if found is None:
        module = sys.modules[package]
        found = Flavour(module.TransportError, module.TimeoutException, module.ByteStream)
        _FLAVOURS[package] = found
    return found


class LeftOfDeadline(dict[str, float | None]):
    """httpx's ``timeout`` extension whose every phase gets what is left of one deadline.

    httpcore reads each phase's timeout (pool wait, connect, write, read) when that phase
    starts, so each is bounded by what is left then, not by a figure fixed at the call's start:
    pool wait + connect + read together stay within the deadline. A phase's own timeout, when the
    client set a shorter one, still applies.
    """

    def __init__(self, deadline: Deadline, own: Any) -> None:
        phases = {phase: own.get(phase) if isinstance(own, dict) else None for phase in PHASES}
        super().__init__(phases)
        self._deadline = deadline

    def get(self, key: str, default: Any = None) -> Any:
        if key not in PHASES:
            return super().get(key, default)
        return self[key]

    def __getitem__(self, key: str) -> float | None:
        own = super().__getitem__(key)
        left = max(MIN_PHASE, self._deadline.remaining())
        return left if own is None else min(own, left)


class RetryPolicy(NamedTuple):
    """The parts of a ``tenure.retry(...)`` the transports use."""

    attempts: int
    backoff: float
    max_backoff: float
    timeout: float | None
    budget: RetryBudget | None


def retry_policy(retry: Any) -> RetryPolicy | None:
    """Read a ``tenure.retry(...)`` object's settings (None: no retries)."""
    if retry is None:
        return None
    try:
        return RetryPolicy(retry.attempts, retry.backoff, retry.max_backoff, retry.timeout, retry.budget)
    except AttributeError:
        raise ConfigurationError(f"retry must be made by tenure.retry(...), got {retry!r}") from None


def wait_limit(deadline: Deadline) -> float | None:
    """How long a rate limiter may wait for a permit: what is left of the deadline (None: no end)."""
    left = deadline.remaining()
    return None if left == math.inf else left


def check_timeout(timeout: float | None) -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < math.inf:
        raise ConfigurationError(f"timeout must be a positive number of seconds or None, got {timeout!r}")
    return float(timeout)


def check_methods(methods: Collection[str]) -> frozenset[str]:
    if isinstance(methods, str) or not all(isinstance(m, str) and m for m in methods):
        raise ConfigurationError(f"retry_methods must be a collection of method names, got {methods!r}")
    return frozenset(m.upper() for m in methods)


def check_fallback(fallback: Any) -> Fallback | None:
    if fallback is None or callable(fallback):
        return fallback  # type: ignore[no-any-return]
    if isinstance(fallback, httpx.Response) or type(fallback).__name__ == "Response":
        fallback.read()  # its body is copied into each answer; a stream could be read only once
        return fallback  # type: ignore[no-any-return]
    raise ConfigurationError(f"fallback must be an httpx.Response or a function, got {fallback!r}")


def copy_response(response: Any, request: httpx.Request) -> Any:
    """A fresh copy of a fallback response, bound to ``request``."""
    return type(response)(
        response.status_code, headers=response.headers, content=response.content, request=request
    )


class Settings:
    """A transport's protections, checked once: what both colours share."""

    def __init__(
        self,
        timeout: float | None,
        retry: Any,
        limiter_key: str | Callable[[httpx.Request], str] | None,
        fallback: Any,
        retry_methods: Collection[str],
    ) -> None:
        self.retry = retry_policy(retry)
        own = check_timeout(timeout)
        # One deadline per call: the transport's, or the retry's own if it alone has one.
        if own is None and self.retry is not None:
            own = self.retry.timeout
        elif own is not None and self.retry is not None and self.retry.timeout is not None:
            own = min(own, self.retry.timeout)
        self.timeout = own
        self.budget = None if self.retry is None else (self.retry.budget or RetryBudget())
        if limiter_key is not None and not (isinstance(limiter_key, str) or callable(limiter_key)):
            raise ConfigurationError(f"limiter_key must be a string or a function, got {limiter_key!r}")
        self.limiter_key = limiter_key
        self.fallback = check_fallback(fallback)
        self.retry_methods = check_methods(retry_methods)

    def key_of(self, request: httpx.Request) -> str:
        if self.limiter_key is None:
            return ""
        return self.limiter_key if isinstance(self.limiter_key, str) else self.limiter_key(request)

    def start(self, request: httpx.Request) -> Deadline:
        """Begin a call: its deadline, set as what is left for every phase of every attempt."""
        deadline = Deadline(self.timeout)
        if self.timeout is not None:
            request.extensions["timeout"] = LeftOfDeadline(deadline, request.extensions.get("timeout"))
        return deadline

    def attempts(self, request: httpx.Request, deadline: Deadline) -> Attempts:
        return Attempts(self, request, deadline)

    def fallback_for(self, request: httpx.Request, cause: BaseException | httpx.Response) -> Any:
        """The fallback's answer (maybe awaitable, from an async function); None if there is none."""
        fallback = self.fallback
        if fallback is None:
            return None
        if callable(fallback):
            return fallback(request, cause)
        return copy_response(fallback, request)


class Attempts:
    """One call's retries: whether another attempt may be made and after how long."""

    def __init__(self, settings: Settings, request: httpx.Request, deadline: Deadline) -> None:
        self._policy = settings.retry
        self._budget = settings.budget
        self._deadline = deadline
        self.made = 1
        self.flavour = flavour_of(request)
        self.retryable = (
            self._policy is not None
            and request.method in settings.retry_methods
            and isinstance(request.stream, self.flavour.byte_stream)  # a body that can be sent again
        )
        if self._budget is not None:
            self._budget.deposit()

    def delay(self, response: httpx.Response | None = None) -> float | None:
        """Seconds to wait before the next attempt, or None when no attempt is left.

        No retry when attempts are spent, when the wait (the server's ``Retry-After`` if it
        gave one, else jittered backoff) would not end before the deadline, or when the budget
        has no retry left (asked last: a refused retry costs the budget nothing).
        """
        policy = self._policy
        if policy is None or not self.retryable:
            return None
        if self.made >= policy.attempts:
            retry_decided("attempts_spent", self._budget)
            return None
        wait = None
        if response is not None and "retry-after" in response.headers:
            wait = parse_retry_after(response.headers["retry-after"], time.time())
        if wait is None:
            wait = full_jitter(self.made - 1, policy.backoff, policy.max_backoff, random.random)
        if wait >= self._deadline.remaining():
            retry_decided("past_deadline", self._budget)
            return None
        if self._budget is not None and not self._budget.try_withdraw():
            retry_decided("budget_spent", self._budget)
            return None
        self.made += 1
        retry_decided("retry", self._budget)
        return wait

    def timed_out(self, request: httpx.Request) -> Exception:
        """The error for a call whose deadline ran out between attempts."""
        message = f"the call's deadline of {self._deadline.timeout} s ran out"
        return self.flavour.timeout_error(message, request=request)


def call_span(request: httpx.Request) -> tuple[Instruments, Any] | None:
    """Start the span of one protected call (inside a recording span only), or return None.

    Looked up per call: a transport is often built before OpenTelemetry is set up. The URL is
    left out (its path and query may carry secrets); per-attempt HTTP spans are what
    OpenTelemetry's httpx instrumentation adds, as this span's children.
    """
    observer = current()
    if observer is None:
        return None
    url = request.url
    attributes: dict[str, str | int] = {"http.request.method": request.method, "server.address": url.host}
    if url.port is not None:
        attributes["server.port"] = url.port
    span = observer.start_span("tenure.http.call", attributes)
    return None if span is None else (observer, span)


def end_call(observer: Instruments, span: Any, status: int) -> None:
    """End a call's span with its answer's status; a 5xx marks it failed, as HTTP spans are."""
    span.set_attribute("http.response.status_code", status)
    if failed_status(status):
        span.set_attribute("error.type", str(status))
        span.set_status(observer.error_status)
    span.end()
