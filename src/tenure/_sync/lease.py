# GENERATED from src/tenure/_async/lease.py by scripts/unasync.py: do not edit; edit the source and re-run.
"""A held lock: its fence, its owner token, and the signals that say when it is lost."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING

from tenure._concurrency import BodyGuard, Returning, current_actor, shielded
from tenure._core.durations import check_ttl
from tenure._core.fences import Floor
from tenure._core.guarantees import Guarantee
from tenure._core.holding import Holding
from tenure._core.renewal import Validity
from tenure._core.tokens import Owner
from tenure._exceptions import BackendProtocolError, LockLost, NotOwner

if TYPE_CHECKING:
    from tenure._sync.context import Context

log = logging.getLogger("tenure")


class Lease:
    """A lock held by this process: use it as ``with`` and check it before acting.

    ``fence`` is a per-name integer that grows with every acquisition: pass it to the resource
    you protect so it can reject writes from a stale holder. ``token`` is the owner secret that
    every renewal and release carries.

    **Guarantees.** The lease is renewed in the background at about a third of its TTL. It is
    *lost* when a renewal is refused (someone else holds the name), or when it cannot be renewed
    before its validity runs out by the local monotonic clock less a drift margin (a partition,
    a server outage, or this process paused past its TTL). Loss is never silent: ``check()``
    raises ``LockLost``, leaving the ``with`` block raises ``LockLost``, the body of the
    block is cancelled, and ``on_lost`` callbacks run. Clocks: validity is counted from before
    the request that granted it, so time in flight is charged against the lease.
    """

    _traced = False  # acquired inside a recording span: its release makes one too (set then)

    def __init__(self, context: Context, holding: Holding, actor: object) -> None:
        self.name = holding.name
        self.fence = holding.fence
        self._context = context
        self._holding = holding
        self._actor = actor  # the task or thread that acquired it, for the holder table
        self._entered = 0  # nested ``with`` blocks
        self._guard = BodyGuard()
        # Loss first forgets the lease, then interrupts the holder's block, then runs callbacks.
        holding.on_lost(self._forget)
        holding.on_lost(self._interrupt)

    def __repr__(self) -> str:
        state = "released" if self._holding.released else "lost" if self.lost else "held"
        return f"<Lease {self.name!r} fence={self.fence} {state}>"

    @property
    def token(self) -> str:
        """Return the owner secret that proves this holder to the backend."""
        return self._holding.owner.token

    @property
    def ttl(self) -> float:
        """Return the lease's current time to live in seconds."""
        return self._holding.validity.ttl

    @property
    def lost(self) -> bool:
        """Return whether the lease was lost (expired, taken over or its session ended)."""
        return self._holding.lost_reason is not None

    def remaining(self) -> float:
        """Return the seconds this lease is surely still valid, by the local clock; 0 if not held."""
        if self._holding.released or self.lost:
            return 0.0
        return self._holding.validity.remaining(time.monotonic())

    def check(self) -> None:
        """Raise ``LockLost`` if the lease was lost, ``NotOwner`` if it was released."""
        if self.lost:
            raise self._lost_error()
        if self._holding.released:
            raise NotOwner(f"lock {self.name!r} (fence {self.fence}) was already released")

    def on_lost(self, callback: Callable[[Lease], object]) -> None:
        """Call ``callback(lease)`` once when the lease is lost (at once if it already is).

        Callbacks run where the loss is noticed: usually on the coordinator's renewer, or in the
        caller of ``check()``, ``lost`` or ``remaining()`` if that notices it first. They should
        be quick and must not block.
        """
        if not self._holding.on_lost(lambda: _run_callback(callback, self)):
            _run_callback(callback, self)

    def renew(self, ttl: float | None = None) -> None:
        """Set the lease to expire ``ttl`` seconds from now (default: its current TTL).

        Raises ``LockLost`` if it was lost meanwhile, ``NotOwner`` if it was released,
        ``BackendUnavailable`` if the server cannot be reached.
        """
        holding = self._holding
        new_ttl = holding.validity.ttl if ttl is None else check_ttl(ttl)
        self.check()
        self._context.check_loop()
        observer = self._context.observer
        span = None if observer is None else observer.start_span("tenure.lease.renew", self._attributes)
        started = time.monotonic()
        try:
            renewed = self._context.store.renew(holding.key, holding.owner, new_ttl)
            if not renewed:
                holding.mark_lost("the backend refused the renewal: the lease expired or was taken over")
                raise self._lost_error()
        except BaseException as exc:
            if span is not None and observer is not None:
                observer.end_span(span, exc)
            raise
        if span is not None and observer is not None:
            observer.end_span(span)
        holding.renewed(started, new_ttl)
        self._context.renewer.reschedule()

    def release(self) -> None:
        """Release the lease (once per reentrant acquisition); idempotent once fully released.

        Raises ``LockLost`` if the lease had been lost before it was released: whatever the
        holder did after the loss was not protected.
        """
        holding = self._holding
        if holding.released:
            return
        if holding.depth > 1:
            holding.depth -= 1
            self.check()
            return
        lost_before = self.lost
        observer = self._context.observer
        # Only a lease acquired under a span looks for one: a release is a hot path.
        span = None
        if observer is not None and self._traced:
            span = observer.start_span("tenure.lock.release", self._attributes)
        try:
            released = self.end_with(self._context.store.release)
        except BaseException as exc:
            if span is not None and observer is not None:
                observer.end_span(span, exc)
            raise
        if span is not None and observer is not None:
            span.set_attribute("tenure.released", released and not lost_before)
            observer.end_span(span)
        if lost_before or not released:
            holding.mark_lost("it had expired or been taken over before it was released", force=True)
            raise self._lost_error()

    def end_with(self, step: Returning[bool]) -> bool:
        """End the lease through ``step(key, owner)``, one store step that frees the key.

        ``release`` is one such step; a primitive whose last step does more (an idempotent run
        stores its record as it lets go) passes its own. Return what ``step`` returned: whether
        the lease was still held.
        """
        holding = self._holding
        if holding.released:
            raise NotOwner(f"lock {self.name!r} (fence {self.fence}) was already released")
        self._context.check_loop()
        holding.released = True
        self._forget()
        return shielded(lambda: step(holding.key, holding.owner))

    def __enter__(self) -> Lease:
        self._entered += 1
        if self._entered == 1:
            self._guard.enter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._entered -= 1
        interrupted = self._guard.exit(exc) if self._entered == 0 else False
        self.release()  # raises LockLost if the lease was lost
        if interrupted:  # our cancellation, but the lease turned out fine: report it anyway
            raise self._lost_error() from exc

    def _forget(self) -> None:
        """Stop renewing the lease and drop it from the holder table (released or lost)."""
        self._context.renewer.discard(self._holding)
        self._context.drop_holder(self._holding.key, self._actor, self)

    def _interrupt(self) -> None:
        observer = self._context.observer
        if observer is not None:
            holding = self._holding
            observer.lost.add(observer.holding_key(self._context.store.scheme, holding.key, holding.name))
        if not self._holding.released:
            self._guard.interrupt()

    def _attributes(self) -> dict[str, object]:
        """Return this lease's span attributes (observed coordinators only)."""
        observer = self._context.observer
        assert observer is not None
        holding = self._holding
        key = observer.holding_key(self._context.store.scheme, holding.key, holding.name)
        return {**observer.attributes(key), "tenure.fence": holding.fence}

    def _lost_error(self) -> LockLost:
        return LockLost(
            f"lock {self.name!r} (fence {self.fence}) on {self._context.url} was lost: "
            f"{self._holding.lost_reason}; anything done since may have overlapped another holder"
        )


