"""Semaphores and read-write locks side by side (issue 14): ``python -m benchmarks.permits``.

For each suite (``--suite NAME``, repeatable; default ``sqlite-local``), in the suite's own server
environment (servers with their packaged durability, as ``benchmarks.run`` starts them):

- **uncontended**: one process, ``acquire()`` + ``release()`` cycles of a permit of a tenure
  semaphore (``limit=4``), of the suite's raw lock floor, of tenure's own lock and of tenure's
  read-write lock (``read()``, ``write()``), on the same backend; repeated and interleaved as
  ``benchmarks.run`` does, medians of the repeats with their spread, and the ratios permit ÷
  floor (issue 14's target: ≤ 1.3×) and permit ÷ tenure lock. On ``zookeeper3`` also kazoo's
  ``Semaphore``, ``ReadLock`` and ``WriteLock``.
- **contended**: ``--processes`` (16) worker processes share one semaphore of ``--limit`` (4)
  permits for ``--duration`` seconds, each holding its permit ``--hold-ms`` (1) ms, plain and
  ``fair=True`` (and kazoo's ``Semaphore`` on ``zookeeper3``): utilisation (mean permits held ÷
  limit over the window), wait p50/p99/max, Jain's index over per-process acquisitions, and the
  most holds that overlapped (never above the limit for a correct semaphore).

The tables go to stdout, progress to stderr, every figure to
``benchmarks/results/permits-<time>.json``. Nothing is asserted; the exit code is 1 if more
than ``limit`` holds overlapped, a worker crashed or a primitive raised in the uncontended
loop. A backend without semaphores (``BackendIncapable``) is reported ``n/a (not yet)``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import multiprocessing
import os
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from multiprocessing.context import ForkServerContext, SpawnContext
from multiprocessing.queues import Queue
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import tenure
from benchmarks.contended import LATE_GRACE, SETUP_TIMEOUT, START_DELAY, _gather, _stop
from benchmarks.registry import BenchContext, Contender, LockHandle, Role, Unavailable, get_suite
from benchmarks.report import Record
from benchmarks.run import progress
from benchmarks.runner import (
    add_common_args,
    add_run_args,
    check_args,
    measure_uncontended_all,
    num,
    render_uncontended,
    run_suites,
    single_process_config,
    spread,
    value_range,
)
from benchmarks.runner import source_info as source_info  # re-exported: older importers
from benchmarks.runner import uncontended_ratios as uncontended_ratios
from benchmarks.stats import Hold, jain_index, percentile
from benchmarks.suites.common import TIMEOUT, TTL
from benchmarks.uncontended import UncontendedConfig

LIMIT = 4
PROCESSES = 16
HOLD_MS = 1.0
DURATION = 3.0
REPEAT = 5
QUICK_PROCESSES, QUICK_DURATION = 6, 0.5
# Issue 14's targets: computed for the report, never asserted.
TARGET_PERMIT_VS_FLOOR = 1.3  # uncontended permit p50 ÷ the backend's raw lock floor p50, at most
TARGET_UTILISATION = 0.95  # mean permits held ÷ limit at hold 1 ms, at least
TARGET_UTILISATION_HOLD_MS = 1.0
TARGET_FAIRNESS = 0.99  # Jain's index with fair=True, at least
NOT_YET = "n/a (not yet)"
# Their old names here, for modules that import them from this one; new code imports runner's.
_num, _range, _spread = num, value_range, spread


# -- handles ---------------------------------------------------------------------------------------


def _coordinator(url: str) -> tenure.Coordinator:
    try:
        return tenure.Coordinator(url)
    except tenure.ConfigurationError as exc:
        raise Unavailable(f"{NOT_YET}: backend not available ({type(exc).__name__}: {exc})") from exc


class PermitHandle:
    """One permit of ``Coordinator(url).semaphore(name, limit=, ttl=10, fair=)`` at a time.

    A backend that cannot count permits yet raises ``Unavailable("n/a (not yet): ...")``; one
    that counts them but cannot queue waiters says so for ``fair=True``.
    """

    def __init__(self, url: str, name: str, *, limit: int, fair: bool = False) -> None:
        self._coordinator = _coordinator(url)
        try:
            self._coordinator.semaphore(name, limit=limit, ttl=TTL, timeout=TIMEOUT)
        except tenure.BackendIncapable as exc:
            self._coordinator.close()
            raise Unavailable(f"{NOT_YET}: {type(exc).__name__}: {exc}") from exc
        try:
            self._semaphore = self._coordinator.semaphore(
                name, limit=limit, ttl=TTL, timeout=TIMEOUT, fair=fair
            )
        except tenure.BackendIncapable as exc:
            self._coordinator.close()
            raise Unavailable(
                f"n/a (this backend cannot queue waiters): {type(exc).__name__}: {exc}"
            ) from exc
        self._lease: tenure.Lease | None = None

    def acquire(self) -> None:
        self._lease = self._semaphore.acquire()

    def release(self) -> None:
        lease, self._lease = self._lease, None
        if lease is None:
            raise RuntimeError("release() without a held permit")
        lease.release()

    def close(self) -> None:
        self._coordinator.close()


# The contended floor's semaphore: made by the parent before it starts the workers, handed to each
# one as a process argument (an OS semaphore can only be inherited), and set here for the factory.
_HOST_SEMAPHORE: Any = None


class HostSemaphoreHandle:
    """The contended floor: ``multiprocessing.Semaphore(limit)``, an OS semaphore the workers share.

    No server, no network, no lease: a release wakes a waiter through the kernel, so its
    utilisation is what this machine's scheduler allows for this many processes at this hold.
    """

    def __init__(self, ctx: BenchContext, name: str) -> None:
        if _HOST_SEMAPHORE is None:
            raise Unavailable("n/a (the host floor runs only in the contended window)")
        self._semaphore = _HOST_SEMAPHORE

    def acquire(self) -> None:
        if not self._semaphore.acquire(timeout=TIMEOUT):
            raise TimeoutError(f"host semaphore not acquired within {TIMEOUT} s")

    def release(self) -> None:
        self._semaphore.release()

    def close(self) -> None:
        """Nothing to close: the parent owns the semaphore."""


class RWHandle:
    """``Coordinator(url).rwlock(name, ttl=10)``: ``read()`` or ``write()`` per acquire."""

    def __init__(self, url: str, name: str, *, write: bool) -> None:
        self._coordinator = _coordinator(url)
        try:
            rwlock = self._coordinator.rwlock(name, ttl=TTL, timeout=TIMEOUT)
        except tenure.BackendIncapable as exc:
            self._coordinator.close()
            raise Unavailable(f"{NOT_YET}: {type(exc).__name__}: {exc}") from exc
        self._take: Callable[[], tenure.Lease] = rwlock.write if write else rwlock.read
        self._lease: tenure.Lease | None = None

    def acquire(self) -> None:
        self._lease = self._take()

    def release(self) -> None:
        lease, self._lease = self._lease, None
        if lease is None:
            raise RuntimeError("release() without a held lease")
        lease.release()

    def close(self) -> None:
        self._coordinator.close()


class KazooSemaphoreHandle:
    """kazoo's ``Semaphore`` recipe: ``client.Semaphore(path, id, max_leases=limit)``.

    Its acquire takes a kazoo ``Lock`` on ``<path>-__lock__`` (a sequential node + a listing),
    lists the lease nodes and creates an ephemeral one if fewer than ``max_leases`` exist, then
    releases that lock; a waiter holds the lock and watches the leases' listing, so waiters are
    served one at a time, in the lock's (arrival) order. Release deletes the lease node. No TTL
    (a lease lives as long as its session) and no fence.
    """

    def __init__(self, ctx: BenchContext, name: str) -> None:
        from benchmarks.suites.zookeeper3 import CHROOT, _client

        self._client = _client(ctx)
        limit = int(ctx.params["permit_limit"])
        self._semaphore = self._client.Semaphore(
            f"{CHROOT}/kazoo-semaphore/{name}", os.urandom(4).hex(), max_leases=limit
        )

    def acquire(self) -> None:
        if not self._semaphore.acquire(blocking=True, timeout=TIMEOUT):
            raise TimeoutError(f"kazoo semaphore not acquired within {TIMEOUT} s")

    def release(self) -> None:
        if not self._semaphore.release():
            raise RuntimeError("kazoo semaphore lease was not held at release")

    def close(self) -> None:
        from benchmarks.suites.zookeeper3 import _stop as stop_client

        stop_client(self._client)


class KazooRWHandle:
    """kazoo's ``ReadLock`` or ``WriteLock`` (``client.ReadLock(path, id)``): its Lock recipe.

    A sequential node named for the kind + a listing of the lock's children per acquire, a
    delete per release; a reader waits only for writers before it. No TTL, no fence.
    """

    def __init__(self, ctx: BenchContext, name: str, *, write: bool) -> None:
        from benchmarks.suites.zookeeper3 import CHROOT, _client

        self._client = _client(ctx)
        recipe = self._client.WriteLock if write else self._client.ReadLock
        self._lock = recipe(f"{CHROOT}/kazoo-rw/{name}", os.urandom(4).hex())

    def acquire(self) -> None:
        if not self._lock.acquire(blocking=True, timeout=TIMEOUT):
            raise TimeoutError(f"kazoo read-write lock not acquired within {TIMEOUT} s")

    def release(self) -> None:
        if not self._lock.release():
            raise RuntimeError("kazoo read-write lock was not held at release")

    def close(self) -> None:
        from benchmarks.suites.zookeeper3 import _stop as stop_client

        stop_client(self._client)


# -- what each suite measures ----------------------------------------------------------------------


@dataclass(frozen=True)
class Mode:
    """One way a backend stores leases: its URL suffix and the suite's tenure lock in that mode."""

    suffix: str  # "" or "table": appended to the contender names
    query: str  # appended to the suite's URL
    lock: str  # the suite's tenure lock contender (its floor is the permit's floor)


