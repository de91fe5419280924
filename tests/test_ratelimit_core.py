"""The GCRA arithmetic of ``tenure._core.ratelimit``: parsing rates, the step, what it means."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tenure._core.ratelimit import (
    Rate,
    check_cost,
    decode_tats,
    encode_tats,
    gcra_step,
    parse_rates,
    rate_state,
)
from tenure._exceptions import ConfigurationError


@pytest.mark.parametrize(
    ("text", "burst", "expected"),
    [
        ("100/s", None, [Rate(100, 1.0, 100)]),
        ("6000/min", None, [Rate(6000, 60.0, 100)]),  # burst: one second of the rate
        ("100/min", None, [Rate(100, 60.0, 1)]),  # at least 1
        ("5/10s", 3, [Rate(5, 10.0, 3)]),
        ("2/ms", None, [Rate(2, 0.001, 2000)]),
        (" 10 / second ; 100/ 2 minutes", 4, [Rate(10, 1.0, 4), Rate(100, 120.0, 100)]),
        ("1/day", None, [Rate(1, 86400.0, 1)]),
    ],
)
def test_rates_are_read(text: str, burst: int | None, expected: list[Rate]) -> None:
    assert list(parse_rates(text, burst)) == expected


@pytest.mark.parametrize(
    "text", ["", "10", "10/", "/s", "ten/s", "10/fortnight", "-1/s", "1.5/s", "0/s", "1/0s", "2000/ms"]
)
def test_bad_rates_are_refused(text: str) -> None:
    with pytest.raises(ConfigurationError):
        parse_rates(text)


def test_interval_and_capacity() -> None:
    rate = Rate(10, 1.0, 5)
    assert rate.interval == pytest.approx(0.1)
    assert rate.capacity == pytest.approx(0.5)


def test_cost_must_fit_every_bucket() -> None:
    rates = parse_rates("10/s;3/min")
    assert check_cost(3, rates) == 3
    with pytest.raises(ConfigurationError, match="never be admitted"):
        check_cost(4, rates)
    for bad in (0, -1, 1.5, True, "1"):
        with pytest.raises(ConfigurationError, match="cost"):
            check_cost(bad, rates)


def test_tats_round_trip_at_full_precision() -> None:
    tats = (1_790_000_000.123456, 0.1 + 0.2)
    assert decode_tats(encode_tats(tats)) == tats
    assert decode_tats(encode_tats(tats).encode()) == tats
    assert decode_tats(None) == () == decode_tats("")


def test_a_step_admits_the_burst_then_tells_when_to_come_back() -> None:
    rates = parse_rates("10/s", 3)
    tats: tuple[float, ...] = ()
    for expected_remaining in (2, 1, 0):
        step = gcra_step(tats, 100.0, rates, 1)
        assert step.allowed
        tats = step.tats
        assert rate_state(step, rates, 1).remaining == expected_remaining
    refused = gcra_step(tats, 100.0, rates, 1)
    assert not refused.allowed and refused.tats == tats  # nothing changes
    state = rate_state(refused, rates, 1)
    assert state.retry_after == pytest.approx(0.1)
    assert state.reset_after == pytest.approx(0.3)
    assert gcra_step(tats, 100.0 + state.retry_after, rates, 1).allowed


def test_a_look_changes_nothing_and_an_idle_key_is_full() -> None:
    rates = parse_rates("10/s", 3)
    looked = gcra_step((), 5.0, rates, 0)
    assert looked.tats == (5.0,)
    assert rate_state(looked, rates, 0).remaining == 3
    stale = gcra_step((1.0,), 5.0, rates, 1)  # a TAT in the past: a full bucket
    assert stale.allowed and rate_state(stale, rates, 1).remaining == 2


def test_a_limiter_that_gained_a_rate_treats_it_as_idle() -> None:
    rates = parse_rates("10/s;100/min", 3)
    step = gcra_step((10.3,), 10.0, rates, 1)
    assert not step.allowed  # the first rate's bucket is empty
    assert step.tats == (10.3, 10.0)


@settings(max_examples=200, deadline=None)
@given(
    permits=st.integers(1, 50),
    burst=st.integers(1, 20),
    calls=st.lists(st.tuples(st.floats(0, 0.5), st.integers(1, 3)), min_size=1, max_size=200),
)
def test_never_more_than_rate_times_time_plus_burst(
    permits: int, burst: int, calls: list[tuple[float, int]]
) -> None:
    rates = (Rate(permits, 1.0, burst),)
    tats: tuple[float, ...] = ()
    now = start = 1000.0
    admitted = 0
    for pause, cost in calls:
        now += pause
        cost = min(cost, burst)
        step = gcra_step(tats, now, rates, cost)
        state = rate_state(step, rates, cost)
        if step.allowed:
            tats = step.tats
            admitted += cost
            assert state.retry_after == 0
        else:  # the retry_after it tells is exact: admitted then, not a moment before
            assert state.retry_after > 0
            assert gcra_step(tats, now + state.retry_after + 1e-9, rates, cost).allowed
            assert not gcra_step(tats, now + state.retry_after * 0.99 - 1e-6, rates, cost).allowed
        assert admitted <= math.floor(permits * (now - start) + 1e-6) + burst
