"""tenure.retry and tenure.fallback, in both colours: attempts, one deadline, Retry-After, the budget."""

from __future__ import annotations

import asyncio
import time

import pytest

import tenure
from tenure import ConfigurationError, RetryBudget

SLACK = 0.05  # a call never runs past its deadline by more than this


class Flaky:
    """Fail `failures` times with `error`, then answer "ok"; count the calls."""

    def __init__(self, failures: int, error: type[BaseException] = ConnectionError) -> None:
        self.failures = failures
        self.error = error
        self.calls = 0
        self.raised: list[BaseException] = []

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            exc = self.error(f"failure {self.calls}")
            self.raised.append(exc)
            raise exc
        return "ok"

    async def acall(self) -> str:
        await asyncio.sleep(0)
        return self()


def test_retries_until_it_works() -> None:
    flaky = Flaky(2)
    assert tenure.retry(attempts=3, backoff=0).call(flaky) == "ok"
    assert flaky.calls == 3


def test_raises_the_last_exception_itself_when_attempts_run_out() -> None:
    flaky = Flaky(5)
    with pytest.raises(ConnectionError) as caught:
        tenure.retry(attempts=3, backoff=0).call(flaky)
    assert caught.value is flaky.raised[-1]
    assert flaky.calls == 3


def test_exceptions_not_named_pass_through_at_once() -> None:
    flaky = Flaky(1, ValueError)
    with pytest.raises(ValueError):
        tenure.retry(attempts=5, backoff=0, on=ConnectionError).call(flaky)
    assert flaky.calls == 1
    flaky = Flaky(1, ValueError)
    policy = tenure.retry(attempts=5, backoff=0, on=lambda exc: "failure" in str(exc))
    assert policy.call(flaky) == "ok"


def test_decorator_serves_def_and_async_def_and_keeps_names() -> None:
    policy = tenure.retry(attempts=3, backoff=0)
    sync_flaky, async_flaky = Flaky(2), Flaky(2)

    @policy
    def fetch(scale: int) -> str:
        return sync_flaky() * scale

    @policy
    async def afetch(scale: int) -> str:
        return await async_flaky.acall() * scale

    assert fetch(2) == "okok" and fetch.__name__ == "fetch"
    assert asyncio.run(afetch(2)) == "okok" and afetch.__name__ == "afetch"
    assert sync_flaky.calls == async_flaky.calls == 3


def test_async_gives_up_like_sync() -> None:
    flaky = Flaky(10)
    with pytest.raises(ConnectionError) as caught:
        asyncio.run(tenure.retry(attempts=4, backoff=0).acall(flaky.acall))
    assert caught.value is flaky.raised[-1] and flaky.calls == 4


def test_backoff_grows_with_full_jitter_up_to_the_cap() -> None:
    sleeps: list[float] = []
    policy = tenure.Retry(attempts=6, backoff=0.1, max_backoff=0.3, rand=lambda: 1.0)
    attempts = policy.begin()
    while (delay := attempts.next_delay(ConnectionError())) is not None:
        sleeps.append(delay)
    assert sleeps == pytest.approx([0.1, 0.2, 0.3, 0.3, 0.3])
    assert attempts.made == 6


@pytest.mark.parametrize("colour", ["sync", "async"])
def test_one_deadline_over_attempts_and_sleeps(colour: str) -> None:
    flaky = Flaky(1000)
    policy = tenure.retry(attempts=100, timeout=0.5, backoff=0.05, max_backoff=0.2)
    start = time.monotonic()
    with pytest.raises(ConnectionError):
        if colour == "sync":
            policy.call(flaky)
        else:
            asyncio.run(policy.acall(flaky.acall))
    elapsed = time.monotonic() - start
    assert elapsed <= 0.5 + SLACK
    assert flaky.calls >= 3  # it did retry inside the deadline


@pytest.mark.parametrize("colour", ["sync", "async"])
def test_slow_attempts_do_not_push_the_call_past_its_deadline(colour: str) -> None:
    calls = 0

    def slow() -> None:
        nonlocal calls
        calls += 1
        time.sleep(0.12)
        raise ConnectionError

    async def aslow() -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.12)
        raise ConnectionError

    policy = tenure.retry(attempts=10, timeout=0.4, backoff=0.01, max_backoff=0.01)
    start = time.monotonic()
    with pytest.raises(ConnectionError):
        if colour == "sync":
            policy.call(slow)
        else:
            asyncio.run(policy.acall(aslow))
    assert time.monotonic() - start <= 0.4 + 0.12 + SLACK  # the last attempt began before the deadline
    assert 3 <= calls <= 4


