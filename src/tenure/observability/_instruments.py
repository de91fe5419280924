"""The OpenTelemetry instruments of one process, made at first use, through ``opentelemetry-api`` only.

Nothing here runs on import. ``current()`` is asked when a coordinator connects and when a rare
event happens (a breaker changes state, a retry is decided); it returns None, and tenure does no
instrumentation work at all, when ``opentelemetry-api`` is not installed, when no SDK has been set
as the global tracer or meter provider (and none was given to ``tenure.observe``), or after
``tenure.observe(enabled=False)``.

Hot-path counts (fences issued, leases lost, renew failures, rate decisions) are plain integers
under a lock, read by observable counters when a reader collects: a synchronous OpenTelemetry
counter costs microseconds per ``add`` with the Python SDK, as much as a lock cycle on SQLite.
Holds are counted from the coordinators' own tables at collection, so holding costs nothing.
"""

from __future__ import annotations

import itertools
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tenure._core.keys import key_kind

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, Observation
    from opentelemetry.trace import Span

SCOPE = "tenure"
# Lock waits run from tens of microseconds (SQLite, Redis on loopback) to the acquire timeout.
ACQUIRE_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip

CACHED_KEYS = 10_000  # attribute sets kept for reuse, at most

Key = tuple[tuple[str, Any], ...]
"""Attributes as a hashable tuple of pairs: what a tally counts by."""
Attributes = Mapping[str, Any] | Callable[[], Mapping[str, Any]]
"""A span's attributes, or a function that makes them (called only if the span is made)."""


@dataclass(frozen=True)
class Options:
    """What ``tenure.observe`` set: on or off, names as attributes, root spans, providers."""

    enabled: bool = True
    names: bool = False
    root_spans: bool = False
    tracer_provider: Any = None
    meter_provider: Any = None


class Tally:
    """Counts that only grow, by attribute set: bumped on hot paths, read by an observable counter.

    Each count is an ``itertools.count``, whose ``next()`` is one atomic step under the GIL: no
    lock per bump (a lock and a dict update cost as much as the rest of the instrumentation).
    """

    def __init__(self) -> None:
        self._counters: dict[Key, Iterator[int]] = {}
        self._lock = threading.Lock()  # taken only to add a new attribute set

    def add(self, key: Key) -> None:
        """Count one more of ``key``."""
        counter = self._counters.get(key)
        if counter is None:
            with self._lock:
                counter = self._counters.setdefault(key, itertools.count(1))
        next(counter)

    def items(self) -> list[tuple[Key, int]]:
        """Return every count, as it stands."""
        with self._lock:
            counters = list(self._counters.items())
        # A count's repr is "count(N)" with N the next value it would give: N - 1 were counted.
        return [(key, int(repr(counter)[6:-1]) - 1) for key, counter in counters]


class Level:
    """Counts that go up and down (callers waiting now), by attribute set."""

    def __init__(self) -> None:
        self._counts: dict[Key, int] = {}
        self._lock = threading.Lock()

    def add(self, key: Key, amount: int) -> None:
        """Add ``amount`` (1 or -1) to the count of ``key``."""
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + amount

    def items(self) -> list[tuple[Key, int]]:
        """Return every count, as it stands."""
        with self._lock:
            return list(self._counts.items())


