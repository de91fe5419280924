"""Semaphore: at most ``limit`` holders of one name at a time; each permit is a Lease."""

from __future__ import annotations

import functools
import logging
import time
from types import TracebackType
from typing import TYPE_CHECKING

from tenure._async.lease import AsyncLease, grant
from tenure._async.lock import _UNSET, AsyncLock, _Unset
from tenure._concurrency import AsyncEntering, async_current_actor, async_entering, async_shielded
from tenure._core.backoff import Backoff
from tenure._core.deadline import Deadline
from tenure._core.durations import check_timeout
from tenure._core.holder import HolderInfo
from tenure._core.semaphore import permit_keys
from tenure._core.tokens import Owner
from tenure._exceptions import AcquireTimeout, ConfigurationError, LockLost, NotOwner, TenureError

if TYPE_CHECKING:
    from tenure._async.backends.base import AsyncCounting, AsyncLeaseStore
    from tenure._async.context import AsyncContext

log = logging.getLogger("tenure")


class AsyncSemaphore:
    """A distributed semaphore: at most ``limit`` valid permits of one name at any time.

    ``acquire(timeout=)`` waits for a permit and returns it as a ``Lease`` (with its own ttl,
    renewal, loss signals and a fence that grows per name across all permits) or raises
    ``AcquireTimeout``; ``try_acquire()`` makes one attempt and returns a ``Lease`` or None.
    ``async with sem.acquire(timeout=5) as permit`` releases the permit when the block ends.

    **Guarantees.** Never more than ``limit`` valid permits, as locks guarantee one: a permit
    is a lease on one of ``limit`` slots, so a holder that crashed frees its slot within ttl and
    an attempt cut off midway leaves at most a slot that its ttl frees. Every holder of a name
    must use the same ``limit``: asking another one while permits are held raises
    ``ConfigurationError``. With ``fair=True`` waiters are served in arrival order (they queue
    for the name as a fair lock's waiters do, and the first in line takes the next free permit).
    """

    def __init__(
        self,
        context: AsyncContext,
        counting: AsyncCounting,
        name: str,
        key: str,
        *,
        limit: int,
        ttl: float,
        timeout: float | None,
        fair: bool = False,
    ) -> None:
        self.name = name
        self.key = key
        self.limit = limit
        self.ttl = ttl
        self.timeout = timeout
        self.fair = fair
        self._context = context
        self._store = context.store
        self._counting = counting
        self._entered: dict[object, list[AsyncLease]] = {}  # actor -> permits of ``async with``

    def __repr__(self) -> str:
        return f"<AsyncSemaphore {self.name!r} limit={self.limit} ttl={self.ttl} on {self._store.url}>"

    def acquire(self, *, timeout: float | _Unset | None = _UNSET) -> AsyncEntering[AsyncLease]:
        """Wait up to ``timeout`` seconds (default: the semaphore's) for a permit; return it.

        Use it as ``async with sem.acquire(timeout=5) as permit:`` (released when the block
        ends) or as ``permit = await sem.acquire()``. ``timeout=0`` makes a single attempt;
        ``timeout=None`` waits without end. Raises ``AcquireTimeout`` when the time runs out,
        ``ConfigurationError`` if the name is in use with another limit, ``BackendUnavailable``
        when the backend cannot be reached.
        """
        return async_entering(self._acquire(timeout))

    async def try_acquire(self) -> AsyncLease | None:
        """Make one attempt; return a permit, or None if all ``limit`` are held.

        A fair semaphore's single attempt also respects the line: it fails while others wait.
        """
        try:
            return await self._acquire(0)
        except AcquireTimeout:
            return None

    async def holders(self) -> list[HolderInfo]:
        """Return the live permits: each one's label, fence and seconds left."""
        await self._context.ensure_connected()
        return await self._counting.permit_holders(self.key, self.limit)

    async def __aenter__(self) -> AsyncLease:
        permit = await self._acquire(_UNSET)
        self._entered.setdefault(async_current_actor(), []).append(permit)
        return await permit.__aenter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        actor = async_current_actor()
        stack = self._entered.get(actor)
        if not stack:
            raise NotOwner(
                f"semaphore {self.name!r}: leaving a block this task or thread did not enter "
                "(__exit__ without __enter__); nothing was released"
            )
        permit = stack.pop()
        if not stack:
            del self._entered[actor]
        await permit.__aexit__(exc_type, exc, tb)

    # -- internals -------------------------------------------------------------------------------

    async def _acquire(self, timeout: float | _Unset | None) -> AsyncLease:
        timeout = self.timeout if isinstance(timeout, _Unset) else check_timeout(timeout)
        await self._context.ensure_connected()
        deadline = Deadline(timeout)
        owner = Owner()  # one identity for every attempt of this wait
        if not self.fair:
            return await self._wait_for_permit(owner, deadline)
        # The first in the name's fair line takes the next free permit; the others wait behind.
        gate = AsyncLock(
            self._context, self.name, self.key, ttl=self.ttl, timeout=timeout, reentrant=False, fair=True
        )
        try:
            turn = await gate.acquire(timeout=deadline.remaining() if timeout is not None else None)
        except AcquireTimeout:
            raise self._timeout_error(timeout) from None
        try:
            return await self._wait_for_permit(owner, deadline)
        finally:
            await self._leave_line(turn)

    async def _wait_for_permit(self, owner: Owner, deadline: Deadline) -> AsyncLease:
        permit = await self._attempt(owner)
        backoff: Backoff | None = None  # built only when contended: acquiring is a hot path
        while permit is None:
            remaining = deadline.remaining()
            if remaining <= 0:
                raise self._timeout_error(deadline.timeout)
            if backoff is None:
                backoff = Backoff(initial=self._store.poll_interval[0], maximum=self._store.poll_interval[1])
            pause = min(remaining, backoff.next_delay())
            await self._counting.wait_permit_released(self.key, self.limit, pause)
            permit = await self._attempt(owner)
        return permit

    async def _attempt(self, owner: Owner) -> AsyncLease | None:
        return await take_permit(
            self._context, self._counting, self.name, self.key, self.limit, owner, self.ttl
        )

    async def _leave_line(self, turn: AsyncLease) -> None:
        """Pass the name's line on; a turn lost meanwhile only let the next waiter go first."""
        try:
            await turn.release()
        except LockLost:
            log.debug("tenure: the turn in semaphore %r's line ran out before it was passed on", self.name)
        except TenureError as exc:
            log.warning(
                "tenure: passing on semaphore %r's line failed (%s); its ttl frees it", self.name, exc
            )

    def _timeout_error(self, timeout: float | None) -> AcquireTimeout:
        waited = "one attempt" if timeout == 0 else f"{timeout:g} s"
        return AcquireTimeout(
            f"semaphore {self.name!r} on {self._store.url} has all {self.limit} permits held "
            f"(gave up after {waited}); retry later or raise the timeout"
        )


