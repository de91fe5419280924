"""Advisory mode's semaphore permits: session advisory locks on slot keys, taken in one round trip.

A permit is a lock on one of the semaphore's slot keys (``permit_key``), held on a shared
session as ``try_acquire`` holds a lock, and then renewed, released and lost as a lock is. The
function ``tenure_take_permit`` takes one in one statement: it tries the free slots in order
with ``pg_try_advisory_lock``, stops at the first it gets, draws the fence from the sequence
(global, so it grows per name across slots) and writes the holder row, as the lock statement
does. The limit the permits were taken with is recorded per name in an unlogged table (a crash
that empties it ends every permit too).

**Limit agreement.** Takers asking the recorded limit hold a transaction-level *shared*
advisory lock on the name while they take a slot; a taker asking another limit (or the first)
holds it *exclusively*, so it waits for takers in flight, then sees every permit they took in
``pg_locks`` and changes the record only if none of either limit's slots is held. The record is
read again after the lock is granted: a function's statements each see what committed before
them, which one statement's snapshot would not. The guard lock is a pair of int4 keys, a space
no bigint lock id (every tenure lock) can meet.

**Holders.** A taker draws its fence while holding the guard shared, and its holder row shows
once it commits; reading the holders takes the guard alone first, so a permit fenced below one
already handed out is always listed (a sequence's turn waits for every lower ticket).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tenure._async.backends.base import Permit
from tenure._async.backends.postgresql import sql
from tenure._async.backends.postgresql.connection import AsyncPgSession
from tenure._async.backends.postgresql.shared import AsyncHold
from tenure._core.holder import HolderInfo
from tenure._core.keys import key_hash64
from tenure._core.semaphore import limit_mismatch, permit_keys, slot_order
from tenure._core.tokens import Owner
from tenure._exceptions import BackendProtocolError

if TYPE_CHECKING:
    from tenure._async.backends.postgresql.store import AsyncPostgresStore

LIMITS_TABLE = "tenure_lock_semaphores"
TURNS = 16  # one store's attempts on one name take turns: mutexes, picked by the name's hash
ATTEMPTS = 4  # statements one attempt may take: a crash's new fence epoch, a wider check, a race

# Created with the fences (``sql.FENCES_SCHEMA``), after them: the store looks for this table to
# tell whether the schema is there, so a database made by an earlier version gets it too.
_TAKE_SCHEMA = f"""
CREATE UNLOGGED TABLE IF NOT EXISTS {LIMITS_TABLE} (
    id      bigint PRIMARY KEY,        -- the semaphore's lock id: a 64-bit hash of its key
    key     text NOT NULL,             -- its namespaced key, for people
    "limit" integer NOT NULL           -- the limit its permits are taken with
);
CREATE OR REPLACE FUNCTION tenure_take_permit(
    sem_id bigint, sem_key text, slot_head text, slot_tail text, slot_ids bigint[], tries integer[],
    wanted integer, holder text, holder_label text, lease_ttl double precision, idle text,
    OUT status text, OUT slot integer, OUT fence bigint, OUT recorded integer
) LANGUAGE plpgsql
-- Plans made once per session: custom ones, remade at each call, cost more than the call.
SET plan_cache_mode = force_generic_plan
AS $fn$
DECLARE
    hi integer := (sem_id >> 32)::integer;
    lo integer := ((sem_id << 32) >> 32)::integer;
