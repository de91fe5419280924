"""Table mode (``?mode=table``): leases in a table on the server, expiry by the server's clock."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from tenure._async.backends.base import Permit, Renewal, RenewOutcome
from tenure._async.backends.postgresql import ratelimit, sql, states
from tenure._async.backends.postgresql.common import AsyncPostgresBase
from tenure._async.backends.postgresql.table_records import LEASES_TABLE, RECORDS_TABLE, AsyncTableRecords
from tenure._async.backends.postgresql.table_records import SCHEMA as RECORDS_SCHEMA
from tenure._config import BackendConfig
from tenure._core.expiry import HolderExpiries
from tenure._core.guarantees import Capability, Guarantee
from tenure._core.holder import HolderInfo
from tenure._core.semaphore import limit_mismatch, slot_order
from tenure._core.tokens import Owner
from tenure._exceptions import BackendError

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
# A lock's row is never deleted, so its fence never repeats (idempotency keys: table_records.py).
# Refused, it returns instead the seconds the holder's lease has left (read from the statement's
# snapshot, before the attempt), so the waiter can look again when it expires: an expiry sends
# no NOTIFY.
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

# Semaphores: the limit their live permits were taken with. A permit is a lease row under its
# slot's key; the semaphore key's own row is the name's fence counter (a read-write lock's writer
# holds that row as its lock, so readers and the writer share one counter).
SEMAPHORES_TABLE = "tenure_semaphores"

# One transaction (a function: each of its statements sees what committed before it, which one
# statement's snapshot would not). A poll while every permit is held only reads. Otherwise the
# attempts on one name take turns on the record's row: the limit is checked (another one is
# refused while any slot of either limit is live, and replaces the record when none is), then
# the first free slot among ``tries`` is taken and stamped with the name's bumped fence. A slot
# renewed at its last moment by a renewal in flight is passed over for the next.
SEMAPHORES_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {SEMAPHORES_TABLE} (
    key     text PRIMARY KEY,          -- the semaphore's namespaced key
    "limit" integer NOT NULL           -- the limit its permits are taken with
);
CREATE OR REPLACE FUNCTION tenure_take_lease_permit(
    sem_key text, slot_head text, slot_tail text, tries integer[], wanted integer,
    holder text, holder_label text, lease_ttl double precision,
    OUT status text, OUT slot integer, OUT fence bigint, OUT recorded integer, OUT wait double precision
) LANGUAGE plpgsql
-- Plans made once per session: custom ones, remade at each call, cost more than the call.
SET plan_cache_mode = force_generic_plan
AS $fn$
DECLARE
    live integer;
BEGIN
    SELECT s."limit" INTO recorded FROM {SEMAPHORES_TABLE} AS s WHERE s.key = sem_key;
    IF recorded = wanted THEN
        SELECT count(*), min(extract(epoch FROM l.expires_at - clock_timestamp())) INTO live, wait
        FROM {LEASES_TABLE} AS l
        WHERE l.key IN (SELECT slot_head || i || slot_tail FROM generate_series(0, wanted - 1) AS i)
          AND l.owner IS NOT NULL AND l.expires_at > clock_timestamp();
        IF live >= wanted THEN
            status := 'full';
            RETURN;
        END IF;
    END IF;
    SELECT s."limit" INTO recorded FROM {SEMAPHORES_TABLE} AS s WHERE s.key = sem_key FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO {SEMAPHORES_TABLE} AS s (key, "limit") VALUES (sem_key, wanted)
        ON CONFLICT (key) DO NOTHING;
        SELECT s."limit" INTO recorded FROM {SEMAPHORES_TABLE} AS s WHERE s.key = sem_key FOR UPDATE;
    END IF;
    IF recorded <> wanted THEN
        IF EXISTS (
            SELECT FROM {LEASES_TABLE} AS l
            WHERE l.key IN (SELECT slot_head || i || slot_tail
                            FROM generate_series(0, greatest(recorded, wanted) - 1) AS i)
              AND l.owner IS NOT NULL AND l.expires_at > clock_timestamp()
        ) THEN
            status := 'mismatch';
            RETURN;
        END IF;
        UPDATE {SEMAPHORES_TABLE} AS s SET "limit" = wanted WHERE s.key = sem_key;
    END IF;
    FOR slot IN
        SELECT t.i FROM unnest(tries) WITH ORDINALITY AS t(i, n)
        WHERE NOT EXISTS (
            SELECT FROM {LEASES_TABLE} AS l
            WHERE l.key = slot_head || t.i || slot_tail AND l.owner IS NOT NULL
              AND l.expires_at > clock_timestamp()
        )
        ORDER BY t.n
    LOOP
        IF fence IS NULL THEN
            INSERT INTO {LEASES_TABLE} AS l (key, owner, label, fence, expires_at)
            VALUES (sem_key, NULL, NULL, 1, '-infinity')
            ON CONFLICT (key) DO UPDATE SET fence = l.fence + 1
            RETURNING l.fence INTO fence;
        END IF;
        INSERT INTO {LEASES_TABLE} AS l (key, owner, label, fence, expires_at)
        VALUES (slot_head || slot || slot_tail, holder, holder_label, fence,
                clock_timestamp() + lease_ttl * interval '1 second')
        ON CONFLICT (key) DO UPDATE SET
            owner = excluded.owner, label = excluded.label, fence = excluded.fence,
            expires_at = excluded.expires_at
        WHERE l.owner IS NULL OR l.expires_at <= clock_timestamp();
        IF FOUND THEN
            status := 'taken';
            RETURN;
        END IF;
    END LOOP;
    SELECT min(extract(epoch FROM l.expires_at - clock_timestamp())) INTO wait
    FROM {LEASES_TABLE} AS l
    WHERE l.key IN (SELECT slot_head || i || slot_tail FROM generate_series(0, wanted - 1) AS i)
      AND l.owner IS NOT NULL AND l.expires_at > clock_timestamp();
    slot := NULL;
    fence := NULL;
    status := 'full';
END
$fn$
"""

