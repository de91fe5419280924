"""The shared circuit breaker (``coord.circuit_breaker``) on every Counters backend, both colours.

Two coordinators on one backend stand for two processes (each keeps its own local view); across
real processes: tests/test_breaker_processes.py. Steps wait for the store as long as its
op_timeout (``deadline=None``), so that a loaded machine does not turn a step into a local one.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

import tenure
from tenure._async.backends.base import AsyncCounters
from tenure._core.guarantees import Capability
from tenure.resilience import BreakerState


@pytest.fixture
async def first(counters_url: str) -> AsyncIterator[tenure.AsyncCoordinator]:
    async with tenure.AsyncCoordinator(counters_url) as coordinator:
        yield coordinator


@pytest.fixture
async def second(counters_url: str) -> AsyncIterator[tenure.AsyncCoordinator]:
    async with tenure.AsyncCoordinator(counters_url) as coordinator:
        yield coordinator


def options(**changes: Any) -> dict[str, Any]:
    return {"min_calls": 4, "failure_rate": 0.5, "reset_after": 30, "trials": 2, "sync_interval": 0.2,
            "deadline": None, **changes}  # fmt: skip


def name() -> str:
    return f"partner-{uuid.uuid4().hex[:8]}"


class Boom(Exception):
    pass


async def fail(breaker: tenure.AsyncSharedCircuitBreaker) -> None:
    call = await breaker.admit()
    await call.failed()


def count_steps(coordinator: tenure.AsyncCoordinator) -> list[float]:
    """Count the store steps of ``coordinator`` (its store's update_state wrapped, not replaced)."""
    store: Any = coordinator._store
    steps: list[float] = []
    real = store.update_state

    async def counted(*args: Any) -> Any:
        steps.append(time.monotonic())
        return await real(*args)

    store.update_state = counted
    return steps


async def test_incapable_backend_refuses_shared_breakers(coord: tenure.AsyncCoordinator) -> None:
    if Capability.COUNTERS in coord.capabilities:
        assert isinstance(coord._store, AsyncCounters)
        assert coord.circuit_breaker("api").state is BreakerState.CLOSED
    else:
        with pytest.raises(tenure.BackendIncapable, match="Counters"):
            coord.circuit_breaker("api")


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ({"failure_rate": 0}, "failure_rate"),
        ({"min_calls": 0}, "min_calls"),
        ({"reset_after": -1}, "reset_after"),
        ({"trials": 1.5}, "trials"),
        ({"sync_interval": 0}, "sync_interval"),
        ({"sync_interval": "1"}, "sync_interval"),
        ({"deadline": 0}, "deadline"),
        ({"failure": "boom"}, "failure"),
    ],
)
async def test_bad_options_fail_before_io(counters_url: str, bad: dict[str, Any], match: str) -> None:
    coordinator = tenure.AsyncCoordinator(counters_url)
    with pytest.raises(tenure.ConfigurationError, match=match):
        coordinator.circuit_breaker("api", **bad)
    with pytest.raises(tenure.ConfigurationError, match="circuit breaker name"):
        coordinator.circuit_breaker("")
    assert not coordinator._connected
    await coordinator.aclose()


async def test_failures_of_two_processes_open_it_for_both(
    first: tenure.AsyncCoordinator, second: tenure.AsyncCoordinator
) -> None:
    shared = name()
    one, two = first.circuit_breaker(shared, **options()), second.circuit_breaker(shared, **options())
    await fail(one)
    await fail(two)
    await fail(one)
    assert one.state is BreakerState.CLOSED  # 3 failures of min_calls 4
    await fail(two)  # the 4th, reported at once: its reply says open
    assert two.state is BreakerState.OPEN
    with pytest.raises(tenure.CircuitOpen) as refused:
        await two.admit()
    assert refused.value.opened_until == pytest.approx(time.time() + 30, abs=2)
    # The other sees it within sync_interval, with calls arriving.
    started, admitted = time.monotonic(), 0
    while time.monotonic() - started < 2:
        try:
            call = await one.admit()
        except tenure.CircuitOpen:
            break
        admitted += 1
        await call.succeeded()
    assert time.monotonic() - started < 0.2 + 0.3
    assert one.state is BreakerState.OPEN