@dataclass(frozen=True)
class Plan:
    """What ``permits`` measures on a suite: its modes, its URL, and whether kazoo runs there."""

    modes: tuple[Mode, ...]
    url: Callable[[BenchContext], str]
    kazoo: bool = False


def _server_url(ctx: BenchContext) -> str:
    return ctx.params["tenure_url"]


def _sqlite_url(ctx: BenchContext) -> str:
    return f"sqlite:///{ctx.path('tenure.db')}"  # the file the suite's tenure contenders use


def _modes(lock: str, table: str | None = None) -> tuple[Mode, ...]:
    plain = Mode("", "", lock)
    return (plain,) if table is None else (plain, Mode("table", "?mode=table", table))


PLANS: dict[str, Plan] = {
    "sqlite-local": Plan(_modes("tenure-sqlite"), _sqlite_url),
    "redis-single": Plan(_modes("tenure-redis"), _server_url),
    "redlock5": Plan(_modes("tenure-redlock"), _server_url),
    "etcd3": Plan(_modes("tenure-etcd"), _server_url),
    "zookeeper3": Plan(_modes("tenure-zookeeper"), _server_url, kazoo=True),
    "postgresql": Plan(_modes("tenure-postgresql", "tenure-postgresql-table"), _server_url),
    "mysql": Plan(_modes("tenure-mysql", "tenure-mysql-table"), _server_url),
}


