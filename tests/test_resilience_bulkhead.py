"""tenure.bulkhead: one count of calls in flight for threads and tasks, waits bounded, places never leaked."""

from __future__ import annotations

import asyncio
import random
import threading
import time

import pytest

import tenure
from tenure import Bulkhead, BulkheadFull, ConfigurationError

SLACK = 0.05


class Peak:
    """Track how many callers are inside at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.most = 0

    def enter(self) -> None:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)

    def leave(self) -> None:
        with self.lock:
            self.now -= 1


def test_threads_never_exceed_the_limit() -> None:
    bulkhead = tenure.bulkhead(limit=3, timeout=None)
    peak = Peak()

    @bulkhead
    def work() -> None:
        peak.enter()
        time.sleep(0.01)
        peak.leave()

    threads = [threading.Thread(target=lambda: [work() for _ in range(5)]) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert peak.most == 3
    assert bulkhead.in_flight == 0 and bulkhead.waiting == 0


def test_tasks_never_exceed_the_limit() -> None:
    bulkhead = tenure.bulkhead(limit=3, timeout=None)
    peak = Peak()

    @bulkhead
    async def work() -> None:
        peak.enter()
        await asyncio.sleep(0.005)
        peak.leave()

    async def main() -> None:
        await asyncio.gather(*(work() for _ in range(40)))

    asyncio.run(main())
    assert peak.most == 3
    assert bulkhead.in_flight == 0 and bulkhead.waiting == 0


@pytest.mark.parametrize("colour", ["sync", "async"])
def test_a_full_bulkhead_refuses_after_its_timeout(colour: str) -> None:
    bulkhead = tenure.bulkhead(limit=1, timeout=0.1)
    bulkhead.acquire()
    start = time.monotonic()
    with pytest.raises(BulkheadFull, match="1 calls in flight"):
        if colour == "sync":
            bulkhead.acquire()
        else:
            asyncio.run(bulkhead.aacquire())
    assert 0.1 <= time.monotonic() - start <= 0.1 + SLACK
    assert bulkhead.in_flight == 1 and bulkhead.waiting == 0
    bulkhead.release()
    assert bulkhead.in_flight == 0


def test_timeout_zero_never_waits() -> None:
    bulkhead = tenure.bulkhead(limit=1, timeout=0)
    with bulkhead:
        start = time.monotonic()
        with pytest.raises(BulkheadFull):
            bulkhead.acquire()
        with pytest.raises(BulkheadFull):
            asyncio.run(bulkhead.aacquire())
        assert time.monotonic() - start < SLACK


def test_threads_and_tasks_share_one_count() -> None:
    bulkhead = tenure.bulkhead(limit=2, timeout=2)
    held = threading.Event()
    go = threading.Event()

    def hold() -> None:
        with bulkhead:
            held.set()
            go.wait(5)

    thread_a, thread_b = threading.Thread(target=hold), threading.Thread(target=hold)
    thread_a.start()
    thread_b.start()
    held.wait(5)
    while bulkhead.in_flight < 2:
        time.sleep(0.001)

    async def main() -> float:
        asyncio.get_running_loop().call_later(0.1, go.set)  # threads free their places in 0.1 s
        start = time.monotonic()
        async with bulkhead:
            return time.monotonic() - start

    waited = asyncio.run(main())  # a task woken by a thread's release
    thread_a.join(5)
    thread_b.join(5)
    assert 0.1 <= waited <= 0.1 + SLACK
    assert bulkhead.in_flight == 0


def test_waiters_are_served_first_come_first_served() -> None:
    bulkhead = tenure.bulkhead(limit=1, timeout=2)
    order: list[int] = []

    async def waiter(index: int) -> None:
        async with bulkhead:
            order.append(index)
            await asyncio.sleep(0.001)

    async def main() -> None:
        bulkhead.acquire()
        tasks = []
        for index in range(5):
            tasks.append(asyncio.create_task(waiter(index)))
            await asyncio.sleep(0.001)  # queue them in order
        bulkhead.release()
        await asyncio.gather(*tasks)

    asyncio.run(main())
    assert order == [0, 1, 2, 3, 4]


def test_cancelling_a_call_inside_frees_its_place() -> None:
    bulkhead = tenure.bulkhead(limit=1, timeout=0)

    @bulkhead
    async def hang() -> None:
        await asyncio.sleep(10)

    async def main() -> None:
        task = asyncio.create_task(hang())
        await asyncio.sleep(0.01)
        assert bulkhead.in_flight == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert bulkhead.in_flight == 0
        async with bulkhead:  # the place is free again at once
            pass

    asyncio.run(main())


def test_cancelling_a_waiter_takes_no_place_and_hands_on_a_granted_one() -> None:
    bulkhead = tenure.bulkhead(limit=1, timeout=5)

    async def main() -> None:
        bulkhead.acquire()
        waiting = asyncio.create_task(bulkhead.aacquire())
        await asyncio.sleep(0.01)
        assert bulkhead.waiting == 1
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert bulkhead.waiting == 0 and bulkhead.in_flight == 1
        # granted then cancelled before it ran: the place passes to the next waiter
        first = asyncio.create_task(bulkhead.aacquire())
        second = asyncio.create_task(bulkhead.aacquire())
        await asyncio.sleep(0.01)
        bulkhead.release()  # grants `first`, whose wake-up is only scheduled
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        await asyncio.wait_for(second, 1)
        assert bulkhead.in_flight == 1 and bulkhead.waiting == 0
        bulkhead.release()
        assert bulkhead.in_flight == 0

    asyncio.run(main())


def test_a_grant_to_a_closed_loop_passes_to_the_next_waiter() -> None:
    bulkhead = tenure.bulkhead(limit=1, timeout=5)
    bulkhead.acquire()
    loop = asyncio.new_event_loop()
    stranded = loop.create_task(bulkhead.aacquire())
    loop.run_until_complete(asyncio.sleep(0.01))  # the task now waits
    loop.close()  # ... on a loop that is gone
    assert not stranded.done() and bulkhead.waiting == 1
    got = threading.Event()
    thread = threading.Thread(target=lambda: (bulkhead.acquire(), got.set()))
    thread.start()
    while bulkhead.waiting < 2:
        time.sleep(0.001)
    bulkhead.release()
    assert got.wait(1)
    thread.join(1)
    assert bulkhead.in_flight == 1 and bulkhead.waiting == 0
    stranded.get_coro().close()  # what the garbage collector would do: it takes nothing
    assert bulkhead.in_flight == 1 and bulkhead.waiting == 0


def test_mixed_stress_leaves_nothing_taken() -> None:
    bulkhead = tenure.bulkhead(limit=3, timeout=0.005)
    peak = Peak()
    refused = 0
    refused_lock = threading.Lock()

    def count_refusal() -> None:
        nonlocal refused
        with refused_lock:
            refused += 1

    def thread_work(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(100):
            try:
                with bulkhead:
                    peak.enter()
                    time.sleep(rng.random() * 0.001)
                    peak.leave()
            except BulkheadFull:
                count_refusal()

    async def task_work(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(100):
            try:
                async with bulkhead:
                    peak.enter()
                    await asyncio.sleep(rng.random() * 0.001)
                    peak.leave()
            except BulkheadFull:
                count_refusal()

    async def tasks() -> None:
        await asyncio.gather(*(task_work(seed) for seed in range(6)))

    threads = [threading.Thread(target=thread_work, args=(seed,)) for seed in range(6)]
    threads.append(threading.Thread(target=asyncio.run, args=(tasks(),)))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert peak.most == 3
    assert refused < 1200  # some got through
    assert bulkhead.in_flight == 0 and bulkhead.waiting == 0


def test_releasing_more_than_taken_is_a_bug() -> None:
    with pytest.raises(RuntimeError):
        Bulkhead().release()


@pytest.mark.parametrize("kwargs", [{"limit": 0}, {"limit": 2.5}, {"limit": True}, {"timeout": -1}])
def test_bad_options_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        tenure.bulkhead(**kwargs)  # type: ignore[arg-type]
