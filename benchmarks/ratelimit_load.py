"""Many processes deciding on one key: ``benchmarks.ratelimit``'s throughput and accuracy runs.

Each run starts ``processes`` workers (``spawn``), each builds its decider by name
(``ratelimit_handles.DECIDERS``), makes a few decisions on a key of its own (connections, scripts,
imports) and reports ready; the parent then opens the window on the host's monotonic clock
(one clock for every process of the host). Every worker decides on the run's fresh key until
the window closes (``seconds``) or it has made its ``offers``, whichever comes first, and
reports how many decisions it made inside the window, how many admitted, and when its first
decision began and its last ended.

- **throughput**: no ``offers``: decisions/s = the decisions made inside the window ÷ its length.
- **accuracy**: ``offers`` = 2 × the limit in all, split between the workers, as fast as they go;
  what they admitted against the most a correct limiter of that kind admits over the span
  (``Limit.budget``).
"""

from __future__ import annotations

import math
import multiprocessing
import os
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.queues import Queue
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event
from typing import Any

from benchmarks.contended import SETUP_TIMEOUT, START_DELAY, _gather, _stop
from benchmarks.ratelimit_handles import DECIDERS, Limit, build_sync
from benchmarks.registry import BenchContext, Unavailable
from benchmarks.report import Record
from benchmarks.run import progress
from benchmarks.runner import spread

WARMUP = 20  # looks at the key before the window: connections, scripts, imports
LATE_GRACE = 30.0


@dataclass(frozen=True)
class LoadRun:
    """One run: who decides, on which key, how many processes, for how long, how many offers."""

    decider: str
    key: str
    limit: Limit
    processes: int
    seconds: float
    offers: int | None = None  # in all; None: as many as the window allows
    start_method: str = "spawn"


Report = tuple[int, int, int, int, float, float, str | None]
# index, made, admitted, decided by the deadline, first, last, error


def _worker(
    index: int,
    ctx: BenchContext,
    run: LoadRun,
    ready: Queue[tuple[int, str | None]],
    go: Event,
    start_at: Synchronized[float],
    results: Queue[Report],
) -> None:
    """Run in a child process: set up, report ready, then decide until the window or the offers end."""
    try:
        decider = build_sync(run.decider, ctx, run.key, run.limit)
        for _ in range(WARMUP):
            decider.warm()  # looks only: the key's budget is untouched
    except BaseException:
        ready.put((index, traceback.format_exc()))
        return
    ready.put((index, None))
    made = admitted = 0
    first = last = math.nan
    error: str | None = None
    try:
        if not go.wait(SETUP_TIMEOUT + START_DELAY):
            raise TimeoutError("the parent never gave the start signal")
        if start_at.value <= 0:
            return  # another worker failed to set up: the run is called off
        end = start_at.value + run.seconds
        share = _share(run.offers, run.processes, index)
        time.sleep(max(0.0, start_at.value - time.monotonic()))
        monotonic, decide = time.monotonic, decider.decide
        first = monotonic()
        while made < share and monotonic() < end:
            admitted += decide()
            made += 1
        last = monotonic()
    except BaseException:
        error = traceback.format_exc()
    finally:
        decider.close()
        results.put((index, made, admitted, decider.unavailable, first, last, error))


def _share(offers: int | None, processes: int, index: int) -> int | float:
    if offers is None:
        return math.inf
    return offers // processes + (1 if index < offers % processes else 0)


def measure_load(ctx: BenchContext, run: LoadRun) -> Record:
    """Start the workers, open the window once all are ready, and add up what they report."""
    try:
        build_sync(run.decider, ctx, f"{run.key}-probe", run.limit).close()
    except (ImportError, Unavailable) as exc:
        return {"skipped": str(exc), "errors": []}
    mp: Any = multiprocessing.get_context(run.start_method)
    ready: Queue[tuple[int, str | None]] = mp.Queue()
    results: Queue[Report] = mp.Queue()
    go = mp.Event()
    start_at = mp.Value("d", 0.0)
    workers = [
        mp.Process(
            target=_worker,
            args=(i, ctx, run, ready, go, start_at, results),
            name=f"ratelimit-{run.decider}-{i}",
            daemon=True,
        )
        for i in range(run.processes)
    ]
    for worker in workers:
        worker.start()
    try:
        readiness, errors = _gather(ready, workers, time.monotonic() + SETUP_TIMEOUT, "set up")
        errors += [f"worker {index} setup: {error}" for index, error in readiness if error is not None]
        if errors:
            go.set()  # with start_at still 0: the workers that are ready leave at once
            return {"skipped": None, "errors": errors}
        start_at.value = time.monotonic() + START_DELAY
        go.set()
        reports, errors = _gather(results, workers, start_at.value + run.seconds + LATE_GRACE, "finish")
    finally:
        _stop(workers)
    errors += [f"worker {index}: {error}" for index, *_, error in reports if error is not None]
    made = sum(r[1] for r in reports)
    admitted = sum(r[2] for r in reports)
    firsts = [r[4] for r in reports if not math.isnan(r[4])]
    lasts = [r[5] for r in reports if not math.isnan(r[5])]
    span = max(lasts) - min(firsts) if firsts and lasts else math.nan
    record: Record = {
        "skipped": None,
        "errors": errors,
        "processes": run.processes,
        "decisions": made,
        "admitted": admitted,
        "unavailable": sum(r[3] for r in reports),  # denied by the deadline, not by the store
        "span_s": span,
        "decisions_per_s": made / span if span and span > 0 else math.nan,
        "per_process": [r[1] for r in sorted(reports)],
    }
    if run.offers is not None:
        kind = DECIDERS[run.decider].budget
        budget = run.limit.budget(kind, span)
        record.update(
            offered=run.offers,
            unmade=run.offers - made,  # offers the window closed on
            budget_kind=kind,
            budget=budget,
            over_admitted=admitted - budget,
        )
    return record


