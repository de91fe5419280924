"""tenure.circuit_breaker in one process: opening, refusing, half-open trials, slow calls, both colours."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import tenure
from tenure import BreakerState, CircuitBreaker, CircuitOpen, ConfigurationError


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def fail(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        with pytest.raises(ConnectionError), breaker:
            raise ConnectionError("down")


def succeed(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        with breaker:
            pass


def test_opens_at_the_failure_rate_and_refuses_without_calling() -> None:
    breaker = tenure.circuit_breaker("partner", min_calls=4, failure_rate=0.5, reset_after=30)
    succeed(breaker, 2)
    fail(breaker)
    assert breaker.state is BreakerState.CLOSED  # 3 calls < min_calls
    fail(breaker)
    assert breaker.state is BreakerState.OPEN
    called = []
    before = time.time()
    with pytest.raises(CircuitOpen) as caught:
        breaker.call(called.append, 1)
    assert called == []
    assert before + 29 <= caught.value.opened_until <= time.time() + 30
    assert "partner" in str(caught.value) and "open" in str(caught.value)


def test_half_open_admits_exactly_trials_and_closes_when_all_succeed() -> None:
    clock = Clock()
    breaker = CircuitBreaker("p", min_calls=2, failure_rate=1.0, reset_after=10, trials=2, clock=clock)
    fail(breaker, 2)
    clock.now += 10
    assert breaker.state is BreakerState.HALF_OPEN
    first, second = breaker.admit(), breaker.admit()
    assert first.trial and second.trial
    with pytest.raises(CircuitOpen, match="half-open"):
        breaker.admit()
    first.succeeded()
    assert breaker.state is BreakerState.HALF_OPEN
    second.succeeded()
    second.succeeded()  # a second report is ignored
    assert breaker.state is BreakerState.CLOSED
    assert not breaker.admit().trial


def test_a_failed_trial_opens_again() -> None:
    clock = Clock()
    breaker = CircuitBreaker("p", min_calls=2, failure_rate=1.0, reset_after=10, trials=3, clock=clock)
    fail(breaker, 2)
    clock.now += 10
    fail(breaker)  # the first trial fails
    assert breaker.state is BreakerState.OPEN
    with pytest.raises(CircuitOpen):
        breaker.admit()
    clock.now += 9.9
    assert breaker.state is BreakerState.OPEN
    clock.now += 0.1
    assert breaker.state is BreakerState.HALF_OPEN


def test_real_clock_recovery() -> None:
    breaker = tenure.circuit_breaker("p", min_calls=1, failure_rate=1.0, reset_after=0.1, trials=1)
    fail(breaker)
    with pytest.raises(CircuitOpen):
        succeed(breaker)
    time.sleep(0.12)
    succeed(breaker)
    assert breaker.state is BreakerState.CLOSED


def test_slow_calls_open_the_breaker_and_fail_a_trial() -> None:
    clock = Clock()
    breaker = CircuitBreaker(
        "p", min_calls=3, slow_call_duration=1.0, slow_call_rate=0.6, reset_after=5, trials=1, clock=clock
    )
    for _ in range(2):
        call = breaker.admit()
        clock.now += 1.5
        call.succeeded()
    succeed(breaker)  # quick: 2 of 3 slow
    assert breaker.state is BreakerState.OPEN
    clock.now += 5
    call = breaker.admit()
    assert call.trial
    clock.now += 2
    call.succeeded()  # worked, but slowly: the trial fails
    assert breaker.state is BreakerState.OPEN


def test_exceptions_not_named_failures_count_as_successes() -> None:
    breaker = tenure.circuit_breaker("p", min_calls=2, failure_rate=0.5, failure=(ConnectionError,))
    for _ in range(10):
        with pytest.raises(KeyError), breaker:
            raise KeyError("not found")  # the service answered
    fail(breaker, 9)  # 9 of 19
    assert breaker.state is BreakerState.CLOSED
    fail(breaker)  # 10 of 20
    assert breaker.state is BreakerState.OPEN


def test_a_predicate_decides_what_is_a_failure() -> None:
    breaker = tenure.circuit_breaker("p", min_calls=2, failure_rate=0.6, failure=lambda e: "5xx" in str(e))
    for text in ("4xx", "5xx"):
        with pytest.raises(RuntimeError), breaker:
            raise RuntimeError(text)
    assert breaker.state is BreakerState.CLOSED  # 1 of 2: the 4xx was a success
    with pytest.raises(RuntimeError), breaker:
        raise RuntimeError("5xx")
    assert breaker.state is BreakerState.OPEN  # 2 of 3


def test_decorator_serves_def_and_async_def() -> None:
    breaker = tenure.circuit_breaker("p", min_calls=2, failure_rate=1.0)

    @breaker
    def down() -> None:
        raise ConnectionError

    @breaker
    async def adown() -> None:
        await asyncio.sleep(0)
        raise ConnectionError

    @breaker
    async def aup() -> str:
        return "up"

    with pytest.raises(ConnectionError):
        down()
    with pytest.raises(ConnectionError):
        asyncio.run(adown())
    with pytest.raises(CircuitOpen):
        asyncio.run(aup())
    assert down.__name__ == "down"


def test_async_with_and_nested_with() -> None:
    breaker = tenure.circuit_breaker("p", min_calls=3, failure_rate=0.75)

    async def main() -> None:
        with pytest.raises(ConnectionError):
            async with breaker:
                raise ConnectionError
        async with breaker:
            pass

    asyncio.run(main())
    with pytest.raises(ConnectionError), breaker, breaker:  # the inner block fails, the outer one too
        raise ConnectionError
    assert breaker.state is BreakerState.OPEN  # the outer block's failure made 3 of 4


def test_each_thread_and_task_reports_its_own_call() -> None:
    breaker = tenure.circuit_breaker("p", min_calls=1000, failure_rate=1.0)

    def plain(index: int) -> None:  # odd threads fail every call, even ones never
        for _ in range(50):
            try:
                with breaker:
                    time.sleep(0.0005)
                    if index % 2:
                        raise ConnectionError
            except ConnectionError:
                pass

    threads = [threading.Thread(target=plain, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    totals = breaker._record.totals()
    assert (totals.calls, totals.failures) == (400, 200)

    async def task(index: int) -> None:
        for _ in range(20):
            try:
                async with breaker:
                    await asyncio.sleep(0)
                    if index % 2:
                        raise ConnectionError
            except ConnectionError:
                pass

    async def main() -> None:
        await asyncio.gather(*(task(i) for i in range(10)))

    asyncio.run(main())
    totals = breaker._record.totals()
    assert (totals.calls, totals.failures) == (600, 300)


def test_a_cancelled_call_counts_as_nothing_and_a_cancelled_trial_as_failed() -> None:
    clock = Clock()
    breaker = CircuitBreaker("p", min_calls=1, failure_rate=1.0, reset_after=5, trials=1, clock=clock)

    async def hang() -> None:
        async with breaker:
            await asyncio.sleep(10)

    async def cancel_one() -> None:
        task = asyncio.create_task(hang())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_one())
    assert breaker.state is BreakerState.CLOSED and breaker._record.totals().calls == 0
    fail(breaker)
    clock.now += 5
    asyncio.run(cancel_one())  # this one was the trial
    assert breaker.state is BreakerState.OPEN


def test_reset_closes() -> None:
    breaker = tenure.circuit_breaker("p", min_calls=1, failure_rate=1.0)
    fail(breaker)
    breaker.reset()
    assert breaker.state is BreakerState.CLOSED
    succeed(breaker)


def test_leaving_without_entering_is_a_bug() -> None:
    breaker = tenure.circuit_breaker("p")
    with pytest.raises(RuntimeError):
        breaker.__exit__(None, None, None)


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("", {}),
        (3, {}),
        ("p", {"failure_rate": 0}),
        ("p", {"min_calls": 0}),
        ("p", {"window": -1}),
        ("p", {"reset_after": 0}),
        ("p", {"trials": 0}),
        ("p", {"slow_call_duration": -1}),
        ("p", {"slow_call_rate": 2}),
        ("p", {"failure": "ConnectionError"}),
    ],
)
def test_bad_options_are_refused(name: object, kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        tenure.circuit_breaker(name, **kwargs)  # type: ignore[arg-type]
