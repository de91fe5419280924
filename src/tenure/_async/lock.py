"""Lock: a reusable handle on one name; each acquisition yields a Lease."""

from __future__ import annotations

import logging
import time
from types import TracebackType
from typing import TYPE_CHECKING

from tenure._async.lease import AsyncLease, grant
from tenure._concurrency import AsyncEntering, async_current_actor, async_entering, async_shielded
from tenure._core.backoff import Backoff
from tenure._core.deadline import Deadline
from tenure._core.durations import check_timeout
from tenure._core.keys import key_kind
from tenure._core.tokens import Owner
from tenure._exceptions import AcquireTimeout, AlreadyHeld, NotOwner
from tenure.observability._instruments import Waiting

if TYPE_CHECKING:
    from tenure._async.backends.base import AsyncQueueing
    from tenure._async.context import AsyncContext
    from tenure.observability._instruments import Instruments, Key

log = logging.getLogger("tenure")


class _Unset:
    """The marker for "use the primitive's default timeout" (None already means "wait without end")."""

    def __repr__(self) -> str:
        return "<default timeout>"


_UNSET = _Unset()


class AsyncLock:
    """A distributed lock on one name, reusable for many acquisitions.

    ``acquire(timeout=)`` waits up to ``timeout`` seconds and returns a ``Lease`` or raises
    ``AcquireTimeout``; ``try_acquire()`` makes one attempt and returns a ``Lease`` or None.
    ``async with lock.acquire(timeout=5) as lease`` acquires and releases around a block, and
    so does the lock itself (``async with lock as lease``), with its default timeout.

    **Guarantees.** At most one valid lease per name at a time, on every backend, as long as
    the holder's clock does not run more than the drift margin (1% + 2 ms) slower than the
    backend's; a holder paused or partitioned past its TTL loses the lease, learns it at its next
    ``check()`` or when it leaves the block, and its ``fence`` is smaller than the next holder's,
    so a fenced resource rejects its late writes. With ``reentrant=True`` the same task (or
    thread, in sync code) may acquire again and must release as many times; without it, asking
    again for a lock one holds raises ``AlreadyHeld`` at once instead of waiting for oneself.
    """

    def __init__(
        self,
        context: AsyncContext,
        name: str,
        key: str,
        *,
        ttl: float,
        timeout: float | None,
        reentrant: bool,
        fair: bool = False,
        label: str | None = None,
        lease_type: type[AsyncLease] = AsyncLease,
    ) -> None:
        self.name = name
        self.key = key
        self.ttl = ttl
        self.timeout = timeout
        self.reentrant = reentrant
        self.fair = fair
        self._label = label  # what holder() shows: an election's value, else host/pid/thread
        self._lease_type = lease_type  # what a read-write lock's writer gets: a lease that downgrades
        self._context = context
        self._store = context.store
        # The Queueing steps, if the backend has them (the coordinator refused fair=True otherwise).
        self._queue: AsyncQueueing | None = context.queueing
        self._entered: dict[object, list[AsyncLease]] = {}  # actor -> leases of ``async with``
        self._observed_key: Key | None = None  # its metrics' attributes, once observed

    def __repr__(self) -> str:
        return f"<AsyncLock {self.name!r} ttl={self.ttl} on {self._store.url}>"

    def acquire(self, *, timeout: float | _Unset | None = _UNSET) -> AsyncEntering[AsyncLease]:
        """Wait up to ``timeout`` seconds (default: the lock's) for the lock; return the lease.

        Use it as ``async with lock.acquire(timeout=5) as lease:`` (released when the block
        ends) or as ``lease = await lock.acquire()``. ``timeout=0`` makes a single attempt;
        ``timeout=None`` waits without end. Raises ``AcquireTimeout`` when the time runs out,
        ``AlreadyHeld`` if this task or thread holds the lock already (not reentrant),
        ``BackendUnavailable`` when the backend cannot be reached.
        """
        return async_entering(self._acquire(timeout))

    async def _acquire(self, timeout: float | _Unset | None) -> AsyncLease:
        timeout = self.timeout if isinstance(timeout, _Unset) else check_timeout(timeout)
        reentered = self._reenter()
        if reentered is not None:
            return reentered
        await self._context.ensure_connected()
        started = time.monotonic()
        observer = self._context.observer
        waiting = None
        if observer is not None:
            waiting = Waiting(observer, self._observed(observer), "tenure.lock.acquire", started)
        owner = Owner(label=self._label)  # one identity for every attempt of this wait
        floor = self._context.fences.highest(self.key)  # a grant's fence must be above it
        try:
            if self._queue is not None and (self.fair or (self._store.plain_waiters_queue and timeout != 0)):
                in_turn = Deadline(timeout, start=started)
                lease = await self._acquire_in_turn(self._queue, owner, in_turn, floor, waiting)
            else:
                # Acquiring is a hot path: the wait is a call of its own, made only when contended.
                lease = await self._attempt(owner, floor) or await self._wait(
                    owner, floor, timeout, started, waiting
                )
        except BaseException as exc:
            if waiting is not None:
                waiting.ended(None, exc)
            raise
        if waiting is not None:
            waiting.ended(lease.fence)
            lease._traced = waiting.span is not None  # its release is traced too
        return lease

    async def _wait(
        self, owner: Owner, floor: int | None, timeout: float | None, started: float, waiting: Waiting | None
    ) -> AsyncLease:
        """Wait for the holder to let go, and try again, until the deadline."""
        deadline = Deadline(timeout, start=started)
        backoff = Backoff(initial=self._store.poll_interval[0], maximum=self._store.poll_interval[1])
        while True:
            remaining = deadline.remaining()
            if remaining <= 0:
                raise self._timeout_error(timeout)
            if waiting is not None:
                waiting.waits()  # counted once, when it really waits (not for timeout=0)
            await self._store.wait_released(self.key, min(remaining, backoff.next_delay()))
            lease = await self._attempt(owner, floor)
            if lease is not None:
                return lease

    def _observed(self, observer: Instruments) -> Key:
        """Return this lock's metric attributes, made at its first observed acquisition."""
        if self._observed_key is None:
            self._observed_key = observer.key(self._store.scheme, key_kind(self.key), self.name)
        return self._observed_key

    async def try_acquire(self) -> AsyncLease | None:
        """Make one attempt; return the lease, or None if someone else holds the lock.

        A fair lock's single attempt also respects the queue: it fails while others wait.
        Raises ``AlreadyHeld`` if this task or thread holds the lock already (not reentrant).
        """
        reentered = self._reenter()
        if reentered is not None:
            return reentered
        await self._context.ensure_connected()
        if self.fair and self._queue is not None:
            try:
                owner, floor = Owner(label=self._label), self._context.fences.highest(self.key)
                return await self._acquire_in_turn(self._queue, owner, Deadline(0), floor, None)
            except AcquireTimeout:
                return None
        observer = self._context.observer
        if observer is None:
            return await self._attempt(Owner(label=self._label), self._context.fences.highest(self.key))
        waiting = Waiting(observer, self._observed(observer), "tenure.lock.acquire", time.monotonic())
        try:
            lease = await self._attempt(Owner(label=self._label), self._context.fences.highest(self.key))
        except BaseException as exc:
            waiting.ended(None, exc)
            raise
        waiting.ended(None if lease is None else lease.fence)
        if lease is not None:
            lease._traced = waiting.span is not None  # its release is traced too
        return lease

    async def holder(self) -> str | None:
        """Return the label of the current holder, or None if the lock is free."""
        await self._context.ensure_connected()
        info = await self._store.holder(self.key)
        return None if info is None else info.label

    async def __aenter__(self) -> AsyncLease:
        lease = await self._acquire(_UNSET)
        self._entered.setdefault(async_current_actor(), []).append(lease)
        return await lease.__aenter__()

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
                f"lock {self.name!r}: leaving a block this task or thread did not enter "
                "(__exit__ without __enter__); nothing was released"
            )
        lease = stack.pop()
        if not stack:
            del self._entered[actor]
        await lease.__aexit__(exc_type, exc, tb)

    # -- internals -------------------------------------------------------------------------------

    def _reenter(self) -> AsyncLease | None:
        """Return the lease to enter again, or None to acquire; raise rather than wait for oneself."""
        held = self._context.held_by(self.key, async_current_actor())
        if held is None:
            return None
        holding, lease = held
        if holding.released:
            return None
        if self.reentrant and holding.reentrant:
            lease.check()  # re-entering a lost lease must not pretend it is still held
            holding.depth += 1
            return lease
        if holding.lost_reason is not None:
            return None
        raise AlreadyHeld(
            f"lock {self.name!r} on {self._store.url} is already held by this task or thread "
            f"(fence {holding.fence}), and waiting for it would wait for itself: release it first, "
            "or make its locks with reentrant=True to acquire it again"
        )

    async def _acquire_in_turn(
        self,
        queue: AsyncQueueing,
        owner: Owner,
        deadline: Deadline,
        floor: int | None,
        waiting: Waiting | None,
    ) -> AsyncLease:
        """Wait in the backend's FIFO queue; the lock is handed over when our turn comes."""
        slowest = self._store.poll_interval[1]
        # Waits are short enough to refresh the queue entry well within its patience, and to
        # count a hand-over's validity from no more than a third of the TTL before it happened.
        patience = 3 * slowest + 1.0
        longest_wait = min(slowest, self.ttl / 3)
        backoff = Backoff(initial=self._store.poll_interval[0], maximum=longest_wait)
        acquired = False
        will_wait = deadline.remaining() > 0
        try:
            while True:
                started = time.monotonic()
                fence = await queue.try_acquire_queued(
                    self.key, owner, self.ttl, patience=patience, will_wait=will_wait
                )
                if fence is None:
                    remaining = deadline.remaining()
                    if remaining <= 0:
                        raise self._timeout_error(deadline.timeout)
                    if waiting is not None:
                        waiting.waits()
                    started = time.monotonic()
                    fence = await queue.wait_turn(self.key, owner, min(remaining, backoff.next_delay()))
                if fence is not None:
                    lease = self._held(owner, fence, started, floor)
                    acquired = True
                    return lease
        finally:
            if not acquired:
                await self._leave_queue(queue, owner)

    async def _attempt(self, owner: Owner, floor: int | None) -> AsyncLease | None:
        started = time.monotonic()
        try:
            fence = await self._store.try_acquire(self.key, owner, self.ttl)
            return None if fence is None else self._held(owner, fence, started, floor)
        except BaseException:
            # Cancelled or failed mid-flight: the attempt may still have taken the lock.
            await self._abandon(owner)
            raise

    def _held(self, owner: Owner, fence: int, started: float, floor: int | None) -> AsyncLease:
        """Return the lease for a granted acquisition, counted from when its request was sent.

        Its fence must be above ``floor``, the highest this coordinator had seen for the name
        when the acquisition began (not when it was granted: a fair waiter's fence is fixed
        when it joins the line, and a sibling's grant of the name's counter may come between).
        """
        return grant(
            self._context,
            self.name,
            self.key,
            owner,
            fence,
            started,
            self.ttl,
            reentrant=self.reentrant,
            floor=floor,
            lease_type=self._lease_type,
        )

    async def _leave_queue(self, queue: AsyncQueueing, owner: Owner) -> None:
        """Leave the queue after a timeout, an error or a cancellation, keeping the first error."""
        try:
            await async_shielded(lambda: queue.leave_queue(self.key, owner))
        except Exception as exc:
            log.warning(
                "tenure: leaving the queue of %r failed (%s); its entry expires by itself", self.name, exc
            )

    def _timeout_error(self, timeout: float | None) -> AcquireTimeout:
        waited = "one attempt" if timeout == 0 else f"{timeout:g} s"
        return AcquireTimeout(
            f"lock {self.name!r} on {self._store.url} is held by someone else "
            f"(gave up after {waited}); retry later or raise the timeout"
        )

    async def _abandon(self, owner: Owner) -> None:
        """Release whatever an interrupted attempt may have taken, keeping the first error."""
        try:
            await async_shielded(lambda: self._store.release(self.key, owner))
        except Exception as exc:
            log.warning(
                "tenure: cleanup after a failed attempt on %r failed (%s); its TTL will free it",
                self.name,
                exc,
            )