def _named(base: str, mode: Mode) -> str:
    return f"{base}-{mode.suffix}" if mode.suffix else base


def _permit_factory(plan: Plan, mode: Mode, contender: str, fair: bool) -> Callable[..., LockHandle]:
    def factory(ctx: BenchContext, name: str) -> LockHandle:
        url = plan.url(ctx) + mode.query
        return PermitHandle(url, f"{contender}-{name}", limit=int(ctx.params["permit_limit"]), fair=fair)

    return factory


def _rw_factory(plan: Plan, mode: Mode, contender: str, write: bool) -> Callable[..., LockHandle]:
    def factory(ctx: BenchContext, name: str) -> LockHandle:
        return RWHandle(plan.url(ctx) + mode.query, f"{contender}-{name}", write=write)

    return factory


def _kazoo_rw(write: bool) -> Callable[..., LockHandle]:
    def factory(ctx: BenchContext, name: str) -> LockHandle:
        return KazooRWHandle(ctx, name, write=write)

    return factory


@dataclass(frozen=True)
class Lineup:
    """A suite's contenders: the uncontended loop's, the contended runs', and the ratios to take."""

    uncontended: tuple[Contender, ...]
    contended: tuple[Contender, ...]
    ratios: tuple[tuple[str, str, float | None], ...]  # (numerator, denominator, target ≤)


