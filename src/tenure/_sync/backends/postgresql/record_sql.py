# GENERATED from src/tenure/_async/backends/postgresql/record_sql.py by scripts/unasync.py: do not edit; edit the source and re-run.
"""What both modes' idempotency records on ``postgresql://`` share: tables, statements, rows.

``records.py`` tells how a run and its record live in these tables; this module holds the wire
text (the schema, the begin and finish functions, the statements) and reads their rows.
"""

from __future__ import annotations

from typing import cast

from tenure._sync.backends.base import Recorded
from tenure._sync.backends.postgresql import sql
from tenure._exceptions import BackendProtocolError

RECORD_LIMIT = 16 * 1024 * 1024
"""Largest record kept: bytea holds 1 GB, but a record is sent and read whole on every replay."""

SWEEP = 8  # expired rows each finishing run deletes: more than one key expires per key stored
LOOK_AGAIN = 60  # seconds, at least, before the marker of a run still going is looked at again

RECORDS_TABLE = "tenure_lock_records"


def records_schema(table: str) -> str:
    """Return the DDL of a records table (and its expiry index) called ``table``."""
    return f"""
CREATE TABLE IF NOT EXISTS {table} (
    key        text PRIMARY KEY,           -- the run's namespaced key
    id         bigint NOT NULL,            -- its lock id: a 64-bit hash of the key
    record     bytea,                      -- what its run left; NULL: the marker of a run
    fence      bigint NOT NULL,            -- that run's fence
    expires_at timestamptz NOT NULL        -- by the server's clock: the record's end, or the run's
);
CREATE INDEX IF NOT EXISTS {table}_expiry ON {table} (expires_at)
"""


def read_statement(table: str) -> str:
    """Return the statement that reads a key's live record from ``table``."""
    return f"""
SELECT record, fence, extract(epoch FROM expires_at - clock_timestamp())::float8 FROM {table}
WHERE key = %(key)s AND record IS NOT NULL AND expires_at > clock_timestamp()
"""


def begin_statement(table: str, begin: str) -> str:
    """Return the begin step: ``table``'s live record, else what ``begin`` (a call) returns.

    A row of ``record, fence, began``: a hit's record and fence (``began`` NULL), else NULLs and
    the function's row (see the module's docstring).
    """
    return f"""
SELECT r.record, r.fence, CASE WHEN r.key IS NULL THEN {begin} END
FROM (VALUES (1)) AS one LEFT JOIN {table} AS r
    ON r.key = %(key)s AND r.record IS NOT NULL AND r.expires_at > clock_timestamp()
"""


def recorded(url: str, key: str, record: object, fence: object, remaining: object = None) -> Recorded:
    """Return a record read from the server, checked (``remaining`` None: not read, as on a hit)."""
    if (
        not isinstance(record, bytes)
        or not isinstance(fence, int)
        or not (remaining is None or isinstance(remaining, float))
    ):
        raise BackendProtocolError(f"{url}: the record of {key!r} is not what tenure stores")
    return Recorded(record, fence, None if remaining is None else max(0.0, remaining))


def began(url: str, key: str, row: object) -> tuple[str, int | None, float | None]:
    """Return the status, fence and seconds left of a begin function's row, read as text.

    Its record (a run that finished meanwhile: ``done``) is not decoded: the caller reads it.
    """
    try:
        status, fence, _, seconds = cast("tuple[str, str | None, object, str | None]", row)
        return status, None if fence is None else int(fence), None if seconds is None else float(seconds)
    except (TypeError, ValueError) as exc:
        raise BackendProtocolError(f"{url}: unexpected reply beginning a run of {key!r}: {row!r}") from exc


# The record's row as a run finds it (the function's snapshot of the moment: see the docstring).
_LIVE_RECORD = f"""
    SELECT r.record, r.fence, extract(epoch FROM r.expires_at - clock_timestamp())::float8
    INTO found_record, run_fence, seconds_left
    FROM {RECORDS_TABLE} AS r
    WHERE r.key = run_key AND r.record IS NOT NULL AND r.expires_at > clock_timestamp();"""

