"""The counting gate of each colour (``tenure._concurrency``): at most N inside, the rest wait."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from tenure._concurrency import AsyncGate, Gate


def test_threads_wait_for_a_place_and_give_up_at_their_timeout() -> None:
    gate = Gate(2)
    assert gate.enter(None) and gate.enter(0)
    assert not gate.enter(0), "full: no wait asked, none had"
    started = time.monotonic()
    assert not gate.enter(0.05)
    assert time.monotonic() - started >= 0.045
    timer = threading.Timer(0.05, gate.leave)
    timer.start()
    assert gate.enter(2.0), "a place that comes back goes to the waiter"
    timer.join()
    gate.leave()
    gate.leave()
    with pytest.raises(ValueError):
        gate.leave()  # more leaves than entries is a bug, not a bigger gate


def test_many_threads_are_never_more_than_the_size_inside() -> None:
    gate, inside, most, lock = Gate(3), [0], [0], threading.Lock()

    def visit() -> None:
        assert gate.enter(5.0)
        with lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        time.sleep(0.002)
        with lock:
            inside[0] -= 1
        gate.leave()

    threads = [threading.Thread(target=visit) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert most[0] == 3


def test_tasks_wait_in_arrival_order_and_give_up_at_their_timeout() -> None:
    async def scenario() -> None:
        gate = AsyncGate(1)
        assert await gate.enter(None)
        assert not await gate.enter(0)
        started = time.monotonic()
        assert not await gate.enter(0.05)
        assert time.monotonic() - started >= 0.045
        order: list[int] = []

        async def visit(index: int) -> None:
            assert await gate.enter(2.0)
            order.append(index)
            await asyncio.sleep(0.001)
            gate.leave()

        visits = [asyncio.create_task(visit(index)) for index in range(20)]
        await asyncio.sleep(0.01)
        assert order == [], "all wait while the place is taken"
        gate.leave()
        await asyncio.gather(*visits)
        assert order == list(range(20))
        # A waiter cancelled (or timed out) leaves no place taken behind it.
        assert await gate.enter(None)
        waiter = asyncio.create_task(gate.enter(None))
        await asyncio.sleep(0.01)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        gate.leave()
        assert await gate.enter(0)

    asyncio.run(scenario())