def test_retry_after_is_honoured_and_never_slept_past_the_deadline() -> None:
    class Busy(Exception):
        def __init__(self, wait: float) -> None:
            self.wait = wait

    def hint(exc: BaseException) -> float | None:
        return exc.wait if isinstance(exc, Busy) else None

    calls: list[float] = []

    def busy(wait: float) -> str:
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise Busy(wait)
        return "ok"

    policy = tenure.retry(attempts=3, timeout=1.0, backoff=0, retry_after=hint)
    assert policy.call(busy, 0.2) == "ok"
    assert 0.2 <= calls[1] - calls[0] <= 0.2 + SLACK
    calls.clear()
    start = time.monotonic()
    with pytest.raises(Busy):  # asked to wait 5 s with 1 s left: give up now rather than sleep
        policy.call(busy, 5.0)
    assert time.monotonic() - start < SLACK and len(calls) == 1


def test_attempts_driven_by_hand_take_a_retry_after() -> None:
    policy = tenure.retry(attempts=3, timeout=2, backoff=0.1)
    attempts = policy.begin()
    remaining = attempts.remaining()
    assert remaining is not None and 1.9 < remaining <= 2
    assert attempts.next_delay(retry_after=0.7) == 0.7
    assert attempts.next_delay(retry_after=2.5) is None  # past the deadline
    assert attempts.next_delay(ValueError(), retry_after=0.1) == 0.1  # exc matches Exception
    assert attempts.next_delay(retry_after=0.1) is None  # 3 attempts made
    assert tenure.retry().begin().remaining() is None


def test_budget_holds_calls_within_one_plus_ratio_during_an_outage() -> None:
    budget = RetryBudget(ratio=0.1, min_per_second=0, ttl=10)
    policy = tenure.retry(attempts=3, backoff=0, budget=budget)
    sent = 0

    def down() -> None:
        nonlocal sent
        sent += 1
        raise ConnectionError

    offered = 200
    for _ in range(offered):
        with pytest.raises(ConnectionError):
            policy.call(down)
    assert offered < sent <= 1.1 * offered


def test_budget_floor_lets_a_quiet_client_retry() -> None:
    policy = tenure.retry(attempts=3, backoff=0, budget=RetryBudget(ratio=0.1, min_per_second=1, ttl=10))
    flaky = Flaky(2)
    assert policy.call(flaky) == "ok" and flaky.calls == 3


def test_cancellation_during_a_backoff_sleep_ends_the_call() -> None:
    flaky = Flaky(100)
    policy = tenure.Retry(attempts=5, backoff=10, max_backoff=10, rand=lambda: 1.0)

    async def main() -> None:
        task = asyncio.create_task(policy.acall(flaky.acall))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    start = time.monotonic()
    asyncio.run(main())
    assert time.monotonic() - start < 0.5 and flaky.calls == 1


def test_cancelled_error_is_not_retried() -> None:
    flaky = Flaky(1, asyncio.CancelledError)
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(tenure.retry(attempts=3, backoff=0).acall(flaky.acall))
    assert flaky.calls == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"attempts": 0},
        {"attempts": 1.5},
        {"attempts": True},
        {"timeout": 0},
        {"timeout": -1},
        {"timeout": float("nan")},
        {"backoff": -0.1},
        {"backoff": 1, "max_backoff": 0.5},
        {"on": ()},
        {"on": (ValueError, "x")},
        {"on": 3},
        {"budget": 0.2},
        {"retry_after": 5},
    ],
)
def test_bad_options_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        tenure.retry(**kwargs)  # type: ignore[arg-type]


def test_only_functions_are_decorated() -> None:
    with pytest.raises(ConfigurationError):
        tenure.retry()(42)  # type: ignore[call-overload]


# --- fallback -------------------------------------------------------------------------------------


def test_fallback_answers_a_value_or_a_function_of_the_error() -> None:
    @tenure.fallback("cached")
    def down() -> str:
        raise ConnectionError("down")

    @tenure.fallback(lambda exc: f"because {exc}")
    def down_too() -> str:
        raise ConnectionError("down")

    assert down() == "cached" and down_too() == "because down"


def test_fallback_lets_other_errors_through() -> None:
    @tenure.fallback("cached", on=ConnectionError)
    def broken() -> str:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        broken()


def test_fallback_serves_async_with_an_async_function() -> None:
    async def stand_in(exc: BaseException) -> str:
        await asyncio.sleep(0)
        return type(exc).__name__

    @tenure.fallback(stand_in)
    async def down() -> str:
        raise TimeoutError

    assert asyncio.run(down()) == "TimeoutError"
    with pytest.raises(ConfigurationError):
        tenure.fallback(stand_in)(lambda: "x")


def test_fallback_outermost_answers_refusals_and_spent_retries() -> None:
    breaker = tenure.circuit_breaker("partner", min_calls=2, failure_rate=1.0)
    answers: list[str] = []

    @tenure.fallback(lambda exc: type(exc).__name__)
    @breaker
    @tenure.retry(attempts=2, backoff=0)
    def call() -> str:
        raise ConnectionError

    for _ in range(3):
        answers.append(call())
    assert answers == ["ConnectionError", "ConnectionError", "CircuitOpen"]