BEGIN
    IF NOT EXISTS (SELECT FROM {sql.EPOCH_TABLE}) THEN
        status := 'epoch';  -- a crash emptied it: no fence until a new epoch starts
        RETURN;
    END IF;
    SELECT s."limit" INTO recorded FROM {LIMITS_TABLE} AS s WHERE s.id = sem_id;
    IF recorded = wanted THEN
        PERFORM pg_advisory_xact_lock_shared(hi, lo);
        SELECT s."limit" INTO recorded FROM {LIMITS_TABLE} AS s WHERE s.id = sem_id;
        IF recorded IS DISTINCT FROM wanted THEN
            status := 'retry';  -- changed meanwhile: look again, alone (a shared lock won't upgrade)
            RETURN;
        END IF;
    ELSE
        PERFORM pg_advisory_xact_lock(hi, lo);
        SELECT s."limit" INTO recorded FROM {LIMITS_TABLE} AS s WHERE s.id = sem_id;
        IF recorded IS DISTINCT FROM wanted THEN
            IF recorded > cardinality(slot_ids) THEN
                status := 'wider';  -- the ids of the recorded limit's slots are needed
                RETURN;
            END IF;
            IF recorded IS NOT NULL AND EXISTS (
                SELECT FROM pg_locks AS l
                WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
                  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                  AND ((l.classid::bigint << 32) | l.objid::bigint)
                      = ANY (slot_ids[1:greatest(recorded, wanted)])
            ) THEN
                status := 'mismatch';
                RETURN;
            END IF;
            INSERT INTO {LIMITS_TABLE} AS s (id, key, "limit") VALUES (sem_id, sem_key, wanted)
            ON CONFLICT (id) DO UPDATE SET "limit" = excluded."limit";
            recorded := wanted;
        END IF;
    END IF;
    FOREACH slot IN ARRAY tries LOOP
        IF pg_try_advisory_lock(slot_ids[slot + 1]) THEN
            fence := nextval('{sql.FENCE_SEQUENCE}');
            INSERT INTO {sql.HOLDERS_TABLE} AS h (id, key, fence, owner, label, pid, ttl, renewed_at)
            VALUES (slot_ids[slot + 1], slot_head || slot || slot_tail, fence, holder, holder_label,
                    pg_backend_pid(), lease_ttl, clock_timestamp())
            ON CONFLICT (id) DO UPDATE SET
                key = excluded.key, fence = excluded.fence, owner = excluded.owner,
                label = excluded.label, pid = excluded.pid, ttl = excluded.ttl,
                renewed_at = excluded.renewed_at;
            -- As the lock statement: the idle limit ends a silent holder's session; no WAL flush.
            PERFORM set_config('idle_session_timeout', idle, false),
                    set_config('synchronous_commit', 'off', true);
            status := 'taken';
            RETURN;
        END IF;
    END LOOP;
    slot := NULL;
    status := 'full';
END
$fn$
"""

TAKE = """
SELECT status, slot, fence, recorded FROM tenure_take_permit(
    %(sem_id)s, %(sem_key)s, %(head)s, %(tail)s, %(ids)s::bigint[], %(tries)s::integer[],
    %(wanted)s, %(owner)s, %(label)s, %(ttl)s::float8, %(idle)s
)
"""

# The live permits, in slot order: a holder row whose session holds the slot's lock now. Takers
# of the name hold its guard shared until they commit, and draw their fence in between: so this
# waits for them (the guard taken alone) and reads after, by which time any permit fenced below
# one already handed out has its row committed (a sequence's turn relies on it).
PERMIT_HOLDERS_FUNCTION = f"""
CREATE OR REPLACE FUNCTION tenure_permit_holders(sem_id bigint, slot_ids bigint[])
RETURNS TABLE (holder_label text, holder_fence bigint, seconds_left double precision)
LANGUAGE plpgsql
-- Plans made once per session: custom ones, remade at each call, cost more than the call.
SET plan_cache_mode = force_generic_plan
AS $fn$
BEGIN
    PERFORM pg_advisory_xact_lock((sem_id >> 32)::integer, ((sem_id << 32) >> 32)::integer);
    RETURN QUERY
    WITH held AS MATERIALIZED (
        SELECT (l.classid::bigint << 32) | l.objid::bigint AS id, l.pid FROM pg_locks AS l
        WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
    )
    SELECT h.label, h.fence, h.ttl - extract(epoch FROM clock_timestamp() - h.renewed_at)::float8
    FROM unnest(slot_ids) WITH ORDINALITY AS s(id, n)
    JOIN {sql.HOLDERS_TABLE} AS h ON h.id = s.id
    WHERE EXISTS (SELECT FROM held WHERE held.id = h.id AND held.pid = h.pid)
    ORDER BY s.n;
END
$fn$
"""

SCHEMA = f"{_TAKE_SCHEMA};\n{PERMIT_HOLDERS_FUNCTION}"

HOLDERS = "SELECT * FROM tenure_permit_holders(%(sem_id)s, %(ids)s::bigint[])"

# A permit's release wakes the semaphore's waiters (a lock's does not: its waiters wait in the
# server's lock queue). The NOTIFY costs the release a transaction id and a commit, whose WAL
# flush it does not wait for.
RELEASE = f"""
WITH freed AS (SELECT pg_advisory_unlock(%(id)s) AS ok)
SELECT ok, set_config('idle_session_timeout', %(idle)s, false),
       CASE WHEN ok THEN pg_notify('{sql.CHANNEL}', %(payload)s) END,
       CASE WHEN ok THEN set_config('synchronous_commit', 'off', true) END
FROM freed
"""

_ids: dict[tuple[str, int], list[int]] = {}


def slot_ids(key: str, limit: int) -> list[int]:
    """Return the lock ids of ``key``'s first ``limit`` slots, slot 0 first (cached)."""
    found = _ids.get((key, limit))
    if found is None:
        if len(_ids) >= 256:  # a cache for names used again; stay bounded
            _ids.clear()
        found = _ids[(key, limit)] = [key_hash64(slot) for slot in permit_keys(key, limit)]
    return found


async def try_acquire_permit(
    store: AsyncPostgresStore, key: str, limit: int, owner: Owner, ttl: float
) -> Permit | None:
    """Take a free slot of ``key`` on a shared session; see the module's docstring."""
    head, tail = sql.slot_affixes(key)
    channel = sql.permits_channel(key)
    # Advisory locks are reentrant per session: a slot this store holds (maybe on the very
    # session picked) is never asked for, and the store's attempts on one name take turns so
    # that each knows the slots the one before took.
    async with store._turns[sql.lock_id(key) % TURNS]:
        mark = store._listener.mark(channel)  # before the attempt: no release after it is missed
        span = limit
        for _ in range(ATTEMPTS):
            ids = slot_ids(key, span)
            with store._mutex:
                tries = [slot for slot in slot_order(limit) if f"{head}{slot}{tail}" not in store._keys]
            status, slot, fence, recorded = await _take(store, key, owner, ttl, ids, tries, limit, head, tail)
            if status == "taken":
                store._marks.pop(key, None)
                return Permit(f"{head}{slot}{tail}", fence)
            if status == "full":
                if len(store._marks) >= 4096:  # waiters that gave up leave entries behind; stay bounded
                    store._marks.clear()
                store._marks[key] = mark
                return None
            if status == "mismatch":
                raise limit_mismatch(key, limit, recorded)
            if status == "wider":
                span = recorded
            # "epoch": a new one was started; "retry": the record changed under a shared look
        if status == "retry" and recorded:  # others keep changing the limit: it is in use so
            raise limit_mismatch(key, limit, recorded)
        raise BackendProtocolError(f"{store.url}: no answer for {key!r} in {ATTEMPTS} statements ({status})")


async def _take(
    store: AsyncPostgresStore,
    key: str,
    owner: Owner,
    ttl: float,
    ids: list[int],
    tries: list[int],
    limit: int,
    head: str,
    tail: str,
) -> tuple[str, int, int, int]:
    """Run one taking statement; a permit taken is the store's hold (status, slot, fence, limit)."""
    session = await store._shared.pick()
    # Counted in the session's idle limit while the statement runs, as a lock being taken is.
    attempt = ~sql.lock_id(key)
    session.hold(attempt, ttl)

    def params() -> dict[str, Any]:
        return {"sem_id": sql.lock_id(key), "sem_key": key, "head": head, "tail": tail, "ids": ids,
                "tries": tries, "wanted": limit, "owner": owner.token, "label": owner.label,
                "ttl": ttl, "idle": session.idle()}  # fmt: skip

    try:
        rows = await store._pool.run(session, TAKE, params, f"taking a permit of {key!r}")
        status, slot, fence, recorded = rows[0]
        if status == "taken":
            slot_key = f"{head}{slot}{tail}"
            session.hold(sql.lock_id(slot_key), ttl)
            with store._mutex:
                store._keys.add(slot_key)
            store._holds[(slot_key, owner.token)] = AsyncHold(session, ttl)
        elif status == "epoch":
            await store._recover_fences(session)
    except BaseException:
        # Failed or interrupted after a slot may have been taken: a failed statement does not
        # release a session lock, closing the session does (and every lock it holds).
        session.unhold(attempt)
        await store._pool.discard(session)
        raise
    session.unhold(attempt)
    return str(status), int(slot or 0), int(fence or 0), int(recorded or 0)


async def permit_holders(store: AsyncPostgresStore, key: str, limit: int) -> list[HolderInfo]:
    """Return the live permits of ``key`` in slot order, in one statement."""
    channel = sql.permits_channel(key)
    mark = store._listener.mark(channel)  # a writer waiting for readers looks, then waits
    params = {"sem_id": sql.lock_id(key), "ids": slot_ids(key, limit)}
    rows = await store._call(HOLDERS, params, f"reading the permits of {key!r}")
    if rows:
        store._marks[key] = mark
    return [HolderInfo(str(label), int(fence), max(0.0, float(left))) for label, fence, left in rows]


async def wait_permit_released(store: AsyncPostgresStore, key: str, limit: int, timeout: float) -> None:
    """Wait for a NOTIFY of a permit's release (a session that ended sends none: ``timeout``)."""
    channel = sql.permits_channel(key)
    mark = store._marks.pop(key, None)
    await store._listener.wait(channel, store._listener.mark(channel) if mark is None else mark, timeout)


def release_params(key: str, channel: int, session: AsyncPgSession) -> dict[str, Any]:
    """Return the parameters of ``RELEASE`` for slot ``key``, read when the statement runs."""
    return {"id": sql.lock_id(key), "idle": session.idle(), "payload": str(channel)}
