"""Leader election: one leader at a time per name, with a term that fences its writes.

An election is a lock whose holder proclaims a value. Campaigning waits for the lock (in
arrival order where the backend queues waiters, so candidates succeed each other in turn);
the lease's fence is the leader's *term*; the lease's renewal keeps the leadership, and its loss
is the loss of leadership. Everything the lock guarantees therefore holds for leaders: at most
one valid leadership per name, a deposed leader learns it at its next ``check()``, and a write
fenced with its term is rejected once a newer term exists.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import TYPE_CHECKING, TypeVar

from tenure._async.lease import AsyncLease
from tenure._async.lock import AsyncLock
from tenure._concurrency import (
    AsyncEntering,
    AsyncReturning,
    async_call_stoppably,
    async_entering,
    async_shielded,
)
from tenure._core.durations import check_timeout
from tenure._core.leader import Leader
from tenure._exceptions import (
    AcquireTimeout,
    AlreadyHeld,
    BackendError,
    ElectionError,
    LeadershipLost,
    LockLost,
    NotLeader,
    NotOwner,
)

if TYPE_CHECKING:
    from tenure._async.context import AsyncContext

log = logging.getLogger("tenure")

T = TypeVar("T")

OBSERVE_PAUSE = 5.0
"""Longest pause between two looks of an observer whose backend sends no notification of a change."""
EXPIRY_SLACK = 0.005
"""How long after a holder's lease should end an observer looks again (a dead holder tells nobody)."""


class AsyncLeadership:
    """Being the leader: the ``term`` (a fence) and the signals that say when it ends.

    Use it as ``async with``: leaving the block resigns, and raises ``LeadershipLost`` if the
    leadership was lost meanwhile (the body is cancelled when that happens). ``check()`` raises
    ``LeadershipLost`` once a newer leader may exist; pass ``term`` to the resources the leader
    writes so they can reject a deposed leader's late writes.
    """

    def __init__(self, election: AsyncElection, lease: AsyncLease) -> None:
        self.name = election.name
        self.value = election.value
        self._announce = election.announce
        self._lease = lease
        self._resigned = False

    def __repr__(self) -> str:
        state = "resigned" if self._resigned else "lost" if self.lost else "leading"
        return f"<AsyncLeadership {self.name!r} term={self.term} {state}>"

    @property
    def term(self) -> int:
        """Return this leadership's term: it grows with every new leader of the election."""
        return self._lease.fence

    @property
    def lost(self) -> bool:
        """Return whether the leadership was lost (expired, taken over or its session ended)."""
        return self._lease.lost

    def remaining(self) -> float:
        """Return the seconds this leadership is surely still valid, by the local clock."""
        return self._lease.remaining()

    def check(self) -> None:
        """Raise ``LeadershipLost`` if the leadership was lost, ``NotLeader`` after ``resign()``."""
        try:
            self._lease.check()
        except NotOwner:
            raise NotLeader(f"election {self.name!r}: term {self.term} was resigned") from None
        except LockLost as exc:
            raise self._lost_error(exc) from exc

    def on_lost(self, callback: Callable[[AsyncLeadership], object]) -> None:
        """Call ``callback(leadership)`` once when the leadership is lost (at once if it is)."""
        self._lease.on_lost(lambda _lease: callback(self))

    async def resign(self) -> None:
        """Step down so that the next candidate leads; idempotent.

        Raises ``LeadershipLost`` if the leadership had been lost before: whatever the leader did
        after that was not protected.
        """
        if self._resigned:
            return
        self._resigned = True
        try:
            await self._lease.release()
        except LockLost as exc:
            raise self._lost_error(exc) from exc
        finally:
            await self._announce()

    async def __aenter__(self) -> AsyncLeadership:
        await self._lease.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._resigned = True
        try:
            await self._lease.__aexit__(exc_type, exc, tb)
        except LeadershipLost:
            raise
        except LockLost as lost:
            raise self._lost_error(lost) from lost
        finally:
            await self._announce()

    def _lost_error(self, cause: LockLost) -> LeadershipLost:
        if isinstance(cause, LeadershipLost):
            return cause
        return LeadershipLost(
            f"election {self.name!r}: leadership of term {self.term} was lost; a newer leader may act. "
            f"({cause})"
        )


