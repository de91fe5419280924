"""The circuit breaker's state machine: a policy, the record a store keeps, and one pure step.

A breaker is CLOSED (calls flow, outcomes are counted), OPEN (calls are refused until
``opened_until``) or HALF_OPEN (a few trial calls are let through to probe the service)::

    CLOSED --(calls >= min_calls and failure or slow rate reached)--> OPEN until now + reset_after
    OPEN   --(now >= opened_until)--> HALF_OPEN, no trial taken yet
    HALF_OPEN --(a trial fails)--> OPEN until now + reset_after
    HALF_OPEN --(all ``trials`` trials succeed)--> CLOSED, the window cleared

Outcomes are counted over a time-based sliding window of ``window`` seconds kept as ``buckets``
slots (resilience4j's time-based window): a slot holds the counts of ``window / buckets``
seconds, and a slot older than the window is dropped whole. The whole state is one small
``BreakerRecord``; an in-process breaker keeps it under a lock, a shared one keeps its bytes in
a store and runs ``breaker_step`` inside the store's atomic read-modify-write, by the store's
clock.
"""

from __future__ import annotations

import math
import struct
from enum import StrEnum
from typing import NamedTuple

from tenure._exceptions import ConfigurationError


class BreakerPolicy(NamedTuple):
    """When a breaker opens and how it recovers; build it with ``breaker_policy`` (validated).

    ``failure_rate``: open when failures / calls in the window reach it (0 < r <= 1), once at
    least ``min_calls`` calls are in the window. ``window``: seconds of calls the rates are
    taken over, kept as ``buckets`` slots. ``reset_after``: seconds open before trials are
    admitted. ``trials``: trial calls admitted when half-open (all must succeed to close).
    ``slow_call_duration``: a call longer than this is slow (None: no slow-call rule);
    ``slow_call_rate``: open when slow / calls reach it.
    """

    failure_rate: float = 0.5
    min_calls: int = 20
    window: float = 60.0
    reset_after: float = 30.0
    trials: int = 3
    slow_call_duration: float | None = None
    slow_call_rate: float = 1.0
    buckets: int = 10

    @property
    def bucket_width(self) -> float:
        """Return the seconds one slot of the window covers."""
        return self.window / self.buckets


MAX_BUCKETS = 1000
MAX_TRIALS = 1000


def breaker_policy(
    *,
    failure_rate: object = 0.5,
    min_calls: object = 20,
    window: object = 60.0,
    reset_after: object = 30.0,
    trials: object = 3,
    slow_call_duration: object = None,
    slow_call_rate: object = 1.0,
    buckets: object = 10,
) -> BreakerPolicy:
    """Return a ``BreakerPolicy`` of these options, or raise ``ConfigurationError`` naming the bad one."""
    return BreakerPolicy(
        failure_rate=_rate("failure_rate", failure_rate),
        min_calls=_count("min_calls", min_calls, 1_000_000),
        window=_seconds("window", window),
        reset_after=_seconds("reset_after", reset_after),
        trials=_count("trials", trials, MAX_TRIALS),
        slow_call_duration=_seconds_or_none("slow_call_duration", slow_call_duration),
        slow_call_rate=_rate("slow_call_rate", slow_call_rate),
        buckets=_count("buckets", buckets, MAX_BUCKETS),
    )


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _rate(name: str, value: object) -> float:
    number = _number(value)
    if number is None or not 0 < number <= 1:
        raise ConfigurationError(f"{name} must be a fraction of calls, 0 < {name} <= 1, got {value!r}")
    return number


def _seconds(name: str, value: object) -> float:
    number = _number(value)
    if number is None or number <= 0:
        raise ConfigurationError(f"{name} must be a positive, finite number of seconds, got {value!r}")
    return number


def _seconds_or_none(name: str, value: object) -> float | None:
    return None if value is None else _seconds(name, value)