def lineup(suite_name: str) -> Lineup:
    """Return what ``permits`` measures on ``suite_name`` (workers rebuild it to find a factory)."""
    suite = get_suite(suite_name)
    plan = PLANS[suite_name]
    uncontended: list[Contender] = []
    contended: list[Contender] = []
    ratios: list[tuple[str, str, float | None]] = []
    floors_added: set[str] = set()
    contended.append(
        Contender(
            "host-semaphore",
            Role.FLOOR,
            HostSemaphoreHandle,
            summary=f"multiprocessing.Semaphore({LIMIT}) shared by the workers: this machine's own ceiling",
        )
    )
    for mode in plan.modes:
        lock = suite.contender(mode.lock)
        floor = suite.contender(lock.floor) if lock.floor else None
        permit = _named("tenure-permit", mode)
        fair = _named("tenure-permit-fair", mode)
        read, write = _named("tenure-read", mode), _named("tenure-write", mode)
        limit = f"limit={LIMIT}" if not mode.suffix else f"limit={LIMIT}, {mode.query.lstrip('?')}"
        uncontended.append(
            Contender(
                permit,
                Role.TENURE,
                _permit_factory(plan, mode, permit, fair=False),
                summary=f"semaphore(name, {limit}, ttl=10).acquire() / permit.release()",
                floor=floor.name if floor else None,
                ttl=True,
                fence=True,
            )
        )
        contended.append(uncontended[-1])
        contended.append(
            Contender(
                fair,
                Role.TENURE,
                _permit_factory(plan, mode, fair, fair=True),
                summary=f"semaphore(name, {limit}, ttl=10, fair=True)",
                ttl=True,
                fence=True,
            )
        )
        if floor is not None and floor.name not in floors_added:
            floors_added.add(floor.name)
            uncontended.append(floor)
        uncontended.append(lock)
        for name, is_write in ((read, False), (write, True)):
            uncontended.append(
                Contender(
                    name,
                    Role.TENURE,
                    _rw_factory(plan, mode, name, write=is_write),
                    summary=f"rwlock(name, ttl=10).{'write' if is_write else 'read'}() / lease.release()",
                    ttl=True,
                    fence=True,
                )
            )
        if floor is not None:
            ratios.append((permit, floor.name, TARGET_PERMIT_VS_FLOOR))
        ratios += [(permit, lock.name, None), (read, lock.name, None), (write, lock.name, None)]
    if plan.kazoo:
        kazoo_semaphore = Contender(
            "kazoo-semaphore",
            Role.PEER,
            KazooSemaphoreHandle,
            summary=f"kazoo client.Semaphore(path, id, max_leases={LIMIT}).acquire() / .release()",
        )
        uncontended += [
            kazoo_semaphore,
            Contender("kazoo-read", Role.PEER, _kazoo_rw(False), summary="kazoo client.ReadLock(path, id)"),
            Contender("kazoo-write", Role.PEER, _kazoo_rw(True), summary="kazoo client.WriteLock(path, id)"),
        ]
        contended.append(kazoo_semaphore)
        floor_name = suite.contender(plan.modes[0].lock).floor
        if floor_name is not None:
            ratios.append(("kazoo-semaphore", floor_name, None))
        ratios += [
            ("tenure-permit", "kazoo-semaphore", None),
            ("tenure-read", "kazoo-read", None),
            ("tenure-write", "kazoo-write", None),
        ]
    return Lineup(tuple(uncontended), tuple(contended), tuple(ratios))


def find_contender(suite_name: str, name: str) -> Contender:
    for contender in (*lineup(suite_name).uncontended, *lineup(suite_name).contended):
        if contender.name == name:
            return contender
    raise KeyError(f"permits: suite {suite_name} has no contender {name!r}")


# -- uncontended -----------------------------------------------------------------------------------


# (measure_uncontended_all and uncontended_ratios: benchmarks/runner.py)