def fresh_key(what: str) -> str:
    return f"{what}-{os.urandom(4).hex()}"


# -- the phases ------------------------------------------------------------------------------------

# Deciders of the throughput and accuracy runs, and the peers' ratios' targets (issue 16's).
LOAD = (
    "tenure",
    "tenure-no-deadline",
    "limits-moving",
    "limits-fixed",
    "limits-sliding",
    "pyrate-bucket",
    "pyrate-gcra",
)
TARGETS = {"limits-moving": 3.0, "limits-fixed": 1.0}  # tenure's decisions/s ÷ theirs, at least
REGIMES = ("admitting", "refusing")


def measure_throughput(
    ctx: BenchContext, limit: Limit, processes: Sequence[int], seconds: float, repeat: int, start_method: str
) -> dict[str, dict[str, dict[str, Record]]]:
    """Decisions/s of every decider on a fresh key, by regime and process count, interleaved by round.

    *admitting*: the key's whole budget (``limit.permits``) offered at once, each decision
    admitted: offers ÷ the span they took. *refusing*: right after, on the spent key, as many
    decisions as ``seconds`` allow: mostly refusals, an admit as the budget comes back, as a
    limiter does under more load than its limit (a moving window's log is full).
    """
    out: dict[str, dict[str, dict[str, Record]]] = {r: {str(p): {} for p in processes} for r in REGIMES}
    for round_ in range(repeat):
        for count in processes:
            for name in LOAD:
                recs = [
                    out[r][str(count)].setdefault(name, {"skipped": None, "errors": [], "runs": []})
                    for r in REGIMES
                ]
                if recs[0]["skipped"] or recs[0]["errors"] or recs[1]["errors"]:
                    continue
                key = fresh_key(name)
                runs = (
                    LoadRun(name, key, limit, count, 0.9 * limit.period, limit.permits, start_method),
                    LoadRun(name, key, limit, count, seconds, None, start_method),
                )
                for regime, rec, run in zip(REGIMES, recs, runs, strict=True):
                    result = measure_load(ctx, run)
                    rec["skipped"], rec["errors"] = result["skipped"], result["errors"]
                    if rec["skipped"] or rec["errors"]:
                        progress(f"  {regime} {name} ×{count}: {rec['skipped'] or rec['errors'][0][:300]}")
                        break
                    rec["runs"].append(result)
                    progress(
                        f"  {regime} {round_ + 1}/{repeat} {name} ×{count}: "
                        f"{result['decisions_per_s']:,.0f}/s, "
                        f"{result['admitted']:,} of {result['decisions']:,} admitted"
                        + (f", {result['unavailable']} by the deadline" if result["unavailable"] else "")
                    )
    for by_count in out.values():
        for by_name in by_count.values():
            for rec in by_name.values():
                rec["decisions_per_s"] = spread([r["decisions_per_s"] for r in rec["runs"]])
    return out


def throughput_ratios(throughput: dict[str, dict[str, dict[str, Record]]]) -> list[Record]:
    """tenure's decisions/s ÷ each peer's, by regime and process count: of the medians, and per round."""
    out: list[Record] = []
    for regime, by_count in throughput.items():
        for count, by_name in by_count.items():
            for numerator in ("tenure", "tenure-no-deadline"):
                for denominator in LOAD[2:]:
                    top, bottom = by_name.get(numerator), by_name.get(denominator)
                    value = low = high = math.nan
                    if top and bottom and top["runs"] and bottom["runs"]:
                        value = top["decisions_per_s"]["median"] / bottom["decisions_per_s"]["median"]
                        rounds = [
                            a["decisions_per_s"] / b["decisions_per_s"]
                            for a, b in zip(top["runs"], bottom["runs"], strict=False)
                        ]
                        low, high = min(rounds), max(rounds)
                    target = TARGETS.get(denominator) if numerator == "tenure" else None
                    out.append(
                        {
                            "regime": regime,
                            "processes": int(count),
                            "numerator": numerator,
                            "denominator": denominator,
                            "ratio": value,
                            "per_round_min": low,
                            "per_round_max": high,
                            "target_at_least": target,
                            "met": None if target is None or math.isnan(value) else value >= target,
                        }
                    )
    return out


def measure_accuracy(ctx: BenchContext, limit: Limit, processes: int, start_method: str) -> dict[str, Record]:
    """Offer twice the limit from ``processes`` processes to each decider, on a fresh key each."""
    out: dict[str, Record] = {}
    for name in LOAD:
        # A window is one period long: offers still unmade when 90% of it has gone are dropped.
        key = fresh_key(f"accuracy-{name}")
        run = LoadRun(name, key, limit, processes, 0.9 * limit.period, 2 * limit.permits, start_method)
        out[name] = rec = measure_load(ctx, run)
        if rec["skipped"] or rec["errors"]:
            progress(f"  accuracy {name}: {rec['skipped'] or rec['errors'][0][:300]}")
        else:
            progress(
                f"  accuracy {name}: {rec['admitted']:,} of {rec['decisions']:,} admitted, "
                f"budget {rec['budget']:,} over {rec['span_s']:.2f} s"
            )
    return out
