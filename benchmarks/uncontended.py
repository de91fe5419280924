"""Uncontended: one process acquires and releases one name in a loop, nobody else wants it."""

from __future__ import annotations

import time
from dataclasses import dataclass

from benchmarks.registry import LockHandle
from benchmarks.stats import percentile


@dataclass(frozen=True)
class UncontendedConfig:
    """Bounds of one run: it stops at ``max_cycles`` or after ``max_seconds``, whichever is first."""

    max_cycles: int = 20_000
    max_seconds: float = 3.0
    warmup_cycles: int = 500
    warmup_seconds: float = 0.5


@dataclass(frozen=True)
class UncontendedResult:
    """Figures of one run; a cycle is one ``acquire()`` plus one ``release()``."""

    cycles: int
    seconds: float
    cycles_per_s: float
    p50_us: float
    p99_us: float
    mean_us: float
    max_us: float


def measure_uncontended(handle: LockHandle, config: UncontendedConfig) -> UncontendedResult:
    """Warm up (connections, caches, lazy imports), then time each cycle with ``perf_counter_ns``."""
    clock = time.perf_counter_ns
    limit = clock() + int(config.warmup_seconds * 1e9)
    for _ in range(config.warmup_cycles):
        handle.acquire()
        handle.release()
        if clock() >= limit:
            break
    samples: list[int] = []
    begin = clock()
    limit = begin + int(config.max_seconds * 1e9)
    for _ in range(config.max_cycles):
        started = clock()
        handle.acquire()
        handle.release()
        ended = clock()
        samples.append(ended - started)
        if ended >= limit:
            break
    seconds = (clock() - begin) / 1e9
    micros = [s / 1e3 for s in samples]
    return UncontendedResult(
        cycles=len(samples),
        seconds=seconds,
        cycles_per_s=len(samples) / seconds,
        p50_us=percentile(micros, 50),
        p99_us=percentile(micros, 99),
        mean_us=sum(micros) / len(micros),
        max_us=max(micros),
    )
