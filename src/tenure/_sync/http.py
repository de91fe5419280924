# GENERATED from src/tenure/_async/http.py by scripts/unasync.py: do not edit; edit the source and re-run.
"""``Transport`` and ``Client``: httpx's client with tenure's protections.

The layers, outermost first: rate limit -> bulkhead -> breaker -> retry -> timeout -> pool.
Written once, for asyncio; ``scripts/unasync.py`` generates the threaded twin, and
``tenure.http`` exports both. What differs between them is in ``tenure._concurrency``: the
asyncio colour runs each attempt out of reach of its caller's cancellation, and awaits what a
shared breaker or an async fallback returns.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Collection
from typing import Any

import httpx

from tenure._concurrency import Gate, Attempt, detached, resolve, sleep
from tenure._core.deadline import Deadline
from tenure.http._policy import (
    DEFAULT_LIMITS,
    IDEMPOTENT_METHODS,
    Settings,
    call_span,
    end_call,
    failed_status,
    retry_status,
    to_buffer,
    wait_limit,
)
from tenure.http._pool import read_in, released_on_close, pool_timeout, pool_wait


class Transport(httpx.BaseTransport):
    """An httpx transport that protects each call made through the ``transport`` it wraps.

    Plugs into any ``httpx.Client(transport=...)``, and into httpx2's (the maintained fork)
    when it wraps an ``httpx2.HTTPTransport``. ``timeout`` is one deadline per call, across
    its pool wait, connects, reads, retries and backoff; ``retry`` (``tenure.retry(...)``) retries
    transport errors, 5xx and 429 answers of idempotent methods (``retry_methods``), honouring
    ``Retry-After``, within a retry budget; ``breaker`` (``tenure.circuit_breaker`` or
    ``coord.circuit_breaker``) counts transport errors and 5xx as failures; ``limiter``
    (``coord.rate_limiter``) waits for a permit of ``limiter_key`` within the deadline;
    ``bulkhead`` (``tenure.bulkhead``) bounds calls in flight; ``fallback`` (a response, or
    ``fn(request, exception_or_response)``) answers a refused or failed call. In asyncio, the
    calls of a shared breaker and an async ``fallback`` are awaited.
    """

    def __init__(
        self,
        transport: httpx.BaseTransport | None = None,
        *,
        timeout: float | None = None,
        retry: Any = None,
        breaker: Any = None,
        limiter: Any = None,
        limiter_key: str | Callable[[httpx.Request], str] | None = None,
        bulkhead: Any = None,
        fallback: Any = None,
        retry_methods: Collection[str] = IDEMPOTENT_METHODS,
        limits: httpx.Limits = DEFAULT_LIMITS,
    ) -> None:
        self._settings = Settings(timeout, retry, limiter_key, fallback, retry_methods)
        self._inner = transport if transport is not None else httpx.HTTPTransport(limits=limits)
        self._breaker = breaker
        self._limiter = limiter
        self._bulkhead = bulkhead
        most = limits.max_connections
        self._gate = None if most is None else Gate(most)

    @property
    def inner(self) -> httpx.BaseTransport:
        """The wrapped transport (its connection pool)."""
        return self._inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        traced = call_span(request)
        if traced is None:
            return self._handle(request)
        observer, span = traced
        with observer.use_span(span):  # httpx instrumentation's attempt spans are its children
            try:
                response = self._handle(request)
            except BaseException as exc:
                observer.end_span(span, exc)
                raise
        end_call(observer, span, response.status_code)
        return response

    def _handle(self, request: httpx.Request) -> httpx.Response:
        settings = self._settings
        deadline = settings.start(request)
        try:
            response = self._admitted(request, deadline)
        except Exception as exc:
            answer = resolve(settings.fallback_for(request, exc))
            if answer is None:
                raise
            return answer  # type: ignore[no-any-return]
        if settings.fallback is not None and retry_status(response.status_code):
            answer = resolve(settings.fallback_for(request, response))
            response.close()
            return answer  # type: ignore[no-any-return]
        return response

    def close(self) -> None:
        self._inner.close()

    def _admitted(self, request: httpx.Request, deadline: Deadline) -> httpx.Response:
        if self._limiter is not None:
            self._limiter.acquire(key=self._settings.key_of(request), timeout=wait_limit(deadline))
        with self._bulkhead if self._bulkhead is not None else contextlib.nullcontext():
            if self._breaker is None:
                return self._retried(request, deadline)
            call = resolve(self._breaker.admit())
            try:
                response = self._retried(request, deadline)
            except Exception:
                resolve(call.failed())
                raise
            except BaseException:
                resolve(call.abandoned())  # cancelled, interrupted: no verdict on the service
                raise
            if failed_status(response.status_code):
                resolve(call.failed())
            else:
                resolve(call.succeeded())
            return response

    def _retried(self, request: httpx.Request, deadline: Deadline) -> httpx.Response:
        attempts = self._settings.attempts(request, deadline)
        transport_error = attempts.flavour.transport_error
        if deadline.expired():  # spent waiting for a permit or a place: no attempt can fit
            raise attempts.timed_out(request)
        # In asyncio, each attempt runs in a task of its own that the caller's cancellation never
        # reaches once past the gate (encode/httpcore#1093, explained in tenure._concurrency.calls).
        attempt = functools.partial(self._pooled, request)
        while True:
            try:
                response = detached(attempt, httpx.Response.close)
            except transport_error:
                wait = attempts.delay()
                if wait is None:
                    raise
            else:
                if not retry_status(response.status_code):
                    return response
                wait = attempts.delay(response)
                if wait is None:
                    return response
                response.close()  # its connection goes back to the pool (or is dropped), not leaked
            sleep(wait)
            if deadline.expired():
                raise attempts.timed_out(request)

    def _pooled(self, request: httpx.Request, attempt: Attempt) -> httpx.Response:
        """One attempt through the pool layer: a place at the gate (see _pool.py), then the call.

        A small body is read here: a failure mid-body is then the attempt's (retried, counted).
        """
        gate = self._gate
        if gate is not None and not gate.enter(pool_wait(request)):
            raise pool_timeout(request)
        attempt.inside = True
        handed_on = False  # the place goes with the response's body, given back when it is closed
        try:
            response = self._inner.handle_request(request)
            if response.is_closed:  # read already (an in-memory transport): it holds no connection
                return response
            if to_buffer(response):
                return read_in(response)
            if gate is not None:
                released_on_close(response, gate.leave)
                handed_on = True
            return response
        finally:
            if gate is not None and not handed_on:
                gate.leave()


class Client(httpx.Client):
    """``httpx.Client`` whose every call goes through its ``Transport`` with these protections.

    ``timeout`` (default 5 s) is one deadline per call, retries and backoff included; ``limits``
    sizes the connection pool; other keyword arguments go to ``httpx.Client``; ``transport``,
    if given, is the one wrapped instead of a new ``httpx.HTTPTransport(limits=limits)``.
    """

    def __init__(
        self,
        *,
        timeout: float | None = 5.0,
        retry: Any = None,
        breaker: Any = None,
        limiter: Any = None,
        limiter_key: str | Callable[[httpx.Request], str] | None = None,
        bulkhead: Any = None,
        fallback: Any = None,
        retry_methods: Collection[str] = IDEMPOTENT_METHODS,
        limits: httpx.Limits = DEFAULT_LIMITS,
        transport: httpx.BaseTransport | None = None,
        **kwargs: Any,
    ) -> None:
        protected = Transport(
            transport,
            timeout=timeout,
            retry=retry,
            breaker=breaker,
            limiter=limiter,
            limiter_key=limiter_key,
            bulkhead=bulkhead,
            fallback=fallback,
            retry_methods=retry_methods,
            limits=limits,
        )
        super().__init__(timeout=timeout, transport=protected, **kwargs)
        self.protected = protected
