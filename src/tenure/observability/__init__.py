"""Observability: OpenTelemetry spans and metrics, and a Prometheus endpoint in one line.

tenure reports through ``opentelemetry-api`` only (``pip install tenure[otel]``), and only when
the application has set an OpenTelemetry SDK as the global tracer or meter provider (or passes
providers to ``observe``). Otherwise it does nothing, at the cost of one attribute test per
operation. It never touches the global providers on import: a coordinator looks at them once,
when it connects, so set up OpenTelemetry before the first lock is taken (or call ``observe``).

Lock, key and breaker names become attributes only with ``observe(names=True)``: their number
has no bound that tenure knows of. See docs/observability.md for every span and metric.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from tenure._exceptions import ConfigurationError
from tenure.observability._instruments import Options, configure, options

__all__ = ["observe", "serve_metrics"]


def observe(
    enabled: bool = True,
    *,
    names: bool = False,
    root_spans: bool = False,
    tracer_provider: Any = None,
    meter_provider: Any = None,
) -> None:
    """Set how tenure reports to OpenTelemetry, for coordinators that connect from now on.

    ``enabled=False`` turns reporting off even with an SDK configured. ``names=True`` adds
    ``tenure.name`` (the lock's, permit's, election's, limiter's or breaker's name) to metrics
    and spans, and the caller's key (idempotency, rate limit) to spans. ``root_spans=True``
    also makes the hot spans (acquire, release, rate decisions, idempotent runs, background
    renewals) when no span is current; by default they are made only inside a recording span,
    so a request's trace shows its lock waits and a bare loop of acquisitions costs no span.
    ``tracer_provider`` / ``meter_provider`` report there instead of to the global providers.
    """
    for option, flag in (("enabled", enabled), ("names", names), ("root_spans", root_spans)):
        if not isinstance(flag, bool):
            raise ConfigurationError(f"{option} must be True or False, got {flag!r}")
    configure(Options(enabled, names, root_spans, tracer_provider, meter_provider))


def serve_metrics(port: int = 9464, *, addr: str = "127.0.0.1") -> int:
    """Serve tenure's metrics for Prometheus at ``http://addr:port/metrics``; return the port.

    One line for an application that has no OpenTelemetry set-up of its own: an SDK
    ``MeterProvider`` with OpenTelemetry's Prometheus exporter (``pip install
    opentelemetry-sdk opentelemetry-exporter-prometheus``), given to tenure only (the global
    providers are left alone). Each process serves its own port: a second process asking for a
    port in use gets ``ConfigurationError``, never a shared endpoint that mixes processes' series
    (``port=0`` takes a free one, returned). Once per process: a second exporter would repeat
    every series. Other options (``names``...) are kept as ``observe`` set them.
    """
    global _served
    if _served is not None:
        raise ConfigurationError(f"tenure already serves metrics on port {_served} in this process")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigurationError(f"port must be a TCP port number, got {port!r}")
    try:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from opentelemetry.sdk.metrics import MeterProvider
        from prometheus_client import start_http_server
    except ImportError as exc:
        raise ConfigurationError(
            "serve_metrics needs opentelemetry-sdk and opentelemetry-exporter-prometheus: "
            f"pip install opentelemetry-sdk opentelemetry-exporter-prometheus ({exc})"
        ) from exc
    try:
        server, _thread = start_http_server(port, addr=addr)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot serve metrics on {addr}:{port} ({exc}); each process needs a port of its own"
        ) from exc
    _served = int(server.server_port)
    provider = MeterProvider(metric_readers=[PrometheusMetricReader()])
    configure(replace(options(), enabled=True, meter_provider=provider))
    return _served


_served: int | None = None  # the port this process serves its metrics on
