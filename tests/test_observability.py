"""tenure.observability: spans and metrics through a real OpenTelemetry SDK, and none without one."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import tenure
from tenure.observability import observe
from tests._sync.faults import stall_renewals


class Telemetry:
    """An SDK tracer and meter given to tenure: what was recorded, read back."""

    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.tracer = self.tracer_provider.get_tracer("test")

    def points(self, name: str) -> list[tuple[dict[str, Any], Any]]:
        """Return the data points of metric ``name``: (attributes, value or histogram count)."""
        found = []
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        for point in metric.data.data_points:
                            value = getattr(point, "count", None)
                            found.append((dict(point.attributes), getattr(point, "value", value)))
        return found

    def total(self, name: str, **attributes: Any) -> Any:
        """Return the sum of metric ``name``'s points whose attributes include ``attributes``."""
        return sum(v for a, v in self.points(name) if attributes.items() <= a.items())

    def histogram_points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        return [
            point
            for resource in (data.resource_metrics if data else ())
            for scope in resource.scope_metrics
            for metric in scope.metrics
            if metric.name == name
            for point in metric.data.data_points
        ]

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if name is None or s.name == name]


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    found = Telemetry()
    observe(tracer_provider=found.tracer_provider, meter_provider=found.meter_provider)
    yield found
    observe()  # back to the default: the global providers, none set in this process


def test_import_touches_no_provider_and_no_sdk_means_no_work() -> None:
    script = """
import sys
import tenure
assert not any(m.startswith("opentelemetry") for m in sys.modules), "imported on import"
with tenure.Coordinator("memory://") as coord:
    with coord.lock("a") as lease:
        pass
    assert coord._context.observer is None, "no SDK configured: nothing to report to"
from opentelemetry import metrics, trace
assert trace._TRACER_PROVIDER is None and metrics._internal._METER_PROVIDER is None, "a global was set"
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "ok", done.stderr


def test_a_global_sdk_set_before_connecting_is_used() -> None:
    script = """
import tenure
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
reader = InMemoryMetricReader()
metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
with tenure.Coordinator("memory://m") as coord, tenure.Coordinator("memory://m") as rival:
    with coord.lock("a"):
        assert rival.lock("a").try_acquire() is None
data = reader.get_metrics_data()
print(sorted(m.name for r in data.resource_metrics for s in r.scope_metrics for m in s.metrics))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert "tenure.lock.acquire.duration" in done.stdout and "tenure.fence.issued" in done.stdout, done.stderr


def test_acquisitions_are_measured_without_names(telemetry: Telemetry, memory_url: str) -> None:
    with tenure.Coordinator(memory_url) as coord, tenure.Coordinator(memory_url) as rival:
        lock = coord.lock("orders:42", ttl=5)
        with lock.acquire() as lease:
            assert rival.lock("orders:42").try_acquire() is None
            assert telemetry.total("tenure.lock.holds") == 1
            with pytest.raises(tenure.AcquireTimeout):
                rival.lock("orders:42").acquire(timeout=0.05)
        assert telemetry.total("tenure.lock.holds") == 0
        key = {"tenure.backend": "memory", "tenure.primitive": "lock"}
        # Granted at the first attempt: a fence issued, no wait to put in the histogram.
        assert telemetry.total("tenure.lock.acquire.duration", **key, **{"tenure.outcome": "acquired"}) == 0
        assert telemetry.total("tenure.lock.acquire.duration", **{"tenure.outcome": "busy"}) == 1
        assert telemetry.total("tenure.lock.acquire.duration", **{"tenure.outcome": "timeout"}) == 1
        assert telemetry.total("tenure.fence.issued", **key) == 1
        assert lease.fence == 1
        for name in ("tenure.lock.acquire.duration", "tenure.fence.issued"):
            assert all("tenure.name" not in attributes for attributes, _ in telemetry.points(name))


def test_waiters_are_counted_while_they_wait(telemetry: Telemetry, memory_url: str) -> None:
    with tenure.Coordinator(memory_url) as coord:
        lease = coord.lock("busy").acquire()
        waiting = threading.Thread(target=lambda: coord.lock("busy").acquire(timeout=5).release())
        waiting.start()
        deadline = time.monotonic() + 5
        while telemetry.total("tenure.lock.waiters") != 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert telemetry.total("tenure.lock.waiters") == 1
        time.sleep(0.1)
        lease.release()
        waiting.join(5)
        assert telemetry.total("tenure.lock.waiters") == 0
        assert telemetry.total("tenure.fence.issued") == 2
        ((attributes, count),) = telemetry.points("tenure.lock.acquire.duration")
        assert count == 1 and attributes["tenure.outcome"] == "acquired"  # the wait, not the first grant
        (point,) = telemetry.histogram_points("tenure.lock.acquire.duration")
        assert point.sum >= 0.1


