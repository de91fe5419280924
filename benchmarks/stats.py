"""Pure statistics over recorded timings: percentiles, fairness, hand-off gaps. No I/O, no clocks."""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(values: Sequence[float], q: float) -> float:
    """Return the ``q``-th percentile (0..100) by linear interpolation; nan for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    """Return the median, ignoring nan; nan when nothing is left."""
    kept = [v for v in values if not math.isnan(v)]
    return statistics.median(kept) if kept else math.nan


def jain_index(counts: Sequence[int]) -> float:
    """Return Jain's fairness index (Σx)² / (n·Σx²): 1 when all equal, 1/n when one got all."""
    squares = sum(x * x for x in counts)
    if not counts or squares == 0:
        return 0.0
    return sum(counts) ** 2 / (len(counts) * squares)


@dataclass(frozen=True, slots=True)
class Hold:
    """One acquisition by one worker, in seconds of the host's monotonic clock."""

    worker: int
    wait_started: float  # acquire() called
    acquired: float  # acquire() returned
    releasing: float  # release() called: from here the next holder may take over
    released: float  # release() returned

    @property
    def wait(self) -> float:
        return self.acquired - self.wait_started


@dataclass(frozen=True, slots=True)
class ContendedSummary:
    """What a contended run's merged records say."""

    acquisitions: int  # acquired within the measured window
    handoffs_per_s: float
    switches: float  # share of consecutive holds taken by a different worker than the previous one
    gap_p50_us: float  # previous hold's release() called -> next hold acquired, whoever holds next
    gap_p99_us: float
    switch_gap_p50_us: float  # the same, only where the next holder is another worker
    overlaps: int  # holds that began before the previous one ended: must be 0 for a correct lock
    wait_p50_ms: float
    wait_p99_ms: float
    max_wait_ms: float
    per_worker: tuple[int, ...]
    fairness: float


def summarize_contended(
    holds: Sequence[Hold], workers: int, start: float, duration: float, failed_waits: Sequence[float] = ()
) -> ContendedSummary:
    """Merge every worker's holds by acquisition time and compute the contended figures.

    Only holds acquired inside ``[start, start + duration]`` count toward rates and fairness;
    waits are taken over every hold, because a wait that ended late was still a real wait, and
    over ``failed_waits`` (attempts that gave up, e.g. timed out), the longest waits of all.
    """
    end = start + duration
    window = sorted((h for h in holds if start <= h.acquired <= end), key=lambda h: h.acquired)
    pairs = list(itertools.pairwise(window))
    gaps = [b.acquired - a.releasing for a, b in pairs]
    switch_gaps = [b.acquired - a.releasing for a, b in pairs if a.worker != b.worker]
    waits = [h.wait for h in holds] + list(failed_waits)
    per_worker = [0] * workers
    for hold in window:
        per_worker[hold.worker] += 1
    return ContendedSummary(
        acquisitions=len(window),
        handoffs_per_s=len(window) / duration,
        switches=len(switch_gaps) / len(gaps) if gaps else math.nan,
        gap_p50_us=percentile(gaps, 50) * 1e6,
        gap_p99_us=percentile(gaps, 99) * 1e6,
        switch_gap_p50_us=percentile(switch_gaps, 50) * 1e6,
        overlaps=sum(g < 0 for g in gaps),
        wait_p50_ms=percentile(waits, 50) * 1e3,
        wait_p99_ms=percentile(waits, 99) * 1e3,
        max_wait_ms=max(waits, default=math.nan) * 1e3,
        per_worker=tuple(per_worker),
        fairness=jain_index(per_worker),
    )