class Instruments:
    """The tracer and the metric instruments tenure reports through, for one pair of providers."""

    def __init__(self, tracer: Any, meter: Any, options: Options) -> None:
        from opentelemetry import context, trace
        from opentelemetry.trace import Status, StatusCode

        self.tracer = tracer  # None: no tracing
        self.providers: tuple[Any, Any] = (None, None)  # kept alive: their ids key the cache
        self.metered = meter is not None
        self.names = options.names
        self.root_spans = options.root_spans
        self._current_span = trace.get_current_span
        self._current_context = context.get_current
        self._use_span = trace.use_span
        self.error_status = Status(StatusCode.ERROR)
        self.fences = Tally()  # (backend, primitive[, name]) -> fences issued
        self.lost = Tally()  # the same -> leases lost
        self.renew_failures = Tally()  # (backend, primitive, error.type[, name])
        self.rate_decisions = Tally()  # (backend, decision[, name])
        self.waiters = Level()  # (backend, primitive[, name]) -> callers waiting now
        self._contexts: weakref.WeakSet[Any] = weakref.WeakSet()  # coordinators' contexts: holds
        self._attributes: dict[tuple[Key, Key], dict[str, Any]] = {}
        self._holding_keys: dict[tuple[str, str, str], Key] = {}
        if meter is None:
            return
        self.acquire_duration = _histogram(meter)
        for name, unit, tally, description in (
            ("tenure.fence.issued", "{fence}", self.fences, "Acquisitions granted (each yields a fence)"),
            ("tenure.lease.lost", "{lease}", self.lost, "Leases lost: expired, taken over, session ended"),
            ("tenure.lease.renew.failures", "{renewal}", self.renew_failures, "Renewals refused or failed"),
            ("tenure.ratelimit.decisions", "{decision}", self.rate_decisions, "Rate-limit decisions"),
        ):
            meter.create_observable_counter(
                name, callbacks=[_reader(tally)], unit=unit, description=description
            )
        meter.create_observable_up_down_counter(
            "tenure.lock.holds", callbacks=[self._holds], unit="{lease}", description="Leases held now"
        )
        meter.create_observable_up_down_counter(
            "tenure.lock.waiters",
            callbacks=[_reader(self.waiters)],
            unit="{waiter}",
            description="Callers waiting for a lock, permit or leadership now",
        )
        self.breaker_changes = meter.create_counter(
            "tenure.breaker.state_changes", unit="{change}", description="Circuit breaker state changes"
        )
        self.retry_decisions = meter.create_counter(
            "tenure.retry.decisions", unit="{decision}", description="Retries made and refused, by reason"
        )
        make_gauge = getattr(meter, "create_gauge", None)  # opentelemetry-api >= 1.23
        self.budget_available = (
            None
            if make_gauge is None
            else make_gauge(
                "tenure.retry.budget.available", unit="{retry}", description="Retries a budget grants now"
            )
        )

    # -- attributes ------------------------------------------------------------------------------

    def key(self, backend: str, primitive: str, name: str, *extra: tuple[str, Any]) -> Key:
        """Return the attributes of one primitive's metrics; its name only if the user asked."""
        pairs = (("tenure.backend", backend), ("tenure.primitive", primitive), *extra)
        return (*pairs, ("tenure.name", name)) if self.names else pairs

    def holding_key(self, backend: str, store_key: str, name: str) -> Key:
        """Return the attributes of a held lease's metrics, from its backend key and name.

        An idempotency run's name carries the caller's key (one per request): only the space
        it runs in is named, even when names are asked for.
        """
        found = self._holding_keys.get((backend, store_key, name))
        if found is not None:
            return found
        primitive = key_kind(store_key)
        if primitive == "idempotency" and self.names:
            name = store_key.split(":", 3)[2]  # the space's name, as escaped in the key
        found = self.key(backend, primitive, name)
        if len(self._holding_keys) >= CACHED_KEYS:  # idempotency keys come and go: stay bounded
            self._holding_keys.clear()
        self._holding_keys[(backend, store_key, name)] = found
        return found

    def attributes(self, key: Key, *extra: tuple[str, Any]) -> dict[str, Any]:
        """Return ``key`` and ``extra`` as an attribute dict, made once per combination."""
        cache_key = (key, extra)
        found = self._attributes.get(cache_key)
        if found is None:
            found = self._attributes[cache_key] = dict(key + extra)
        return found

    def watch_context(self, context: object) -> None:
        """Count the holds of a coordinator's context at each collection, while it lives."""
        self._contexts.add(context)

    def _holds(self, options: CallbackOptions) -> Iterable[Observation]:
        from opentelemetry.metrics import Observation

        counts: dict[Key, int] = {}
        for context in list(self._contexts):
            backend = context.store.scheme
            for holding, _lease in context.held():
                key = self.holding_key(backend, holding.key, holding.name)
                counts[key] = counts.get(key, 0) + 1
        return [Observation(count, dict(key)) for key, count in counts.items()]

    # -- spans -----------------------------------------------------------------------------------

    def start_span(self, name: str, attributes: Attributes, *, root: bool = False) -> Span | None:
        """Start a span, or return None: no tracer, or no recording parent (unless ``root``).

        ``attributes`` may be a function that returns them: called only if a span is made.
        """
        tracer = self.tracer
        if tracer is None:
            return None
        # An empty context (the rule outside a traced request) holds no span: one call, not five.
        if not (root or self.root_spans or (self._current_context() and self._current_span().is_recording())):
            return None
        span: Span = tracer.start_span(name, attributes=attributes() if callable(attributes) else attributes)
        return span

    def end_span(self, span: Span, error: BaseException | None = None) -> None:
        """End ``span``, marked as failed with ``error`` if one is given."""
        if error is not None:
            span.set_attribute("error.type", type(error).__qualname__)
            span.set_status(self.error_status)
            span.record_exception(error)
        span.end()

    def use_span(self, span: Span) -> Any:
        """Return a context manager making ``span`` the current one (not ending it)."""
        return self._use_span(span, end_on_exit=False, record_exception=False, set_status_on_exception=False)


