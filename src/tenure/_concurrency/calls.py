"""Sleeping, blocking driver calls, cleanups, detached attempts and stoppable calls, in each colour."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
import functools
import inspect
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")
log = logging.getLogger("tenure")

AsyncReturning = Callable[..., Awaitable[T]]
"""A function the async colour awaits for its result (a coroutine function)."""
Returning = Callable[..., T]
"""Its sync twin: a function called for its result."""

# -- calling the user's functions ------------------------------------------------------------


async def async_resolve(value: Any) -> Any:
    """Return ``value``, awaited first if it is awaitable (what an ``async def`` call returns)."""
    if inspect.isawaitable(value):
        return await value
    return value


def resolve(value: Any) -> Any:
    """Return ``value``; refuse an awaitable, which threaded code cannot run."""
    if inspect.isawaitable(value):
        if inspect.iscoroutine(value):
            value.close()  # never awaited: close it so Python does not warn about it
        raise TypeError(
            "an async def function needs the asyncio API (AsyncCoordinator), not the threaded one"
        )
    return value


# -- sleeping and blocking calls -------------------------------------------------------------


async def async_sleep(seconds: float) -> None:
    """Sleep without blocking the event loop."""
    await asyncio.sleep(seconds)


def sleep(seconds: float) -> None:
    """Sleep the calling thread."""
    time.sleep(seconds)


async def async_run_blocking(fn: Callable[..., T], *args: Any) -> T:
    """Run a blocking driver call in a worker thread, keeping the event loop free."""
    return await asyncio.to_thread(fn, *args)


def run_blocking(fn: Callable[..., T], *args: Any) -> T:
    """Run a blocking driver call in the calling thread."""
    return fn(*args)


async def async_read_reply(connection: Any, timeout: float) -> Any:
    """Read one reply from a redis-py asyncio connection, waiting at most ``timeout`` seconds.

    Raises TimeoutError when the reply is late; redis-py then closes the connection, so the
    reply cannot be taken later for the answer to another command.
    """
    async with asyncio.timeout(timeout):
        return await connection.read_response()


def read_reply(connection: Any, timeout: float) -> Any:
    """Read one reply from a redis-py connection, waiting at most ``timeout`` seconds.

    Raises redis's TimeoutError when the reply is late, and redis-py closes the connection.
    """
    return connection.read_response(timeout=timeout)


async def async_await_result(result: Any, timeout: float) -> Any:
    """Wait up to ``timeout`` seconds for a driver's thread-completed result; return its value.

    ``result`` is an ``IAsyncResult`` (kazoo's): a value set from the driver's own thread,
    with ``rawlink(callback)``. The callback hands the completion to the event loop, so no
    thread is spent per call. Raises TimeoutError when late, or the result's own exception.
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def settle() -> None:
        if not done.done():
            done.set_result(None)

    def completed(_: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits
            loop.call_soon_threadsafe(settle)

    result.rawlink(completed)
    try:
        async with asyncio.timeout(timeout):
            await done
    finally:
        result.unlink(completed)
    return result.get(block=False)


def await_result(result: Any, timeout: float) -> Any:
    """Wait up to ``timeout`` seconds for a driver's thread-completed result; return its value.

    Raises TimeoutError when late, or the result's own exception.
    """
    if not result.wait(timeout):
        raise TimeoutError(f"no result within {timeout:g} s")
    return result.get(block=False)


async def async_shielded(make: Callable[[], Awaitable[T]]) -> T:
    """Run a cleanup step to completion even if the caller is cancelled meanwhile."""
    task = asyncio.ensure_future(make())
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        # The caller goes away; the cleanup still finishes on the loop.
        task.add_done_callback(_log_failure)
        raise


def shielded(make: Callable[[], T]) -> T:
    """Run a cleanup step (threads cannot be cancelled, so this is a plain call)."""
    return make()


def _log_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("tenure: background cleanup failed: %r", task.exception())


# -- a call its caller's cancellation must not land in (the HTTP transports' attempts) ---------


class Attempt:
    """One detached call: ``inside`` is set once it is past its gate (see ``async_detached``)."""

    __slots__ = ("inside",)

    def __init__(self) -> None:
        self.inside = False  # past the gate: cancelling it now could strand its connection


_CLOSING: set[asyncio.Future[Any]] = set()  # results of abandoned attempts being closed


def _close_abandoned(close: Callable[[Any], Awaitable[Any]], task: asyncio.Future[Any]) -> None:
    """Close the result of an attempt whose caller went away (its connection goes back)."""
    if task.cancelled() or task.exception() is not None:
        return  # failed on its own: httpcore closed what it had
    closing = asyncio.ensure_future(close(task.result()))
    _CLOSING.add(closing)
    closing.add_done_callback(_CLOSING.discard)


async def async_detached(run: Callable[[Attempt], Awaitable[T]], close: Callable[[T], Awaitable[Any]]) -> T:
    """Return ``await run(attempt)``, run in a task of its own: the caller's cancellation never lands in it.

    A task cancelled at one of httpcore's await points between taking a connection and
    marking it in use leaves that connection in the pool for good ("NEW" or "CONNECTING"
    with no request: encode/httpcore#1093); a few hundred cancellations fill the pool and
    every later call fails with PoolTimeout. So: a caller cancelled while its attempt waits
    at the gate cancels it there (clean); once inside (``run`` sets ``attempt.inside``), the
    attempt is left to end by its own timeouts (what is left of the deadline) and its result
    is closed with ``close``, while the caller's cancellation goes on at once.
    """
    attempt = Attempt()
    task = asyncio.ensure_future(run(attempt))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        if attempt.inside:
            task.add_done_callback(functools.partial(_close_abandoned, close))
        else:
            task.cancel()
        raise


def detached(run: Callable[[Attempt], T], close: Callable[[T], Any]) -> T:
    """Return ``run(attempt)``: a thread cannot be cancelled, so this is a plain call."""
    return run(Attempt())


# -- a call bounded by a short deadline (a rate limiter's store must never stall its caller) --


async def async_within(timeout: float, make: Callable[[], Awaitable[T]]) -> T:
    """Return ``await make()``, or raise TimeoutError after ``timeout`` s (the call is cancelled)."""
    async with asyncio.timeout(timeout):
        return await make()


_bounded_pool: concurrent.futures.ThreadPoolExecutor | None = None
_bounded_pool_lock = threading.Lock()


def within(timeout: float, make: Callable[[], T]) -> T:
    """Return ``make()``, or raise TimeoutError after ``timeout`` s.

    A blocking driver call cannot be interrupted, so it runs in a small shared pool of worker
    threads while the caller waits at most ``timeout``; a late call finishes (within the
    driver's own op_timeout) in its worker, and its result is dropped.
    """
    global _bounded_pool
    if _bounded_pool is None:
        with _bounded_pool_lock:
            if _bounded_pool is None:
                _bounded_pool = concurrent.futures.ThreadPoolExecutor(8, thread_name_prefix="tenure-bounded")
    future = _bounded_pool.submit(make)
    try:
        return future.result(timeout)
    except concurrent.futures.TimeoutError:
        future.cancel()  # not started yet (the workers are all stuck on late calls): never start
        raise


# -- who is acting: the unit that owns a reentrant hold ----------------------------------------


def async_current_actor() -> object:
    """Return the running task: the owner of reentrant holds in async code."""
    task = asyncio.current_task()
    if task is None:
        raise RuntimeError("tenure's async API must be used from inside a running task")
    return task


def current_actor() -> object:
    """Return the current thread's id: the owner of reentrant holds in threaded code."""
    return threading.get_ident()


def async_running_loop() -> object:
    """Return the running event loop: an async coordinator's tasks and connections belong to it."""
    return asyncio.get_running_loop()


def running_loop() -> object:
    """Threads share no event loop (None): any thread may use a coordinator."""
    return None


# -- running a function that a loss must stop (Election.run) ---------------------------------


class ThreadStopped(Exception):
    """Raised inside a thread's function by ``call_stoppably``'s stop (never seen outside it)."""


async def async_call_stoppably(
    fn: Callable[..., Awaitable[T]], args: tuple[Any, ...], on_stop: Callable[[Callable[[], None]], None]
) -> T:
    """Await ``fn(*args)``; a task is stopped by the lease's body guard, which cancels it."""
    return await fn(*args)


def call_stoppably(
    fn: Callable[..., T], args: tuple[Any, ...], on_stop: Callable[[Callable[[], None]], None]
) -> T:
    """Call ``fn(*args)`` in this thread; the stop handed to ``on_stop`` raises ThreadStopped in it.

    A thread cannot be cancelled, but CPython can raise an exception in it at its next bytecode
    (``PyThreadState_SetAsyncExc``): pure-Python code stops at once, a blocking C call when it
    returns. The stop is only raised while ``fn`` runs, and one still pending when ``fn`` ends is
    withdrawn, so it can never surface in the caller's code.
    """
    target = threading.get_ident()
    guard = threading.Lock()
    running = True

    def stop() -> None:
        with guard:
            if running and threading.get_ident() != target:  # the thread itself raises already
                ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(target), ctypes.py_object(ThreadStopped)
                )

    on_stop(stop)
    try:
        return fn(*args)
    finally:
        with guard:
            running = False
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(target), None)  # withdraw