def test_names_are_attributes_only_when_asked(telemetry: Telemetry, memory_url: str) -> None:
    observe(names=True, tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider)
    with tenure.Coordinator(memory_url) as coord, telemetry.tracer.start_as_current_span("request"):
        coord.lock("orders:42").acquire().release()
    assert telemetry.total("tenure.fence.issued", **{"tenure.name": "orders:42"}) == 1
    assert telemetry.spans("tenure.lock.acquire")[0].attributes["tenure.name"] == "orders:42"


def test_spans_nest_under_the_caller_and_only_there(telemetry: Telemetry, memory_url: str) -> None:
    with tenure.Coordinator(memory_url) as coord:
        coord.lock("bare").acquire().release()  # no current span: no span of ours either
        assert telemetry.spans() == []
        lock = coord.lock("inside")
        with telemetry.tracer.start_as_current_span("request") as request, lock.acquire() as lease:
            lease.renew()
    names = ("tenure.lock.acquire", "tenure.lease.renew", "tenure.lock.release")
    acquire, renew, release = (telemetry.spans(name)[0] for name in names)
    for span in (acquire, renew, release):
        assert span.parent is not None and span.parent.span_id == request.get_span_context().span_id
        assert span.attributes["tenure.fence"] == lease.fence
        assert "tenure.name" not in span.attributes
    providers = {"tracer_provider": telemetry.tracer_provider, "meter_provider": telemetry.meter_provider}
    observe(root_spans=True, **providers)
    with tenure.Coordinator(memory_url) as coord:
        coord.lock("bare").acquire().release()
    assert len(telemetry.spans("tenure.lock.acquire")) == 2


def test_a_lost_lease_is_counted_and_logged_once_with_name_and_fence(
    telemetry: Telemetry, memory_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="tenure")
    with tenure.Coordinator(memory_url) as coord:
        lease = coord.lock("fragile", ttl=0.3).acquire()
        stall_renewals(coord, seconds=2.0)
        deadline = time.monotonic() + 3
        while not lease.lost and time.monotonic() < deadline:
            time.sleep(0.02)
        with pytest.raises(tenure.LockLost):
            lease.release()
    assert telemetry.total("tenure.lease.lost", **{"tenure.primitive": "lock"}) == 1
    assert telemetry.total("tenure.lease.renew.failures", **{"error.type": "BackendUnavailable"}) >= 1
    losses = [r for r in caplog.records if "lost" in r.getMessage()]
    assert len(losses) == 1 and losses[0].levelno == logging.WARNING
    assert "'fragile'" in losses[0].getMessage() and f"fence {lease.fence}" in losses[0].getMessage()


