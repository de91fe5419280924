# GENERATED from tests/_async/test_ratelimit_contract.py by scripts/unasync.py: do not edit; edit the source and re-run.
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
from collections.abc import Iterator

import pytest

import tenure
from tenure._sync.backends.base import Counters
from tenure._concurrency import Background, sleep
from tenure._core.guarantees import Capability


@pytest.fixture
def limits(counters_url: str) -> Iterator[tenure.Coordinator]:
    with tenure.Coordinator(counters_url) as coordinator:
        yield coordinator


@pytest.fixture
def other(counters_url: str) -> Iterator[tenure.Coordinator]:
    """A second client of the same backend."""
    with tenure.Coordinator(counters_url) as coordinator:
        yield coordinator


def test_incapable_backend_refuses_rate_limits(coord: tenure.Coordinator) -> None:
    if Capability.COUNTERS in coord.capabilities:
        assert isinstance(coord._store, Counters)
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
def test_bad_limiter_options_fail_before_io(
    counters_url: str, options: dict[str, object], match: str
) -> None:
    coordinator = tenure.Coordinator(counters_url)
    with pytest.raises(tenure.ConfigurationError, match=match):
        coordinator.rate_limiter("api", **options)  # type: ignore[arg-type]
    with pytest.raises(tenure.ConfigurationError, match="rate limiter name"):
        coordinator.rate_limiter("", rate="1/s")
    assert not coordinator._connected
    coordinator.close()


def test_bad_call_arguments_fail_before_io(counters_url: str) -> None:
    coordinator = tenure.Coordinator(counters_url)
    limiter = coordinator.rate_limiter("api", rate="10/s", burst=5, deadline=None)
    with pytest.raises(tenure.ConfigurationError, match="never be admitted"):
        limiter.try_acquire(cost=6)
    with pytest.raises(tenure.ConfigurationError, match="cost"):
        limiter.acquire(cost=0)
    with pytest.raises(tenure.ConfigurationError, match="rate limit key"):
        limiter.try_acquire(key="a\x00b")
    with pytest.raises(tenure.ConfigurationError, match="rate limit key"):
        limiter.peek(key="k" * 600)
    with pytest.raises(tenure.ConfigurationError, match="timeout"):
        limiter.acquire(timeout=-1)
    assert not coordinator._connected
    coordinator.close()


def test_a_burst_is_admitted_then_refused_with_the_exact_retry_after(
    limits: tenure.Coordinator,
) -> None:
    limiter = limits.rate_limiter("search", rate="10/s", burst=5, deadline=None)
    assert [limiter.try_acquire(key="client-7") for _ in range(5)] == [True] * 5
    refused = limiter.decide(key="client-7")
    assert not refused.allowed
    assert refused.remaining == 0
    assert 0.0 < refused.retry_after <= 0.1  # one permit comes back every 0.1 s
    assert 0.4 < refused.reset_after <= 0.5
    assert refused.limit == 5


def test_keys_names_and_clients_share_only_their_own_bucket(
    limits: tenure.Coordinator, other: tenure.Coordinator
) -> None:
    limiter = limits.rate_limiter("api", rate="1/min", burst=3, deadline=None)
    twin = other.rate_limiter("api", rate="1/min", burst=3, deadline=None)
    assert limiter.try_acquire(key="a")
    assert twin.try_acquire(key="a")  # another client, the same bucket
    assert limiter.try_acquire(key="a")
    assert not twin.try_acquire(key="a")
    assert limiter.try_acquire(key="b")  # another key
    assert limiter.try_acquire()  # no key: the limiter's own bucket
    assert limits.rate_limiter(
        "api:a", rate="1/min", burst=3, deadline=None
    ).try_acquire()  # names apart
    assert limits.rate_limiter("api", rate="1/min", burst=3, deadline=None).try_acquire(key="a:x")


