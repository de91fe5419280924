"""The only code that differs between the asyncio and the threaded colour, written by hand.

The async source in ``_async/`` uses the ``Async*`` and ``async_*`` names below; the generator
(``scripts/unasync.py``) rewrites them to the plain names, which are their threaded twins.
Everything else is generated, so the two colours cannot drift apart.

- ``calls``: sleeping, blocking driver calls, replies, cleanups, detached attempts, who is acting,
  stoppable calls;
- ``primitives``: what ``acquire()`` returns, mutex, gate, signal, background job, body guard;
- ``inflight``: a server-side wait left running while its caller waits for it in slices;
- ``mysql``: one MySQL connection's calls, bounded by a timeout.
"""

from tenure._concurrency.calls import (
    AsyncReturning,
    Attempt,
    Returning,
    ThreadStopped,
    async_await_result,
    async_call_stoppably,
    async_current_actor,
    async_detached,
    async_read_reply,
    async_resolve,
    async_run_blocking,
    async_running_loop,
    async_shielded,
    async_sleep,
    async_within,
    await_result,
    call_stoppably,
    current_actor,
    detached,
    read_reply,
    resolve,
    run_blocking,
    running_loop,
    shielded,
    sleep,
    within,
)
from tenure._concurrency.inflight import AsyncInFlight, InFlight
from tenure._concurrency.mysql import AsyncMySQLCalls, MySQLCalls
from tenure._concurrency.primitives import (
    AsyncBackground,
    AsyncBodyGuard,
    AsyncEntering,
    AsyncGate,
    AsyncMutex,
    AsyncSignal,
    Background,
    BodyGuard,
    Gate,
    Mutex,
    Signal,
    async_entering,
)

__all__ = [
    "AsyncBackground",
    "AsyncBodyGuard",
    "AsyncEntering",
    "AsyncGate",
    "AsyncInFlight",
    "AsyncMutex",
    "AsyncMySQLCalls",
    "AsyncReturning",
    "AsyncSignal",
    "Attempt",
    "Background",
    "BodyGuard",
    "Gate",
    "InFlight",
    "Mutex",
    "MySQLCalls",
    "Returning",
    "Signal",
    "ThreadStopped",
    "async_await_result",
    "async_call_stoppably",
    "async_current_actor",
    "async_detached",
    "async_entering",
    "async_read_reply",
    "async_resolve",
    "async_run_blocking",
    "async_running_loop",
    "async_shielded",
    "async_sleep",
    "async_within",
    "await_result",
    "call_stoppably",
    "current_actor",
    "detached",
    "read_reply",
    "resolve",
    "run_blocking",
    "running_loop",
    "shielded",
    "sleep",
    "within",
]
