"""tenure.http with httpx2, the maintained import-compatible fork of httpx (Pydantic's).

Two ways to use it: wrap an httpx2 transport in tenure's Transport and hand it to an httpx2
client (errors and responses stay httpx2's), or call ``httpx2.alias_httpx()`` before anything
imports httpx, so tenure.http's own Client is built on httpx2 (checked in a fresh interpreter).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2  # the test extra installs it: a missing fork fails the run, it is not skipped
import pytest

import tenure
import tenure.http
from tests.http_server import HttpServer, behaviour, running_server

FAST_RETRY = {"attempts": 3, "backoff": 0.001, "max_backoff": 0.001}


@pytest.fixture(scope="module")
def server_process() -> Iterator[HttpServer]:
    with running_server() as server:
        yield server


@pytest.fixture
def server(server_process: HttpServer) -> HttpServer:
    server_process.set()
    return server_process


def test_a_wrapped_httpx2_transport_retries_and_keeps_httpx2_errors(server: HttpServer) -> None:
    transport = tenure.http.Transport(httpx2.HTTPTransport(), timeout=2, retry=tenure.retry(**FAST_RETRY))
    with httpx2.Client(base_url=server.url, transport=transport) as client:
        server.set(script=[behaviour(status=503, retry_after="0"), behaviour(reset=True)])
        response = client.get("/x")
        assert (type(response), response.status_code, response.text) == (httpx2.Response, 200, "ok")
        assert server.hits() == 3
        server.set(default=behaviour(reset=True))
        with pytest.raises(httpx2.RemoteProtocolError):
            client.get("/x")
        assert server.hits() == 3
        server.set(default=behaviour(status=503))
        assert client.post("/x", content=b"once").status_code == 503
        assert server.hits() == 1


async def test_an_async_httpx2_transport_keeps_its_deadline_and_breaker(server: HttpServer) -> None:
    breaker = tenure.circuit_breaker("fork", min_calls=3, failure_rate=0.5, reset_after=30)
    transport = tenure.http.AsyncTransport(
        httpx2.AsyncHTTPTransport(),
        timeout=0.3,
        retry=tenure.retry(attempts=5, backoff=0.01),
        breaker=breaker,
        fallback=httpx2.Response(200, text="cached"),
    )
    async with httpx2.AsyncClient(base_url=server.url, transport=transport) as client:
        server.set(default=behaviour(delay_ms=2000))
        started = time.monotonic()
        response = await client.get("/x")
        assert time.monotonic() - started <= 0.35
        assert (type(response), response.text) == (httpx2.Response, "cached")  # a ReadTimeout, answered
        for _ in range(2):
            await client.get("/x")
        assert breaker.state == "open"
        assert server.hits() == 3
        assert (await client.get("/x")).text == "cached"
        assert server.hits() == 3


def test_a_streamed_httpx2_body_holds_its_place_until_closed(server: HttpServer) -> None:
    limits = httpx2.Limits(max_connections=1)
    transport = tenure.http.Transport(httpx2.HTTPTransport(limits=limits), timeout=1, limits=limits)
    big = "x" * (2 << 20)  # past the 1 MiB read within the attempt: streamed to the caller
    server.set(default=behaviour(body=big))
    with httpx2.Client(base_url=server.url, transport=transport) as client:
        for _ in range(3):  # one place: each body must give it back when read to its end
            with client.stream("GET", "/x") as response:
                assert len(response.read()) == len(big)
        assert client.get("/x").status_code == 200


def test_tenure_http_on_httpx2_aliased_as_httpx(server: HttpServer, tmp_path: Path) -> None:
    script = tmp_path / "aliased.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import httpx2
            httpx2.alias_httpx()  # before anything imports httpx

            import httpx
            import tenure
            import tenure.http

            assert httpx is httpx2
            client = tenure.http.Client(base_url={server.url!r}, timeout=2, retry=tenure.retry(attempts=3))
            assert isinstance(client, httpx2.Client)
            response = client.get("/x")
            print(type(response).__module__, response.status_code, response.text)
            """
        )
    )
    server.set(script=[behaviour(status=502)])
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, str(script)], cwd=root, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["httpx2", "200", "ok"]
    assert server.hits() == 2