def grant(
    context: Context,
    name: str,
    key: str,
    owner: Owner,
    fence: int,
    started: float,
    ttl: float,
    *,
    reentrant: bool = False,
    fence_key: str | None = None,
    floor: int | Floor | None = Floor.NOW,
    lease_type: type[Lease] | None = None,
) -> Lease:
    """Return the lease for an acquisition the backend granted, counted from ``started``.

    The lease is held on ``key``; its fence is checked against the highest seen for
    ``fence_key`` (default ``key``: a semaphore's permits share their name's counter) when the
    request was sent (``floor``: permits of one name may be answered out of order). Raises
    ``BackendProtocolError`` for a fence not above one already seen (the caller frees the key).
    """
    if Guarantee.FENCING in context.store.guarantees:
        seen = context.fences.admit(fence_key or key, fence, floor=floor)
        if seen is not None:
            raise BackendProtocolError(
                f"{name!r} on {context.url} was granted fence {fence}, not above {seen} already "
                "seen for it: the backend lost or rewound its fence counter"
            )
    holding = Holding(name, key, owner, fence, Validity.starting(started, ttl), reentrant=reentrant)
    # Who holds it: the same task or thread asking again for a lock must not wait for itself.
    actor = current_actor()
    lease = (lease_type or Lease)(context, holding, actor)
    context.add_holder(actor, holding, lease)
    context.renewer.add(holding)
    observer = context.observer
    if observer is not None:
        observer.fences.add(observer.holding_key(context.store.scheme, key, name))
    return lease


def _run_callback(callback: Callable[[Lease], object], lease: Lease) -> None:
    try:
        callback(lease)
    except Exception:
        log.exception("tenure: on_lost callback %r of lock %r failed", callback, lease.name)
