"""One deadline per call: a call through tenure.http never runs past it by more than 50 ms.

Slow answers, retries with backoff, Retry-After, and a wait for a pooled connection, both
colours, against the real server of tests/http_server.py. Each case runs several times and
the worst overrun is what is checked.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import tenure
import tenure.http
from tests.http_server import HttpServer, behaviour, running_server

DEADLINE = 0.3
OVERRUN = 0.05
RUNS = 5

CASES: dict[str, dict[str, Any]] = {
    # server behaviour, client options
    "slow, no retry": {"server": behaviour(delay_ms=2000), "retry": None},
    "slow, retries left": {"server": behaviour(delay_ms=2000), "retry": {"attempts": 5, "backoff": 0.01}},
    "5xx, backoff": {
        "server": behaviour(status=503, delay_ms=40),
        "retry": {"attempts": 50, "backoff": 0.03, "max_backoff": 0.08},
    },
    "5xx, Retry-After": {
        "server": behaviour(status=503, delay_ms=20, retry_after="0.07"),
        "retry": {"attempts": 50, "backoff": 0.001},
    },
    "resets, backoff": {
        "server": behaviour(reset=True, delay_ms=30),
        "retry": {"attempts": 50, "backoff": 0.02},
    },
}


@pytest.fixture(scope="module")
def server_process() -> Iterator[HttpServer]:
    with running_server() as server:
        yield server


@pytest.fixture
def server(server_process: HttpServer) -> HttpServer:
    server_process.set()
    return server_process


def options_of(case: dict[str, Any]) -> dict[str, Any]:
    retry = case["retry"]
    return {"timeout": DEADLINE, "retry": None if retry is None else tenure.retry(**retry)}


@pytest.mark.parametrize("name", list(CASES))
def test_a_sync_call_keeps_its_deadline(server: HttpServer, name: str) -> None:
    case = CASES[name]
    server.set(default=case["server"])
    took = []
    with tenure.http.Client(base_url=server.url, **options_of(case)) as client:
        for _ in range(RUNS):
            started = time.monotonic()
            with contextlib.suppress(httpx.TransportError):  # timed out: what is timed is how late
                client.get("/x")
            took.append(time.monotonic() - started)
    assert max(took) <= DEADLINE + OVERRUN, took
    if name.startswith("slow"):
        assert min(took) >= DEADLINE - 0.01, took  # it did wait for the answer, as long as allowed


@pytest.mark.parametrize("name", list(CASES))
async def test_an_async_call_keeps_its_deadline(server: HttpServer, name: str) -> None:
    case = CASES[name]
    server.set(default=case["server"])
    took = []
    async with tenure.http.AsyncClient(base_url=server.url, **options_of(case)) as client:
        for _ in range(RUNS):
            started = time.monotonic()
            with contextlib.suppress(httpx.TransportError):  # timed out: what is timed is how late
                await client.get("/x")
            took.append(time.monotonic() - started)
    assert max(took) <= DEADLINE + OVERRUN, took
    if name.startswith("slow"):
        assert min(took) >= DEADLINE - 0.01, took


def test_waiting_for_a_pooled_connection_is_inside_the_deadline(server: HttpServer) -> None:
    """One connection, four threads: three wait for it; none runs past its own deadline."""
    server.set(default=behaviour(delay_ms=120))
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    took: list[float] = []
    outcomes: list[str] = []
    with tenure.http.Client(base_url=server.url, timeout=DEADLINE, limits=limits) as client:

        def call() -> None:
            started = time.monotonic()
            try:
                outcomes.append(str(client.get("/x").status_code))
            except httpx.TimeoutException as exc:
                outcomes.append(type(exc).__name__)
            took.append(time.monotonic() - started)

        threads = [threading.Thread(target=call) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
    assert max(took) <= DEADLINE + OVERRUN, took
    # 120 ms each, one at a time: two fit in 300 ms; the other two wait, then time out (in the
    # pool or reading, as the race for the connection goes).
    assert sorted(outcomes)[:2] == ["200", "200"], outcomes
    assert set(sorted(outcomes)[2:]) <= {"PoolTimeout", "ReadTimeout"}, outcomes


async def test_an_async_pool_wait_is_inside_the_deadline(server: HttpServer) -> None:
    server.set(default=behaviour(delay_ms=120))
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with tenure.http.AsyncClient(base_url=server.url, timeout=DEADLINE, limits=limits) as client:

        async def call() -> tuple[str, float]:
            started = time.monotonic()
            try:
                outcome = str((await client.get("/x")).status_code)
            except httpx.TimeoutException as exc:
                outcome = type(exc).__name__
            return outcome, time.monotonic() - started

        results = await asyncio.gather(*(call() for _ in range(4)))
    assert max(took for _, took in results) <= DEADLINE + OVERRUN, results
    outcomes = sorted(outcome for outcome, _ in results)
    assert outcomes[:2] == ["200", "200"], outcomes
    assert set(outcomes[2:]) <= {"PoolTimeout", "ReadTimeout"}, outcomes


def test_a_shorter_phase_timeout_of_the_client_still_applies(server: HttpServer) -> None:
    server.set(default=behaviour(delay_ms=2000))
    with tenure.http.Client(base_url=server.url, timeout=5) as client:
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            client.get("/x", timeout=httpx.Timeout(5, read=0.1))
        assert time.monotonic() - started < 0.1 + OVERRUN