# -- contended -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PermitConfig:
    """How many processes share the semaphore, for how long, how long each holds a permit."""

    processes: int = PROCESSES
    duration: float = DURATION
    hold: float = HOLD_MS / 1e3
    limit: int = LIMIT
    start_method: str = "spawn"


def _worker(
    index: int,
    suite_name: str,
    contender_name: str,
    ctx: BenchContext,
    config: PermitConfig,
    ready: Queue[tuple[int, str | None]],
    go: Event,
    start_at: Synchronized[float],
    results: Queue[tuple[int, list[float], list[tuple[float, str]], str | None]],
    host_semaphore: Any,
) -> None:
    """Run in a child process: set up, report ready, then acquire/hold/release until the window ends."""
    global _HOST_SEMAPHORE
    _HOST_SEMAPHORE = host_semaphore
    flat: list[float] = []  # wait_started, acquired, releasing, released, ...
    failed: list[tuple[float, str]] = []  # (waited, error) of each attempt that raised
    try:
        handle = find_contender(suite_name, contender_name).factory(ctx, "contended")
        handle.acquire()  # connects and creates what it needs: the window measures only the waits
        handle.release()
    except BaseException:
        ready.put((index, traceback.format_exc()))
        return
    ready.put((index, None))
    error: str | None = None
    try:
        if not go.wait(SETUP_TIMEOUT + START_DELAY):
            raise TimeoutError("the parent never gave the start signal")
        if start_at.value <= 0:
            return  # another worker failed to set up: the run is called off
        end = start_at.value + config.duration
        time.sleep(max(0.0, start_at.value - time.monotonic()))
        monotonic, hold, append = time.monotonic, config.hold, flat.append
        while (wait_started := monotonic()) < end:
            try:
                handle.acquire()
            except Exception as exc:  # e.g. a timeout; the worker competes on
                failed.append((monotonic() - wait_started, f"{type(exc).__name__}: {exc}"[:200]))
                continue
            acquired = monotonic()
            if hold > 0:
                time.sleep(hold)
            releasing = monotonic()
            handle.release()
            append(wait_started)
            append(acquired)
            append(releasing)
            append(monotonic())
    except BaseException:
        error = traceback.format_exc()
    finally:
        handle.close()
        results.put((index, flat, failed, error))


def most_overlapping(intervals: Iterable[tuple[float, float]], limit: int) -> tuple[int, int]:
    """Return the most intervals open at once, and how many starts took the count above ``limit``.

    Intervals are half-open: one that ends when another starts does not overlap it.
    """
    events = sorted((t, delta) for start, end in intervals for t, delta in ((start, 1), (end, -1)))
    level = peak = above = 0
    for _, delta in events:  # at equal times -1 sorts first: ends before starts
        level += delta
        peak = max(peak, level)
        above += delta > 0 and level > limit
    return peak, above


def held_share(intervals: Iterable[tuple[float, float]], start: float, end: float) -> float:
    """Return the total time of ``intervals`` inside ``[start, end]``, in seconds."""
    return sum(max(0.0, min(b, end) - max(a, start)) for a, b in intervals)


def summarize_permits(
    holds: Sequence[Hold], config: PermitConfig, start: float, failed: Sequence[tuple[float, str]]
) -> Record:
    """Return the contended figures of one run (see the README's section on ``permits``)."""
    end = start + config.duration
    window = [h for h in holds if start <= h.acquired <= end]
    per_worker = [0] * config.processes
    for hold in window:
        per_worker[hold.worker] += 1
    waits = [h.wait for h in holds] + [w for w, _ in failed]
    capacity = config.limit * config.duration
    # A permit surely held: from acquire() returning to release() being called. Over every
    # hold, in or out of the window: more than ``limit`` of these at once is a broken semaphore.
    held, violations = most_overlapping(((h.acquired, h.releasing) for h in holds), config.limit)
    # Until release() returns the permit may not be free yet: the figure a waiter sees.
    held_loose, _ = most_overlapping(((h.acquired, h.released) for h in holds), config.limit)
    return {
        "acquisitions": len(window),
        "acquisitions_per_s": len(window) / config.duration,
        "utilisation": held_share(((h.acquired, h.released) for h in holds), start, end) / capacity,
        "utilisation_held": held_share(((h.acquired, h.releasing) for h in holds), start, end) / capacity,
        "hold_p50_ms": percentile([h.releasing - h.acquired for h in window], 50) * 1e3,
        "release_p50_ms": percentile([h.released - h.releasing for h in window], 50) * 1e3,
        "wait_p50_ms": percentile(waits, 50) * 1e3,
        "wait_p99_ms": percentile(waits, 99) * 1e3,
        "max_wait_ms": max(waits, default=math.nan) * 1e3,
        "per_worker": per_worker,
        "fairness": jain_index(per_worker),
        "max_held": held,
        "max_held_until_released": held_loose,
        "over_limit": violations,
        "failed_attempts": len(failed),
        "failures": dict(Counter(message for _, message in failed).most_common(5)),
    }


