"""Table mode (``?mode=table``): leases in a table on the server, expiry by the server's clock."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from tenure._async.backends.base import Renewal, RenewOutcome
from tenure._async.backends.postgresql import sql
from tenure._async.backends.postgresql.common import AsyncPostgresBase
from tenure._config import BackendConfig
from tenure._core.expiry import HolderExpiries
from tenure._core.guarantees import Guarantee
from tenure._core.holder import HolderInfo
from tenure._core.tokens import Owner
from tenure._exceptions import BackendError

LEASES_TABLE = "tenure_leases"
CHUNK = 1000  # leases per renewal statement

LEASES_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {LEASES_TABLE} (
    key        text PRIMARY KEY,           -- the namespaced lock name
    owner      text,                       -- the holder's token; NULL while free
    label      text,                       -- who holds it, for people
    fence      bigint NOT NULL,            -- bumped by every acquisition, never reset
    expires_at timestamptz NOT NULL        -- by the server's clock
)
"""

# Take the row if free or expired, by the server's clock; bump the fence in the same statement.
# Rows are never deleted, so a name's fence never repeats. Refused, it returns instead the
# seconds the holder's lease has left (read from the statement's snapshot, before the attempt),
# so the waiter can look again when it expires: an expiry sends no NOTIFY.
TABLE_ACQUIRE = f"""
WITH attempt AS (
    INSERT INTO {LEASES_TABLE} AS l (key, owner, label, fence, expires_at)
    VALUES (%(key)s, %(owner)s, %(label)s, 1, clock_timestamp() + %(ttl)s * interval '1 second')
    ON CONFLICT (key) DO UPDATE SET
        owner = excluded.owner, label = excluded.label, fence = l.fence + 1, expires_at = excluded.expires_at
    WHERE l.owner IS NULL OR l.expires_at <= clock_timestamp()
    RETURNING fence
)
SELECT fence, NULL::double precision FROM attempt
UNION ALL
SELECT NULL, extract(epoch FROM expires_at - clock_timestamp())
FROM {LEASES_TABLE} WHERE key = %(key)s AND NOT EXISTS (SELECT 1 FROM attempt)
"""

# Many leases in one statement, each owner-checked; an expired lease is never revived. The keys
# of those renewed come back; one missing was lost.
TABLE_RENEW_MANY = f"""
UPDATE {LEASES_TABLE} AS l SET expires_at = clock_timestamp() + a.ttl * interval '1 second'
FROM unnest(%(keys)s::text[], %(owners)s::text[], %(ttls)s::float8[]) AS a(key, owner, ttl)
WHERE l.key = a.key AND l.owner = a.owner AND l.expires_at > clock_timestamp()
RETURNING l.key, l.owner
"""

# Free a valid lease and wake the waiters, in one statement; no row: it was not ours (any more).
TABLE_RELEASE = f"""
WITH freed AS (
    UPDATE {LEASES_TABLE} SET owner = NULL, label = NULL, expires_at = clock_timestamp()
    WHERE key = %(key)s AND owner = %(owner)s AND expires_at > clock_timestamp()
    RETURNING 1
)
SELECT pg_notify('{sql.CHANNEL}', %(payload)s) FROM freed
"""

TABLE_HOLDER = f"""
SELECT label, fence, extract(epoch FROM expires_at - clock_timestamp())
FROM {LEASES_TABLE}
WHERE key = %(key)s AND owner IS NOT NULL AND expires_at > clock_timestamp()
"""


class AsyncPostgresTableStore(AsyncPostgresBase):
    """Serve leases from a lease table on the server; expiry by the server's clock.

    **Guarantees.** FENCING: rows are never deleted and every acquisition bumps the fence in the
    same statement. SERVER_TIME: ``expires_at`` is set and compared with the server's
    ``clock_timestamp()``. CROSS_PROCESS, CROSS_HOST. Not SESSION_BOUND: a lease outlives its
    connection until its ttl runs out, which is the point of this mode. No FIFO queue.
    """

    description: ClassVar[str] = (
        "lease table, expiry by the server's clock, one statement per step; NOTIFY wake-ups; "
        "works through any pooler"
    )
    guarantees: ClassVar[frozenset[Guarantee]] = frozenset(
        {Guarantee.FENCING, Guarantee.SERVER_TIME, Guarantee.CROSS_PROCESS, Guarantee.CROSS_HOST}
    )
    # A release NOTIFYs; an expiry does not, so waiters also look again within 0.5 s.
    poll_interval: ClassVar[tuple[float, float]] = (0.02, 0.5)
    table: ClassVar[str] = LEASES_TABLE
    schema: ClassVar[str] = LEASES_SCHEMA

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        self._marks: dict[str, int] = {}  # key -> releases heard before its last refused attempt
        self._expiries = HolderExpiries()  # an expiry sends no NOTIFY: waiters wake then

    async def wait_released(self, key: str, timeout: float) -> None:
        lock = sql.lock_id(key)
        mark = self._marks.pop(key, None)
        timeout = self._expiries.cap(key, timeout)
        await self._listener.wait(lock, self._listener.mark(lock) if mark is None else mark, timeout)

    async def try_acquire(self, key: str, owner: Owner, ttl: float) -> int | None:
        mark = self._listener.mark(sql.lock_id(key))
        params = {"key": key, "owner": owner.token, "label": owner.label, "ttl": ttl}
        rows = await self._call(TABLE_ACQUIRE, params, f"acquiring {key!r}")
        if not rows or rows[0][0] is None:
            # Remember the releases heard before this refusal, and when the holder's lease ends,
            # for the wait that follows.
            if len(self._marks) >= 4096:  # waiters that gave up leave entries behind; stay bounded
                self._marks.clear()
            self._marks[key] = min(mark, self._marks.get(key, mark))
            if rows and rows[0][1] is not None:
                self._expiries.saw(key, float(rows[0][1]))
            return None
        self._expiries.forget(key)
        return int(rows[0][0])

    async def renew_many(self, renewals: Sequence[Renewal]) -> list[RenewOutcome]:
        """Renew up to ``CHUNK`` leases per statement; a failed statement is each one's outcome."""
        outcomes: list[RenewOutcome] = []
        for start in range(0, len(renewals), CHUNK):
            chunk = renewals[start : start + CHUNK]
            params = {
                "keys": [key for key, _, _ in chunk],
                "owners": [owner.token for _, owner, _ in chunk],
                "ttls": [ttl for _, _, ttl in chunk],
            }
            try:
                rows = await self._call(TABLE_RENEW_MANY, params, f"renewing {len(chunk)} leases")
            except BackendError as exc:
                outcomes.extend([exc] * len(chunk))
                continue
            renewed = {(str(row[0]), str(row[1])) for row in rows}
            outcomes.extend((key, owner.token) in renewed for key, owner, _ in chunk)
        return outcomes

    async def release(self, key: str, owner: Owner) -> bool:
        params = {"key": key, "owner": owner.token, "payload": str(sql.lock_id(key))}
        return bool(await self._call(TABLE_RELEASE, params, f"releasing {key!r}"))

    async def holder(self, key: str) -> HolderInfo | None:
        rows = await self._call(TABLE_HOLDER, {"key": key}, f"reading {key!r}")
        if not rows:
            return None
        label, fence, remaining = rows[0]
        return HolderInfo(str(label), int(fence), max(0.0, float(remaining)))
