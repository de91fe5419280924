"""The rate-limit contract every backend with the Counters capability passes (both colours).

The tests run on every backend that declares ``Capability.COUNTERS`` (``counters_url``); the
others must refuse to build a rate limiter with ``BackendIncapable``, which the first test
checks on every backend. Rates are chosen so that refills during a test are far smaller than
what a test counts (``1/min`` with a burst), or measured (``20/s``). The limiters wait for the
store as long as its op_timeout (``deadline=None``): on a loaded machine a 50 ms deadline would
let calls through unasked, which is the deadline's point but not what these tests count; the
deadline has its own tests (tests/test_ratelimit_faults.py).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

import tenure
from tenure._async.backends.base import AsyncCounters
from tenure._concurrency import AsyncBackground, async_sleep
from tenure._core.guarantees import Capability


@pytest.fixture
async def limits(counters_url: str) -> AsyncIterator[tenure.AsyncCoordinator]:
    async with tenure.AsyncCoordinator(counters_url) as coordinator:
        yield coordinator


@pytest.fixture
async def other(counters_url: str) -> AsyncIterator[tenure.AsyncCoordinator]:
    """A second client of the same backend."""
    async with tenure.AsyncCoordinator(counters_url) as coordinator:
        yield coordinator


async def test_incapable_backend_refuses_rate_limits(coord: tenure.AsyncCoordinator) -> None:
    if Capability.COUNTERS in coord.capabilities:
        assert isinstance(coord._store, AsyncCounters)
        assert coord.rate_limiter("api", rate="10/s").rates[0].burst == 10
    else:
        with pytest.raises(tenure.BackendIncapable, match="Counters"):
            coord.rate_limiter("api", rate="10/s")


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"rate": "10"}, "COUNT/PERIOD"),
        ({"rate": "10/fortnight"}, "COUNT/PERIOD"),
        ({"rate": "0/s"}, "at least 1"),
        ({"rate": ""}, "rate must be text"),
        ({"rate": 10}, "rate must be text"),
        ({"rate": "10/s", "burst": 0}, "burst"),
        ({"rate": "10/s", "burst": 2.5}, "burst"),
        ({"rate": "10/s", "timeout": -1}, "timeout"),
        ({"rate": "10/s", "on_unavailable": "maybe"}, "on_unavailable"),
        ({"rate": "10/s", "deadline": 0}, "deadline"),
        ({"rate": ";".join(["1/s"] * 9)}, "at most 8"),
    ],
)
async def test_bad_limiter_options_fail_before_io(
    counters_url: str, options: dict[str, object], match: str
) -> None:
    coordinator = tenure.AsyncCoordinator(counters_url)
    with pytest.raises(tenure.ConfigurationError, match=match):
        coordinator.rate_limiter("api", **options)  # type: ignore[arg-type]
    with pytest.raises(tenure.ConfigurationError, match="rate limiter name"):
        coordinator.rate_limiter("", rate="1/s")
    assert not coordinator._connected
    await coordinator.aclose()


async def test_bad_call_arguments_fail_before_io(counters_url: str) -> None:
    coordinator = tenure.AsyncCoordinator(counters_url)
    limiter = coordinator.rate_limiter("api", rate="10/s", burst=5, deadline=None)
    with pytest.raises(tenure.ConfigurationError, match="never be admitted"):
        await limiter.try_acquire(cost=6)
    with pytest.raises(tenure.ConfigurationError, match="cost"):
        await limiter.acquire(cost=0)
    with pytest.raises(tenure.ConfigurationError, match="rate limit key"):
        await limiter.try_acquire(key="a\x00b")
    with pytest.raises(tenure.ConfigurationError, match="rate limit key"):
        await limiter.peek(key="k" * 600)
    with pytest.raises(tenure.ConfigurationError, match="timeout"):
        await limiter.acquire(timeout=-1)
    assert not coordinator._connected
    await coordinator.aclose()


async def test_a_burst_is_admitted_then_refused_with_the_exact_retry_after(
    limits: tenure.AsyncCoordinator,
) -> None:
    limiter = limits.rate_limiter("search", rate="10/s", burst=5, deadline=None)
    assert [await limiter.try_acquire(key="client-7") for _ in range(5)] == [True] * 5
    refused = await limiter.decide(key="client-7")
    assert not refused.allowed
    assert refused.remaining == 0
    assert 0.0 < refused.retry_after <= 0.1  # one permit comes back every 0.1 s
    assert 0.4 < refused.reset_after <= 0.5
    assert refused.limit == 5


async def test_keys_names_and_clients_share_only_their_own_bucket(
    limits: tenure.AsyncCoordinator, other: tenure.AsyncCoordinator
) -> None:
    limiter = limits.rate_limiter("api", rate="1/min", burst=3, deadline=None)
    twin = other.rate_limiter("api", rate="1/min", burst=3, deadline=None)
    assert await limiter.try_acquire(key="a")
    assert await twin.try_acquire(key="a")  # another client, the same bucket
    assert await limiter.try_acquire(key="a")
    assert not await twin.try_acquire(key="a")
    assert await limiter.try_acquire(key="b")  # another key
    assert await limiter.try_acquire()  # no key: the limiter's own bucket
    assert await limits.rate_limiter(
        "api:a", rate="1/min", burst=3, deadline=None
    ).try_acquire()  # names apart
    assert await limits.rate_limiter("api", rate="1/min", burst=3, deadline=None).try_acquire(key="a:x")


async def test_peek_takes_nothing(limits: tenure.AsyncCoordinator) -> None:
    limiter = limits.rate_limiter("api", rate="1/min", burst=4, deadline=None)
    fresh = await limiter.peek(key="k")
    assert (fresh.allowed, fresh.remaining, fresh.reset_after) == (True, 4, 0.0)
    assert (await limiter.peek(key="k")).remaining == 4
    taken = await limiter.decide(key="k", cost=3)
    assert taken.allowed and taken.remaining == 1
    looked = await limiter.peek(key="k")
    assert looked.remaining == 1 and 170 < looked.reset_after <= 180
    assert (await limiter.peek(key="k")).remaining == 1


async def test_cost_takes_several_permits(limits: tenure.AsyncCoordinator) -> None:
    limiter = limits.rate_limiter("api", rate="10/s", burst=5, deadline=None)
    assert await limiter.try_acquire(key="k", cost=3)
    refused = await limiter.decide(key="k", cost=3)
    assert not refused.allowed and refused.remaining == 2
    assert 0.0 < refused.retry_after <= 0.1
    assert await limiter.try_acquire(key="k", cost=2)  # what remains is still there


async def test_every_rate_must_admit(limits: tenure.AsyncCoordinator) -> None:
    limiter = limits.rate_limiter("api", rate="100/s;3/min", deadline=None)
    assert [r.burst for r in limiter.rates] == [100, 3]
    assert [await limiter.try_acquire(key="k") for _ in range(4)] == [True, True, True, False]
    refused = await limiter.decide(key="k")
    assert 19.0 < refused.retry_after <= 20.0  # the minute quota's next permit, not the second's


async def test_permits_come_back_at_the_rate(limits: tenure.AsyncCoordinator) -> None:
    limiter = limits.rate_limiter("api", rate="20/s", burst=2, deadline=None)
    assert await limiter.try_acquire(key="k")
    assert await limiter.try_acquire(key="k")
    assert not await limiter.try_acquire(key="k")
    await async_sleep(0.06)  # one interval (0.05 s) and a little
    assert await limiter.try_acquire(key="k")
    assert not await limiter.try_acquire(key="k")


async def test_acquire_sleeps_until_the_permit_is_due(limits: tenure.AsyncCoordinator) -> None:
    limiter = limits.rate_limiter("api", rate="5/s", burst=1, deadline=None)
    await limiter.acquire(key="k")
    started = time.monotonic()
    state = await limiter.acquire(key="k", timeout=2)
    waited = time.monotonic() - started
    assert state.allowed
    assert 0.15 < waited < 0.6  # one interval (0.2 s), slept once, not polled


async def test_acquire_refuses_at_once_when_the_permit_is_due_past_the_timeout(
    limits: tenure.AsyncCoordinator,
) -> None:
    limiter = limits.rate_limiter("api", rate="1/min", burst=1, deadline=None)
    await limiter.acquire(key="k")
    started = time.monotonic()
    with pytest.raises(tenure.RateLimited) as raised:
        await limiter.acquire(key="k", timeout=5)
    assert time.monotonic() - started < 1.0  # no waiting to fail
    assert 55 < raised.value.retry_after <= 60
    assert not raised.value.unavailable
    with pytest.raises(tenure.RateLimited):
        await limiter.acquire(key="k", timeout=0)


async def test_concurrent_callers_get_exactly_the_burst(
    limits: tenure.AsyncCoordinator, other: tenure.AsyncCoordinator
) -> None:
    first = limits.rate_limiter("api", rate="1/min", burst=20, deadline=None)
    second = other.rate_limiter("api", rate="1/min", burst=20, deadline=None)
    admitted: list[bool] = []

    async def caller(limiter: tenure.AsyncRateLimiter) -> None:
        for _ in range(6):
            admitted.append(await limiter.try_acquire(key="k"))

    callers = [AsyncBackground(lambda i=i: caller((first, second)[i % 2]), name=f"c{i}") for i in range(10)]
    for worker in callers:
        worker.start()
    for worker in callers:
        await worker.join()
    assert len(admitted) == 60
    assert sum(admitted) == 20