TAKE_PERMIT = """
SELECT status, slot, fence, recorded, wait FROM tenure_take_lease_permit(
    %(key)s, %(head)s, %(tail)s, %(tries)s::integer[], %(wanted)s, %(owner)s, %(label)s, %(ttl)s::float8
)
"""

# The live permits of a semaphore, in slot order.
PERMIT_HOLDERS = f"""
SELECT l.label, l.fence, extract(epoch FROM l.expires_at - clock_timestamp())
FROM generate_series(0, %(limit)s - 1) AS i
JOIN {LEASES_TABLE} AS l ON l.key = %(head)s || i || %(tail)s
WHERE l.owner IS NOT NULL AND l.expires_at > clock_timestamp()
ORDER BY i
"""

TABLE_HOLDER = f"""
SELECT label, fence, extract(epoch FROM expires_at - clock_timestamp())
FROM {LEASES_TABLE}
WHERE key = %(key)s AND owner IS NOT NULL AND expires_at > clock_timestamp()
"""


class AsyncPostgresTableStore(
    AsyncTableRecords, ratelimit.AsyncPostgresCounters, states.AsyncPostgresStates, AsyncPostgresBase
):
    """Serve leases from a lease table on the server; expiry by the server's clock.

    **Guarantees.** FENCING: a lock's row is never deleted and every acquisition bumps the fence
    in the same statement (an idempotency key's row goes with its run, and its next run's fence
    starts above the server clock's microseconds and its record's fence). SERVER_TIME:
    ``expires_at`` is set and compared with the server's ``clock_timestamp()``. CROSS_PROCESS,
    CROSS_HOST. Not SESSION_BOUND: a lease outlives its connection until its ttl runs out, which
    is the point of this mode. No FIFO queue.

    **Semaphores.** A permit is a lease row under a slot's key, taken in one transaction with the
    name's fence bumped and its limit checked (``SEMAPHORES_SCHEMA``); a release wakes the
    semaphore's waiters with a NOTIFY on its channel.

    **Records.** A run of an idempotency key is a lease row; its record a row of
    ``tenure_records``, stored as the lease row is deleted, in one transaction
    (``table_records.py``). ``transaction=`` takes a psycopg connection (READ COMMITTED, the
    default) to this URL's database whose ``search_path`` finds tenure's tables and functions,
    as the URL's own does (the same user; ``namespace=`` is only a key prefix).
    """

    description: ClassVar[str] = (
        "lease table, expiry by the server's clock, one statement per step; NOTIFY wake-ups; "
        "works through any pooler"
    )
    guarantees: ClassVar[frozenset[Guarantee]] = frozenset(
        {Guarantee.FENCING, Guarantee.SERVER_TIME, Guarantee.CROSS_PROCESS, Guarantee.CROSS_HOST}
    )
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.COUNTING, Capability.RECORDS, Capability.COUNTERS}
    )
    # A release NOTIFYs; an expiry does not, so waiters also look again within 0.5 s.
    poll_interval: ClassVar[tuple[float, float]] = (0.02, 0.5)
    tables: ClassVar[tuple[str, ...]] = (
        SEMAPHORES_TABLE, RECORDS_TABLE, ratelimit.RATES_TABLE, states.STATES_TABLE
    )  # fmt: skip
    schema: ClassVar[str] = (
        f"{LEASES_SCHEMA};\n{SEMAPHORES_SCHEMA};\n{RECORDS_SCHEMA};\n{ratelimit.SCHEMA};\n{states.SCHEMA}"
    )

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        self._marks: dict[str, int] = {}  # key -> releases heard before its last refused attempt
        self._expiries = HolderExpiries()  # an expiry sends no NOTIFY: waiters wake then
        self._permit_marks: dict[str, int] = {}  # the same, of semaphores found full (their channels)
        self._permit_expiries = HolderExpiries()  # when their first permit runs out

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
            self._refused(key, mark, rows[0][1] if rows else None)
            return None
        self._expiries.forget(key)
        return int(rows[0][0])

    def _refused(self, key: str, mark: int, remaining: float | None) -> None:
        """Remember the releases heard before a refusal, and when the holder's lease ends.

        For the wait that follows (``mark``: the listener's mark taken before the attempt).
        """
        if len(self._marks) >= 4096:  # waiters that gave up leave entries behind; stay bounded
            self._marks.clear()
        self._marks[key] = min(mark, self._marks.get(key, mark))
        if remaining is not None:
            self._expiries.saw(key, float(remaining))

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
        channel = sql.release_channel(key)  # a permit's release wakes its semaphore's waiters
        payload = str(sql.lock_id(key) if channel is None else channel)
        params = {"key": key, "owner": owner.token, "payload": payload}
        return bool(await self._call(TABLE_RELEASE, params, f"releasing {key!r}"))

    async def holder(self, key: str) -> HolderInfo | None:
        rows = await self._call(TABLE_HOLDER, {"key": key}, f"reading {key!r}")
        if not rows:
            return None
        label, fence, remaining = rows[0]
        return HolderInfo(str(label), int(fence), max(0.0, float(remaining)))

    # -- Counting: permits are lease rows of slot keys, taken in one transaction -----------------

    async def try_acquire_permit(self, key: str, limit: int, owner: Owner, ttl: float) -> Permit | None:
        channel = sql.permits_channel(key)
        mark = self._listener.mark(channel)  # before the attempt: no release after it is missed
        head, tail = sql.slot_affixes(key)
        params = {"key": key, "head": head, "tail": tail, "tries": slot_order(limit), "wanted": limit,
                  "owner": owner.token, "label": owner.label, "ttl": ttl}  # fmt: skip
        rows = await self._call(TAKE_PERMIT, params, f"taking a permit of {key!r}")
        status, slot, fence, recorded, wait = rows[0]
        if status == "taken":
            self._permit_marks.pop(key, None)
            self._permit_expiries.forget(key)
            return Permit(f"{head}{slot}{tail}", int(fence))
        if status == "mismatch":
            raise limit_mismatch(key, limit, int(recorded))
        # Every slot held: wait for a release heard after this mark, or the first lease's end.
        if len(self._permit_marks) >= 4096:  # waiters that gave up leave entries behind; stay bounded
            self._permit_marks.clear()
        self._permit_marks[key] = mark
        if wait is not None:
            self._permit_expiries.saw(key, float(wait))
        return None

    async def wait_permit_released(self, key: str, limit: int, timeout: float) -> None:
        channel = sql.permits_channel(key)
        mark = self._permit_marks.pop(key, None)
        timeout = self._permit_expiries.cap(key, timeout)
        await self._listener.wait(channel, self._listener.mark(channel) if mark is None else mark, timeout)

    async def permit_holders(self, key: str, limit: int) -> list[HolderInfo]:
        channel = sql.permits_channel(key)
        mark = self._listener.mark(channel)  # a writer waiting for readers looks, then waits
        head, tail = sql.slot_affixes(key)
        params = {"head": head, "tail": tail, "limit": limit}
        rows = await self._call(PERMIT_HOLDERS, params, f"reading the permits of {key!r}")
        if rows:
            self._permit_marks[key] = mark
            self._permit_expiries.saw(key, min(float(row[2]) for row in rows))
        return [HolderInfo(str(label), int(fence), max(0.0, float(left))) for label, fence, left in rows]
