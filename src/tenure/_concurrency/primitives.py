"""What acquire() returns, and the mutex, gate, signal, background job and body guard of each colour."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine, Generator
from types import TracebackType
from typing import Any, Protocol, TypeVar

log = logging.getLogger("tenure")

# -- what acquire() returns: awaited for the lease, or entered with ``async with`` -------------


class _AsyncHeld(Protocol):
    """A lease or leadership: its ``__aenter__`` returns itself."""

    async def __aenter__(self) -> Any: ...

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


H = TypeVar("H", bound=_AsyncHeld)


class AsyncEntering(Coroutine[Any, Any, H]):
    """An acquisition that is both awaitable and an async context manager (as asyncpg's ``acquire()``).

    ``lease = await lock.acquire()`` returns the lease; ``async with lock.acquire() as lease``
    awaits it and enters it, so async code reads as the sync ``with lock.acquire() as lease``.
    It is a ``Coroutine`` too, so ``asyncio.create_task(lock.acquire())`` keeps working.
    It has no sync twin: ``scripts/unasync.py`` turns ``async_entering(call)`` into ``call``.
    """

    __slots__ = ("_acquiring", "_held")

    def __init__(self, acquiring: Coroutine[Any, Any, H]) -> None:
        self._acquiring = acquiring
        self._held: H | None = None

    def __await__(self) -> Generator[Any, None, H]:
        return self._acquiring.__await__()

    def send(self, value: Any) -> Any:
        return self._acquiring.send(value)

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        return self._acquiring.throw(typ, val, tb)

    def close(self) -> None:
        self._acquiring.close()

    async def __aenter__(self) -> H:
        self._held = await self._acquiring
        await self._held.__aenter__()
        return self._held

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._held is not None, "__aexit__ without __aenter__"
        await self._held.__aexit__(exc_type, exc, tb)


def async_entering(acquiring: Coroutine[Any, Any, H]) -> AsyncEntering[H]:
    """Return ``acquiring`` (not yet started) as something to await or to ``async with``."""
    return AsyncEntering(acquiring)


# -- mutual exclusion inside one process -------------------------------------------------------


class AsyncMutex:
    """A mutex for tasks of one event loop."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> None:
        await self._lock.acquire()

    async def __aexit__(self, *exc: object) -> None:
        self._lock.release()


class Mutex:
    """A mutex for threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def __enter__(self) -> None:
        self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


# -- a counting gate: at most N at once inside, the others wait their turn --------------------


class AsyncGate:
    """Let at most ``size`` tasks in at once; more wait (in arrival order) for one to leave."""

    def __init__(self, size: int) -> None:
        self._semaphore = asyncio.Semaphore(size)
        self.waiting = 0  # tasks waiting for a place now (a pool keeps what they will need)

    async def enter(self, timeout: float | None) -> bool:
        """Wait up to ``timeout`` seconds for a place; return whether one was had.

        Each ``True`` must be matched by one ``leave()``.
        """
        if not self._semaphore.locked():
            await self._semaphore.acquire()  # free: returns at once, no timer needed
            return True
        if timeout is not None and timeout <= 0:
            return False
        self.waiting += 1
        try:
            async with asyncio.timeout(timeout):
                await self._semaphore.acquire()
        except TimeoutError:
            return False
        finally:
            self.waiting -= 1
        return True

    def leave(self) -> None:
        """Give the place back: the longest waiter gets it."""
        self._semaphore.release()


class Gate:
    """Let at most ``size`` threads in at once; more wait for one to leave."""

    def __init__(self, size: int) -> None:
        self._semaphore = threading.BoundedSemaphore(size)
        self._count = threading.Lock()
        self.waiting = 0  # threads waiting for a place now (a pool keeps what they will need)

    def enter(self, timeout: float | None) -> bool:
        """Wait up to ``timeout`` seconds for a place; return whether one was had.

        Each ``True`` must be matched by one ``leave()``.
        """
        if timeout is not None and timeout <= 0:
            return self._semaphore.acquire(blocking=False)
        with self._count:
            self.waiting += 1
        try:
            return self._semaphore.acquire(timeout=timeout)
        finally:
            with self._count:
                self.waiting -= 1

    def leave(self) -> None:
        """Give the place back."""
        self._semaphore.release()


# -- a wake-up signal that any thread may set --------------------------------------------------


class AsyncSignal:
    """A settable flag a task can wait on; ``set()`` is safe from any thread."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._event = asyncio.Event()

    def set(self) -> None:
        """Wake every waiter."""
        if self._loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self._event.set()
        else:
            self._loop.call_soon_threadsafe(self._event.set)

    def clear(self) -> None:
        """Reset the flag."""
        self._event.clear()

    def is_set(self) -> bool:
        """Return whether the flag is set."""
        return self._event.is_set()

    async def wait(self, timeout: float | None) -> bool:
        """Wait until set or ``timeout`` seconds pass; return whether it was set."""
        if self._event.is_set():
            return True
        if timeout is not None and timeout <= 0:
            return False
        try:
            async with asyncio.timeout(timeout):
                await self._event.wait()
        except TimeoutError:
            return False
        return True


class Signal:
    """A settable flag a thread can wait on; ``set()`` is safe from any thread."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        """Wake every waiter."""
        self._event.set()

    def clear(self) -> None:
        """Reset the flag."""
        self._event.clear()

    def is_set(self) -> bool:
        """Return whether the flag is set."""
        return self._event.is_set()

    def wait(self, timeout: float | None) -> bool:
        """Wait until set or ``timeout`` seconds pass; return whether it was set."""
        if timeout is not None and timeout <= 0:
            return self._event.is_set()
        return self._event.wait(timeout)


# -- one background worker per coordinator -----------------------------------------------------


class AsyncBackground:
    """Run one coroutine function as a task of the current loop."""

    def __init__(self, run: Callable[[], Awaitable[None]], *, name: str) -> None:
        self._run = run
        self._name = name
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the task."""
        self._task = asyncio.get_running_loop().create_task(self._guard(), name=self._name)

    async def _guard(self) -> None:
        try:
            await self._run()
        except asyncio.CancelledError:
            raise
        except BaseException:
            log.exception("tenure: %s stopped with an error", self._name)
            raise

    async def join(self) -> None:
        """Wait for the task to finish (it must have been told to stop)."""
        if self._task is not None and self._task is not asyncio.current_task():
            try:
                await self._task
            except BaseException:
                log.debug("tenure: %s ended with an error", self._name, exc_info=True)


class Background:
    """Run one function in a daemon thread."""

    def __init__(self, run: Callable[[], None], *, name: str) -> None:
        self._run = run
        self._name = name
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread."""
        self._thread = threading.Thread(target=self._guard, name=self._name, daemon=True)
        self._thread.start()

    def _guard(self) -> None:
        try:
            self._run()
        except BaseException:
            log.exception("tenure: %s stopped with an error", self._name)
            raise

    def join(self) -> None:
        """Wait for the thread to finish (it must have been told to stop)."""
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()


# -- cancelling the body of ``async with lock`` when the lease is lost --------------------------


class AsyncBodyGuard:
    """Cancel the task running an ``async with`` body when its lease is lost."""

    def __init__(self) -> None:
        self._task: asyncio.Task[Any] | None = None
        self._cancelled = False

    def enter(self) -> None:
        """Remember the task entering the body."""
        self._task = asyncio.current_task()

    def interrupt(self) -> None:
        """Cancel the body now (called by the renewer when the lease is lost)."""
        if self._task is asyncio.current_task():
            return  # the body noticed the loss itself (check()) and is raising LockLost already
        if self._task is not None and not self._task.done() and not self._cancelled:
            self._cancelled = True
            self._task.cancel("tenure: lease lost")

    def exit(self, exc: BaseException | None) -> bool:
        """Return whether ``exc`` is the cancellation ``interrupt()`` caused, and absorb it."""
        task, self._task = self._task, None
        if not self._cancelled or task is None:
            return False
        self._cancelled = False
        task.uncancel()  # undo our own cancel() even if the body swallowed it
        return isinstance(exc, asyncio.CancelledError)


class BodyGuard:
    """A thread cannot be interrupted; the loss is raised when the ``with`` body is left."""

    def enter(self) -> None:
        """Nothing to remember for a thread."""

    def interrupt(self) -> None:
        """Threads are not interrupted: ``check()`` and leaving the block report the loss."""

    def exit(self, exc: BaseException | None) -> bool:
        """No cancellation was caused, so none is absorbed."""
        return False
