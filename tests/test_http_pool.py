"""1,000 timeouts and 1,000 cancellations through tenure.http leave no connection leaked.

How the pool is checked, through public interfaces only (httpx keeps its httpcore pool in a
private attribute, so ``pool.connections`` is not reachable without one):

- the kernel's socket table (/proc/net/tcp): every socket of this machine to the server's port
  that is not closed (TIME_WAIT is closed) is a connection someone holds; after the storm there
  may be no more than the pool's size (plus the test handle's own control connection);
- the server's count of open connections (uvicorn's ``server_state.connections``, via
  /_stats): it falls back as the client closes what it abandoned;
- the pool itself, by behaviour: with ``max_connections=4`` a leak of four connections would
  leave every later call waiting for the pool (PoolTimeout); none does, and a healthy call
  afterwards is answered at once.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import tenure
import tenure.http
from tests.http_server import HttpServer, behaviour, running_server

CALLS = 1000
LIMITS = httpx.Limits(max_connections=4, max_keepalive_connections=4)
TCP_TIME_WAIT = "06"


@pytest.fixture(scope="module")
def server_process() -> Iterator[HttpServer]:
    with running_server() as server:
        yield server


@pytest.fixture
def server(server_process: HttpServer) -> HttpServer:
    server_process.set()
    return server_process


def held_sockets(server: HttpServer) -> int:
    """Sockets of this machine connected to the server's port and not closed (kernel's view)."""
    port = int(server.url.rsplit(":", 1)[1])
    held = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        path = Path(table)
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            if remote_port == port and fields[3] != TCP_TIME_WAIT:
                held += 1
    return held


def settled(server: HttpServer, most: int, within: float = 5.0) -> tuple[int, int]:
    """Wait until at most ``most`` sockets are held (both views); return the last counts."""
    deadline = time.monotonic() + within
    while True:
        client_side, server_side = held_sockets(server), server.stats()["open"]
        if (client_side <= most and server_side <= most) or time.monotonic() > deadline:
            return client_side, server_side
        time.sleep(0.05)


def assert_settled(server: HttpServer) -> None:
    most = LIMITS.max_connections + 1  # +1: the server handle's own control connection
    client_side, server_side = settled(server, most)
    assert client_side <= most, f"{client_side} sockets held to the server"
    assert server_side <= most, f"{server_side} connections open at the server"


def test_a_thousand_timeouts_leak_no_connection(server: HttpServer) -> None:
    server.set(default=behaviour(delay_ms=500))
    outcomes: Counter[str] = Counter()
    retry = tenure.retry(attempts=2, backoff=0.001)
    with tenure.http.Client(base_url=server.url, timeout=0.004, limits=LIMITS, retry=retry) as client:
        for _ in range(CALLS):
            try:
                client.get("/x")
                outcomes["answered"] += 1
            except httpx.TimeoutException as exc:
                outcomes[type(exc).__name__] += 1
        assert sum(outcomes.values()) == CALLS
        assert outcomes["PoolTimeout"] == 0, outcomes  # no connection was left taken
        assert outcomes["answered"] == 0, outcomes
        assert_settled(server)
        server.set()
        assert client.get("/x", timeout=1).status_code == 200


async def test_a_thousand_cancellations_leak_no_connection(server: HttpServer) -> None:
    server.set(default=behaviour(delay_ms=500))
    cancelled = 0
    async with tenure.http.AsyncClient(base_url=server.url, timeout=5, limits=LIMITS) as client:
        for _ in range(CALLS // 50):
            # 50 at once on 4 connections: most are cancelled waiting for the pool, the rest
            # while connecting, sending or waiting for the answer.
            tasks = [asyncio.create_task(client.get("/x")) for _ in range(50)]
            await asyncio.sleep(random.uniform(0.0, 0.01))
            for task in tasks:
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            cancelled += sum(isinstance(result, asyncio.CancelledError) for result in results)
        assert cancelled == CALLS
        assert_settled(server)
        server.set()
        started = time.monotonic()
        assert (await client.get("/x")).status_code == 200
        assert time.monotonic() - started < 0.5  # no wait for a place in the pool


async def test_timeouts_and_cancellations_mixed_leak_no_connection(server: HttpServer) -> None:
    server.set(default=behaviour(delay_ms=300))
    outcomes: Counter[str] = Counter()
    async with tenure.http.AsyncClient(base_url=server.url, timeout=0.02, limits=LIMITS) as client:

        async def call(cancel_after: float) -> None:
            try:
                await asyncio.wait_for(client.get("/x"), cancel_after)
                outcomes["answered"] += 1
            except (httpx.TimeoutException, TimeoutError) as exc:
                outcomes[type(exc).__name__] += 1

        for _ in range(CALLS // 20):
            await asyncio.gather(*(call(random.uniform(0.005, 0.04)) for _ in range(20)))
        assert sum(outcomes.values()) == CALLS
        assert outcomes["answered"] == 0, outcomes
        assert_settled(server)
        server.set()
        assert (await client.get("/x")).status_code == 200


async def test_a_streamed_body_holds_its_place_until_closed(server: HttpServer) -> None:
    big = "x" * (2 << 20)  # past the 1 MiB read within the attempt: streamed to the caller
    server.set(default=behaviour(body=big))
    limits = httpx.Limits(max_connections=1)
    async with tenure.http.AsyncClient(base_url=server.url, timeout=1, limits=limits) as client:
        async with client.stream("GET", "/x") as response:
            # The one place is this body's: another call waits for it, then times out.
            with pytest.raises(httpx.PoolTimeout):
                await client.get("/x", timeout=0.1)
            assert len(await response.aread()) == len(big)
        for _ in range(3):  # given back when the body was closed, each time
            async with client.stream("GET", "/x") as response:
                assert len(await response.aread()) == len(big)
        assert (await client.get("/x")).status_code == 200