class AsyncElection:
    """Campaign for leadership of one name; observe who leads.

    ``campaign()`` waits until this candidate leads and returns an ``AsyncLeadership``;
    ``leader()`` reads the current leader; ``observe()`` yields each change of leader as it
    happens; ``run(fn, *args)`` campaigns, then runs ``fn`` as leader and stops it if the
    leadership is lost.
    """

    def __init__(self, context: AsyncContext, name: str, key: str, *, value: str, ttl: float) -> None:
        self.name = name
        self.key = key
        self.value = value
        self.ttl = ttl
        self._context = context
        self._store = context.store
        # Candidates queue in arrival order where the backend can: succession is then in turn.
        fair = context.queueing is not None
        self._lock = AsyncLock(
            context, name, key, ttl=ttl, timeout=None, reentrant=False, fair=fair, label=value
        )
        self._leadership: AsyncLeadership | None = None

    def __repr__(self) -> str:
        return f"<AsyncElection {self.name!r} value={self.value!r} ttl={self.ttl} on {self._store.url}>"

    def campaign(self, *, timeout: float | None = None) -> AsyncEntering[AsyncLeadership]:
        """Wait up to ``timeout`` seconds (None: without end) to become leader; return the leadership.

        Use it as ``async with election.campaign() as leadership:`` (resigns when the block
        ends) or as ``leadership = await election.campaign()``. Raises ``AcquireTimeout`` when
        the time runs out, ``ElectionError`` if this candidate already leads, or this task leads
        through another candidate of the coordinator, ``BackendUnavailable`` when the backend
        cannot be reached.
        """
        return async_entering(self._campaign(timeout))

    async def _campaign(self, timeout: float | None) -> AsyncLeadership:
        timeout = check_timeout(timeout)
        current = self._leadership
        if current is not None and current.remaining() > 0:  # neither resigned nor lost
            raise ElectionError(
                f"election {self.name!r}: this candidate already leads (term {current.term}); resign first"
            )
        await self._context.ensure_connected()
        observer = self._context.observer
        if observer is None:
            return await self._win(timeout)
        # Campaigns are rare and usually begin a service's work: a span even without a parent.
        key = observer.key(self._store.scheme, "election", self.name)
        span = observer.start_span("tenure.election.campaign", observer.attributes(key), root=True)
        try:
            leadership = await self._win(timeout)
        except BaseException as exc:
            if span is not None:
                observer.end_span(span, exc)
            raise
        if span is not None:
            span.set_attribute("tenure.fence", leadership.term)
            observer.end_span(span)
        return leadership

    async def _win(self, timeout: float | None) -> AsyncLeadership:
        try:
            lease = await self._lock.acquire(timeout=timeout)
        except AlreadyHeld:
            raise ElectionError(
                f"election {self.name!r} on {self._store.url}: this task or thread already leads it "
                "through another candidate, and waiting would wait for itself; resign that one first"
            ) from None
        except AcquireTimeout:
            raise AcquireTimeout(
                f"election {self.name!r} on {self._store.url}: not leader after {timeout:g} s; "
                "another candidate leads"
            ) from None
        self._leadership = AsyncLeadership(self, lease)
        log.info("tenure: election %r: this candidate leads, term %d", self.name, lease.fence)
        await self.announce()
        return self._leadership

    async def resign(self) -> None:
        """Step down if this candidate leads (see ``AsyncLeadership.resign``); else do nothing."""
        if self._leadership is not None:
            await self._leadership.resign()

    async def leader(self) -> Leader | None:
        """Return the current leader's value and term, or None if nobody leads."""
        await self._context.ensure_connected()
        info = await self._store.holder(self.key)
        return None if info is None else Leader(info.label, info.fence)

    async def observe(self) -> AsyncIterator[Leader | None]:
        """Yield the current leader (or None), then every change of leader as it happens.

        Changes come from the backend's own notifications where it has them (watches, pub/sub,
        LISTEN/NOTIFY); a leader that dies sends none, so the observer also looks again when
        its lease would end. Close the iterator when done (``contextlib.aclosing``).
        """
        await self._context.ensure_connected()
        feed = await self._store.watch(self.key)  # opened first: no change after it is missed
        try:
            last: Leader | bool | None = False  # False: nothing yielded yet
            while True:
                info = await self._store.holder(self.key)
                current = None if info is None else Leader(info.label, info.fence)
                if current != last:
                    last = current
                    yield current
                pause = OBSERVE_PAUSE
                if info is not None and info.remaining is not None:
                    pause = min(pause, info.remaining + EXPIRY_SLACK)
                await feed.wait(pause)
        finally:
            await feed.aclose()

    async def announce(self) -> None:
        """Tell observers to look again now (campaign and resign do it themselves); best effort."""
        try:
            await async_shielded(lambda: self._store.announce(self.key))
        except BackendError as exc:
            log.debug("tenure: announcing a change of %r failed (%s); observers look later", self.name, exc)

    async def run(self, fn: AsyncReturning[T], *args: object) -> T:
        """Campaign, then run ``fn(*args)`` as leader and resign when it returns; return its result.

        If the leadership is lost meanwhile, ``fn`` is stopped and ``LeadershipLost`` raised: a
        coroutine is cancelled; a sync function gets an exception raised inside it at its next
        Python bytecode (a blocking C call, such as a socket read, finishes first).
        """
        leadership = await self.campaign()
        async with leadership:
            return await async_call_stoppably(
                fn, args, lambda stop: leadership.on_lost(lambda _leadership: stop())
            )
