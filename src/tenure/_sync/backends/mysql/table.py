# GENERATED from src/tenure/_async/backends/mysql/table.py by scripts/unasync.py: do not edit; edit the source and re-run.
"""Table mode (``?mode=table``): an InnoDB lease table, expiry by the server's clock."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from tenure._sync.backends.base import LeaseStore, Renewal, RenewOutcome
from tenure._sync.backends.mysql import sql
from tenure._sync.backends.mysql.connection import MySQLPool, Reply
from tenure._concurrency import sleep
from tenure._config import BackendConfig
from tenure._core.guarantees import Capability, Guarantee
from tenure._core.holder import HolderInfo
from tenure._core.tokens import Owner
from tenure._exceptions import BackendError

RENEW_BATCH = 1000  # leases renewed per round trip: bounds one statement's size


class MySQLTableStore(LeaseStore):
    """Serve leases from an InnoDB lease table; expiry by the server's clock.

    **Guarantees.** FENCING: each acquisition bumps the row's fence in the same statement and
    rows are never deleted. SERVER_TIME: ``expires_at`` is set and compared with the server's
    UTC_TIMESTAMP, so a frozen holder cannot extend its lease by its own clock.
    CROSS_PROCESS, CROSS_HOST: clients reach the server over TCP. Not SESSION_BOUND: a crashed
    holder's lease ends at its TTL, not with its connection. Waiters poll. ``renew_many``
    renews up to RENEW_BATCH leases in one round trip, each lease's outcome its own.
    """

    scheme: ClassVar[str] = "mysql"
    description: ClassVar[str] = (
        "InnoDB lease table, one statement per step, expiry by the server's clock; waiters poll"
    )
    guarantees: ClassVar[frozenset[Guarantee]] = frozenset(
        {Guarantee.FENCING, Guarantee.SERVER_TIME, Guarantee.CROSS_PROCESS, Guarantee.CROSS_HOST}
    )
    capabilities: ClassVar[frozenset[Capability]] = frozenset()
    # No notification: poll from 2 ms, backing off to 50 ms (a poll is one primary-key read).
    poll_interval: ClassVar[tuple[float, float]] = (0.002, 0.05)

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        self._pool = MySQLPool(config, self.url)
        self._ready = False

    def connect(self) -> None:
        if self._ready:
            return
        session, _ = self._pool.run(sql.QUIET_NOTES, {})  # "already exists" is no news
        try:
            self._pool.execute(session, sql.CREATE_LEASES, {})
        except BackendError:
            self._pool.discard(session)
            raise
        self._pool.checkin(session)
        self._ready = True

    def try_acquire(self, key: str, owner: Owner, ttl: float) -> int | None:
        params = {
            "name": sql.lock_name(key),
            "owner": owner.token,
            "label": owner.label[: sql.MAX_LABEL],
            "ttl_us": sql.micros(ttl),
        }
        reply = self._call(sql.TABLE_ACQUIRE, params)
        if reply.rowcount == 1:
            return 1  # a new row: the name's first fence
        if reply.rowcount == 2:
            return reply.inserted
        return None

    def renew_many(self, renewals: Sequence[Renewal]) -> list[RenewOutcome]:
        outcomes: list[RenewOutcome] = []
        for start in range(0, len(renewals), RENEW_BATCH):
            chunk = renewals[start : start + RENEW_BATCH]
            try:
                outcomes.extend(self._renew_batch(chunk))
            except BackendError as exc:  # this round trip failed: each of its leases says why
                outcomes.extend([exc] * len(chunk))
        return outcomes

    def release(self, key: str, owner: Owner) -> bool:
        params = {"name": sql.lock_name(key), "owner": owner.token}
        return (self._call(sql.TABLE_RELEASE, params)).rowcount == 1

    def holder(self, key: str) -> HolderInfo | None:
        reply = self._call(sql.TABLE_HOLDER, {"name": sql.lock_name(key)})
        if not reply.rows:
            return None
        label, fence, remaining = reply.rows[0]
        return HolderInfo(sql.label_text(label), int(fence), max(0.0, float(remaining)))

    def wait_released(self, key: str, timeout: float) -> None:
        sleep(timeout)

    def close(self) -> None:
        self._pool.close()

    def _renew_batch(self, renewals: Sequence[Renewal]) -> list[bool]:
        """Renew leases in one round trip; return whether each one was renewed."""
        statement, params = sql.table_renew_many(
            [(sql.lock_name(key), owner.token, ttl) for key, owner, ttl in renewals]
        )
        reply = self._call(statement, params)
        renewed = {(sql.label_text(name), str(owner)) for name, owner in reply.rows}
        return [(sql.lock_name(key), owner.token) in renewed for key, owner, _ in renewals]

    def _call(self, statement: str, params: Mapping[str, object]) -> Reply:
        session, reply = self._pool.run(statement, params)
        self._pool.checkin(session)
        return reply