_BEGIN_RUN = f"""
CREATE OR REPLACE FUNCTION tenure_begin_run(
    run_id bigint, run_key text, holder text, holder_label text, lease_ttl double precision, idle text,
    OUT status text, OUT run_fence bigint, OUT found_record bytea, OUT seconds_left double precision
) LANGUAGE plpgsql
-- Plans made once per session: custom ones, remade at each call, cost more than the call.
SET plan_cache_mode = force_generic_plan
AS $fn$
BEGIN
    {_LIVE_RECORD}
    IF FOUND THEN
        status := 'done';
        RETURN;
    END IF;
    IF NOT EXISTS (SELECT FROM {sql.EPOCH_TABLE}) THEN
        status := 'epoch';  -- a crash emptied it: no fence until a new epoch starts
        RETURN;
    END IF;
    IF NOT pg_try_advisory_lock(run_id) THEN
        status := 'busy';
        RETURN;
    END IF;
    -- Again, in a snapshot taken after the lock: a run commits its record before it unlocks.
    {_LIVE_RECORD}
    IF FOUND THEN
        PERFORM pg_advisory_unlock(run_id);
        status := 'done';
        RETURN;
    END IF;
    run_fence := nextval('{sql.FENCE_SEQUENCE}');
    -- The marker, unless a live record is there now: a caller's transaction that stores one
    -- (transaction=) holds this row until it commits, so its record is found once it waited.
    INSERT INTO {RECORDS_TABLE} AS r (key, id, record, fence, expires_at)
    VALUES (run_key, run_id, NULL, run_fence, clock_timestamp() + lease_ttl * interval '1 second')
    ON CONFLICT (key) DO UPDATE SET
        id = excluded.id, record = NULL, fence = excluded.fence, expires_at = excluded.expires_at
    WHERE r.record IS NULL OR r.expires_at <= clock_timestamp();
    IF NOT FOUND THEN
        PERFORM pg_advisory_unlock(run_id);
        {_LIVE_RECORD}
        status := CASE WHEN FOUND THEN 'done' ELSE 'busy' END;  -- busy: expired since; look again
        RETURN;
    END IF;
    INSERT INTO {sql.HOLDERS_TABLE} AS h (id, key, fence, owner, label, pid, ttl, renewed_at)
    VALUES (run_id, run_key, run_fence, holder, holder_label, pg_backend_pid(), lease_ttl, clock_timestamp())
    ON CONFLICT (id) DO UPDATE SET
        key = excluded.key, fence = excluded.fence, owner = excluded.owner, label = excluded.label,
        pid = excluded.pid, ttl = excluded.ttl, renewed_at = excluded.renewed_at;
    -- As the lock statement: the idle limit ends a silent holder's session; no WAL flush (a
    -- crash ends the run anyway, and its marker's loss leaves nothing: the holders go too).
    PERFORM set_config('idle_session_timeout', idle, false),
            set_config('synchronous_commit', 'off', true);
    status := 'taken';
END
$fn$
"""

# A procedure, for its COMMIT before the unlock (called in autocommit, it may commit). The
# holder row proves the lease: this session took it for ``holder`` (a lease lost to another
# session has another owner's row) and renewed it within its ttl (a lapsed lease whose session
# lives on still holds the lock: let go, as the renewal sweep would). Expired rows whose lock
# nobody holds (taking it as a transaction lock proves that; this session's own holds, ``mine``,
# are left alone) are deleted with their holder rows; those of runs still going are looked at
# again later. Its commit waits for the WAL flush as usual: a stored record is durable.
_FINISH_RUN = f"""
CREATE OR REPLACE PROCEDURE tenure_finish_run(
    run_id bigint, run_key text, holder text, run_record bytea, record_ttl double precision,
    idle text, mine bigint[], INOUT stored boolean DEFAULT NULL
) LANGUAGE plpgsql
AS $fn$
DECLARE
    run_fence bigint;
    live boolean;
    swept record;
BEGIN
    SELECT h.fence, h.renewed_at + h.ttl * interval '1 second' > clock_timestamp() INTO run_fence, live
    FROM {sql.HOLDERS_TABLE} AS h WHERE h.id = run_id AND h.owner = holder AND h.pid = pg_backend_pid();
    IF NOT FOUND THEN
        stored := false;
        RETURN;
    END IF;
    IF NOT live THEN
        PERFORM pg_advisory_unlock(run_id), set_config('idle_session_timeout', idle, false);
        stored := false;
        RETURN;
    END IF;
    DELETE FROM {sql.HOLDERS_TABLE} AS h WHERE h.id = run_id;
    INSERT INTO {RECORDS_TABLE} AS r (key, id, record, fence, expires_at)
    VALUES (run_key, run_id, run_record, run_fence, clock_timestamp() + record_ttl * interval '1 second')
    ON CONFLICT (key) DO UPDATE SET
        id = excluded.id, record = excluded.record, fence = excluded.fence, expires_at = excluded.expires_at;
    FOR swept IN
        SELECT r.key, r.id FROM {RECORDS_TABLE} AS r WHERE r.expires_at <= clock_timestamp()
        ORDER BY r.expires_at LIMIT {SWEEP} FOR UPDATE SKIP LOCKED
    LOOP
        IF swept.id <> ALL (mine) AND pg_try_advisory_xact_lock(swept.id) THEN
            DELETE FROM {sql.HOLDERS_TABLE} AS h WHERE h.id = swept.id AND h.key = swept.key;
            DELETE FROM {RECORDS_TABLE} AS r WHERE r.key = swept.key;
        ELSE
            UPDATE {RECORDS_TABLE} AS r SET record = NULL, expires_at = clock_timestamp() + greatest(
                (SELECT h.ttl FROM {sql.HOLDERS_TABLE} AS h WHERE h.id = swept.id), {LOOK_AGAIN}
            ) * interval '1 second'
            WHERE r.key = swept.key;
        END IF;
    END LOOP;
    COMMIT;
    PERFORM pg_advisory_unlock(run_id), set_config('idle_session_timeout', idle, false);
    stored := true;
END
$fn$
"""

