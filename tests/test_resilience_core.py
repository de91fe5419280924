"""The sans-I/O cores of call protection: the breaker's step and record, backoff, Retry-After, budget."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tenure import BulkheadFull, CircuitOpen, TenureError
from tenure._core.breaker import (
    BreakerPolicy,
    BreakerRecord,
    BreakerState,
    Tally,
    breaker_policy,
    breaker_step,
)
from tenure._core.retrying import RetryBudget, full_jitter, parse_retry_after
from tenure._exceptions import ConfigurationError

POLICY = breaker_policy(failure_rate=0.5, min_calls=4, window=10, reset_after=5, trials=2)
FAIL = Tally(1, 1, 0)
OK = Tally(1, 0, 0)


def run(record: BreakerRecord, now: float, *tallies: Tally, policy: BreakerPolicy = POLICY) -> BreakerRecord:
    for tally in tallies:
        record, _ = breaker_step(record, now, policy, tally)
    return record


# --- policy -------------------------------------------------------------------------------------


def test_policy_defaults_match_the_contract() -> None:
    assert breaker_policy() == BreakerPolicy() == BreakerPolicy(0.5, 20, 60.0, 30.0, 3, None, 1.0, 10)
    assert BreakerPolicy().bucket_width == 6.0


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("failure_rate", 0),
        ("failure_rate", 1.5),
        ("failure_rate", float("nan")),
        ("failure_rate", "0.5"),
        ("failure_rate", True),
        ("min_calls", 0),
        ("min_calls", 2.0),
        ("window", 0),
        ("window", float("inf")),
        ("reset_after", -1),
        ("trials", 0),
        ("trials", 10_000),
        ("slow_call_duration", 0),
        ("slow_call_rate", 0),
        ("buckets", 0),
        ("buckets", 5000),
    ],
)
def test_bad_policy_options_are_refused_by_name(name: str, value: object) -> None:
    with pytest.raises(ConfigurationError, match=name):
        breaker_policy(**{name: value})


# --- the state machine ------------------------------------------------------------------------------


def test_closed_opens_at_the_failure_rate_once_min_calls_are_in_the_window() -> None:
    record = run(BreakerRecord(), 100.0, FAIL, FAIL, FAIL)  # 3 calls < min_calls 4
    assert record.state is BreakerState.CLOSED
    record, view = breaker_step(record, 100.5, POLICY, OK)  # 3 of 4 failed
    assert view.state is BreakerState.OPEN and record.state is BreakerState.OPEN
    assert view.opened_until == record.opened_until == 105.5
    assert record.buckets == ()  # the window is cleared on opening


def test_rate_below_the_threshold_stays_closed() -> None:
    record = run(BreakerRecord(), 0.0, FAIL, OK, OK, OK, FAIL, OK, OK, OK)  # 25%
    assert record.state is BreakerState.CLOSED
    assert record.totals() == Tally(8, 2, 0)


def test_a_rate_equal_to_the_threshold_opens_despite_float_rounding() -> None:
    policy = breaker_policy(failure_rate=0.3, min_calls=10)
    record = run(BreakerRecord(), 0.0, *([FAIL] * 3 + [OK] * 6), policy=policy)
    assert record.state is BreakerState.CLOSED
    record = run(record, 0.0, OK, policy=policy)  # 3 of 10
    assert record.state is BreakerState.OPEN


def test_old_slots_leave_the_window() -> None:
    record = run(BreakerRecord(), 0.0, FAIL, FAIL, FAIL)
    record = run(record, 10.5, OK)  # the failures at 0 are over 10 s old: 1 call, no failure
    assert record.state is BreakerState.CLOSED
    assert record.totals() == Tally(1, 0, 0)
    record = run(BreakerRecord(), 0.0, FAIL, FAIL, FAIL)
    record = run(record, 9.5, FAIL)  # still inside the window
    assert record.state is BreakerState.OPEN


def test_slow_calls_open_at_the_slow_rate_only_when_the_rule_is_on() -> None:
    slow = Tally(1, 0, 1)
    off = breaker_policy(min_calls=4, slow_call_rate=0.5)
    assert run(BreakerRecord(), 0.0, slow, slow, slow, slow, policy=off).state is BreakerState.CLOSED
    on = breaker_policy(min_calls=4, slow_call_duration=1.0, slow_call_rate=0.5)
    assert run(BreakerRecord(), 0.0, slow, slow, OK, policy=on).state is BreakerState.CLOSED
    assert run(BreakerRecord(), 0.0, slow, slow, OK, OK, policy=on).state is BreakerState.OPEN


def test_open_refuses_then_half_open_grants_exactly_trials() -> None:
    opened = run(BreakerRecord(), 0.0, FAIL, FAIL, FAIL, FAIL)
    record, view = breaker_step(opened, 4.9, POLICY, want_trial=True)
    assert view.state is BreakerState.OPEN and not view.trial_granted and view.opened_until == 5.0
    grants = []
    for _ in range(5):
        record, view = breaker_step(record, 5.0, POLICY, want_trial=True)
        grants.append(view.trial_granted)
    assert grants == [True, True, False, False, False]
    assert view.state is BreakerState.HALF_OPEN and view.opened_until == 10.0


def test_all_trials_succeeding_closes_with_a_clear_window() -> None:
    record = run(BreakerRecord(), 0.0, FAIL, FAIL, FAIL, FAIL)
    for _ in range(2):
        record, _ = breaker_step(record, 6.0, POLICY, want_trial=True)
    record, view = breaker_step(record, 6.1, POLICY, trial_outcome=True)
    assert view.state is BreakerState.HALF_OPEN
    record, view = breaker_step(record, 6.2, POLICY, trial_outcome=True)
    assert view.state is BreakerState.CLOSED and record == BreakerRecord()


def test_a_failed_trial_opens_again_for_reset_after() -> None:
    record = run(BreakerRecord(), 0.0, FAIL, FAIL, FAIL, FAIL)
    record, _ = breaker_step(record, 6.0, POLICY, want_trial=True)
    record, _ = breaker_step(record, 6.1, POLICY, trial_outcome=True)
    record, view = breaker_step(record, 6.5, POLICY, trial_outcome=False)
    assert view.state is BreakerState.OPEN and view.opened_until == 11.5
    # a late outcome of the same round while open changes nothing
    again, _ = breaker_step(record, 7.0, POLICY, trial_outcome=True)
    assert again == record


def test_tallies_are_not_counted_unless_closed() -> None:
    record = run(BreakerRecord(), 0.0, FAIL, FAIL, FAIL, FAIL)
    assert run(record, 1.0, FAIL, OK) == record


def test_a_round_whose_trials_never_report_begins_again_after_reset_after() -> None:
    record = run(BreakerRecord(), 0.0, FAIL, FAIL, FAIL, FAIL)
    for _ in range(2):
        record, _ = breaker_step(record, 5.0, POLICY, want_trial=True)
    record, view = breaker_step(record, 9.9, POLICY, want_trial=True)
    assert not view.trial_granted
    record, view = breaker_step(record, 10.0, POLICY, want_trial=True)
    assert view.trial_granted and view.state is BreakerState.HALF_OPEN and view.opened_until == 15.0


def test_the_step_is_pure() -> None:
    record = run(BreakerRecord(), 0.0, FAIL, OK)
    assert breaker_step(record, 1.0, POLICY, FAIL) == breaker_step(record, 1.0, POLICY, FAIL)


# --- the record's bytes -------------------------------------------------------------------------------


def test_none_is_a_fresh_closed_record() -> None:
    assert BreakerRecord.decode(None) == BreakerRecord()


@pytest.mark.parametrize(
    "data", [b"", b"\x01", b"x" * 19, BreakerRecord().encode() + b"\x00", b"\x09" + b"\x00" * 18]
)
def test_garbage_is_a_value_error(data: bytes) -> None:
    with pytest.raises(ValueError, match="breaker record"):
        BreakerRecord.decode(data)


slots = st.lists(
    st.tuples(
        st.floats(-1e12, 1e12, allow_nan=False),
        st.builds(Tally, st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)),
    ),
    max_size=20,
).map(tuple)


@settings(max_examples=200)
@given(
    st.sampled_from(list(BreakerState)),
    st.floats(-1e12, 1e12, allow_nan=False),
    st.integers(0, 1000),
    st.integers(0, 1000),
    slots,
)
def test_records_round_trip(
    state: BreakerState, until: float, taken: int, passed: int, buckets: tuple[tuple[float, Tally], ...]
) -> None:
    record = BreakerRecord(state, until, taken, passed, buckets)
    data = record.encode()
    assert len(data) == 16 + 20 * len(buckets)
    assert BreakerRecord.decode(data) == record


@settings(max_examples=300)
@given(
    st.lists(
        st.tuples(
            st.floats(0, 3, allow_nan=False),  # time advance
            st.sampled_from(["ok", "fail", "slow", "trial", "pass", "flunk"]),
        ),
        max_size=60,
    )
)
def test_any_history_keeps_the_invariants(steps: list[tuple[float, str]]) -> None:
    policy = breaker_policy(min_calls=3, window=4, buckets=4, reset_after=2, trials=2, slow_call_duration=1)
    record, now = BreakerRecord(), 0.0
    granted_in_round = 0
    for advance, what in steps:
        now += advance
        before = record
        tally = {"ok": OK, "fail": FAIL, "slow": Tally(1, 0, 1)}.get(what, Tally())
        outcome = {"pass": True, "flunk": False}.get(what)
        record, view = breaker_step(
            record, now, policy, tally, want_trial=what == "trial", trial_outcome=outcome
        )
        if record.state is not BreakerState.HALF_OPEN or record.opened_until != before.opened_until:
            granted_in_round = 0
        granted_in_round += view.trial_granted
        assert granted_in_round <= policy.trials
        assert record.trials_taken <= policy.trials
        assert len(record.buckets) <= policy.buckets
        assert record.state is BreakerState.CLOSED or record.buckets == ()
        assert BreakerRecord.decode(record.encode()) == record


# --- backoff and Retry-After --------------------------------------------------------------------------


def test_full_jitter_spans_zero_to_the_capped_ceiling() -> None:
    assert full_jitter(0, 0.1, 10, lambda: 1.0) == pytest.approx(0.1)
    assert full_jitter(3, 0.1, 10, lambda: 1.0) == pytest.approx(0.8)
    assert full_jitter(3, 0.1, 10, lambda: 0.0) == 0.0
    assert full_jitter(7, 0.1, 10, lambda: 1.0) == 10  # 12.8 capped
    assert full_jitter(10_000, 0.1, 10, lambda: 0.5) == 5  # kept at the cap, no overflow
    assert full_jitter(-1, 0.1, 10, lambda: 1.0) == pytest.approx(0.1)


@given(st.integers(0, 5000), st.floats(0.001, 5), st.floats(0.001, 100), st.floats(0, 1))
def test_full_jitter_is_within_bounds(attempt: int, base: float, cap: float, draw: float) -> None:
    delay = full_jitter(attempt, base, cap, lambda: draw)
    assert 0 <= delay <= min(cap, base * 2.0 ** min(attempt, 64)) + 1e-12


NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 0 ", 0.0),
        ("1.5", 1.5),
        (format_datetime(datetime.fromtimestamp(NOW + 30, UTC), usegmt=True), 30.0),
        (format_datetime(datetime.fromtimestamp(NOW - 30, UTC), usegmt=True), 0.0),  # past: now
        ("Sunday, 06-Nov-94 08:49:37 GMT", 0.0),  # the obsolete RFC 850 form, in the past
        ("", None),
        ("soon", None),
        ("-5", None),
        ("1e3", None),
        ("Wed, 99 Foo 2015 07:28:00 GMT", None),
        ("9" * 400, None),
    ],
)
def test_retry_after_is_read_in_both_forms(value: str, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected


@given(st.text(max_size=40))
def test_retry_after_never_raises_and_never_goes_negative(value: str) -> None:
    seconds = parse_retry_after(value, NOW)
    assert seconds is None or seconds >= 0


# --- the retry budget -------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_budget_floor_without_calls() -> None:
    clock = FakeClock()
    budget = RetryBudget(ratio=0.2, min_per_second=1, ttl=10, clock=clock)
    assert budget.available() == 10
    assert sum(budget.try_withdraw() for _ in range(50)) == 10
    clock.now += 10.0  # the withdrawals expire with the ttl: the floor is back
    assert budget.available() == 10


def test_budget_allows_ratio_of_calls_plus_the_floor() -> None:
    clock = FakeClock()
    budget = RetryBudget(ratio=0.2, min_per_second=0.5, ttl=10, clock=clock)
    for _ in range(100):
        budget.deposit()
    assert sum(budget.try_withdraw() for _ in range(100)) == 20 + 5


def test_an_outage_holds_total_calls_within_one_plus_ratio() -> None:
    clock = FakeClock()
    budget = RetryBudget(ratio=0.1, min_per_second=0, ttl=10, clock=clock)
    offered = sent = 0
    for _ in range(3000):  # 300 s of 10 calls a second, every attempt failing, 3 attempts each
        clock.now += 0.1
        offered += 1
        sent += 1
        budget.deposit()
        for _ in range(2):
            if not budget.try_withdraw():
                break
            sent += 1
    assert sent <= 1.1 * offered
    assert sent >= 1.09 * offered  # and the budget is spent, not hoarded


def test_ratio_zero_allows_only_the_floor() -> None:
    budget = RetryBudget(ratio=0, min_per_second=0.2, ttl=10, clock=FakeClock())
    for _ in range(1000):
        budget.deposit()
    assert sum(budget.try_withdraw() for _ in range(10)) == 2


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ratio": -0.1},
        {"ratio": 1001},
        {"ratio": True},
        {"min_per_second": -1},
        {"ttl": 0},
        {"ttl": float("inf")},
    ],
)
def test_bad_budgets_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigurationError):
        RetryBudget(**kwargs)  # type: ignore[arg-type]


# --- the errors ---------------------------------------------------------------------------------------


def test_errors_join_the_tree_and_pickle_whole() -> None:
    error = CircuitOpen("payments-api is open", 1234.5)
    assert isinstance(error, TenureError) and str(error) == "payments-api is open"
    copy = pickle.loads(pickle.dumps(error))
    assert copy.opened_until == 1234.5 and str(copy) == "payments-api is open"
    assert isinstance(BulkheadFull("full"), TenureError)