def _count(name: str, value: object, most: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
        raise ConfigurationError(f"{name} must be a whole number from 1 to {most:,}, got {value!r}")
    return value


class BreakerState(StrEnum):
    """Where a breaker stands: calls flow, are refused, or a few trials probe the service."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Tally(NamedTuple):
    """Outcomes of calls to add to the window: how many ended, failed, and were slow."""

    calls: int = 0
    failures: int = 0
    slow: int = 0

    def plus(self, other: Tally) -> Tally:
        """Return these outcomes and ``other``'s together (``+`` would join the tuples)."""
        return Tally(self.calls + other.calls, self.failures + other.failures, self.slow + other.slow)


NO_CALLS = Tally()
_STATES = (BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN)
_HEAD = struct.Struct("!BBdHHH")  # version, state, opened_until, trials taken, passed, buckets
_SLOT = struct.Struct("!dIII")  # slot start, calls, failures, slow
_VERSION = 1
_MOST = 2**32 - 1  # a slot's counts saturate here (4 billion calls in one slot: never in practice)


class BreakerRecord(NamedTuple):
    """The whole state of one breaker: what a store keeps, as ``encode()`` bytes.

    ``opened_until``: when OPEN, the time (the keeper's clock, seconds) trials may begin; when
    HALF_OPEN, the time the current round of trials began. ``buckets``: the window's slots, each
    its start time and the outcomes counted in it (only while CLOSED).
    """

    state: BreakerState = BreakerState.CLOSED
    opened_until: float = 0.0
    trials_taken: int = 0
    trials_passed: int = 0
    buckets: tuple[tuple[float, Tally], ...] = ()

    def totals(self) -> Tally:
        """Return the outcomes counted in the window's slots together."""
        total = NO_CALLS
        for _, tally in self.buckets:
            total = total.plus(tally)
        return total

    def encode(self) -> bytes:
        """Return the record as compact bytes (16 + 20 per slot); ``decode`` reads them back."""
        head = _HEAD.pack(
            _VERSION,
            _STATES.index(self.state),
            self.opened_until,
            min(self.trials_taken, 0xFFFF),
            min(self.trials_passed, 0xFFFF),
            len(self.buckets),
        )
        slots = b"".join(
            _SLOT.pack(start, min(t.calls, _MOST), min(t.failures, _MOST), min(t.slow, _MOST))
            for start, t in self.buckets
        )
        return head + slots

    @classmethod
    def decode(cls, data: bytes | None) -> BreakerRecord:
        """Return the record ``encode`` wrote: None is a fresh closed breaker.

        Raises ``ValueError`` for bytes that are not a record (the store says what that means).
        """
        if data is None:
            return cls()
        if len(data) < _HEAD.size:
            raise ValueError(f"a breaker record is at least {_HEAD.size} bytes, got {len(data)}")
        version, state, opened_until, taken, passed, count = _HEAD.unpack_from(data)
        if version != _VERSION or state >= len(_STATES) or len(data) != _HEAD.size + count * _SLOT.size:
            raise ValueError(f"not a breaker record (version {version}, state {state}, {len(data)} bytes)")
        buckets = tuple(
            (start, Tally(calls, failures, slow))
            for start, calls, failures, slow in (
                _SLOT.unpack_from(data, _HEAD.size + i * _SLOT.size) for i in range(count)
            )
        )
        if not math.isfinite(opened_until) or not all(math.isfinite(start) for start, _ in buckets):
            raise ValueError("not a breaker record (a time is not finite)")
        return cls(_STATES[state], opened_until, taken, passed, buckets)


class BreakerView(NamedTuple):
    """What one step means for the caller.

    ``opened_until``: when OPEN, when trials may begin; when HALF_OPEN, when the current round of
    trials lapses if its trials never report (a new round then begins); when CLOSED, 0.
    ``trial_granted``: the step took a trial for the caller. ``now``: the clock the step ran by.
    """

    state: BreakerState
    opened_until: float
    trial_granted: bool
    now: float


def breaker_step(
    record: BreakerRecord,
    now: float,
    policy: BreakerPolicy,
    tally: Tally = NO_CALLS,
    *,
    want_trial: bool = False,
    trial_outcome: bool | None = None,
) -> tuple[BreakerRecord, BreakerView]:
    """Run one step of the breaker at ``now``: count ``tally``, move state, maybe grant a trial.

    ``tally`` is counted only while CLOSED (calls admitted before the breaker opened and ending
    after are not news). ``trial_outcome`` reports a trial granted earlier (True: it succeeded);
    it is ignored unless HALF_OPEN. A HALF_OPEN round whose trials have not all reported within
    ``reset_after`` (a caller crashed holding one) starts again, so trials are never lost for good.

    **Guarantees:** pure and deterministic (same inputs, same outputs), so a store may run it
    more than once; at most ``policy.trials`` trials are granted per round.
    """
    state, opened_until = record.state, record.opened_until
    taken, passed = record.trials_taken, record.trials_passed
    buckets = record.buckets
    if state is BreakerState.OPEN and now >= opened_until:
        state, taken, passed = BreakerState.HALF_OPEN, 0, 0
    if state is BreakerState.HALF_OPEN and now >= opened_until + policy.reset_after:
        opened_until, taken, passed = now, 0, 0  # a stuck round: begin a new one
    if state is BreakerState.CLOSED:
        buckets = _count_in(buckets, now, policy, tally)
        if _should_open(buckets, policy):
            state, opened_until, buckets = BreakerState.OPEN, now + policy.reset_after, ()
            taken, passed = 0, 0
    elif state is BreakerState.HALF_OPEN and trial_outcome is not None:
        if not trial_outcome:
            state, opened_until, taken, passed = BreakerState.OPEN, now + policy.reset_after, 0, 0
        else:
            passed += 1
            if passed >= policy.trials:
                state, opened_until, taken, passed, buckets = BreakerState.CLOSED, 0.0, 0, 0, ()
    granted = False
    if want_trial and state is BreakerState.HALF_OPEN and taken < policy.trials:
        taken += 1
        granted = True
    new = BreakerRecord(state, opened_until, taken, passed, buckets)
    if state is BreakerState.CLOSED:
        shown = 0.0
    elif state is BreakerState.OPEN:
        shown = opened_until
    else:
        shown = opened_until + policy.reset_after
    return new, BreakerView(state, shown, granted, now)


def _count_in(
    buckets: tuple[tuple[float, Tally], ...], now: float, policy: BreakerPolicy, tally: Tally
) -> tuple[tuple[float, Tally], ...]:
    """Return the window's slots at ``now`` with ``tally`` added to the current one."""
    width = policy.bucket_width
    current = math.floor(now / width) * width
    # Keep the slots among the last `buckets` ones; half a width of slack absorbs float error,
    # and a slot from the future (a clock that stepped back) is dropped.
    oldest = current - policy.window + width / 2
    kept = [(start, t) for start, t in buckets if oldest < start < current + width / 2]
    if tally.calls or tally.failures or tally.slow:
        for i, (start, t) in enumerate(kept):
            if abs(start - current) < width / 2:
                kept[i] = (start, t.plus(tally))
                break
        else:
            kept.append((current, tally))
    return tuple(kept)


def _should_open(buckets: tuple[tuple[float, Tally], ...], policy: BreakerPolicy) -> bool:
    total = BreakerRecord(buckets=buckets).totals()
    if total.calls < policy.min_calls:
        return False
    # Divide rather than multiply the rate: 3 / 10 >= 0.3 holds, 3 >= 0.3 * 10 does not.
    if total.failures / total.calls >= policy.failure_rate:
        return True
    return policy.slow_call_duration is not None and total.slow / total.calls >= policy.slow_call_rate
