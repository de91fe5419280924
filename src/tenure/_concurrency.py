"""The only code that differs between the asyncio and the threaded colour, written by hand.

The async source in ``_async/`` uses the ``Async*`` and ``async_*`` names below; the generator
(``scripts/unasync.py``) rewrites them to the plain names, which are their threaded twins.
Everything else is generated, so the two colours cannot drift apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Generator
from types import TracebackType
from typing import Any, Generic, Protocol, TypeVar

T = TypeVar("T")
log = logging.getLogger("tenure")

AsyncReturning = Callable[..., Awaitable[T]]
"""A function the async colour awaits for its result (a coroutine function)."""
Returning = Callable[..., T]
"""Its sync twin: a function called for its result."""

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


# -- one MySQL connection's calls, bounded, and server-side waits (the mysql:// backend) ------


class AsyncMySQLCalls:
    """Open one aiomysql connection and bound each call on it: a late call is cancelled.

    The caller drops a connection whose call failed or was cancelled: its state is unknown.
    """

    async def connect(
        self, connect: Callable[..., Awaitable[T]], options: dict[str, Any], timeout: float
    ) -> T:
        """Return ``connect(**options)``, raising TimeoutError after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            return await connect(**options)

    async def call(self, make: Callable[[], Awaitable[T]], timeout: float) -> T:
        """Return what ``make()`` awaits, raising TimeoutError after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            return await make()

    def close(self, connection: Any) -> None:
        """Close the connection (the server ends its session)."""
        connection.close()


class MySQLCalls:
    """Open one PyMySQL connection over a socket of our own, and bound each call by its timeout.

    PyMySQL takes a connected socket (``defer_connect=True``, then ``connect(sock)``, both
    public), sets the socket's timeout while connecting and, given equal read and write
    timeouts, never again: so the timeout stays ours to raise for a long server-side wait and
    lower after it (tests/test_mysql.py checks both bounds against a real server).
    """

    def __init__(self) -> None:
        self._socket: socket.socket | None = None
        self._timeout: float | None = None

    def connect(self, connect: Callable[..., T], options: dict[str, Any], timeout: float) -> T:
        """Return a connection opened within ``timeout`` seconds (OSError, or the driver's error)."""
        options = dict(options)
        options["database"] = options.pop("db")  # PyMySQL's name for it
        sock = socket.create_connection((options["host"], options["port"]), timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            connection: Any = connect(
                **options, read_timeout=timeout, write_timeout=timeout, defer_connect=True
            )
            connection.connect(sock)
        except BaseException:
            sock.close()
            raise
        self._socket, self._timeout = sock, timeout
        return connection  # type: ignore[no-any-return]

    def call(self, make: Callable[[], T], timeout: float) -> T:
        """Return ``make()``; a read or write on the socket longer than ``timeout`` fails it."""
        if timeout != self._timeout and self._socket is not None:
            self._socket.settimeout(timeout)
            self._timeout = timeout
        return make()

    def close(self, connection: Any) -> None:
        """Close the connection; a thread still reading it wakes with an error."""
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.shutdown(socket.SHUT_RDWR)
        connection.close()


class AsyncPending(Generic[T]):
    """A driver call started now, as a task, whose result is collected later in slices.

    A server-side wait (a queued GET_LOCK) keeps its place in the server's queue across the
    caller's short waits. ``cancel()`` abandons the call (the caller then drops the connection).
    """

    def __init__(self, call: Callable[[], Coroutine[Any, Any, T]]) -> None:
        self._task: asyncio.Task[T] = asyncio.get_running_loop().create_task(call())

    async def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the result; return whether it has come."""
        if not self._task.done() and timeout > 0:
            await asyncio.wait({self._task}, timeout=timeout)
        return self._task.done()

    def done(self) -> bool:
        """Return whether the result has come."""
        return self._task.done()

    def result(self) -> T:
        """Return the result or raise the call's error (only once done)."""
        return self._task.result()

    def cancel(self) -> None:
        """Abandon the call."""
        self._task.cancel()
        self._task.add_done_callback(_consume)


class Pending(Generic[T]):
    """A blocking driver call started now, in a helper thread, whose result is collected later.

    The calling thread waits in slices for the helper to finish. ``cancel()`` does nothing: the
    caller ends the call on the server (or closes its connection), and the helper then returns.
    """

    def __init__(self, call: Callable[[], T]) -> None:
        self._finished = threading.Event()
        self._outcome: tuple[T] | BaseException | None = None
        _HELPERS.run(lambda: self._run(call))

    def _run(self, call: Callable[[], T]) -> None:
        try:
            self._outcome = (call(),)
        except BaseException as exc:  # handed to the thread that collects the result
            self._outcome = exc
        finally:
            self._finished.set()

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the result; return whether it has come."""
        return self._finished.wait(timeout) if timeout > 0 else self._finished.is_set()

    def done(self) -> bool:
        """Return whether the result has come."""
        return self._finished.is_set()

    def result(self) -> T:
        """Return the result or raise the call's error (only once done)."""
        outcome = self._outcome
        if isinstance(outcome, BaseException):
            raise outcome
        assert outcome is not None, "result() before the call finished"
        return outcome[0]

    def cancel(self) -> None:
        """Nothing to stop here: ending the call on the server ends the helper thread."""


class _Helpers:
    """Daemon threads that run ``Pending`` calls; an idle one is reused, so a wait spawns none.

    A thread idle for a minute ends.
    """

    def __init__(self) -> None:
        self._idle: list[queue.SimpleQueue[Callable[[], None]]] = []
        self._guard = threading.Lock()

    def run(self, job: Callable[[], None]) -> None:
        with self._guard:
            inbox = self._idle.pop() if self._idle else None
        if inbox is None:
            inbox = queue.SimpleQueue()
            threading.Thread(target=self._serve, args=(inbox,), name="tenure-pending", daemon=True).start()
        inbox.put(job)

    def _serve(self, inbox: queue.SimpleQueue[Callable[[], None]]) -> None:
        while True:
            try:
                job = inbox.get(timeout=60.0)
            except queue.Empty:
                with self._guard:
                    if inbox in self._idle:
                        self._idle.remove(inbox)
                        return
                continue  # handed a job just now: take it
            job()
            with self._guard:
                self._idle.append(inbox)


_HELPERS = _Helpers()


def _consume(task: asyncio.Future[Any]) -> None:
    """Retrieve an abandoned task's outcome so asyncio does not log it as never retrieved."""
    if not task.cancelled():
        task.exception()


# -- a blocking call left running while its caller waits for it in slices (postgresql://) -----


class AsyncInFlight(Generic[T]):
    """A call started now whose result the caller awaits in slices, without abandoning the call.

    A server-side wait (a queued ``pg_advisory_lock``) keeps its place in the server's queue
    across the caller's short waits. Here the call is a task of the running loop. To end it
    early, the caller closes its connection (which makes the call fail) and ``abandon()``s it.
    """

    def __init__(self, call: Callable[[], Coroutine[Any, Any, T]], *, name: str) -> None:
        self._task: asyncio.Task[T] = asyncio.get_running_loop().create_task(call(), name=name)

    async def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the call to end; return whether it has."""
        if not self._task.done() and timeout > 0:
            await asyncio.wait({self._task}, timeout=timeout)
        return self._task.done()

    def done(self) -> bool:
        """Return whether the call has ended."""
        return self._task.done()

    def result(self) -> T:
        """Return the call's result or raise its error (only once done)."""
        return self._task.result()

    def abandon(self) -> None:
        """Stop caring about the outcome (the caller has ended the call by closing its connection)."""
        self._task.add_done_callback(_consume)


class InFlight(Generic[T]):
    """A blocking call started now in a worker thread; the caller waits for it in slices.

    Workers are daemon threads kept for reuse (starting a thread costs more than a hand-off).
    To end the call early, the caller closes its connection (which makes the call fail) and
    ``abandon()``s it.
    """

    def __init__(self, call: Callable[[], T], *, name: str) -> None:
        self._call = call
        self._ended = threading.Event()
        self._value: T | None = None
        self._error: BaseException | None = None
        _WORKERS.run(self._run, name)

    def _run(self) -> None:
        try:
            self._value = self._call()
        except BaseException as exc:
            self._error = exc
        finally:
            self._ended.set()

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the call to end; return whether it has."""
        if timeout <= 0:
            return self._ended.is_set()
        return self._ended.wait(timeout)

    def done(self) -> bool:
        """Return whether the call has ended."""
        return self._ended.is_set()

    def result(self) -> T:
        """Return the call's result or raise its error (only once done)."""
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]

    def abandon(self) -> None:
        """Stop caring about the outcome: the worker is free again once the call has failed."""


class _Workers:
    """Daemon threads that run ``InFlight`` calls; an idle one ends after ``linger`` seconds."""

    def __init__(self, linger: float) -> None:
        self._linger = linger
        self._mutex = threading.Lock()
        self._idle: list[queue.SimpleQueue[Callable[[], None]]] = []

    def run(self, job: Callable[[], None], name: str) -> None:
        """Run ``job`` in an idle worker, or in a new one."""
        with self._mutex:
            jobs = self._idle.pop() if self._idle else None
        if jobs is None:
            jobs = queue.SimpleQueue()
            threading.Thread(target=self._work, args=(jobs,), name=name, daemon=True).start()
        jobs.put(job)

    def _work(self, jobs: queue.SimpleQueue[Callable[[], None]]) -> None:
        while True:
            try:
                job = jobs.get(timeout=self._linger)
            except queue.Empty:
                with self._mutex:
                    if jobs in self._idle:  # else it was just handed a job: take it
                        self._idle.remove(jobs)
                        return
                continue
            job()
            with self._mutex:
                self._idle.append(jobs)

    def forget(self) -> None:
        """Drop the idle workers (after a fork: their threads exist only in the parent)."""
        self._mutex = threading.Lock()
        self._idle = []


_WORKERS = _Workers(linger=30.0)
os.register_at_fork(after_in_child=_WORKERS.forget)
