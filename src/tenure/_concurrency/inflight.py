"""A driver call left running while its caller waits for it in slices, in each colour.

A server-side wait (a queued ``pg_advisory_lock`` or ``GET_LOCK``) keeps its place in the
server's queue across the caller's short waits, so the caller can renew, check a deadline or
give up between them. In the async colour the call is a task of the running loop; in the
threaded colour it runs in a worker thread kept for reuse (starting a thread costs more than a
hand-off).
"""

from __future__ import annotations

import asyncio
import os
import queue
import threading
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class AsyncInFlight(Generic[T]):
    """A call started now, as a task, whose result the caller awaits in slices."""

    def __init__(self, call: Callable[[], Coroutine[Any, Any, T]], *, name: str = "tenure-call") -> None:
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
        """Stop caring about the outcome (the caller ends the call by closing its connection)."""
        self._task.add_done_callback(_consume)

    def cancel(self) -> None:
        """Abandon the call and stop it (the caller then drops the connection)."""
        self._task.cancel()
        self.abandon()


class InFlight(Generic[T]):
    """A blocking call started now in a worker thread; the caller waits for it in slices."""

    def __init__(self, call: Callable[[], T], *, name: str = "tenure-call") -> None:
        self._call = call
        self._ended = threading.Event()
        self._value: T | None = None
        self._error: BaseException | None = None
        _WORKERS.run(self._run, name)

    def _run(self) -> None:
        try:
            self._value = self._call()
        except BaseException as exc:  # handed to the thread that collects the result
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

    def cancel(self) -> None:
        """Nothing to stop here: the caller ends the call on the server or closes its connection.

        A thread cannot be stopped from outside; the worker returns once the call has failed.
        """


def _consume(task: asyncio.Future[Any]) -> None:
    """Retrieve an abandoned task's outcome so asyncio does not log it as never retrieved."""
    if not task.cancelled():
        task.exception()


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
