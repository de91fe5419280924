"""One renewer per coordinator keeps every held lease alive and reports the ones it loses."""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import TYPE_CHECKING

from tenure._async.backends.base import Renewal
from tenure._concurrency import AsyncBackground, AsyncSignal
from tenure._exceptions import BackendError

if TYPE_CHECKING:
    from tenure._async.backends.base import AsyncLeaseStore, RenewOutcome
    from tenure._core.holding import Holding
    from tenure.observability._instruments import Instruments


log = logging.getLogger("tenure")

IDLE_NAP = 1.0  # seconds the worker sleeps when it has no lease to renew
BATCH = 1000  # leases per call to the store's renew_many: bounds one round trip's size
# A lease due within this fraction of its ttl is renewed with those due now. Renewals are due
# every ttl/3, so one comes at least 0.23 ttl after the last: many leases share a round trip.
EARLY = 0.1


class AsyncRenewer:
    """Renew held leases at about a third of their TTL, in batches, on one background worker.

    A renewal refused by the backend loses the lease at once. A renewal that fails because the
    backend is unreachable is retried until the lease's local validity runs out, and then the
    lease is lost. The worker sleeps until the earliest lease needs attention.
    """

    def __init__(self, store: AsyncLeaseStore) -> None:
        self._store = store
        self._leases: dict[Holding, float] = {}  # lease -> when it next needs attention
        # Holders (other threads, in sync code) add and drop leases while the worker reads.
        self._table_lock = threading.Lock()
        self._wake: AsyncSignal | None = None
        self._worker: AsyncBackground | None = None
        self._closed = False
        self._sleeping_until = math.inf  # when the worker will next look at its leases
        self.observer: Instruments | None = None  # set by the context when it connects

    def add(self, lease: Holding) -> None:
        """Start keeping ``lease`` alive."""
        due = lease.validity.renew_at
        with self._table_lock:
            self._leases[lease] = due
            start = self._worker is None
            if start:
                self._wake = AsyncSignal()
                self._worker = AsyncBackground(self._run, name="tenure-renewer")
            # Wake the worker only if it sleeps past this lease's first renewal: waking a
            # thread on every acquisition would cost more than the acquisition itself.
            wake = not start and due < self._sleeping_until
        if start:
            assert self._worker is not None
            self._worker.start()
        elif wake:
            assert self._wake is not None
            self._wake.set()

    def discard(self, lease: Holding) -> None:
        """Stop keeping ``lease`` alive (released or lost)."""
        with self._table_lock:
            self._leases.pop(lease, None)

    def reschedule(self) -> None:
        """Recompute every lease's next renewal after a manual ``renew()``."""
        with self._table_lock:
            for lease in self._leases:
                self._leases[lease] = min(lease.validity.renew_at, lease.validity.valid_until)
            self._sleeping_until = -math.inf  # the worker must look again
        if self._wake is not None:
            self._wake.set()

    def _schedule(self, lease: Holding, due: float) -> bool:
        """Set when ``lease`` next needs attention; return False if it was dropped meanwhile."""
        with self._table_lock:
            if lease not in self._leases:
                return False
            self._leases[lease] = due
            return True

    async def close(self) -> None:
        """Stop the worker and wait for it."""
        self._closed = True
        if self._wake is not None:
            self._wake.set()
        if self._worker is not None:
            await self._worker.join()

    async def _run(self) -> None:
        assert self._wake is not None
        while not self._closed:
            self._wake.clear()
            now = time.monotonic()
            with self._table_lock:
                # A lease due soon rides along with those due now: one round trip renews both.
                due = [lease for lease, at in self._leases.items() if at - lease.validity.ttl * EARLY <= now]
            for start in range(0, len(due), BATCH):
                await self._renew(due[start : start + BATCH])
            with self._table_lock:
                # Idle, nap rather than sleep without end: a lease due after the nap then
                # needs no wake-up, which would cost a thread switch per acquisition.
                soonest = min(self._leases.values(), default=time.monotonic() + IDLE_NAP)
                self._sleeping_until = soonest
            await self._wake.wait(max(0.0, soonest - time.monotonic()))

    async def _renew(self, leases: list[Holding]) -> None:
        """Renew ``leases`` in one call to the store, and settle each one's outcome."""
        started = time.monotonic()
        live: list[Holding] = []
        for lease in leases:
            if lease.validity.expired(started):
                self.discard(lease)
                why = f" (last renewal error: {lease.last_renew_error})" if lease.last_renew_error else ""
                lease.mark_lost(f"it could not be renewed before its validity ran out{why}")
            else:
                live.append(lease)
        if not live:
            return
        outcomes: list[RenewOutcome]
        observer = self.observer
        span = None
        if observer is not None:  # a background renewal has no parent: a span only if asked
            attributes = {"tenure.backend": self._store.scheme, "tenure.leases": len(live)}
            span = observer.start_span("tenure.lease.renew", attributes)
        try:
            renewals = [Renewal(lease.key, lease.owner, lease.validity.ttl) for lease in live]
            outcomes = list(await self._store.renew_many(renewals))
        except Exception as exc:
            # Anything but a backend error is a bug, but it must not stop the one worker that
            # keeps every lease alive: it is logged and treated like an outage of these renewals.
            outcomes = [exc] * len(live)
        for lease, outcome in zip(live, outcomes, strict=True):
            self._settle(lease, outcome, started)
        if span is not None and observer is not None:
            failed = sum(1 for outcome in outcomes if outcome is not True)
            span.set_attribute("tenure.renew.failed", failed)
            observer.end_span(span)

    def _settle(self, lease: Holding, outcome: RenewOutcome, started: float) -> None:
        if outcome is not True and self.observer is not None:
            error = "refused" if outcome is False else type(outcome).__qualname__
            key = self.observer.holding_key(self._store.scheme, lease.key, lease.name)
            self.observer.renew_failures.add((*key, ("error.type", error)))
        if isinstance(outcome, Exception):
            if not isinstance(outcome, BackendError):
                log.error("tenure: renewing %r failed unexpectedly", lease.name, exc_info=outcome)
            lease.last_renew_error = outcome  # retried until the lease's validity runs out
            self._schedule(lease, min(lease.validity.retry_at(time.monotonic()), lease.validity.valid_until))
        elif not outcome:
            self.discard(lease)
            lease.mark_lost("the backend refused the renewal: it expired or was taken over")
        else:
            lease.renewed(started)
            self._schedule(lease, lease.validity.renew_at)  # False: released while in flight