async def take_permit(
    context: AsyncContext, counting: AsyncCounting, name: str, key: str, limit: int, owner: Owner, ttl: float
) -> AsyncLease | None:
    """Make one attempt at a slot of ``key``; return its lease, or None if all ``limit`` are held.

    The lease's fence is checked against the name's (``key``'s) highest seen. An attempt that
    fails or is cancelled midway may still have taken a slot on the server: it is freed before
    the error goes on (or by its ttl, if the server cannot be reached).
    """
    started = time.monotonic()
    floor = context.fences.highest(key)  # permits taken meanwhile may be answered before or after
    try:
        permit = await counting.try_acquire_permit(key, limit, owner, ttl)
        if permit is None:
            return None
        return grant(context, name, permit.key, owner, permit.fence, started, ttl, fence_key=key, floor=floor)
    except ConfigurationError:
        raise  # the limit was refused before any slot was taken
    except BaseException:
        await free_slot(context.store, name, key, limit, owner)
        raise


async def free_slot(store: AsyncLeaseStore, name: str, key: str, limit: int, owner: Owner) -> None:
    """Free the slot of ``key`` that ``owner`` may hold, keeping the caller's error."""
    try:
        for slot_key in permit_keys(key, limit):
            if await async_shielded(functools.partial(store.release, slot_key, owner)):
                return
    except Exception as exc:
        log.warning("tenure: cleanup after a failed attempt on %r failed (%s); its ttl frees it", name, exc)
