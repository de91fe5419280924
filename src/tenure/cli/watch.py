"""``tenure inspect --watch NAME...``: a live view of who holds each name, redrawn as it changes.

For each name: the lock's holder, fence and ttl left, the election's leader and term, and the
shared circuit breaker's state (where the backend keeps shared state). The names are read again
as soon as the backend tells of a change (the feeds elections observe: etcd and ZooKeeper
watches, PostgreSQL's LISTEN/NOTIFY, Redis pub/sub for elections, the in-process space of
``memory://``; SQLite's feed looks every 50 ms), when a lease shown should have run out (a dead
holder tells nobody), and every ``--interval`` seconds otherwise (Redis and MySQL locks send no
notification: their handovers show within it). Between reads the ttl left counts down locally.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import tenure
from tenure._async.backends.base import AsyncChangeFeed, AsyncCounters
from tenure._core.breaker import BreakerRecord, BreakerState
from tenure._core.keys import namespaced_key, validate_name
from tenure._core.leader import election_key

DRAW_EVERY = 0.1  # seconds between two redraws of the countdown, without I/O
FEED_WAIT = 30.0  # one feed's longest wait before it waits again
EXPIRY_SLACK = 0.005  # how long after a lease should end the view looks again


@dataclass
class Row:
    """What one name stood at when it was last read (``read_at``: the local monotonic clock)."""

    name: str
    holder: tenure.HolderInfo | None = None
    leader: tenure.Leader | None = None
    breaker: str | None = None
    read_at: float = 0.0


def run_watch(args: argparse.Namespace) -> int:
    """Show ``args.names`` live until interrupted (Ctrl-C); return 0."""
    names = [validate_name(name) for name in args.names]
    interval = float(args.interval)
    if not 0 < interval <= 3600:
        raise tenure.ConfigurationError(f"--interval must be > 0 and <= 3600 seconds, got {interval:g}")
    try:
        import rich  # noqa: F401  (the view needs it; say so before connecting)
    except ImportError as exc:
        needs = "tenure inspect --watch needs rich: pip install 'tenure[cli]'"
        raise tenure.ConfigurationError(needs) from exc
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(watch(args.url, names, interval=interval))
    return 0


async def watch(url: str | None, names: Sequence[str], *, interval: float) -> None:
    """Read and draw ``names`` on ``url``'s backend until cancelled."""
    from rich.live import Live

    coordinator = tenure.AsyncCoordinator(url)
    async with coordinator:
        store = coordinator._store  # the feeds the view waits on are the store's own
        namespace = coordinator.namespace
        changed = asyncio.Event()
        feeds: list[AsyncChangeFeed] = []
        listeners: list[asyncio.Task[None]] = []
        try:
            for name in names:
                for key in (namespaced_key(namespace, name), election_key(namespace, name)):
                    feed = await store.watch(key)
                    feeds.append(feed)
                    listeners.append(asyncio.create_task(_listen(feed, changed)))
            rows = [Row(name) for name in names]
            with Live(auto_refresh=False, redirect_stdout=False) as live:
                next_read = 0.0
                while True:
                    now = time.monotonic()
                    if changed.is_set() or now >= next_read:
                        changed.clear()
                        rows = [await _read(coordinator, store, name) for name in names]
                        next_read = _next_read(rows, interval)
                    live.update(render(coordinator.url, rows), refresh=True)
                    with contextlib.suppress(TimeoutError):
                        wait = max(0.0, min(DRAW_EVERY, next_read - time.monotonic()))
                        await asyncio.wait_for(changed.wait(), wait)
        finally:
            for task in listeners:
                task.cancel()
            await asyncio.gather(*listeners, return_exceptions=True)
            for feed in feeds:
                await feed.aclose()


async def _listen(feed: AsyncChangeFeed, changed: asyncio.Event) -> None:
    """Set ``changed`` at each change ``feed`` tells of (a failing feed falls back to reads)."""
    while True:
        try:
            await feed.wait(FEED_WAIT)
        except tenure.BackendError:
            await asyncio.sleep(1.0)  # the periodic read shows the outage
        changed.set()


async def _read(coordinator: tenure.AsyncCoordinator, store: Any, name: str) -> Row:
    row = Row(name, read_at=time.monotonic())
    row.holder = await coordinator.inspect(name)
    row.leader = await coordinator.election(name).leader()
    if isinstance(store, AsyncCounters):
        key = namespaced_key(coordinator.namespace, name, kind="breaker")
        row.breaker = await store.update_state(key, _breaker_state, 1.0)
    return row


def _breaker_state(current: bytes | None, now: float) -> tuple[None, str | None]:
    """Read a shared breaker's record and change nothing (None leaves the stored bytes)."""
    if current is None:
        return None, None
    try:
        record = BreakerRecord.decode(current)
    except ValueError:
        return None, "unreadable"
    if record.state is BreakerState.OPEN:
        left = record.opened_until - now
        return None, f"open ({left:.1f} s)" if left > 0 else BreakerState.HALF_OPEN.value
    return None, record.state.value


def _next_read(rows: Sequence[Row], interval: float) -> float:
    """Return when to read again unasked: after ``interval``, or when a lease shown runs out."""
    now = time.monotonic()
    soonest = now + interval
    for row in rows:
        if row.holder is not None and row.holder.remaining is not None:
            soonest = min(soonest, row.read_at + row.holder.remaining + EXPIRY_SLACK)
    return max(soonest, now + DRAW_EVERY / 2)  # a holder shown past its expiry: no busy loop


def render(url: str, rows: Sequence[Row]) -> Any:
    """Return the view: one line per name, its ttl left counted down from when it was read."""
    from rich.table import Table

    now = time.monotonic()
    table = Table(title=f"tenure on {url}", caption=time.strftime("%H:%M:%S"), title_justify="left")
    for column in ("name", "holder", "fence", "ttl left", "leader", "term", "breaker"):
        table.add_column(column, justify="right" if column in ("fence", "ttl left", "term") else "left")
    for row in rows:
        holder, leader = row.holder, row.leader
        if holder is None:
            cells = ["free", "", ""]
        elif holder.remaining is None:
            cells = [holder.label, str(holder.fence), "session"]
        else:
            left = max(0.0, holder.remaining - (now - row.read_at))
            cells = [holder.label, str(holder.fence), f"{left:.1f} s"]
        cells += ["none", ""] if leader is None else [leader.value, str(leader.term)]
        table.add_row(row.name, *cells, row.breaker or "")
    return table