class Waiting:
    """One observed acquisition of a lock, permit or leadership: its span, wait and outcome.

    Its duration goes to the histogram only if it waited (its first attempt was refused) or did
    not get the lock; a grant is counted anyway by ``tenure.fence.issued``. A first attempt
    that is granted waited for nothing, and recording it would cost more than the acquisition:
    the Python SDK's ``Histogram.record`` takes 5-7 us alone and about 20 us in context, against
    40-60 us for a whole SQLite lock cycle.
    """

    __slots__ = ("_instruments", "_key", "_started", "_waited", "span")

    def __init__(self, instruments: Instruments, key: Key, span_name: str, started: float) -> None:
        self._instruments = instruments
        self._key = key
        self._started = started
        self._waited = False
        self.span = instruments.start_span(span_name, self._span_attributes)

    def _span_attributes(self) -> Mapping[str, Any]:
        return self._instruments.attributes(self._key)

    def waits(self) -> None:
        """Count this caller among the waiters (its first attempt was refused); once."""
        if not self._waited:
            self._waited = True
            self._instruments.waiters.add(self._key, 1)

    def ended(self, fence: int | None, error: BaseException | None = None) -> None:
        """Record how the acquisition ended: granted ``fence``, refused at once (None), or ``error``."""
        instruments = self._instruments
        waited = self._waited
        if waited:
            instruments.waiters.add(self._key, -1)
        if instruments.metered and (waited or fence is None):
            outcome = "acquired" if fence is not None else "busy" if error is None else "error"
            if isinstance(error, TimeoutError):
                outcome = "timeout"
            attributes = instruments.attributes(self._key, ("tenure.outcome", outcome))
            instruments.acquire_duration.record(time.monotonic() - self._started, attributes)
        span = self.span
        if span is not None:
            if fence is not None:
                span.set_attribute("tenure.fence", fence)
            span.set_attribute("tenure.waited", waited)
            instruments.end_span(span, error)


def _histogram(meter: Any) -> Any:
    options = {"unit": "s", "description": "Acquisitions that waited or were refused: time to the answer"}
    try:
        return meter.create_histogram(
            "tenure.lock.acquire.duration", explicit_bucket_boundaries_advisory=ACQUIRE_BUCKETS, **options
        )
    except TypeError:  # opentelemetry-api < 1.23 takes no advice on buckets
        return meter.create_histogram("tenure.lock.acquire.duration", **options)


def _reader(tally: Tally | Level) -> Any:
    def observe(options: CallbackOptions) -> Iterator[Observation]:
        from opentelemetry.metrics import Observation

        for key, count in tally.items():
            yield Observation(count, dict(key))

    return observe


# -- resolution ----------------------------------------------------------------------------------

_options = Options()
_made: dict[tuple[int, int, Options], Instruments] = {}  # by the providers' identities
_making = threading.Lock()
_missing = False  # opentelemetry-api is not installed


def configure(options: Options) -> None:
    """Set the options ``tenure.observe`` was given; coordinators connected later use them."""
    global _options
    _options = options


def options() -> Options:
    """Return the options in force."""
    return _options


def current() -> Instruments | None:
    """Return the instruments to report through now, or None when nothing would record them."""
    global _missing
    options = _options
    if not options.enabled or _missing:
        return None
    try:
        from opentelemetry import metrics, trace
    except ImportError:
        _missing = True  # asked again on rare events: do not search the path every time
        return None
    tracer_provider = options.tracer_provider or _configured(trace.get_tracer_provider())
    meter_provider = options.meter_provider or _configured(metrics.get_meter_provider())
    if tracer_provider is None and meter_provider is None:
        return None
    ident = (id(tracer_provider), id(meter_provider), options)
    found = _made.get(ident)
    if found is not None:
        return found
    with _making:
        found = _made.get(ident)
        if found is None:
            from tenure import __version__

            tracer = None if tracer_provider is None else tracer_provider.get_tracer(SCOPE, __version__)
            meter = None if meter_provider is None else meter_provider.get_meter(SCOPE, __version__)
            # Keep the providers alive with the instruments: their ids key the cache.
            found = _made[ident] = Instruments(tracer, meter, options)
            found.providers = (tracer_provider, meter_provider)
        return found


def _configured(provider: Any) -> Any:
    """Return ``provider`` if an SDK (anything but the API's proxy or no-op) stands behind it."""
    kind = type(provider).__name__
    if kind in ("ProxyTracerProvider", "NoOpTracerProvider", "_ProxyMeterProvider", "NoOpMeterProvider"):
        return None
    return provider