# Created with the rest of advisory mode's schema, its table last (the store looks for it).
SCHEMA = f"{_BEGIN_RUN};\n{_FINISH_RUN};\n{records_schema(RECORDS_TABLE)}"

BEGIN_RUN = begin_statement(
    RECORDS_TABLE, "tenure_begin_run(%(id)s, %(key)s, %(owner)s, %(label)s, %(ttl)s::float8, %(idle)s)"
)

FINISH_RUN = """
CALL tenure_finish_run(%(id)s, %(key)s, %(owner)s, %(record)b, %(ttl)s::float8, %(idle)s, %(mine)s::bigint[])
"""

READ_RECORD = read_statement(RECORDS_TABLE)

# The caller's-transaction option: the marker becomes the record while the run holds its lock
# (its holder row, renewed within its ttl, and its session in pg_locks). A row back: stored.
STORE_IN_TRANSACTION = f"""
UPDATE {RECORDS_TABLE} AS r
SET record = %(record)s, expires_at = clock_timestamp() + %(ttl)s::float8 * interval '1 second'
WHERE r.key = %(key)s AND r.fence = %(fence)s AND r.record IS NULL AND EXISTS (
    SELECT FROM {sql.HOLDERS_TABLE} AS h JOIN pg_locks AS l ON l.pid = h.pid
    WHERE h.id = %(id)s AND h.owner = %(owner)s AND h.fence = %(fence)s
      AND h.renewed_at + h.ttl * interval '1 second' > clock_timestamp()
      AND l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
      AND l.classid = %(classid)s::oid AND l.objid = %(objid)s::oid
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
)
RETURNING r.fence
"""

# The finishing run's sweep (see ``_FINISH_RUN``) as one statement, in the caller's transaction:
# its session holds none of tenure's session locks, so a lock it can take is free.
SWEEP_IN_TRANSACTION = f"""
WITH expired AS MATERIALIZED (
    SELECT e.key, e.id, pg_try_advisory_xact_lock(e.id) AS free FROM (
        SELECT r.key, r.id FROM {RECORDS_TABLE} AS r WHERE r.expires_at <= clock_timestamp()
        ORDER BY r.expires_at LIMIT {SWEEP} FOR UPDATE SKIP LOCKED
    ) AS e
), holders_gone AS (
    DELETE FROM {sql.HOLDERS_TABLE} AS h USING expired AS e WHERE e.free AND h.id = e.id AND h.key = e.key
), records_gone AS (
    DELETE FROM {RECORDS_TABLE} AS r USING expired AS e WHERE e.free AND r.key = e.key
)
UPDATE {RECORDS_TABLE} AS r SET record = NULL, expires_at = clock_timestamp() + greatest(
    (SELECT h.ttl FROM {sql.HOLDERS_TABLE} AS h WHERE h.id = e.id), {LOOK_AGAIN}
) * interval '1 second'
FROM expired AS e WHERE NOT e.free AND r.key = e.key
"""

# After the caller's commit: the run's holder row goes and the lock with it (on its session).
END_AFTER_COMMIT = f"""
WITH ended AS (
    DELETE FROM {sql.HOLDERS_TABLE} AS h
    WHERE h.id = %(id)s AND h.owner = %(owner)s AND h.pid = pg_backend_pid()
)
SELECT pg_advisory_unlock(%(id)s), set_config('idle_session_timeout', %(idle)s, false)
"""
