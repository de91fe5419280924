"""Sequence: calls for one name take turns in the order they took their tickets.

Built on the Counting capability, like the read-write lock: a ticket is a permit of one of
``TICKETS`` slots counted under the sequence's key, and its number is the permit's fence, which
grows per name with every ticket taken. So a ticket is a lease from the moment it is taken:
renewed while its holder waits, lost (and skipped by the others) when its holder dies or is cut
off past its ttl. ``turn(ticket)`` waits until no live ticket of the name is lower; the turn is
then the ticket's own lease, and releasing it lets the next ticket go.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from tenure._async.lease import AsyncLease
from tenure._async.lock import _UNSET, _Unset
from tenure._async.semaphore import take_permit
from tenure._concurrency import AsyncEntering, async_entering, async_shielded
from tenure._core.backoff import Backoff
from tenure._core.deadline import Deadline
from tenure._core.durations import check_timeout
from tenure._core.tokens import Owner
from tenure._exceptions import AcquireTimeout, NotOwner, TenureError

if TYPE_CHECKING:
    from tenure._async.backends.base import AsyncCounting
    from tenure._async.context import AsyncContext

log = logging.getLogger("tenure")

TICKETS = 256
"""The most tickets of one name outstanding at once (taken, not yet done): its slots."""


class AsyncSequence:
    """Ordered turns on one name: ``ticket()`` takes a number, ``turn(ticket)`` waits for it.

    Tickets are ints that grow per name. A turn comes once every lower ticket has had its turn,
    been cancelled, or expired (its holder died or was cut off for longer than ``ttl``); a
    ticket's holder that comes back after its ticket expired is told: ``turn()`` raises
    ``LockLost``. A turn that times out gives its ticket up, so one impatient caller never
    blocks the line behind it. The turn is a ``Lease`` whose fence is the ticket.
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
        self._tickets: dict[int, AsyncLease] = {}  # ticket -> its lease, until its turn ends

    def __repr__(self) -> str:
        return f"<AsyncSequence {self.name!r} ttl={self.ttl} on {self._store.url}>"

    async def ticket(self) -> int:
        """Take the next ticket of the name (one round trip when fewer than ``TICKETS`` wait).

        Raises ``AcquireTimeout`` if ``TICKETS`` tickets stay outstanding for the sequence's
        timeout, ``BackendUnavailable`` when the backend cannot be reached.
        """
        await self._context.ensure_connected()
        deadline = Deadline(self.timeout)
        owner = Owner()
        backoff: Backoff | None = None
        while True:
            lease = await take_permit(
                self._context, self._counting, self.name, self.key, TICKETS, owner, self.ttl
            )
            if lease is not None:
                self._tickets[lease.fence] = lease
                return lease.fence
            remaining = deadline.remaining()
            if remaining <= 0:
                raise AcquireTimeout(
                    f"sequence {self.name!r} on {self._store.url} has {TICKETS} tickets outstanding; "
                    "no ticket was taken"
                )
            if backoff is None:
                backoff = Backoff(initial=self._store.poll_interval[0], maximum=self._store.poll_interval[1])
            await self._counting.wait_permit_released(self.key, TICKETS, min(remaining, backoff.next_delay()))

    def turn(self, ticket: int, *, timeout: float | _Unset | None = _UNSET) -> AsyncEntering[AsyncLease]:
        """Wait up to ``timeout`` seconds for ``ticket``'s turn; return it as a Lease.

        ``async with turns.turn(ticket, timeout=5) as lease:`` ends the turn when the block
        ends. Raises ``AcquireTimeout`` (and gives the ticket up) when the time runs out,
        ``LockLost`` if the ticket expired before its turn, ``NotOwner`` for a ticket this
        sequence object did not hand out or whose turn is over.
        """
        return async_entering(self._turn(ticket, timeout))

    async def cancel(self, ticket: int) -> None:
        """Give ``ticket`` up without taking its turn; idempotent."""
        lease = self._tickets.pop(ticket, None)
        if lease is not None:
            await lease.release()

    async def _turn(self, ticket: int, timeout: float | _Unset | None) -> AsyncLease:
        timeout = self.timeout if isinstance(timeout, _Unset) else check_timeout(timeout)
        lease = self._tickets.get(ticket)
        if lease is None:
            raise NotOwner(
                f"sequence {self.name!r}: ticket {ticket} was not taken through this object, "
                "or its turn is over"
            )
        deadline = Deadline(timeout)
        backoff: Backoff | None = None
        try:
            while True:
                lease.check()  # an expired ticket was skipped: its holder must know
                live = await self._counting.permit_holders(self.key, TICKETS)
                if min((info.fence for info in live), default=ticket) >= ticket:
                    lease.check()
                    del self._tickets[ticket]
                    return lease
                remaining = deadline.remaining()
                if remaining <= 0:
                    raise AcquireTimeout(
                        f"sequence {self.name!r} on {self._store.url}: ticket {ticket} waited "
                        f"{timeout:g} s behind {sum(info.fence < ticket for info in live)} lower tickets "
                        "and was given up"
                    )
                if backoff is None:
                    backoff = Backoff(
                        initial=self._store.poll_interval[0], maximum=self._store.poll_interval[1]
                    )
                pause = min(remaining, backoff.next_delay())
                await self._counting.wait_permit_released(self.key, TICKETS, pause)
        except BaseException:
            self._tickets.pop(ticket, None)
            await async_shielded(lambda: self._give_up(lease))
            raise

    async def _give_up(self, lease: AsyncLease) -> None:
        try:
            await lease.release()
        except TenureError as exc:  # lost already, or unreachable: its ttl frees the slot
            log.debug("tenure: giving up a ticket of %r: %s", self.name, exc)
