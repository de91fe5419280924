"""``AsyncTransport`` and ``AsyncClient``: httpx's asyncio client with tenure's protections.

The same layers as ``_transport.py``, line for line: rate limit -> bulkhead -> breaker ->
retry -> timeout -> pool. The breaker may be in-process (``tenure.circuit_breaker``, plain
calls) or shared (``coord.circuit_breaker``, awaited calls): both are accepted.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Callable, Collection
from typing import Any

import httpx

from tenure._concurrency.calls import async_sleep
from tenure._concurrency.primitives import AsyncGate
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
from tenure.http._pool import aread_in, pool_timeout, pool_wait, released_on_close


async def _settled(value: Any) -> Any:
    """Await ``value`` if a shared (async) breaker or an async fallback returned an awaitable."""
    return await value if inspect.isawaitable(value) else value


class _Attempt:
    __slots__ = ("inside",)

    def __init__(self) -> None:
        self.inside = False  # past the gate: cancelling it now could strand its connection


_CLOSING: set[asyncio.Future[None]] = set()  # responses of abandoned attempts being closed


def _close_abandoned(task: asyncio.Future[httpx.Response]) -> None:
    """Close the response of an attempt whose caller went away (its connection goes back)."""
    if task.cancelled() or task.exception() is not None:
        return  # failed on its own: httpcore closed what it had
    closing = asyncio.ensure_future(task.result().aclose())
    _CLOSING.add(closing)
    closing.add_done_callback(_CLOSING.discard)


class AsyncTransport(httpx.AsyncBaseTransport):
    """An httpx async transport that protects each call made through the ``transport`` it wraps.

    The options are ``Transport``'s; ``limiter`` is a ``coord.rate_limiter`` of an async
    coordinator, ``fallback`` may be an async function.
    """

    def __init__(
        self,
        transport: httpx.AsyncBaseTransport | None = None,
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
        self._inner = transport if transport is not None else httpx.AsyncHTTPTransport(limits=limits)
        self._breaker = breaker
        self._limiter = limiter
        self._bulkhead = bulkhead
        most = limits.max_connections
        self._gate = None if most is None else AsyncGate(most)

    @property
    def inner(self) -> httpx.AsyncBaseTransport:
        """The wrapped transport (its connection pool)."""
        return self._inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        traced = call_span(request)
        if traced is None:
            return await self._handle(request)
        observer, span = traced
        with observer.use_span(span):  # httpx instrumentation's attempt spans are its children
            try:
                response = await self._handle(request)
            except BaseException as exc:
                observer.end_span(span, exc)
                raise
        end_call(observer, span, response.status_code)
        return response

    async def _handle(self, request: httpx.Request) -> httpx.Response:
        settings = self._settings
        deadline = settings.start(request)
        try:
            response = await self._admitted(request, deadline)
        except Exception as exc:
            answer = await _settled(settings.fallback_for(request, exc))
            if answer is None:
                raise
            return answer  # type: ignore[no-any-return]
        if settings.fallback is not None and retry_status(response.status_code):
            answer = await _settled(settings.fallback_for(request, response))
            await response.aclose()
            return answer  # type: ignore[no-any-return]
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def _admitted(self, request: httpx.Request, deadline: Deadline) -> httpx.Response:
        if self._limiter is not None:
            await self._limiter.acquire(key=self._settings.key_of(request), timeout=wait_limit(deadline))
        async with self._bulkhead if self._bulkhead is not None else contextlib.nullcontext():
            if self._breaker is None:
                return await self._retried(request, deadline)
            call = await _settled(self._breaker.admit())
            try:
                response = await self._retried(request, deadline)
            except Exception:
                await _settled(call.failed())
                raise
            except BaseException:
                await _settled(call.abandoned())  # cancelled, interrupted: no verdict on the service
                raise
            if failed_status(response.status_code):
                await _settled(call.failed())
            else:
                await _settled(call.succeeded())
            return response

    async def _retried(self, request: httpx.Request, deadline: Deadline) -> httpx.Response:
        attempts = self._settings.attempts(request, deadline)
        transport_error = attempts.flavour.transport_error
        if deadline.expired():  # spent waiting for a permit or a place: no attempt can fit
            raise attempts.timed_out(request)
        while True:
            try:
                response = await self._detached(request)
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
                await response.aclose()  # its connection goes back to the pool (or is dropped), not leaked
            await async_sleep(wait)
            if deadline.expired():
                raise attempts.timed_out(request)

    async def _detached(self, request: httpx.Request) -> httpx.Response:
        """Run one attempt in a task of its own: the caller's cancellation never lands in httpcore.

        A task cancelled at one of httpcore's await points between taking a connection and
        marking it in use leaves that connection in the pool for good ("NEW" or "CONNECTING"
        with no request: encode/httpcore#1093); a few hundred cancellations fill the pool and
        every later call fails with PoolTimeout. So: a caller cancelled while its attempt waits
        at the gate cancels it there (clean); once inside, the attempt is left to end by its own
        timeouts (what is left of the deadline) and its response is closed, while the caller's
        cancellation goes on at once.
        """
        attempt = _Attempt()
        task = asyncio.ensure_future(self._pooled(request, attempt))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if attempt.inside:
                task.add_done_callback(_close_abandoned)
            else:
                task.cancel()
            raise

    async def _pooled(self, request: httpx.Request, attempt: _Attempt) -> httpx.Response:
        """One attempt through the pool layer: a place at the gate (see _pool.py), then the call.

        A small body is read here: a failure mid-body is then the attempt's (retried, counted).
        """
        gate = self._gate
        if gate is not None and not await gate.enter(pool_wait(request)):
            raise pool_timeout(request)
        attempt.inside = True
        handed_on = False  # the place goes with the response's body, given back when it is closed
        try:
            response = await self._inner.handle_async_request(request)
            if response.is_closed:  # read already (an in-memory transport): it holds no connection
                return response
            if to_buffer(response):
                return await aread_in(response)
            if gate is not None:
                released_on_close(response, gate.leave, is_async=True)
                handed_on = True
            return response
        finally:
            if gate is not None and not handed_on:
                gate.leave()


class AsyncClient(httpx.AsyncClient):
    """``httpx.AsyncClient`` whose every call goes through an ``AsyncTransport``; see ``Client``."""

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
        transport: httpx.AsyncBaseTransport | None = None,
        **kwargs: Any,
    ) -> None:
        protected = AsyncTransport(
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
