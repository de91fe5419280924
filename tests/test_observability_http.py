"""tenure.http under OpenTelemetry: a span per protected call, its retries counted."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import tenure
import tenure.http
from tenure.observability import observe
from tests.http_server import HttpServer, behaviour, running_server
from tests.test_observability import Telemetry

FAST_RETRY = {"attempts": 3, "backoff": 0.001, "max_backoff": 0.001}


@pytest.fixture(scope="module")
def server() -> Iterator[HttpServer]:
    with running_server() as found:
        yield found


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    found = Telemetry()
    observe(tracer_provider=found.tracer_provider, meter_provider=found.meter_provider)
    yield found
    observe()


def test_a_call_is_one_span_and_its_retries_are_counted(server: HttpServer, telemetry: Telemetry) -> None:
    server.set(script=[behaviour(status=503), behaviour(status=503)])
    with tenure.http.Client(base_url=server.url, timeout=5, retry=tenure.retry(**FAST_RETRY)) as client:
        with telemetry.tracer.start_as_current_span("request") as request:
            assert client.get("/orders/42?token=secret").status_code == 200
        assert client.get("/x").status_code == 200  # no current span: no span of ours
    (call,) = telemetry.spans("tenure.http.call")
    assert call.parent is not None and call.parent.span_id == request.get_span_context().span_id
    assert call.attributes["http.request.method"] == "GET"
    assert call.attributes["http.response.status_code"] == 200
    assert call.attributes["server.address"] == "127.0.0.1"
    assert all("secret" not in str(value) for value in call.attributes.values())
    assert telemetry.total("tenure.retry.decisions", **{"tenure.retry.decision": "retry"}) == 2


async def test_a_failed_async_call_is_marked_and_its_give_up_counted(
    server: HttpServer, telemetry: Telemetry
) -> None:
    server.set(default=behaviour(status=503))
    async with tenure.http.AsyncClient(base_url=server.url, retry=tenure.retry(**FAST_RETRY)) as client:
        with telemetry.tracer.start_as_current_span("request"):
            assert (await client.get("/x")).status_code == 503
    (call,) = telemetry.spans("tenure.http.call")
    assert call.attributes["http.response.status_code"] == 503
    assert call.attributes["error.type"] == "503" and not call.status.is_ok
    assert telemetry.total("tenure.retry.decisions", **{"tenure.retry.decision": "attempts_spent"}) == 1
