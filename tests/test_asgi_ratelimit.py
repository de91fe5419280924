"""tenure.asgi.RateLimitMiddleware behind a real uvicorn server, driven by a real httpx client.

The apps (tests/asgi_ratelimit_apps.py: one Starlette, one FastAPI) count the requests that
reached them. The server runs in a thread of its own, with its own event loop; its coordinator
connects there on the first request and closes in the app's lifespan. The rates are slow
("10/hour": one permit every 6 minutes), so no permit comes back while a test runs and the
counts are exact.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

import tenure
from tenure._core.ratelimit import RateState, parse_rates
from tenure.asgi import RateLimitMiddleware
from tenure.asgi.ratelimit import client_address, limit_field, policy_field
from tests.asgi_apps import serving
from tests.asgi_ratelimit_apps import Reached, client_header, fastapi_app, header_cost, starlette_app
from tests.conftest import declared_capabilities
from tests.servers import RedisServer

BACKENDS = ["memory"] + [
    name for name in ("sqlite", "redis") if tenure.Capability.COUNTERS in declared_capabilities(name)
]
FRAMEWORKS = ["starlette", "fastapi"]
BURST = 10
RATE = "10/hour"  # 360 s a permit
POLICY = '"default";q=10;w=3600'
DEADLINE = 10.0  # counts must not depend on a loaded machine: only the outage test uses 50 ms


@dataclass
class Served:
    url: str
    reached: Reached


Serve = Callable[..., Served]


@pytest.fixture(
    params=[(framework, backend) for backend in BACKENDS for framework in FRAMEWORKS],
    ids=lambda pair: "-".join(pair),
)
def serve(request: pytest.FixtureRequest) -> Iterator[Serve]:
    """Return a function that serves an app behind a RateLimitMiddleware made of its arguments.

    ``serve(rate=, burst=, **middleware_options)``: a uvicorn server on a free loopback port,
    in a thread, stopped by its handle at the end of the test.
    """
    framework, backend = request.param
    url = request.getfixturevalue(f"{backend}_url")
    names = iter(range(100))
    with contextlib.ExitStack() as stack:

        def start(*, rate: str = RATE, burst: int = BURST, **options: Any) -> Served:
            coord = tenure.AsyncCoordinator(url)
            reached = Reached()
            app = (starlette_app if framework == "starlette" else fastapi_app)(reached, coord)
            limiter = coord.rate_limiter(f"api-{next(names)}", rate=rate, burst=burst, deadline=DEADLINE)
            middleware = RateLimitMiddleware(app, limiter=limiter, **options)
            served = Served(stack.enter_context(serving(middleware, f"{framework}-{backend}")), reached)
            assert reached.started.wait(5), "the lifespan scope reached the app through the middleware"
            return served

        yield start


@contextlib.asynccontextmanager
async def client_of(served: Served) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=served.url, timeout=20) as client:
        yield client


def parse_limit(response: httpx.Response) -> tuple[int, int]:
    """Return r and t of a response's RateLimit field, checking its form."""
    name, remaining, seconds = response.headers["ratelimit"].split(";")
    assert name == '"default"' and remaining.startswith("r=") and seconds.startswith("t=")
    return int(remaining[2:]), int(seconds[2:])


def policy_and_limit(response: httpx.Response) -> tuple[str, str]:
    return response.headers["ratelimit-policy"], response.headers["ratelimit"]


async def test_concurrent_requests_get_exactly_the_burst(serve: Serve) -> None:
    served = serve()
    async with client_of(served) as client:
        responses = await asyncio.gather(*(client.get("/hello") for _ in range(3 * BURST)))
    statuses = [response.status_code for response in responses]
    assert statuses.count(200) == BURST and statuses.count(429) == 2 * BURST
    assert served.reached.requests == BURST, "refused requests never reach the app"
    admitted = [response for response in responses if response.status_code == 200]
    refused = [response for response in responses if response.status_code == 429]
    # Each admitted request saw a different number of permits left, BURST-1 down to 0, and the
    # bucket full again after the permits taken so far come back (360 s each, less the time
    # between the first decision and its own).
    limits = [parse_limit(response) for response in admitted]
    assert sorted(left for left, _ in limits) == list(range(BURST))
    assert all((BURST - left) * 360 - 5 < seconds <= (BURST - left) * 360 for left, seconds in limits)
    for response in refused:
        retry_after = int(response.headers["retry-after"])
        assert 355 <= retry_after <= 360  # the next permit, in whole seconds rounded up
        assert policy_and_limit(response) == (POLICY, f'"default";r=0;t={retry_after}')
        assert response.json()["error"] == "rate_limited"
        assert response.headers["content-type"] == "application/json"
    assert all(response.headers["ratelimit-policy"] == POLICY for response in admitted)
    assert all(response.headers["x-app"] == "yes" for response in admitted), "the app's own headers stay"


