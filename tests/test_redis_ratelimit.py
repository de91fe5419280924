"""Redis rate limits: one script call per decision, exactly gcra_step, keys that expire, restarts."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

import tenure
from tenure._core.keys import namespaced_key
from tenure._core.ratelimit import decode_tats, gcra_step
from tenure._sync.backends.base import Counters
from tests.servers import RedisServer

NAMESPACE = "rl"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    """A server of this test's own: its command counts and its restarts are this test's alone."""
    redis_server = RedisServer(tmp_path / "redis").start()
    yield redis_server
    redis_server.stop()


@pytest.fixture
def url(server: RedisServer) -> str:
    return f"{server.url}?namespace={NAMESPACE}&op_timeout=0.5&connect_timeout=0.5"


def tats_key(name: str, key: str = "") -> str:
    """Return the Redis key of limiter ``name``'s bucket ``key`` (the store's layout)."""
    store_key = namespaced_key(NAMESPACE, name, kind="ratelimit") + (f":{key}" if key else "")
    return "{" + store_key + "}:tats"


def test_a_decision_is_one_script_call(server: RedisServer, url: str) -> None:
    direct = _direct(server)
    with tenure.Coordinator(url) as coord:
        limiter = coord.rate_limiter("api", rate="1/min", burst=2)
        assert limiter.try_acquire(key="k")  # connected, the script cached
        admitted = _calls(direct, lambda: limiter.try_acquire(key="k"))
        refused = _calls(direct, lambda: limiter.try_acquire(key="k"))
        looked = _calls(direct, lambda: limiter.peek(key="k"))
    # One EVALSHA from the client; the server counts the script's own commands too.
    assert admitted == {"evalsha": 1, "time": 1, "get": 1, "set": 1}
    assert refused == {"evalsha": 1, "time": 1, "get": 1}, "a refusal writes nothing"
    assert looked == {"evalsha": 1, "time": 1, "get": 1}, "a look writes nothing"


def test_the_script_steps_exactly_as_gcra_step(server: RedisServer, url: str) -> None:
    direct = _direct(server)
    picks = random.Random(16)
    with tenure.Coordinator(url) as coord:
        store = coord._store
        assert isinstance(store, Counters)
        for index, rate in enumerate(["3/7s", "10/s;100/min", "7/3s;11/13min;1/h"]):
            limiter = coord.rate_limiter(f"r{index}", rate=rate)
            for _ in range(60):
                before = decode_tats(direct.get(tats_key(f"r{index}")))
                cost = picks.choice([0, 1, 1, min(r.burst for r in limiter.rates)])
                step = store.rate_step(limiter.key, limiter.rates, cost)
                assert step == gcra_step(before, step.now, limiter.rates, cost)  # to the last bit
                after = decode_tats(direct.get(tats_key(f"r{index}")))
                assert after == (step.tats if step.allowed and cost else before)
                time.sleep(picks.choice([0, 0, 0.01]))


def test_a_limiter_that_gained_a_rate_finds_it_idle(url: str) -> None:
    with tenure.Coordinator(url) as coord:
        first = coord.rate_limiter("api", rate="1/min", burst=2)
        assert first.try_acquire()
        both = coord.rate_limiter("api", rate="1/min;5/h", burst=2)
        state = both.decide()  # the hour's TAT was never stored: a full bucket of 5
        assert state.allowed and state.remaining == 0
        assert not first.try_acquire(), "the first rate's TAT still counts both permits"


def test_the_key_expires_when_its_bucket_is_full_again(server: RedisServer, url: str) -> None:
    direct = _direct(server)
    with tenure.Coordinator(url) as coord:
        slow = coord.rate_limiter("slow", rate="1/min", burst=3)
        assert slow.try_acquire(key="k", cost=2)
        assert 119_000 < direct.pttl(tats_key("slow", "k")) <= 120_000  # the latest TAT - now
        fast = coord.rate_limiter("fast", rate="20/s", burst=2)
        assert fast.try_acquire(key="k")
        assert 0 < direct.pttl(tats_key("fast", "k")) <= 50
        time.sleep(0.08)
        assert direct.exists(tats_key("fast", "k")) == 0, "a full bucket leaves nothing behind"
        assert fast.peek(key="k").remaining == 2
        assert direct.exists(tats_key("fast", "k")) == 0, "a look writes nothing"


def test_a_refusal_leaves_the_key_as_it_was(server: RedisServer, url: str) -> None:
    direct = _direct(server)
    with tenure.Coordinator(url) as coord:
        limiter = coord.rate_limiter("api", rate="1/min", burst=1)
        assert limiter.try_acquire(key="k")
        key = tats_key("api", "k")
        stored, ttl = direct.get(key), direct.pttl(key)
        time.sleep(0.05)
        assert not limiter.try_acquire(key="k")
        assert direct.get(key) == stored
        assert ttl - 1000 < direct.pttl(key) <= ttl - 40, "the expiry was not pushed back"


def test_two_clients_over_two_connections_get_exactly_the_burst(url: str) -> None:
    admitted: list[bool] = []
    lock = threading.Lock()
    with tenure.Coordinator(url) as one, tenure.Coordinator(url) as two:
        limiters = [c.rate_limiter("api", rate="1/h", burst=100, deadline=None) for c in (one, two)]

        def caller(index: int) -> None:
            for _ in range(50):
                allowed = limiters[index % 2].try_acquire(key="k")
                with lock:
                    admitted.append(allowed)

        threads = [threading.Thread(target=caller, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    assert len(admitted) == 400
    assert sum(admitted) == 100


async def test_a_burst_from_one_event_loop_is_decided_whole(url: str) -> None:
    # One connection per concurrent call: redis-py's asyncio pool alone would refuse past 100.
    async with tenure.AsyncCoordinator(url) as coord:
        limiter = coord.rate_limiter("api", rate="1/h", burst=100, deadline=None, on_unavailable="deny")
        states = await asyncio.gather(*(limiter.decide(key="k") for _ in range(300)))
    assert not [state for state in states if state.unavailable]
    assert sum(state.allowed for state in states) == 100


def test_a_restarted_server_answers_again(server: RedisServer, url: str) -> None:
    with tenure.Coordinator(url) as coord:
        limiter = coord.rate_limiter("api", rate="1/min", burst=2, on_unavailable="deny")
        assert limiter.try_acquire(key="k") and limiter.try_acquire(key="k")
        assert not limiter.try_acquire(key="k")
        server.kill()
        down = limiter.decide(key="k")
        assert down.unavailable and not down.allowed
        server.start()  # empty: the server kept nothing, so the bucket is full again
        assert _answered(limiter).allowed, "the script is sent again to a server that forgot it"
        assert limiter.try_acquire(key="k")
        assert not limiter.try_acquire(key="k")


async def test_a_frozen_server_is_denied_in_time_and_answers_once_thawed(
    server: RedisServer, url: str
) -> None:
    async with tenure.AsyncCoordinator(url) as coord:
        limiter = coord.rate_limiter("api", rate="1/min", burst=1, on_unavailable="deny", deadline=0.1)
        assert await limiter.try_acquire(key="k")
        server.pause()
        try:
            started = time.monotonic()
            frozen = await limiter.decide(key="k")
            assert frozen.unavailable and time.monotonic() - started < 0.5
        finally:
            server.resume()
        deadline = time.monotonic() + 5
        state = await limiter.decide(key="k")
        while state.unavailable and time.monotonic() < deadline:  # a cancelled call's connection
            state = await limiter.decide(key="k")
        assert not state.unavailable, "no connection stays stuck after a cancelled call"
        assert not state.allowed and 55 < state.retry_after <= 60  # the bucket survived the freeze


def _answered(limiter: tenure.RateLimiter) -> tenure.RateState:
    """Take one permit once the restarted server answers (the first calls may find it down)."""
    deadline = time.monotonic() + 5
    while True:
        state = limiter.decide(key="k")
        if not state.unavailable or time.monotonic() > deadline:
            return state
        time.sleep(0.05)


def _calls(direct: redis.Redis, call: object) -> dict[str, int]:
    """Return the commands the server ran for ``call()``, by name (without ours)."""
    assert callable(call)
    direct.config_resetstat()
    call()
    stats = direct.info("commandstats")
    return {
        name.removeprefix("cmdstat_"): stat["calls"]
        for name, stat in stats.items()
        if not name.startswith(("cmdstat_info", "cmdstat_config"))
    }


def _direct(server: RedisServer) -> redis.Redis:
    return redis.Redis.from_url(server.url, socket_timeout=5)