def test_a_campaign_is_traced_and_a_deposed_leader_logged(
    telemetry: Telemetry, memory_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tenure")
    with tenure.Coordinator(memory_url) as coord:
        leadership = coord.election("scheduler", value="node-1", ttl=0.3).campaign()
        stall_renewals(coord, seconds=2.0)
        deadline = time.monotonic() + 3
        while not leadership.lost and time.monotonic() < deadline:
            time.sleep(0.02)
        with pytest.raises(tenure.LeadershipLost):
            leadership.resign()
    (campaign,) = telemetry.spans("tenure.election.campaign")  # a root span: campaigns are rare
    assert campaign.attributes["tenure.fence"] == leadership.term
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert [w for w in warnings if "leadership" in w] == [
        w for w in warnings if f"election 'scheduler': leadership (term {leadership.term}) lost" in w
    ]
    assert len([w for w in warnings if "leadership" in w]) == 1


def test_rate_decisions_are_counted(telemetry: Telemetry, memory_url: str) -> None:
    with tenure.Coordinator(memory_url) as coord:
        limiter = coord.rate_limiter("search", rate="2/s", burst=2)
        decisions = [limiter.try_acquire(key="customer-7") for _ in range(3)]
    assert decisions == [True, True, False]
    assert telemetry.total("tenure.ratelimit.decisions", **{"tenure.ratelimit.decision": "allowed"}) == 2
    assert telemetry.total("tenure.ratelimit.decisions", **{"tenure.ratelimit.decision": "limited"}) == 1


async def test_an_idempotent_run_is_the_parent_of_what_it_does(telemetry: Telemetry, memory_url: str) -> None:
    async def charge(amount: int) -> int:
        with telemetry.tracer.start_as_current_span("charge"):
            await asyncio.sleep(0)
        return amount

    async with tenure.AsyncCoordinator(memory_url) as coord:
        keys = coord.idempotency("payments")
        with telemetry.tracer.start_as_current_span("request"):
            assert await keys.run("req-1", charge, 5) == 5
            assert await keys.run("req-1", charge, 5) == 5  # replayed: charge does not run
    first, second = telemetry.spans("tenure.idempotency.run")
    (charged,) = telemetry.spans("charge")
    assert charged.parent is not None and charged.parent.span_id == first.context.span_id
    assert first.attributes["tenure.idempotency.replayed"] is False
    assert second.attributes["tenure.idempotency.replayed"] is True
    assert "tenure.idempotency.key" not in first.attributes


def test_breaker_changes_are_counted_and_logged_once(
    telemetry: Telemetry, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="tenure")
    now = [0.0]
    breaker = tenure.CircuitBreaker("partner", min_calls=2, reset_after=1.0, trials=1, clock=lambda: now[0])
    for _ in range(2):
        breaker.admit().failed()
    for _ in range(3):
        with pytest.raises(tenure.CircuitOpen):
            breaker.admit()
    now[0] = 2.0
    breaker.admit().succeeded()
    changes = [r.getMessage() for r in caplog.records if "circuit breaker" in r.getMessage()]
    assert changes == [
        "tenure: circuit breaker 'partner' (in this process): closed -> open",
        "tenure: circuit breaker 'partner' (in this process): open -> half_open",
        "tenure: circuit breaker 'partner' (in this process): half_open -> closed",
    ]
    assert telemetry.total("tenure.breaker.state_changes", **{"tenure.breaker.state": "open"}) == 1
    assert telemetry.total("tenure.breaker.state_changes") == 3


def test_a_shared_breaker_logs_what_this_process_sees(
    telemetry: Telemetry, memory_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="tenure")
    with tenure.Coordinator(memory_url) as coord:
        breaker = coord.circuit_breaker("partner", min_calls=2, reset_after=30)
        for _ in range(2):
            breaker.admit().failed()
        with pytest.raises(tenure.CircuitOpen):
            breaker.admit()
    opened = [r for r in caplog.records if "circuit breaker 'partner'" in r.getMessage()]
    assert [r.getMessage() for r in opened] == [
        "tenure: circuit breaker 'partner' (shared on memory://): closed -> open"
    ]
    assert telemetry.total("tenure.breaker.state_changes", **{"tenure.backend": "memory"}) == 1


def test_retries_and_the_budget_left_are_reported(telemetry: Telemetry) -> None:
    budget = tenure.RetryBudget(ratio=0.0, min_per_second=0.1, ttl=10)  # one retry in reserve
    calls = []

    def flaky() -> None:
        calls.append(1)
        raise ConnectionError("down")

    policy = tenure.retry(attempts=3, backoff=0.0, max_backoff=0.0, budget=budget)
    with pytest.raises(ConnectionError):
        policy.call(flaky)
    assert len(calls) == 2
    assert telemetry.total("tenure.retry.decisions", **{"tenure.retry.decision": "retry"}) == 1
    assert telemetry.total("tenure.retry.decisions", **{"tenure.retry.decision": "budget_spent"}) == 1
    assert telemetry.points("tenure.retry.budget.available")[-1][1] == 0


def test_coordinators_of_one_process_report_one_series(telemetry: Telemetry, memory_url: str) -> None:
    lock = {"tenure.backend": "memory", "tenure.primitive": "lock"}
    with tenure.Coordinator(memory_url) as first, tenure.Coordinator(memory_url) as second:
        x, y = first.lock("x").acquire(), second.lock("y").acquire()
        assert telemetry.points("tenure.lock.holds") == [(lock, 2)]  # one point, summed
        x.release()
        y.release()
    assert telemetry.points("tenure.fence.issued") == [(lock, 2)]
