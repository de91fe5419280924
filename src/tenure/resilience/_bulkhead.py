"""``tenure.bulkhead``: at most ``limit`` calls in flight, one count for threads and tasks.

For a limit shared by processes, see ``coord.semaphore``.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, overload

from tenure._exceptions import BulkheadFull, ConfigurationError
from tenure.resilience._common import check_seconds, wrap

P = ParamSpec("P")
T = TypeVar("T")


class _Waiter:
    """One thread or task waiting for a place; ``granted`` (under the bulkhead's lock) says it got one."""

    __slots__ = ("event", "future", "granted", "loop")

    def __init__(
        self,
        event: threading.Event | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
        future: asyncio.Future[None] | None = None,
    ) -> None:
        self.event = event
        self.loop = loop
        self.future = future
        self.granted = False

    def wake(self) -> bool:
        """Wake the waiter from any thread; False if it can no longer be woken (its loop closed)."""
        if self.event is not None:
            self.event.set()
            return True
        assert self.loop is not None and self.future is not None
        try:
            self.loop.call_soon_threadsafe(_resolve, self.future)
        except RuntimeError:  # the loop is closed: nobody will run the call
            return False
        return True


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Bulkhead:
    """Let at most ``limit`` calls run at once; a caller waits up to ``timeout`` s, else ``BulkheadFull``.

    ``with bulkhead:``, ``async with bulkhead:`` and ``@bulkhead`` (def or async def) take a place
    for the block or the call. Threads and asyncio tasks (of any loop) share the one count: a
    thread waits on an event, a task on a future woken thread-safely, and a freed place is handed
    to the longest waiter first. ``timeout=0`` never waits; ``None`` waits without end.

    **Guarantees:** never more than ``limit`` places taken; first come, first served among
    waiters; a place is given back however the block ends, cancellation included (a task cancelled
    while waiting takes none, or hands on the one it was just given).
    """

    def __init__(self, *, limit: int = 10, timeout: float | None = 0.1) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ConfigurationError(f"limit must be a whole number >= 1 (calls in flight), got {limit!r}")
        self.limit = limit
        self.timeout = check_seconds(timeout, "timeout", none=True)
        self._lock = threading.Lock()
        self._taken = 0
        self._waiters: deque[_Waiter] = deque()

    def __repr__(self) -> str:
        return f"Bulkhead(limit={self.limit}, timeout={self.timeout!r}, in_flight={self._taken})"

    @property
    def in_flight(self) -> int:
        """Return how many places are taken now."""
        return self._taken

    @property
    def waiting(self) -> int:
        """Return how many callers wait for a place now."""
        return len(self._waiters)

    # -- taking and giving back places -----------------------------------------------------------

    def _try_take(self) -> bool:
        # under self._lock
        if self._taken < self.limit and not self._waiters:
            self._taken += 1
            return True
        return False

    def release(self) -> None:
        """Give back a place taken by ``acquire`` / ``aacquire``: the longest waiter gets it."""
        while True:
            with self._lock:
                if not self._waiters:
                    if self._taken <= 0:
                        raise RuntimeError("bulkhead released more often than taken")
                    self._taken -= 1
                    return
                waiter = self._waiters.popleft()
                waiter.granted = True  # the place passes on: the count stays
            if waiter.wake():
                return
            with self._lock:
                waiter.granted = False  # its loop is gone: give the place to the next one

    def _forget(self, waiter: _Waiter) -> None:
        # under self._lock; a waiter whose loop closed was taken off the queue already
        with contextlib.suppress(ValueError):
            self._waiters.remove(waiter)

    def _full(self) -> BulkheadFull:
        return BulkheadFull(
            f"bulkhead full: {self.limit} calls in flight and no place came free within {self.timeout} s"
        )

    def acquire(self) -> None:
        """Take a place, waiting up to ``timeout`` s for one; else raise ``BulkheadFull``."""
        with self._lock:
            if self._try_take():
                return
            if self.timeout == 0:
                raise self._full()
            waiter = _Waiter(event=threading.Event())
            self._waiters.append(waiter)
        assert waiter.event is not None
        waiter.event.wait(self.timeout)
        with self._lock:
            if waiter.granted:
                return
            self._forget(waiter)
        raise self._full()

    async def aacquire(self) -> None:
        """Take a place, waiting up to ``timeout`` s without blocking the loop; else ``BulkheadFull``."""
        with self._lock:
            if self._try_take():
                return
            if self.timeout == 0:
                raise self._full()
            loop = asyncio.get_running_loop()
            waiter = _Waiter(loop=loop, future=loop.create_future())
            self._waiters.append(waiter)
        assert waiter.future is not None
        try:
            async with asyncio.timeout(self.timeout):
                await waiter.future
        except TimeoutError:
            pass
        except BaseException:  # cancelled while waiting: take nothing, or hand on what came
            with self._lock:
                granted = waiter.granted
                if not granted:
                    self._forget(waiter)
            if granted:
                self.release()
            raise
        with self._lock:
            if waiter.granted:
                return
            self._forget(waiter)
        raise self._full()

    # -- with, async with, decorator -------------------------------------------------------------

    def __enter__(self) -> Bulkhead:
        self.acquire()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    async def __aenter__(self) -> Bulkhead:
        await self.aacquire()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Return ``fn(*args, **kwargs)`` run in a place of the bulkhead."""
        with self:
            return fn(*args, **kwargs)

    async def acall(self, fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        """Return ``await fn(*args, **kwargs)`` run in a place of the bulkhead."""
        async with self:
            return await fn(*args, **kwargs)

    @overload
    def __call__(self, fn: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]: ...
    @overload
    def __call__(self, fn: Callable[P, T]) -> Callable[P, T]: ...
    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        """Decorate a def or an async def so each call runs in a place of the bulkhead."""
        return wrap(fn, self.call, self.acall)


def bulkhead(*, limit: int = 10, timeout: float | None = 0.1) -> Bulkhead:
    """Return a ``Bulkhead`` of ``limit`` calls in flight, waiting up to ``timeout`` s for a place.

    Defaults: 10 calls (a typical pool's size), and 0.1 s of waiting: a bulkhead exists to fail
    fast when a dependency is saturated, not to queue behind it.
    """
    return Bulkhead(limit=limit, timeout=timeout)