def measure_permits(suite_name: str, contender_name: str, ctx: BenchContext, config: PermitConfig) -> Record:
    """Start the workers, open the window once all are ready, and merge what they recorded.

    The parent builds one handle first: a contender that cannot run here is skipped at once.
    It takes and gives back one permit alone, so the name's records (a limit record...) exist
    before the workers' first acquisitions: the window measures a semaphore in use, not a burst
    of 16 first acquisitions on a new name.
    """
    mp: SpawnContext | ForkServerContext = (
        multiprocessing.get_context("forkserver")
        if config.start_method == "forkserver"
        else multiprocessing.get_context("spawn")
    )
    global _HOST_SEMAPHORE
    _HOST_SEMAPHORE = host_semaphore = mp.Semaphore(int(ctx.params["permit_limit"]))
    try:
        probe = find_contender(suite_name, contender_name).factory(ctx, "contended")
    except (ImportError, Unavailable) as exc:
        return {"skipped": str(exc), "errors": []}
    try:
        probe.acquire()
        probe.release()
    except Exception:
        return {"skipped": None, "errors": [f"parent's first acquisition: {traceback.format_exc()}"]}
    finally:
        probe.close()
    ready: Queue[tuple[int, str | None]] = mp.Queue()
    results: Queue[tuple[int, list[float], list[tuple[float, str]], str | None]] = mp.Queue()
    go = mp.Event()
    start_at = mp.Value("d", 0.0)
    args = (suite_name, contender_name, ctx, config, ready, go, start_at, results, host_semaphore)
    workers = [
        mp.Process(target=_worker, args=(i, *args), name=f"permits-{contender_name}-{i}", daemon=True)
        for i in range(config.processes)
    ]
    for worker in workers:
        worker.start()
    errors: list[str] = []
    holds: list[Hold] = []
    failed: list[tuple[float, str]] = []
    try:
        readiness, setup_errors = _gather(ready, workers, time.monotonic() + SETUP_TIMEOUT, "set up")
        setup_errors += [f"worker {index} setup: {error}" for index, error in readiness if error is not None]
        if setup_errors:
            go.set()  # with start_at still 0: the workers that are ready leave at once
            return {"skipped": None, "errors": setup_errors}
        start_at.value = time.monotonic() + START_DELAY
        go.set()
        deadline = start_at.value + config.duration + LATE_GRACE
        reports, errors = _gather(results, workers, deadline, "finish")
        for index, flat, worker_failed, error in reports:
            failed += worker_failed
            if error is not None:
                errors.append(f"worker {index}: {error}")
            holds.extend(Hold(index, *flat[i : i + 4]) for i in range(0, len(flat), 4))
    finally:
        _stop(workers)
    return {"skipped": None, "errors": errors, **summarize_permits(holds, config, start_at.value, failed)}


def contended_targets(records: dict[str, Record], config: PermitConfig) -> list[Record]:
    """Issue 14's contended targets for each tenure semaphore that ran."""
    out = []
    for name, record in records.items():
        if not name.startswith("tenure-"):
            continue
        checks: list[tuple[str, float]] = []
        if config.hold * 1e3 == TARGET_UTILISATION_HOLD_MS:
            checks.append(("utilisation", TARGET_UTILISATION))
        if "-fair" in name:
            checks.append(("fairness", TARGET_FAIRNESS))
        for metric, limit in checks:
            value = record.get(metric)
            measured = isinstance(value, (int, float)) and not record.get("errors")
            out.append(
                {
                    "contender": name,
                    "metric": metric,
                    "at_least": limit,
                    "value": value if measured else None,
                    "met": bool(value >= limit) if measured and isinstance(value, (int, float)) else None,
                    "not_measured": None if measured else record.get("skipped") or "errors in the run",
                }
            )
    return out


