"""The pool layer's gate: no request ever waits inside httpcore's connection pool.

httpcore 1.0.9 (and its fork) can lose a pool slot for good when a request is cancelled, or its
pool wait times out, just as the pool hands it a new connection: the connection stays
"CONNECTING" with no request, is never reaped, and once ``max_connections`` of them pile up every
call fails with PoolTimeout (encode/httpcore#1093, #830). The transports therefore let at most
``max_connections`` calls into the pool at once, through a gate of their own (a semaphore, clean
to cancel and to time out): inside, each call finds an idle connection or room for a new one at
once, and is never suspended between being given a connection and using it. A call holds its
place until its response's body is closed, as it holds the connection.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx


def pool_wait(request: httpx.Request) -> float | None:
    """How long a call may wait for a place: its pool timeout (what is left of the deadline)."""
    timeouts = request.extensions.get("timeout")
    return timeouts.get("pool") if isinstance(timeouts, dict) else None


def pool_timeout(request: httpx.Request) -> Exception:
    """The PoolTimeout of the request's own httpx package (httpx or httpx2)."""
    module = sys.modules[type(request).__module__.partition(".")[0]]
    message = "no place in the connection pool within the timeout"
    error: Exception = module.PoolTimeout(message, request=request)
    return error


class _Releasing:
    """A response body that gives the call's place back when it is closed (once)."""

    def __init__(self, stream: Any, release: Callable[[], None]) -> None:
        self._stream = stream
        self._release: Callable[[], None] | None = release

    def _give_back(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()

    def __iter__(self) -> Iterator[bytes]:
        yield from self._stream

    def close(self) -> None:
        try:
            self._stream.close()
        finally:
            self._give_back()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            self._give_back()


@functools.cache
def _releasing_class(base: type[Any]) -> type[Any]:
    # httpx checks a response's stream against its own byte-stream classes (httpx's or httpx2's).
    return type(f"Releasing{base.__name__}", (_Releasing, base), {})


def _released_on_close(response: httpx.Response, release: Callable[[], None], base_name: str) -> None:
    module = sys.modules[type(response).__module__.partition(".")[0]]
    response.stream = _releasing_class(getattr(module, base_name))(response.stream, release)


def released_on_close(response: httpx.Response, release: Callable[[], None]) -> None:
    """Make ``release`` run when ``response``'s body is closed (read to its end, or closed)."""
    _released_on_close(response, release, "SyncByteStream")


def async_released_on_close(response: httpx.Response, release: Callable[[], None]) -> None:
    """``released_on_close`` for an async response."""
    _released_on_close(response, release, "AsyncByteStream")


def _in_memory(response: httpx.Response, raw: bytes) -> None:
    # The body's (still encoded) bytes replace its network stream; the response is otherwise as
    # it came, not yet read: the client reads it from memory as it would have from the socket.
    module = sys.modules[type(response).__module__.partition(".")[0]]
    response.stream = module.ByteStream(raw)


def read_in(response: httpx.Response) -> httpx.Response:
    """Read ``response``'s body off the connection now (it goes back to the pool), keep it in memory."""
    stream: Any = response.stream
    try:
        raw = b"".join(stream)
    finally:
        stream.close()
    _in_memory(response, raw)
    return response


async def async_read_in(response: httpx.Response) -> httpx.Response:
    """``read_in`` for an async response."""
    stream: Any = response.stream
    try:
        raw = b"".join([chunk async for chunk in stream])
    finally:
        await stream.aclose()
    _in_memory(response, raw)
    return response