def test_peek_takes_nothing(limits: tenure.Coordinator) -> None:
    limiter = limits.rate_limiter("api", rate="1/min", burst=4, deadline=None)
    fresh = limiter.peek(key="k")
    assert (fresh.allowed, fresh.remaining, fresh.reset_after) == (True, 4, 0.0)
    assert (limiter.peek(key="k")).remaining == 4
    taken = limiter.decide(key="k", cost=3)
    assert taken.allowed and taken.remaining == 1
    looked = limiter.peek(key="k")
    assert looked.remaining == 1 and 170 < looked.reset_after <= 180
    assert (limiter.peek(key="k")).remaining == 1


def test_cost_takes_several_permits(limits: tenure.Coordinator) -> None:
    limiter = limits.rate_limiter("api", rate="10/s", burst=5, deadline=None)
    assert limiter.try_acquire(key="k", cost=3)
    refused = limiter.decide(key="k", cost=3)
    assert not refused.allowed and refused.remaining == 2
    assert 0.0 < refused.retry_after <= 0.1
    assert limiter.try_acquire(key="k", cost=2)  # what remains is still there


def test_every_rate_must_admit(limits: tenure.Coordinator) -> None:
    limiter = limits.rate_limiter("api", rate="100/s;3/min", deadline=None)
    assert [r.burst for r in limiter.rates] == [100, 3]
    assert [limiter.try_acquire(key="k") for _ in range(4)] == [True, True, True, False]
    refused = limiter.decide(key="k")
    assert 19.0 < refused.retry_after <= 20.0  # the minute quota's next permit, not the second's


def test_permits_come_back_at_the_rate(limits: tenure.Coordinator) -> None:
    limiter = limits.rate_limiter("api", rate="20/s", burst=2, deadline=None)
    assert limiter.try_acquire(key="k")
    assert limiter.try_acquire(key="k")
    assert not limiter.try_acquire(key="k")
    sleep(0.06)  # one interval (0.05 s) and a little
    assert limiter.try_acquire(key="k")
    assert not limiter.try_acquire(key="k")


def test_acquire_sleeps_until_the_permit_is_due(limits: tenure.Coordinator) -> None:
    limiter = limits.rate_limiter("api", rate="5/s", burst=1, deadline=None)
    limiter.acquire(key="k")
    started = time.monotonic()
    state = limiter.acquire(key="k", timeout=2)
    waited = time.monotonic() - started
    assert state.allowed
    assert 0.15 < waited < 0.6  # one interval (0.2 s), slept once, not polled


def test_acquire_refuses_at_once_when_the_permit_is_due_past_the_timeout(
    limits: tenure.Coordinator,
) -> None:
    limiter = limits.rate_limiter("api", rate="1/min", burst=1, deadline=None)
    limiter.acquire(key="k")
    started = time.monotonic()
    with pytest.raises(tenure.RateLimited) as raised:
        limiter.acquire(key="k", timeout=5)
    assert time.monotonic() - started < 1.0  # no waiting to fail
    assert 55 < raised.value.retry_after <= 60
    assert not raised.value.unavailable
    with pytest.raises(tenure.RateLimited):
        limiter.acquire(key="k", timeout=0)


def test_concurrent_callers_get_exactly_the_burst(
    limits: tenure.Coordinator, other: tenure.Coordinator
) -> None:
    first = limits.rate_limiter("api", rate="1/min", burst=20, deadline=None)
    second = other.rate_limiter("api", rate="1/min", burst=20, deadline=None)
    admitted: list[bool] = []

    def caller(limiter: tenure.RateLimiter) -> None:
        for _ in range(6):
            admitted.append(limiter.try_acquire(key="k"))

    callers = [Background(lambda i=i: caller((first, second)[i % 2]), name=f"c{i}") for i in range(10)]
    for worker in callers:
        worker.start()
    for worker in callers:
        worker.join()
    assert len(admitted) == 60
    assert sum(admitted) == 20