async def test_headers_of_a_first_request_and_of_another_route(serve: Serve) -> None:
    served = serve(rate="100/s", burst=20)
    async with client_of(served) as client:
        first = await client.get("/hello")
        created = await client.post("/created")
    assert first.status_code == 200 and first.json() == {"hello": 1}
    # A full bucket of 20 less one permit; it is full again 10 ms later: t rounds up to 1.
    assert policy_and_limit(first) == ('"default";q=100;w=1', '"default";r=19;t=1')
    assert "retry-after" not in first.headers
    assert created.status_code == 201 and created.headers["x-app"] == "created"
    assert created.headers["ratelimit-policy"] == '"default";q=100;w=1'
    assert created.headers["ratelimit"] in ('"default";r=18;t=1', '"default";r=19;t=1')


async def test_each_client_has_its_own_bucket(serve: Serve) -> None:
    served = serve(key=client_header, burst=3, rate="3/hour")
    async with client_of(served) as client:
        by_client = {
            who: [(await client.get("/hello", headers={"x-client": who})).status_code for _ in range(5)]
            for who in ("alice", "bob")
        }
        uncounted = [(await client.get("/hello", headers={"x-client": "none"})).status_code for _ in range(5)]
        default = await client.get("/hello")
    assert by_client == {"alice": [200, 200, 200, 429, 429], "bob": [200, 200, 200, 429, 429]}
    assert uncounted == [200] * 5, "a key of None lets the request through uncounted"
    assert default.status_code == 200 and default.headers["ratelimit"].startswith('"default";r=2;')
    assert served.reached.requests == 3 + 3 + 5 + 1


async def test_the_default_key_is_the_client_address(serve: Serve) -> None:
    served = serve(burst=2, rate="2/hour")
    async with client_of(served) as client:
        statuses = [(await client.get("/hello", headers={"x-client": f"c{i}"})).status_code for i in range(3)]
    assert statuses == [200, 200, 429], "one address, one bucket, whatever the headers say"


async def test_a_cost_from_the_request(serve: Serve) -> None:
    served = serve(cost=header_cost)
    async with client_of(served) as client:
        statuses = [(await client.get("/hello", headers={"x-cost": "4"})).status_code for _ in range(3)]
        two_left = await client.get("/hello", headers={"x-cost": "2"})
    assert statuses == [200, 200, 429]
    assert two_left.status_code == 200 and two_left.headers["ratelimit"].startswith('"default";r=0;')


async def test_shadow_mode_only_counts(serve: Serve, caplog: pytest.LogCaptureFixture) -> None:
    served = serve(shadow=True, burst=2, rate="2/hour")
    with caplog.at_level(logging.WARNING, logger="tenure"):
        async with client_of(served) as client:
            responses = [await client.get("/hello") for _ in range(4)]
    assert [response.status_code for response in responses] == [200] * 4
    assert served.reached.requests == 4
    assert [response.headers["ratelimit"].split(";")[1] for response in responses] == ["r=1"] + ["r=0"] * 3
    assert all("retry-after" not in response.headers for response in responses)
    shadowed = [record for record in caplog.records if "would be refused" in record.getMessage()]
    assert len(shadowed) == 2, "each request the limit would refuse is logged"
    assert "GET /hello" in shadowed[0].getMessage()


