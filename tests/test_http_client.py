"""tenure.http's Client and AsyncClient against a real local server (tests/server.py).

Retry-After in both forms, the retry budget during an outage, POST left alone, a reset mid-body
retried, the breaker opening and the fallback answering, bulkhead and rate limit refusals.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import tenure
import tenure.http
from tenure._core.retrying import RetryBudget
from tenure._exceptions import BulkheadFull, CircuitOpen, ConfigurationError, RateLimited
from tests.http_server import HttpServer, behaviour, http_date, running_server


@pytest.fixture(scope="module")
def server_process() -> Iterator[HttpServer]:
    with running_server() as server:
        yield server


@pytest.fixture
def server(server_process: HttpServer) -> HttpServer:
    server_process.set()  # healthy, no hits
    return server_process


FAST_RETRY = {"attempts": 3, "backoff": 0.001, "max_backoff": 0.001}


def sync_client(server: HttpServer, **options: Any) -> tenure.http.Client:
    return tenure.http.Client(base_url=server.url, **options)


def async_client(server: HttpServer, **options: Any) -> tenure.http.AsyncClient:
    return tenure.http.AsyncClient(base_url=server.url, **options)


# -- Retry-After -----------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [503, 429])
def test_retry_after_in_seconds_is_honoured(server: HttpServer, status: int) -> None:
    server.set(script=[behaviour(status=status, retry_after="1")])
    with sync_client(server, timeout=5, retry=tenure.retry(**FAST_RETRY)) as client:
        started = time.monotonic()
        response = client.get("/x")
        took = time.monotonic() - started
    assert response.status_code == 200
    assert server.hits() == 2
    assert 0.95 <= took < 1.5  # the server's second, not the 1 ms backoff


@pytest.mark.parametrize("status", [503, 429])
async def test_retry_after_as_a_date_is_honoured(server: HttpServer, status: int) -> None:
    # An HTTP-date has whole seconds: two seconds ahead means a wait of more than one.
    server.set(script=[behaviour(status=status, retry_after=http_date(2))])
    async with async_client(server, timeout=5, retry=tenure.retry(**FAST_RETRY)) as client:
        started = time.monotonic()
        response = await client.get("/x")
        took = time.monotonic() - started
    assert response.status_code == 200
    assert server.hits() == 2
    assert 0.95 <= took < 2.5


def test_a_retry_after_past_the_deadline_answers_at_once(server: HttpServer) -> None:
    server.set(default=behaviour(status=503, retry_after="30"))
    with sync_client(server, timeout=2, retry=tenure.retry(**FAST_RETRY)) as client:
        started = time.monotonic()
        response = client.get("/x")
        assert time.monotonic() - started < 0.5
    assert response.status_code == 503
    assert response.headers["retry-after"] == "30"
    assert server.hits() == 1


async def test_a_retry_after_date_past_the_deadline_answers_at_once(server: HttpServer) -> None:
    server.set(default=behaviour(status=429, retry_after=http_date(60)))
    async with async_client(server, timeout=2, retry=tenure.retry(**FAST_RETRY)) as client:
        response = await client.get("/x")
    assert response.status_code == 429
    assert server.hits() == 1


# -- the retry budget during an outage -------------------------------------------------------------

OFFERED = 400
RATIO = 0.2
FLOOR = 10  # min_per_second x ttl = 1 x 10


def outage_budget() -> RetryBudget:
    return RetryBudget(ratio=RATIO, min_per_second=1.0, ttl=10.0)


def test_the_budget_holds_an_outage_to_its_share_of_retries(server: HttpServer) -> None:
    server.set(default=behaviour(status=503))
    retry = tenure.retry(attempts=5, backoff=0.0005, max_backoff=0.001, budget=outage_budget())
    with sync_client(server, timeout=5, retry=retry) as client:
        answers = [client.get("/x").status_code for _ in range(OFFERED)]
    assert answers == [503] * OFFERED
    sent = server.hits()
    # Without the budget: 5 x 400 = 2,000 calls. With it: at most (1 + ratio) x offered + floor.
    assert OFFERED + FLOOR <= sent <= (1 + RATIO) * OFFERED + FLOOR


async def test_the_budget_holds_concurrent_async_callers(server: HttpServer) -> None:
    server.set(default=behaviour(reset=True))  # transport errors this time
    retry = tenure.retry(attempts=5, backoff=0.0005, max_backoff=0.001, budget=outage_budget())
    async with async_client(server, timeout=5, retry=retry) as client:

        async def caller(calls: int) -> int:
            failed = 0
            for _ in range(calls):
                try:
                    await client.get("/x")
                except httpx.TransportError:
                    failed += 1
            return failed

        failures = await asyncio.gather(*(caller(OFFERED // 8) for _ in range(8)))
    assert sum(failures) == OFFERED
    assert OFFERED + FLOOR <= server.hits() <= (1 + RATIO) * OFFERED + FLOOR


def test_each_transport_has_a_budget_of_its_own_by_default(server: HttpServer) -> None:
    server.set(default=behaviour(status=500))
    retry = tenure.retry(attempts=3, backoff=0.0005, max_backoff=0.001)
    with sync_client(server, timeout=5, retry=retry) as client:
        for _ in range(300):
            client.get("/x")
    # Default budget: 20% of calls plus 10/s x 10 s; not the 900 of three attempts each.
    assert 300 + 100 <= server.hits() <= 1.2 * 300 + 100


# -- which calls are retried -----------------------------------------------------------------------


def test_post_is_not_retried_by_default(server: HttpServer) -> None:
    server.set(default=behaviour(status=503))
    with sync_client(server, timeout=5, retry=tenure.retry(**FAST_RETRY)) as client:
        assert client.post("/x", json={"a": 1}).status_code == 503
        assert server.hits() == 1
        assert client.put("/x", json={"a": 1}).status_code == 503  # idempotent: retried
        assert server.hits() == 1 + 3


async def test_post_is_retried_when_asked(server: HttpServer) -> None:
    server.set(script=[behaviour(status=502), behaviour(reset=True)])
    options = {"retry": tenure.retry(**FAST_RETRY), "retry_methods": {"GET", "POST"}}
    async with async_client(server, timeout=5, **options) as client:
        response = await client.post("/x", content=b"payload")
    assert response.status_code == 200
    assert server.hits() == 3


def test_a_body_that_cannot_be_sent_again_is_not_retried(server: HttpServer) -> None:
    server.set(default=behaviour(status=503))
    with sync_client(server, timeout=5, retry=tenure.retry(**FAST_RETRY)) as client:
        assert client.put("/x", content=iter([b"one ", b"pass"])).status_code == 503
    assert server.hits() == 1


@pytest.mark.parametrize("status", [400, 404, 409])
def test_4xx_is_neither_retried_nor_a_breaker_failure(server: HttpServer, status: int) -> None:
    server.set(default=behaviour(status=status))
    breaker = tenure.circuit_breaker("http-4xx", min_calls=3, failure_rate=0.5)
    with sync_client(server, retry=tenure.retry(**FAST_RETRY), breaker=breaker) as client:
        for _ in range(5):
            assert client.get("/x").status_code == status
    assert server.hits() == 5
    assert breaker.state == "closed"


def test_a_reset_mid_body_is_retried(server: HttpServer) -> None:
    server.set(script=[behaviour(reset=True), behaviour(reset=True)])
    with sync_client(server, timeout=5, retry=tenure.retry(**FAST_RETRY)) as client:
        response = client.get("/x")
    assert (response.status_code, response.text) == (200, "ok")
    assert server.hits() == 3


def test_without_retry_a_reset_reaches_the_caller(server: HttpServer) -> None:
    server.set(default=behaviour(reset=True))
    with sync_client(server, timeout=5) as client, pytest.raises(httpx.RemoteProtocolError):
        client.get("/x")
    assert server.hits() == 1


# -- breaker, fallback, bulkhead, rate limit -------------------------------------------------------


def test_the_breaker_opens_and_the_fallback_answers(server: HttpServer) -> None:
    server.set(default=behaviour(status=500))
    breaker = tenure.circuit_breaker("http-partner", min_calls=5, failure_rate=0.5, reset_after=30)
    cached = httpx.Response(200, text="cached")
    with sync_client(server, breaker=breaker, fallback=cached) as client:
        answers = [client.get("/x") for _ in range(20)]
    assert [a.text for a in answers] == ["cached"] * 20  # the 5 failures too: each finally failed
    assert all(a.request.url.path == "/x" for a in answers)
    assert server.hits() == 5  # the breaker opened after min_calls; no call reached the server
    assert breaker.state == "open"


async def test_a_fallback_function_sees_why(server: HttpServer) -> None:
    server.set(default=behaviour(status=503))
    breaker = tenure.circuit_breaker("http-why", min_calls=2, failure_rate=0.5, reset_after=30)
    causes: list[str] = []

    async def fallback(request: httpx.Request, cause: BaseException | httpx.Response) -> httpx.Response:
        causes.append(type(cause).__name__ if isinstance(cause, BaseException) else str(cause.status_code))
        return httpx.Response(200, json={"stale": True})

    async with async_client(server, breaker=breaker, fallback=fallback) as client:
        for _ in range(4):
            assert (await client.get("/x")).json() == {"stale": True}
    assert causes == ["503", "503", "CircuitOpen", "CircuitOpen"]
    assert server.hits() == 2


def test_an_open_breaker_without_fallback_raises(server: HttpServer) -> None:
    server.set(default=behaviour(reset=True))
    breaker = tenure.circuit_breaker("http-open", min_calls=2, failure_rate=0.5, reset_after=30)
    with sync_client(server, breaker=breaker) as client:
        for _ in range(2):
            with pytest.raises(httpx.RemoteProtocolError):
                client.get("/x")
        with pytest.raises(CircuitOpen):
            client.get("/x")
    assert server.hits() == 2


async def test_a_full_bulkhead_refuses_and_the_fallback_answers(server: HttpServer) -> None:
    server.set(default=behaviour(delay_ms=300))
    bulkhead = tenure.bulkhead(limit=2, timeout=0)
    async with async_client(server, bulkhead=bulkhead) as client:
        results = await asyncio.gather(*(client.get("/x") for _ in range(5)), return_exceptions=True)
    assert sorted(type(r).__name__ for r in results) == ["BulkheadFull"] * 3 + ["Response"] * 2
    assert server.hits() == 2
    assert isinstance(results[-1], BulkheadFull)


async def test_the_rate_limit_comes_first(server: HttpServer, memory_url: str) -> None:
    async with tenure.AsyncCoordinator(memory_url) as coord:
        limiter = coord.rate_limiter("http", rate="1/min", burst=2)
        async with async_client(server, limiter=limiter, limiter_key="partner", timeout=0.2) as client:
            assert (await client.get("/x")).status_code == 200
            assert (await client.get("/x")).status_code == 200
            with pytest.raises(RateLimited):
                await client.get("/x")
    assert server.hits() == 2


def test_the_transport_plugs_into_a_users_client(server: HttpServer) -> None:
    server.set(script=[behaviour(status=503)])
    transport = tenure.http.Transport(timeout=5, retry=tenure.retry(**FAST_RETRY))
    with httpx.Client(base_url=server.url, transport=transport) as client:
        assert client.get("/x").status_code == 200
    assert server.hits() == 2


def test_bad_options_are_refused_before_any_call() -> None:
    with pytest.raises(ConfigurationError):
        tenure.http.Transport(timeout=0)
    with pytest.raises(ConfigurationError):
        tenure.http.Transport(timeout=-1.0)
    with pytest.raises(ConfigurationError):
        tenure.http.Transport(retry=3)
    with pytest.raises(ConfigurationError):
        tenure.http.AsyncTransport(fallback="cached")
    with pytest.raises(ConfigurationError):
        tenure.http.AsyncTransport(retry_methods="GET")
    with pytest.raises(ConfigurationError):
        tenure.http.Client(limiter_key=42)  # type: ignore[arg-type]


async def test_the_breaker_recovers_through_its_trials(server: HttpServer) -> None:
    server.set(default=behaviour(status=502))
    options = {"min_calls": 4, "failure_rate": 0.5, "reset_after": 0.3, "trials": 2}
    breaker = tenure.circuit_breaker("http-recovery", **options)
    async with async_client(server, breaker=breaker) as client:
        for _ in range(4):
            assert (await client.get("/x")).status_code == 502
        with pytest.raises(CircuitOpen):
            await client.get("/x")
        server.set()  # the partner is well again
        await asyncio.sleep(0.35)
        results = await asyncio.gather(*(client.get("/x") for _ in range(4)), return_exceptions=True)
        # Half-open: exactly the two trials go through; the others are refused meanwhile.
        outcomes = sorted(type(r).__name__ for r in results)
        assert outcomes == ["CircuitOpen", "CircuitOpen", "Response", "Response"]
        assert server.hits() == 2
        assert breaker.state == "closed"
        assert (await client.get("/x")).status_code == 200