async def test_closed_calls_cost_a_step_per_sync_interval(first: tenure.AsyncCoordinator) -> None:
    breaker = first.circuit_breaker(name(), **options(sync_interval=0.5))
    steps = count_steps(first)
    started = time.monotonic()
    for _ in range(200):
        async with breaker:
            pass
    elapsed = time.monotonic() - started
    assert len(steps) <= 1 + elapsed / 0.5 + 1
    with pytest.raises(Boom):
        async with breaker:
            raise Boom
    assert len(steps) <= 3 + elapsed / 0.5  # a failure is sent at once


async def test_successes_are_counted_in_the_shared_window(
    first: tenure.AsyncCoordinator, second: tenure.AsyncCoordinator
) -> None:
    shared = name()
    one = first.circuit_breaker(shared, **options(sync_interval=0.05))
    two = second.circuit_breaker(shared, **options(sync_interval=0.05))
    for _ in range(6):  # successes, flushed with the next sync
        call = await one.admit()
        await call.succeeded()
        time.sleep(0.02)
    time.sleep(0.06)  # past sync_interval however the loop was timed: the next admit syncs
    await one.admit()  # a sync after the last success sends it
    for _ in range(4):
        await fail(two)
    assert two.state is BreakerState.CLOSED  # 4 failures of 10 calls: under the 50 % rate
    await fail(two)
    await fail(two)
    assert two.state is BreakerState.OPEN  # 6 of 12


async def test_half_open_grants_the_trials_across_processes_then_closes(
    first: tenure.AsyncCoordinator, second: tenure.AsyncCoordinator
) -> None:
    shared = name()
    one = first.circuit_breaker(shared, **options(reset_after=0.4, sync_interval=0.05))
    two = second.circuit_breaker(shared, **options(reset_after=0.4, sync_interval=0.05))
    for _ in range(4):
        await fail(one)
    with pytest.raises(tenure.CircuitOpen):
        await two.admit()  # its first look at the store
    time.sleep(0.45)
    trials, refused = [], 0
    for breaker in (one, two, one, two, one, two):
        try:
            trials.append(await breaker.admit())
        except tenure.CircuitOpen:
            refused += 1
        time.sleep(0.06)  # past sync_interval: each asks the store again
    assert len(trials) == 2 and all(call.trial for call in trials)
    assert refused == 4
    for call in trials:
        await call.succeeded()
    call = await one.admit()  # closed: the last trial's reply said so
    assert not call.trial
    time.sleep(0.06)
    assert not (await two.admit()).trial  # the other learns it at its next sync
    assert two.state is BreakerState.CLOSED


async def test_a_failed_trial_opens_it_again(first: tenure.AsyncCoordinator) -> None:
    breaker = first.circuit_breaker(name(), **options(reset_after=0.3))
    for _ in range(4):
        await fail(breaker)
    time.sleep(0.35)
    trial = await breaker.admit()
    assert trial.trial
    await trial.failed()
    assert breaker.state is BreakerState.OPEN
    with pytest.raises(tenure.CircuitOpen):
        await breaker.admit()


async def test_decorator_and_failure_types(first: tenure.AsyncCoordinator) -> None:
    breaker = first.circuit_breaker(name(), **options(failure=Boom))

    @breaker
    async def flaky(error: Exception | None) -> str:
        if error is not None:
            raise error
        return "ok"

    assert await flaky(None) == "ok"
    for _ in range(2):  # not a failure= type: the service answered, a success
        with pytest.raises(ValueError):
            await flaky(ValueError("bad input"))
    for _ in range(3):  # 3 failures of 6 calls reach the 50 % rate
        with pytest.raises(Boom):
            await flaky(Boom())
    with pytest.raises(tenure.CircuitOpen):
        await flaky(None)
