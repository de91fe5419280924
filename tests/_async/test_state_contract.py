"""The ``update_state`` seam (Counters capability) on every backend that has it, both colours.

What a shared circuit breaker relies on: one atomic read-modify-write of a key's bytes by the
store's clock, ``None`` leaving the value (and its expiry) as it is, and the ttl. Across real
processes: tests/test_breaker_processes.py.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import pytest

import tenure
from tenure._async.backends.base import AsyncCounters
from tenure._concurrency import AsyncBackground, async_sleep


@pytest.fixture
async def store(counters_url: str) -> AsyncIterator[AsyncCounters]:
    async with tenure.AsyncCoordinator(counters_url) as coordinator:
        assert isinstance(coordinator._store, AsyncCounters)
        yield coordinator._store


def fresh_key() -> str:
    return f"test-state:{uuid.uuid4().hex}"


def keep(value: bytes) -> object:
    """A change that stores ``value`` and returns what it found and the clock it was given."""
    return lambda current, now: (value, (current, now))


def look(current: bytes | None, now: float) -> tuple[None, tuple[bytes | None, float]]:
    return None, (current, now)


def increment(current: bytes | None, now: float) -> tuple[bytes, int]:
    count = 1 + (0 if current is None else int(current))
    return str(count).encode(), count


async def test_stores_reads_back_and_returns_the_change_result(store: AsyncCounters) -> None:
    key = fresh_key()
    assert (await store.update_state(key, look, 30))[0] is None
    found, _ = await store.update_state(key, keep(b"\x00first\xff"), 30)  # type: ignore[arg-type]
    assert found is None
    found, _ = await store.update_state(key, keep(b"second"), 30)  # type: ignore[arg-type]
    assert found == b"\x00first\xff"  # bytes travel exactly, NUL and all
    assert (await store.update_state(key, look, 30))[0] == b"second"
    assert (await store.update_state(fresh_key(), look, 30))[0] is None  # keys are apart


async def test_the_change_gets_the_store_clock(store: AsyncCounters, counters_url: str) -> None:
    key = fresh_key()
    _, first = await store.update_state(key, look, 30)
    await async_sleep(0.3)
    _, second = await store.update_state(key, look, 30)
    assert 0.25 <= second - first <= 2.0
    # Memory counts on this process's monotonic clock; the others on the server's (or host's)
    # wall clock, which on this one host is ours, give or take.
    local = time.monotonic() if counters_url.startswith("memory") else time.time()
    assert abs(second - local) < 2.0


async def test_none_leaves_the_value_and_its_expiry(store: AsyncCounters) -> None:
    key = fresh_key()
    await store.update_state(key, keep(b"v"), 1.0)  # type: ignore[arg-type]
    await async_sleep(0.5)
    assert (await store.update_state(key, look, 30))[0] == b"v"  # a look does not extend the ttl
    await async_sleep(0.8)
    assert (await store.update_state(key, look, 30))[0] is None


async def test_a_stored_value_expires_after_its_ttl_and_a_new_one_starts(store: AsyncCounters) -> None:
    key = fresh_key()
    assert await store.update_state(key, increment, 0.4) == 1
    assert await store.update_state(key, increment, 0.4) == 2
    await async_sleep(0.7)
    assert await store.update_state(key, increment, 30) == 1
    await async_sleep(0.5)
    assert await store.update_state(key, increment, 30) == 2  # the new ttl holds


async def test_a_failing_change_leaves_the_state_as_it_was(store: AsyncCounters) -> None:
    key = fresh_key()
    await store.update_state(key, increment, 30)

    def broken(current: bytes | None, now: float) -> tuple[bytes, int]:
        raise ValueError("bad record")

    with pytest.raises(ValueError, match="bad record"):
        await store.update_state(key, broken, 30)
    assert await store.update_state(key, increment, 30) == 2  # and the store still answers


async def test_concurrent_updates_lose_nothing(counters_url: str) -> None:
    key, rounds = fresh_key(), 25
    coordinators = [tenure.AsyncCoordinator(counters_url) for _ in range(3)]
    seen: list[int] = []

    async def updater(coordinator: tenure.AsyncCoordinator) -> None:
        assert isinstance(coordinator._store, AsyncCounters)
        for _ in range(rounds):
            seen.append(await coordinator._store.update_state(key, increment, 30))

    try:
        for coordinator in coordinators:
            await coordinator.connect()
        callers = [AsyncBackground(lambda i=i: updater(coordinators[i % 3]), name=f"u{i}") for i in range(6)]
        for caller in callers:
            caller.start()
        for caller in callers:
            await caller.join()
    finally:
        for coordinator in coordinators:
            await coordinator.aclose()
    assert sorted(seen) == list(range(1, 6 * rounds + 1))  # every update saw the one before
