"""The ``memory://`` backend: leases in this process's memory, for tests and examples.

``memory://`` and ``memory://NAME`` name process-wide spaces, so every coordinator of one
process that uses the same URL shares the same locks, whichever thread or loop it runs on; a
space outlives its coordinators, as a server would. No options beyond the common ones.

**ttl** is counted on this process's monotonic clock; fences count up per key from 1.
**Waiting**: a release wakes the waiters of its key directly (a signal per waiter, which works
across threads and loops); a waiter also wakes when the holder's lease would expire.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from tenure._async.backends.base import (
    AsyncChangeFeed,
    AsyncLeaseStore,
    Permit,
    Rate,
    RateStep,
    Recorded,
    Renewal,
    RenewOutcome,
    StateChange,
    T,
)
from tenure._concurrency import AsyncSignal
from tenure._core.guarantees import Capability, Guarantee
from tenure._core.holder import HolderInfo
from tenure._core.ratelimit import gcra_step
from tenure._core.semaphore import limit_mismatch, permit_keys, slot_order
from tenure._core.tokens import Owner


@dataclass(slots=True)
class _Entry:
    fence: int = 0
    token: str | None = None
    label: str = ""
    expires_at: float = 0.0
    waiters: set[AsyncSignal] = field(default_factory=set)
    watchers: set[AsyncSignal] = field(default_factory=set)  # observers: woken by every change

    def held(self, now: float) -> bool:
        return self.token is not None and now < self.expires_at


@dataclass(slots=True)
class _Space:
    lock: threading.Lock = field(default_factory=threading.Lock)
    entries: dict[str, _Entry] = field(default_factory=dict)
    limits: dict[str, int] = field(default_factory=dict)  # semaphore key -> its permits' limit
    records: dict[str, tuple[Recorded, float]] = field(default_factory=dict)  # with its expiry, monotonic
    tats: dict[str, tuple[float, ...]] = field(default_factory=dict)  # rate limits' stored TATs
    steps: int = 0  # rate steps taken: every SWEEP_EVERY-th drops idle keys' TATs
    states: dict[str, tuple[bytes, float]] = field(default_factory=dict)  # update_state's, with expiry


SWEEP_EVERY = 4096
_SPACES: dict[str, _Space] = {}
_SPACES_LOCK = threading.Lock()


class AsyncMemoryStore(AsyncLeaseStore):
    """Hold leases in a dict shared by the whole process; wake waiters directly on release."""

    scheme: ClassVar[str] = "memory"
    description: ClassVar[str] = "one process; tests and examples"
    guarantees: ClassVar[frozenset[Guarantee]] = frozenset({Guarantee.FENCING, Guarantee.SERVER_TIME})
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.COUNTING, Capability.RECORDS, Capability.COUNTERS}
    )
    record_limit = 16 * 1024 * 1024  # a bound to keep a test's memory sane, not a limit of dicts
    # Releases wake waiters at once; the pause only bounds waiting for an expiry.
    poll_interval: ClassVar[tuple[float, float]] = (0.05, 0.5)

    async def connect(self) -> None:
        name = "".join(str(h) for h in self.config.url.hosts) + self.config.url.path
        with _SPACES_LOCK:
            self._space = _SPACES.setdefault(name, _Space())

    def _entry(self, key: str) -> _Entry:
        return self._space.entries.setdefault(key, _Entry())

    async def try_acquire(self, key: str, owner: Owner, ttl: float) -> int | None:
        now = time.monotonic()
        with self._space.lock:
            fence, watchers = self._take(key, owner, ttl, now)
        for signal in watchers:
            signal.set()
        return fence

    def _take(self, key: str, owner: Owner, ttl: float, now: float) -> tuple[int | None, list[AsyncSignal]]:
        """Take ``key`` if it is free (the space's lock held); return the fence and whom to wake."""
        entry = self._entry(key)
        if entry.held(now):
            return None, []
        entry.fence += 1
        entry.token, entry.label, entry.expires_at = owner.token, owner.label, now + ttl
        return entry.fence, list(entry.watchers)

    async def renew_many(self, renewals: Sequence[Renewal]) -> list[RenewOutcome]:
        now = time.monotonic()
        outcomes: list[RenewOutcome] = []
        with self._space.lock:  # once for the whole batch
            for key, owner, ttl in renewals:
                entry = self._space.entries.get(key)
                if entry is None or entry.token != owner.token or not entry.held(now):
                    outcomes.append(False)
                    continue
                entry.expires_at = now + ttl
                outcomes.append(True)
        return outcomes

    async def release(self, key: str, owner: Owner) -> bool:
        now = time.monotonic()
        with self._space.lock:
            entry = self._entry(key)
            if entry.token != owner.token:
                return False
            was_valid = entry.held(now)
            entry.token, entry.label, entry.expires_at = None, "", 0.0
            waiters = [*entry.waiters, *entry.watchers]
        for signal in waiters:
            signal.set()
        return was_valid

    async def holder(self, key: str) -> HolderInfo | None:
        now = time.monotonic()
        with self._space.lock:
            entry = self._space.entries.get(key)
            if entry is None or not entry.held(now):
                return None
            return HolderInfo(entry.label, entry.fence, entry.expires_at - now)

    async def wait_released(self, key: str, timeout: float) -> None:
        signal = AsyncSignal()
        with self._space.lock:
            entry = self._entry(key)
            now = time.monotonic()
            if not entry.held(now):
                return  # released between the failed attempt and now: no wake-up to miss
            timeout = min(timeout, entry.expires_at - now)
            entry.waiters.add(signal)
        try:
            await signal.wait(timeout)
        finally:
            with self._space.lock:
                entry.waiters.discard(signal)

    async def try_acquire_permit(self, key: str, limit: int, owner: Owner, ttl: float) -> Permit | None:
        now = time.monotonic()
        with self._space.lock:
            recorded = self._space.limits.get(key)
            if recorded is not None and recorded != limit:
                slots = permit_keys(key, max(recorded, limit))
                if any(self._entry(slot).held(now) for slot in slots):
                    raise limit_mismatch(key, limit, recorded)
            self._space.limits[key] = limit
            slots = permit_keys(key, limit)
            for slot in slot_order(limit):
                entry = self._entry(slots[slot])
                if not entry.held(now):
                    break
            else:
                return None
            counter = self._entry(key)  # the name's one fence counter
            counter.fence += 1
            entry.fence = counter.fence
            entry.token, entry.label, entry.expires_at = owner.token, owner.label, now + ttl
            watchers = list(entry.watchers)
        for signal in watchers:
            signal.set()
        return Permit(slots[slot], entry.fence)

    async def wait_permit_released(self, key: str, limit: int, timeout: float) -> None:
        signal = AsyncSignal()
        with self._space.lock:
            now = time.monotonic()
            entries = [entry for slot in permit_keys(key, limit) if (entry := self._entry(slot)).held(now)]
            if not entries:
                return  # all freed since the caller looked: no wake-up to miss
            timeout = min(timeout, min(entry.expires_at for entry in entries) - now)
            for entry in entries:
                entry.waiters.add(signal)
        try:
            await signal.wait(timeout)
        finally:
            with self._space.lock:
                for entry in entries:
                    entry.waiters.discard(signal)

    async def permit_holders(self, key: str, limit: int) -> list[HolderInfo]:
        now = time.monotonic()
        with self._space.lock:
            entries = [self._space.entries.get(slot) for slot in permit_keys(key, limit)]
            return [
                HolderInfo(entry.label, entry.fence, entry.expires_at - now)
                for entry in entries
                if entry is not None and entry.held(now)
            ]

    async def begin_run(self, key: str, owner: Owner, ttl: float) -> Recorded | int | None:
        now = time.monotonic()
        with self._space.lock:
            found = self._live_record(key, now)
            if found is not None:
                return found
            fence, watchers = self._take(key, owner, ttl, now)
        for signal in watchers:
            signal.set()
        return fence

    async def finish_run(self, key: str, owner: Owner, record: bytes, ttl: float) -> bool:
        now = time.monotonic()
        with self._space.lock:
            entry = self._entry(key)
            if entry.token != owner.token or not entry.held(now):
                return False
            self._space.records[key] = (Recorded(record, entry.fence, None), now + ttl)
            entry.token, entry.label, entry.expires_at = None, "", 0.0
            waiters = [*entry.waiters, *entry.watchers]
            if len(self._space.records) % 1024 == 0:  # now and then, forget the expired
                for stale in [k for k, (_, end) in self._space.records.items() if end <= now]:
                    del self._space.records[stale]
        for signal in waiters:
            signal.set()
        return True

    async def read_record(self, key: str) -> Recorded | None:
        with self._space.lock:
            return self._live_record(key, time.monotonic())

    def _live_record(self, key: str, now: float) -> Recorded | None:
        found = self._space.records.get(key)
        if found is None:
            return None
        record, end = found
        if end <= now:
            del self._space.records[key]
            return None
        return record._replace(remaining=end - now)

    async def rate_step(
        self, key: str, rates: Sequence[Rate], cost: int, deadline: float | None = None
    ) -> RateStep:
        space = self._space  # no I/O: always within any deadline
        with space.lock:
            now = time.monotonic()
            step = gcra_step(space.tats.get(key, ()), now, rates, cost)
            if step.allowed and cost:
                space.tats[key] = step.tats
                space.steps += 1
                if space.steps % SWEEP_EVERY == 0:  # a full bucket is as good as no entry
                    space.tats = {k: tats for k, tats in space.tats.items() if max(tats) > now}
            return step

    async def update_state(self, key: str, change: StateChange[T], ttl: float) -> T:
        space = self._space
        with space.lock:  # change is pure and fast: running it under the lock is the atomic step
            now = time.monotonic()
            stored = space.states.get(key)
            current = stored[0] if stored is not None and stored[1] > now else None
            value, result = change(current, now)
            if value is not None:
                space.states[key] = (value, now + ttl)
                if len(space.states) % 1024 == 0:  # now and then, forget the expired
                    space.states = {k: v for k, v in space.states.items() if v[1] > now}
            return result

    async def watch(self, key: str) -> AsyncChangeFeed:
        signal = AsyncSignal()
        with self._space.lock:
            self._entry(key).watchers.add(signal)
        return _MemoryFeed(self._space, key, signal)

    async def aclose(self) -> None:
        """Nothing to close: the space outlives coordinators, like a server would."""


class _MemoryFeed(AsyncChangeFeed):
    """Woken directly by every acquisition and release of the key."""

    def __init__(self, space: _Space, key: str, signal: AsyncSignal) -> None:
        super().__init__(0.0)
        self._space, self._key, self._signal = space, key, signal

    async def wait(self, timeout: float) -> None:
        await self._signal.wait(max(0.0, timeout))
        self._signal.clear()

    async def aclose(self) -> None:
        with self._space.lock:
            self._space.entries[self._key].watchers.discard(self._signal)