# -- the tables ------------------------------------------------------------------------------------


def _short(reason: str) -> str:
    """Return a skip reason's head for the table ("n/a (not yet)"); the JSON keeps all of it."""
    return reason.split(": ", 1)[0] if reason.startswith("n/a") else reason


def render(suite_name: str, record: Record, header: str) -> str:
    """Return one suite's tables: uncontended with ratios, contended with targets."""
    table, w = render_uncontended(
        record["uncontended"], record["ratios"], phase="uncontended", unit="cycles/s", short=_short
    )
    lines = [f"suite {suite_name} (permits): {header}", "", *table]
    con: dict[str, Record] | None = record["contended"]
    if con is None:
        return "\n".join(lines)
    cfg = record["config"]["contended"]
    lines += [
        "",
        f"contended: {cfg['processes']} processes, limit {cfg['limit']}, hold {cfg['hold'] * 1e3:g} ms, "
        f"{cfg['duration']:g} s",
    ]
    cols = (
        f"{'contender':<{w}} {'acq/s':>7} {'util':>5} {'held':>5} {'max':>3} | {'wait p50':>8} "
        f"{'p99 ms':>7} {'max ms':>8} | {'fairness':>8} {'failed':>6}"
    )
    lines += [cols, "-" * len(cols)]
    for name, rec in con.items():
        if rec.get("skipped"):
            lines.append(f"{name:<{w}} {_short(rec['skipped'])}")
            continue
        if "acquisitions" not in rec:
            lines.append(f"{name:<{w}} FAILED: {len(rec['errors'])} worker errors (see the JSON)")
            continue
        lines.append(
            f"{name:<{w}} {num(rec['acquisitions_per_s'], ',.0f'):>7} {num(rec['utilisation'], '.3f'):>5} "
            f"{num(rec['utilisation_held'], '.3f'):>5} {rec['max_held']:>3} | "
            f"{num(rec['wait_p50_ms'], '.2f'):>8} {num(rec['wait_p99_ms'], '.1f'):>7} "
            f"{num(rec['max_wait_ms'], ',.1f'):>8} | {num(rec['fairness'], '.3f'):>8} "
            f"{rec['failed_attempts']:>6}"
        )
        if rec["over_limit"] or rec["errors"]:
            lines.append(
                f"{'':<{w}} !! {rec['over_limit']} acquisitions above the limit, "
                f"{len(rec['errors'])} worker errors (see the JSON)"
            )
    ceiling = con.get("host-semaphore", {}).get("utilisation")
    if isinstance(ceiling, (int, float)) and ceiling > 0:
        lines.append(
            f"utilisation ÷ the host semaphore's {ceiling:.3f} (this machine's ceiling at this load):"
        )
        for name, rec in con.items():
            if name != "host-semaphore" and isinstance(rec.get("utilisation"), (int, float)):
                lines.append(f"  {name:<{w}} {rec['utilisation'] / ceiling:.2f}")
    for target in record["targets"]:
        head = f"target: {target['contender']} {target['metric']} ≥ {target['at_least']:g}"
        if target["met"] is None:
            lines.append(f"{head} not measured ({_short(target['not_measured'])})")
        else:
            lines.append(f"{head} = {target['value']:.3f} → {'met' if target['met'] else 'NOT met'}")
    return "\n".join(lines)