async def test_a_paused_store_denies_or_allows_within_the_deadline(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "redis").start()
    try:
        coord = tenure.AsyncCoordinator(redis.url)
        reached = Reached()
        app = starlette_app(reached, coord)
        deny = RateLimitMiddleware(
            app, limiter=coord.rate_limiter("d", rate=RATE, burst=BURST, on_unavailable="deny")
        )
        allow = RateLimitMiddleware(
            app, limiter=coord.rate_limiter("a", rate=RATE, burst=BURST, on_unavailable="allow")
        )
        # Connecting may take longer than 50 ms on a loaded machine: a patient limiter does it.
        warm = RateLimitMiddleware(
            app, limiter=coord.rate_limiter("w", rate=RATE, burst=BURST, deadline=None)
        )
        by_header = {b"allow": allow, b"warm": warm}

        async def dispatch(scope: Any, receive: Any, send: Any) -> None:
            wanted = dict(scope.get("headers", ())).get(b"x-when-down", b"deny")
            await by_header.get(wanted, deny)(scope, receive, send)

        with serving(dispatch, "paused-redis") as url:
            async with httpx.AsyncClient(base_url=url, timeout=20) as client:
                assert (await client.get("/hello", headers={"x-when-down": "warm"})).status_code == 200
                assert (await client.get("/hello")).status_code == 200
                redis.pause()
                try:
                    denied = await client.get("/hello")
                    allowed = await client.get("/hello", headers={"x-when-down": "allow"})
                finally:
                    redis.resume()
                again = await client.get("/hello")
    finally:
        redis.stop()
    assert denied.status_code == 503 and denied.headers["retry-after"] == "1"
    assert denied.json()["error"] == "rate_limit_unavailable"
    assert "ratelimit" not in denied.headers, "nothing is known of the bucket"
    assert allowed.status_code == 200 and "ratelimit" not in allowed.headers
    # The refused request's step may still have run once the server was thawed: 8 or 7 left.
    assert again.status_code == 200 and again.headers["ratelimit"].split(";")[1] in ("r=8", "r=7")
    assert reached.requests == 4


async def test_scopes_other_than_http_pass_through(memory_url: str) -> None:
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    async with tenure.AsyncCoordinator(memory_url) as coord:
        middleware = RateLimitMiddleware(app, limiter=coord.rate_limiter("api", rate="1/hour"))
        for _ in range(3):  # more than the burst of 1: none of them is counted
            await middleware({"type": "websocket", "path": "/ws", "headers": []}, _never, _never)
    assert seen == ["websocket"] * 3


async def _never(*args: Any) -> Any:
    raise AssertionError("the middleware must not receive or send for a scope it passes on")


async def test_the_middleware_refuses_bad_arguments(memory_url: str, sqlite_url: str) -> None:
    async with tenure.AsyncCoordinator(memory_url) as coord:
        limiter = coord.rate_limiter("api", rate="10/s", burst=5)
        app = starlette_app(Reached(), coord)
        with tenure.Coordinator(sqlite_url) as sync_coord:
            blocking = sync_coord.rate_limiter("api", rate="10/s")
            with pytest.raises(tenure.ConfigurationError, match="AsyncRateLimiter"):
                RateLimitMiddleware(app, limiter=blocking)  # type: ignore[arg-type]
        with pytest.raises(tenure.ConfigurationError, match="cost"):
            RateLimitMiddleware(app, limiter=limiter, cost=6)  # more than the bucket holds
        with pytest.raises(tenure.ConfigurationError, match="cost"):
            RateLimitMiddleware(app, limiter=limiter, cost=0)
        with pytest.raises(tenure.ConfigurationError, match="key"):
            RateLimitMiddleware(app, limiter=limiter, key="client")  # type: ignore[arg-type]
        with pytest.raises(tenure.ConfigurationError, match="shadow"):
            RateLimitMiddleware(app, limiter=limiter, shadow="yes")  # type: ignore[arg-type]


def test_the_header_fields() -> None:
    assert policy_field(parse_rates("100/s", 20)) == '"default";q=100;w=1'
    assert policy_field(parse_rates("10/s;6000/min")) == '"default";q=10;w=1, "default-2";q=6000;w=60'
    assert policy_field(parse_rates("3/1.5s")) == '"default";q=4;w=2', "w is whole seconds"
    assert policy_field(parse_rates("1/500ms")) == '"default";q=2;w=1'
    admitted = RateState(True, 7, 2.000000001, 0.0, 10)
    assert limit_field(admitted) == '"default";r=7;t=2', "a clock's float noise does not round up"
    refused = RateState(False, 0, 30.0, 2.5, 10)
    assert limit_field(refused) == '"default";r=0;t=3', "t of a refusal is its Retry-After"
    assert client_address({"client": ("10.0.0.7", 51234)}) == "10.0.0.7"
    assert client_address({"client": None}) == "unknown"
