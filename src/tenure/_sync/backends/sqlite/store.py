# GENERATED from src/tenure/_async/backends/sqlite/store.py by scripts/unasync.py: do not edit; edit the source and re-run.
"""The SQLite store: the lease table's blocking calls, run in a worker thread (async colour)."""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from tenure._sync.backends.base import (
    LeaseStore,
    Permit,
    Rate,
    RateStep,
    Recorded,
    Renewal,
    RenewOutcome,
    SQLStep,
    StateChange,
    T,
)
from tenure._sync.backends.sqlite.file import DEFAULT_FILE_MODE
from tenure._sync.backends.sqlite.ratelimit import SQLiteRates
from tenure._sync.backends.sqlite.records import RECORD_LIMIT, SQLiteRecords
from tenure._sync.backends.sqlite.states import SQLiteStates
from tenure._sync.backends.sqlite.table import SQLiteLeaseTable
from tenure._concurrency import run_blocking, sleep, within
from tenure._config import BackendConfig
from tenure._core.guarantees import Capability, Guarantee
from tenure._core.holder import HolderInfo
from tenure._core.tokens import Owner
from tenure._exceptions import BackendError, ConfigurationError

LINE_POLL = 0.001  # seconds between looks at a fair line, per waiter ahead


class SQLiteStore(LeaseStore):
    """Serve leases from a SQLite file; waiters poll it with a short jittered backoff."""

    scheme: ClassVar[str] = "sqlite"
    description: ClassVar[str] = (
        "lease table in one file, WAL; cross-process on one host; fair=True polls in line; embedded default"
    )
    guarantees: ClassVar[frozenset[Guarantee]] = frozenset(
        {Guarantee.FENCING, Guarantee.FIFO, Guarantee.SERVER_TIME, Guarantee.CROSS_PROCESS}
    )
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.QUEUEING, Capability.COUNTING, Capability.RECORDS, Capability.COUNTERS}
    )
    record_limit = RECORD_LIMIT
    # No notification crosses processes: poll from 2 ms, backing off to 50 ms.
    poll_interval: ClassVar[tuple[float, float]] = (0.002, 0.05)

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        url = config.url
        raw = "".join(str(h) for h in url.hosts) + url.path
        if not raw or raw == "/":
            raise ConfigurationError(f"sqlite URL needs a file path, e.g. sqlite:///tmp/locks.db (got {url})")
        if "\x00" in raw:
            raise ConfigurationError(f"sqlite path must not contain NUL characters (got {url})")
        busy = config.extra.get("busy_timeout", config.common.op_timeout)
        mode = config.extra.get("file_mode", DEFAULT_FILE_MODE)
        self._table = SQLiteLeaseTable(
            Path(raw).expanduser(),
            busy_timeout=float(busy),  # type: ignore[arg-type]
            file_mode=int(mode),  # type: ignore[call-overload]
        )
        self._records = SQLiteRecords(self._table)
        self._rates = SQLiteRates(self._table)
        self._states = SQLiteStates(self._table)

    def connect(self) -> None:
        run_blocking(self._table.open)

    def try_acquire(self, key: str, owner: Owner, ttl: float) -> int | None:
        return run_blocking(self._table.try_acquire, key, owner, ttl)

    def renew_many(self, renewals: Sequence[Renewal]) -> list[RenewOutcome]:
        try:
            return list(run_blocking(self._table.renew_many, renewals))
        except BackendError as exc:  # one statement for them all: its failure is every lease's
            return [exc] * len(renewals)

    def release(self, key: str, owner: Owner) -> bool:
        return run_blocking(self._table.release, key, owner)

    def holder(self, key: str) -> HolderInfo | None:
        return run_blocking(self._table.holder, key)

    def wait_released(self, key: str, timeout: float) -> None:
        sleep(timeout)

    def try_acquire_permit(self, key: str, limit: int, owner: Owner, ttl: float) -> Permit | None:
        return run_blocking(self._table.try_acquire_permit, key, limit, owner, ttl)

    def wait_permit_released(self, key: str, limit: int, timeout: float) -> None:
        sleep(timeout)

    def permit_holders(self, key: str, limit: int) -> list[HolderInfo]:
        return run_blocking(self._table.permit_holders, key, limit)

    def begin_run(self, key: str, owner: Owner, ttl: float) -> Recorded | int | None:
        return run_blocking(self._records.begin_run, key, owner, ttl)

    def finish_run(self, key: str, owner: Owner, record: bytes, ttl: float) -> bool:
        return run_blocking(self._records.finish_run, key, owner, record, ttl)

    def read_record(self, key: str) -> Recorded | None:
        return run_blocking(self._records.read_record, key)

    def rate_step(
        self, key: str, rates: Sequence[Rate], cost: int, deadline: float | None = None
    ) -> RateStep:
        def step() -> RateStep:  # a busy file waits inside sqlite3, out of reach: bound it
            return run_blocking(self._rates.rate_step, key, rates, cost)

        if deadline is None:
            return step()
        return within(deadline, step)

    def update_state(self, key: str, change: StateChange[T], ttl: float) -> T:
        return run_blocking(lambda: self._states.update_state(key, change, ttl))

    transaction_drivers = "sqlite3 connections to the same file"

    def record_steps(self, key: str, owner: Owner, fence: int, record: bytes, ttl: float) -> list[SQLStep]:
        return self._records.record_steps(key, owner, fence, record, ttl)

    def end_after_commit(self, key: str, owner: Owner) -> bool:
        return True  # the caller's transaction deleted the lease row with the record's insert

    def try_acquire_queued(
        self, key: str, owner: Owner, ttl: float, *, patience: float, will_wait: bool = True
    ) -> int | None:
        return run_blocking(
            functools.partial(self._table.try_acquire_queued, key, owner, ttl, patience=patience)
        )

    def wait_turn(self, key: str, owner: Owner, timeout: float) -> int | None:
        # No hand-over in a file: waiters watch the line with a cheap read (WAL readers take no
        # lock), the nearer the front the more often, so the next in line is always watching.
        ends = time.monotonic() + timeout
        while True:
            ahead, free = run_blocking(self._table.turn, key, owner)
            left = ends - time.monotonic()
            if ahead is None or (ahead == 0 and free) or left <= 0:
                return None  # the caller tries again (and joins the line if it is not in it)
            sleep(min(left, LINE_POLL * (1 + ahead)))

    def leave_queue(self, key: str, owner: Owner) -> None:
        run_blocking(self._table.leave_queue, key, owner)

    def close(self) -> None:
        run_blocking(self._table.close)