# -- the command -----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.permits", description=__doc__.split("\n")[0])
    add_common_args(parser, "uncontended", "cycles", REPEAT)
    parser.add_argument("--limit", type=int, default=LIMIT, help=f"permits of the semaphore ({LIMIT})")
    parser.add_argument("--processes", type=int, help=f"contended: worker processes ({PROCESSES})")
    parser.add_argument(
        "--duration", type=float, help=f"contended: measured window in seconds ({DURATION:g})"
    )
    parser.add_argument(
        "--hold-ms", type=float, default=HOLD_MS, help=f"contended: hold per permit ({HOLD_MS:g})"
    )
    parser.add_argument("--no-contended", action="store_true", help="skip the multi-process runs")
    add_run_args(parser, "uncontended", "lock files and servers' data")
    args = parser.parse_args(argv)
    check_args(parser, args, ("limit", "cycles", "seconds", "repeat", "processes", "duration"))
    if args.hold_ms < 0:
        parser.error("--hold-ms must be >= 0")
    return args


def configs(args: argparse.Namespace) -> tuple[UncontendedConfig, PermitConfig, int]:
    """Return the run bounds: --quick shrinks the defaults, explicit options override both."""
    uncontended = single_process_config(args)
    contended = PermitConfig(
        processes=args.processes or (QUICK_PROCESSES if args.quick else PROCESSES),
        duration=args.duration or (QUICK_DURATION if args.quick else DURATION),
        hold=args.hold_ms / 1e3,
        limit=args.limit,
        start_method=args.start_method,
    )
    return uncontended, contended, args.repeat or (1 if args.quick else REPEAT)


def measure_suite(name: str, args: argparse.Namespace, tmp: Path, machine: Record) -> tuple[Record, str]:
    """Run one suite's permit measurements in its environment; return its record and tables."""
    uncontended, contended, repeat = configs(args)
    suite = get_suite(name)
    chosen = lineup(name)
    workdir = Path(tmp, name)
    workdir.mkdir()
    progress(f"suite {name} (permits): {len(chosen.uncontended)} uncontended contenders in {workdir}")
    con: dict[str, Record] | None = None
    with suite.environment(workdir) as params:
        ctx = BenchContext(suite.name, str(workdir), {**params, "permit_limit": str(contended.limit)})
        unc = measure_uncontended_all(chosen.uncontended, ctx, uncontended, repeat, args.pin_cpu)
        if not args.no_contended:
            con = {}
            for contender in chosen.contended:
                if unc.get(contender.name, {}).get("skipped"):
                    con[contender.name] = {"skipped": unc[contender.name]["skipped"], "errors": []}
                    continue
                con[contender.name] = outcome = measure_permits(name, contender.name, ctx, contended)
                figures = (
                    outcome["skipped"]
                    if outcome.get("skipped")
                    else f"utilisation {outcome.get('utilisation', math.nan):.3f}, "
                    f"fairness {outcome.get('fairness', math.nan):.3f}, max held {outcome.get('max_held')}"
                )
                progress(f"  contended {contender.name}: {figures}, {len(outcome['errors'])} worker errors")
    record: Record = {
        "environment": params,
        "config": {
            "repeat": repeat,
            "pin_cpu": args.pin_cpu,
            "uncontended": dataclasses.asdict(uncontended),
            "contended": None if con is None else dataclasses.asdict(contended),
        },
        "uncontended": unc,
        "ratios": uncontended_ratios(unc, chosen.ratios),
        "contended": con,
        "targets": [] if con is None else contended_targets(con, contended),
    }
    header = (
        f"nproc {machine['nproc']}, load {machine['loadavg_at_start']}, {repeat}× uncontended "
        f"≤{uncontended.max_cycles} cycles/≤{uncontended.max_seconds:g} s"
        f"{'' if args.pin_cpu is None else f' on CPU {args.pin_cpu}'}, limit {contended.limit}"
    )
    return record, render(name, record, header)


def failed(output: Record) -> bool:
    """True if a semaphore let more than ``limit`` holds overlap, a worker crashed or a loop raised."""
    for suite in output["suites"].values():
        if any(rec["error"] for rec in suite["uncontended"].values()):
            return True
        for rec in (suite["contended"] or {}).values():
            if rec.get("errors") or rec.get("over_limit"):
                return True
    return False


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return 1 if failed(run_suites("permits", args, argv, measure_suite)) else 0


if __name__ == "__main__":
    # Run as the importable module, so that what workers unpickle is benchmarks.permits' own.
    from benchmarks.permits import main as permits_main

    sys.exit(permits_main())
