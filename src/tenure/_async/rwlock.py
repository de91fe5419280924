"""Read-write lock: many readers together, or one writer alone; writers are not starved.

Built on two things every backend with the Counting capability has: readers hold permits of
``READERS`` slots counted under the lock's key, and the writer holds the lock on that key. The
two orders of steps exclude each other on any store whose operations take effect in one order
(a single server, or a consensus log):

- a reader takes a permit, *then* looks at the writer's key: if it is held, it gives the
  permit back and waits;
- a writer takes the writer's key, *then* waits until no permit is held.

Whichever took its key first is seen by the other's look. A writer that waits for readers to
drain already holds the writer's key, so new readers stay out: writers are not starved. The
permits and the writer's lease come from one fence counter per name (the key's), so a fenced
store can reject a write fenced before a newer writer.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from tenure._async.lease import AsyncLease
from tenure._async.lock import _UNSET, AsyncLock, _Unset
from tenure._async.semaphore import take_permit
from tenure._concurrency import AsyncEntering, async_current_actor, async_entering, async_shielded
from tenure._core.backoff import Backoff
from tenure._core.deadline import Deadline
from tenure._core.durations import check_timeout
from tenure._core.holder import HolderInfo
from tenure._core.semaphore import permit_keys
from tenure._core.tokens import Owner
from tenure._exceptions import AcquireTimeout, AlreadyHeld

if TYPE_CHECKING:
    from tenure._async.backends.base import AsyncCounting
    from tenure._async.context import AsyncContext

log = logging.getLogger("tenure")

READERS = 128
"""The most readers one read-write lock admits at once: its reader slots (a permit step looks
at each, so this bounds its work on the server)."""


class AsyncWriteLease(AsyncLease):
    """The lease of a read-write lock's writer: a Lease that can become a reader's without a gap."""

    _rwlock: AsyncRWLock

    async def downgrade(self) -> AsyncLease:
        """Take a read lease, then release this write lease; return the read lease.

        No writer can come between (the write lease is held until the read lease is). Raises
        ``LockLost`` if the write lease was lost (then no read lease is taken), ``NotOwner`` if
        it was released.
        """
        return await self._rwlock._downgrade(self)


class AsyncRWLock:
    """A distributed read-write lock on one name: ``read()`` shares it, ``write()`` excludes all.

    Each acquisition returns a ``Lease`` (ttl, renewal, loss signals, fence). At most one valid
    write lease, and never a valid read lease beside it; up to ``READERS`` read leases together.
    A waiting writer stops new readers. A writer may ``downgrade()`` to a reader without a gap;
    asking for the write lease while holding a read lease raises ``AlreadyHeld`` (an upgrade
    would wait for itself, and two upgrading readers for each other).
    """

    def __init__(
        self,
        context: AsyncContext,
        counting: AsyncCounting,
        name: str,
        key: str,
        *,
        ttl: float,
        timeout: float | None,
    ) -> None:
        self.name = name
        self.key = key
        self.ttl = ttl
        self.timeout = timeout
        self._context = context
        self._store = context.store
        self._counting = counting
        self._readers = permit_keys(key, READERS)
        self._writer = AsyncLock(
            context, name, key, ttl=ttl, timeout=timeout, reentrant=False, lease_type=AsyncWriteLease
        )

    def __repr__(self) -> str:
        return f"<AsyncRWLock {self.name!r} ttl={self.ttl} on {self._store.url}>"

    def read(self, *, timeout: float | _Unset | None = _UNSET) -> AsyncEntering[AsyncLease]:
        """Wait up to ``timeout`` seconds (default: the lock's) for a read lease; return it.

        ``async with rw.read(timeout=5) as lease:`` releases it when the block ends.
        ``timeout=0`` makes one attempt. Raises ``AcquireTimeout`` when a writer holds or
        waits for the lock until the time runs out.
        """
        return async_entering(self._read(self._timeout(timeout)))

    def write(self, *, timeout: float | _Unset | None = _UNSET) -> AsyncEntering[AsyncWriteLease]:
        """Wait up to ``timeout`` seconds (default: the lock's) for the write lease; return it.

        From the moment this writer waits, no new reader is admitted; it gets the lease once
        the readers before it are gone. Raises ``AcquireTimeout`` when the time runs out and
        ``AlreadyHeld`` if this task or thread holds a read or write lease of this lock.
        """
        return async_entering(self._write(self._timeout(timeout)))

    async def try_read(self) -> AsyncLease | None:
        """Make one attempt at a read lease; return it, or None if a writer holds or waits."""
        try:
            return await self._read(0)
        except AcquireTimeout:
            return None

    async def try_write(self) -> AsyncWriteLease | None:
        """Make one attempt at the write lease; return it, or None if anyone holds the lock."""
        try:
            return await self._write(0)
        except AcquireTimeout:
            return None

    async def readers(self) -> list[HolderInfo]:
        """Return the live read leases: each one's label, fence and seconds left."""
        await self._context.ensure_connected()
        return await self._counting.permit_holders(self.key, READERS)

    async def writer(self) -> HolderInfo | None:
        """Return the writer that holds (or waits to hold) the lock, or None."""
        await self._context.ensure_connected()
        return await self._store.holder(self.key)

    # -- internals -------------------------------------------------------------------------------

    def _timeout(self, timeout: float | _Unset | None) -> float | None:
        return self.timeout if isinstance(timeout, _Unset) else check_timeout(timeout)

    async def _read(self, timeout: float | None) -> AsyncLease:
        await self._context.ensure_connected()
        deadline = Deadline(timeout)
        owner = Owner()
        backoff: Backoff | None = None
        while True:
            # Look first: while a writer holds or waits, taking a permit only to give it back
            # would cost two steps and wake the writer for nothing.
            writer = await self._store.holder(self.key) is not None
            if not writer:
                lease = await self._take_permit(owner)
                if lease is not None:
                    if await self._store.holder(self.key) is None:
                        return lease  # no writer took the key before our permit: we are in
                    await self._give_back(lease)
                    writer = True
            remaining = deadline.remaining()
            if remaining <= 0:
                raise self._timeout_error("read", timeout)
            if backoff is None:
                backoff = Backoff(initial=self._store.poll_interval[0], maximum=self._store.poll_interval[1])
            pause = min(remaining, backoff.next_delay())
            if writer:
                await self._store.wait_released(self.key, pause)
            else:  # every reader slot is taken
                await self._counting.wait_permit_released(self.key, READERS, pause)

    async def _write(self, timeout: float | None) -> AsyncWriteLease:
        await self._context.ensure_connected()
        self._refuse_upgrade()
        deadline = Deadline(timeout)
        try:
            lease = await self._writer.acquire(timeout=timeout)
        except AcquireTimeout:
            raise self._timeout_error("write", timeout) from None
        except AlreadyHeld:
            raise self._upgrade_error("a write lease") from None
        backoff: Backoff | None = None
        try:
            while await self._counting.permit_holders(self.key, READERS):
                remaining = deadline.remaining()
                if remaining <= 0:
                    raise self._timeout_error("write", timeout)
                if backoff is None:
                    backoff = Backoff(
                        initial=self._store.poll_interval[0], maximum=self._store.poll_interval[1]
                    )
                pause = min(remaining, backoff.next_delay())
                await self._counting.wait_permit_released(self.key, READERS, pause)
                lease.check()  # a writer that lost its key while waiting must not go on
        except BaseException:
            await async_shielded(lease.release)
            raise
        assert isinstance(lease, AsyncWriteLease)
        lease._rwlock = self
        return lease

    async def _downgrade(self, lease: AsyncWriteLease) -> AsyncLease:
        lease.check()
        reader = await self._take_permit(Owner())
        if reader is None:  # READERS readers beside a writer: someone broke the protocol
            raise AcquireTimeout(
                f"read-write lock {self.name!r} on {self._store.url}: no reader slot is free to "
                "downgrade into; the write lease is kept"
            )
        await lease.release()
        return reader

    async def _take_permit(self, owner: Owner) -> AsyncLease | None:
        return await take_permit(self._context, self._counting, self.name, self.key, READERS, owner, self.ttl)

    async def _give_back(self, lease: AsyncLease) -> None:
        try:
            await lease.release()
        except Exception as exc:  # lost or unreachable: its ttl frees the slot
            log.warning("tenure: giving back a read lease of %r failed (%s)", self.name, exc)

    def _refuse_upgrade(self) -> None:
        actor = async_current_actor()
        for slot_key in self._readers:
            held = self._context.held_by(slot_key, actor)
            if held is not None and not held[0].released and held[0].lost_reason is None:
                raise self._upgrade_error("a read lease")

    def _upgrade_error(self, what: str) -> AlreadyHeld:
        return AlreadyHeld(
            f"read-write lock {self.name!r} on {self._store.url}: this task or thread holds {what} "
            "of it already, and waiting for the write lease would wait for itself (upgrades "
            "deadlock): release it first, or take the write lease and downgrade()"
        )

    def _timeout_error(self, what: str, timeout: float | None) -> AcquireTimeout:
        waited = "one attempt" if timeout == 0 else f"{timeout:g} s"
        held_by = "a writer holds or waits for it" if what == "read" else "it is held"
        return AcquireTimeout(
            f"read-write lock {self.name!r} on {self._store.url}: no {what} lease, {held_by} "
            f"(gave up after {waited}); retry later or raise the timeout"
        )
