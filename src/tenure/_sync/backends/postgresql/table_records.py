# GENERATED from src/tenure/_async/backends/postgresql/table_records.py by scripts/unasync.py: do not edit; edit the source and re-run.
"""Idempotency records in table mode: a run is a lease row, its record a row of ``tenure_records``.

The rows and their sweep are described in ``records.py``. Both steps are one transaction each
(a function), and the steps of one key take turns on a transaction-level advisory lock on its
lock id, which works through any pooler. ``tenure_begin_lease_run`` reads the record, else takes
the turn, reads it again (a snapshot taken after the turn, so after any run that finished before
it committed), and takes the lease row as ``TABLE_ACQUIRE`` does. ``tenure_finish_lease_run``
takes the turn, deletes the owner's live lease row, stores the record with the row's fence and
NOTIFYs the waiters, as a release does.

**Fences.** A key's lease row goes with its run (and a freed or expired one with the sweep), so
a new row's fence starts at the server clock's microseconds, and above the fence in the key's
records row while that lives: a key's fences keep growing across its runs.

**In the caller's transaction** (``transaction=``): the caller's connection calls
``tenure_finish_lease_run`` itself. The key's turn (a transaction lock) is then held until the
caller commits, so a run that begins meanwhile waits for it and then reads the record; the lease
row goes and the waiters' NOTIFY is sent with that commit, and nothing is left to end after it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from tenure._sync.backends.base import Recorded, SQLStep
from tenure._sync.backends.postgresql import sql
from tenure._sync.backends.postgresql.record_sql import (
    LOOK_AGAIN,
    RECORD_LIMIT,
    SWEEP,
    began,
    begin_statement,
    read_statement,
    recorded,
    records_schema,
)
from tenure._core.tokens import Owner

if TYPE_CHECKING:
    from tenure._sync.backends.postgresql.table import PostgresTableStore

LEASES_TABLE = "tenure_leases"  # defined here, as table.py imports this module
RECORDS_TABLE = "tenure_records"

_BEGIN_RUN = f"""
CREATE OR REPLACE FUNCTION tenure_begin_lease_run(
    run_id bigint, run_key text, holder text, holder_label text, lease_ttl double precision,
    OUT status text, OUT run_fence bigint, OUT found_record bytea, OUT seconds_left double precision
) LANGUAGE plpgsql
-- Plans made once per session: custom ones, remade at each call, cost more than the call.
SET plan_cache_mode = force_generic_plan
AS $fn$
DECLARE
    last_fence bigint;
    live boolean;
BEGIN
    SELECT r.record, r.fence, extract(epoch FROM r.expires_at - clock_timestamp())::float8
    INTO found_record, run_fence, seconds_left
    FROM {RECORDS_TABLE} AS r
    WHERE r.key = run_key AND r.record IS NOT NULL AND r.expires_at > clock_timestamp();
    IF FOUND THEN
        status := 'done';
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(run_id);
    SELECT r.record, r.fence, r.expires_at > clock_timestamp(),
           extract(epoch FROM r.expires_at - clock_timestamp())::float8
    INTO found_record, last_fence, live, seconds_left
    FROM {RECORDS_TABLE} AS r WHERE r.key = run_key;
    IF found_record IS NOT NULL AND live THEN
        run_fence := last_fence;
        status := 'done';
        RETURN;
    END IF;
    found_record := NULL;
    seconds_left := NULL;
    INSERT INTO {LEASES_TABLE} AS l (key, owner, label, fence, expires_at)
    VALUES (run_key, holder, holder_label,
            greatest(coalesce(last_fence, 0) + 1, (extract(epoch FROM clock_timestamp()) * 1000000)::bigint),
            clock_timestamp() + lease_ttl * interval '1 second')
    ON CONFLICT (key) DO UPDATE SET
        owner = excluded.owner, label = excluded.label, fence = greatest(l.fence + 1, excluded.fence),
        expires_at = excluded.expires_at
    WHERE l.owner IS NULL OR l.expires_at <= clock_timestamp()
    RETURNING l.fence INTO run_fence;
    IF NOT FOUND THEN
        -- Held: how long the holder's lease has left, for the waiter (an expiry sends no NOTIFY).
        SELECT extract(epoch FROM l.expires_at - clock_timestamp())::float8 INTO seconds_left
        FROM {LEASES_TABLE} AS l WHERE l.key = run_key;
        status := 'busy';
        RETURN;
    END IF;
    INSERT INTO {RECORDS_TABLE} AS r (key, id, record, fence, expires_at)
    VALUES (run_key, run_id, NULL, run_fence, clock_timestamp() + lease_ttl * interval '1 second')
    ON CONFLICT (key) DO UPDATE SET
        id = excluded.id, record = NULL, fence = excluded.fence, expires_at = excluded.expires_at;
    status := 'taken';
END
$fn$
"""

# Expired rows whose key's turn is free (no run of it begins or ends now): a lease row freed or
# expired goes, and the records row with it unless a run still holds the lease (its marker is
# then looked at again after that lease could have ended).
_FINISH_RUN = f"""
CREATE OR REPLACE FUNCTION tenure_finish_lease_run(
    run_id bigint, run_key text, holder text, run_record bytea, record_ttl double precision, payload text
) RETURNS boolean LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $fn$
DECLARE
    run_fence bigint;
    lease_end timestamptz;
    swept record;
BEGIN
    PERFORM pg_advisory_xact_lock(run_id);
    DELETE FROM {LEASES_TABLE} AS l
    WHERE l.key = run_key AND l.owner = holder AND l.expires_at > clock_timestamp()
    RETURNING l.fence INTO run_fence;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    INSERT INTO {RECORDS_TABLE} AS r (key, id, record, fence, expires_at)
    VALUES (run_key, run_id, run_record, run_fence, clock_timestamp() + record_ttl * interval '1 second')
    ON CONFLICT (key) DO UPDATE SET
        id = excluded.id, record = excluded.record, fence = excluded.fence, expires_at = excluded.expires_at;
    PERFORM pg_notify('{sql.CHANNEL}', payload);
    FOR swept IN
        SELECT r.key, r.id FROM {RECORDS_TABLE} AS r WHERE r.expires_at <= clock_timestamp()
        ORDER BY r.expires_at LIMIT {SWEEP} FOR UPDATE SKIP LOCKED
    LOOP
        CONTINUE WHEN NOT pg_try_advisory_xact_lock(swept.id);
        DELETE FROM {LEASES_TABLE} AS l
        WHERE l.key = swept.key AND (l.owner IS NULL OR l.expires_at <= clock_timestamp());
        SELECT l.expires_at INTO lease_end FROM {LEASES_TABLE} AS l WHERE l.key = swept.key;
        IF FOUND THEN
            UPDATE {RECORDS_TABLE} AS r SET record = NULL,
                expires_at = greatest(lease_end, clock_timestamp() + {LOOK_AGAIN} * interval '1 second')
            WHERE r.key = swept.key;
        ELSE
            DELETE FROM {RECORDS_TABLE} AS r WHERE r.key = swept.key;
        END IF;
    END LOOP;
    RETURN true;
END
$fn$
"""

# Created with the rest of table mode's schema, its table last (the store looks for it).
SCHEMA = f"{_BEGIN_RUN};\n{_FINISH_RUN};\n{records_schema(RECORDS_TABLE)}"

# A live record is read without calling the function (``records.begin_statement``).
BEGIN_RUN = begin_statement(
    RECORDS_TABLE, "tenure_begin_lease_run(%(id)s, %(key)s, %(owner)s, %(label)s, %(ttl)s::float8)"
)

FINISH_RUN = """
SELECT tenure_finish_lease_run(%(id)s, %(key)s, %(owner)s, %(record)b, %(ttl)s::float8, %(payload)s)
"""

READ_RECORD = read_statement(RECORDS_TABLE)

# The same step in the caller's transaction: a row back only if the run still held its lease.
FINISH_IN_TRANSACTION = """
SELECT stored FROM tenure_finish_lease_run(
    %(id)s, %(key)s, %(owner)s, %(record)s, %(ttl)s::float8, %(payload)s
) AS stored WHERE stored
"""


class TableRecords:
    """The Records capability of table mode, mixed into ``PostgresTableStore``.

    A run holds its key as a lease row, renewed, released and waited for by the lease steps.
    """

    record_limit = RECORD_LIMIT

    def begin_run(self, key: str, owner: Owner, ttl: float) -> Recorded | int | None:
        store = cast("PostgresTableStore", self)
        lock = sql.lock_id(key)
        mark = store._listener.mark(lock)  # before the attempt: no release after it is missed
        params = {"id": lock, "key": key, "owner": owner.token, "label": owner.label, "ttl": ttl}
        rows = store._call(BEGIN_RUN, params, f"beginning a run of {key!r}")
        record, fence, row = rows[0]
        if row is None:  # a hit: the statement read the record and called nothing
            return recorded(store.url, key, record, fence)
        status, run_fence, remaining = began(store.url, key, row)
        if status == "done":  # finished between the statement's read and the function's
            return self.read_record(key)
        if status == "taken" and run_fence is not None:
            store._expiries.forget(key)
            return run_fence
        store._refused(key, mark, remaining)
        return None

    def finish_run(self, key: str, owner: Owner, record: bytes, ttl: float) -> bool:
        store = cast("PostgresTableStore", self)
        lock = sql.lock_id(key)
        params = {"id": lock, "key": key, "owner": owner.token, "record": record, "ttl": ttl,
                  "payload": str(lock)}  # fmt: skip
        rows = store._call(FINISH_RUN, params, f"recording the run of {key!r}")
        return bool(rows) and rows[0][0] is True

    transaction_drivers = "psycopg connections to the store's database, at READ COMMITTED"

    def record_steps(self, key: str, owner: Owner, fence: int, record: bytes, ttl: float) -> list[SQLStep]:
        """Return ``finish_run``'s statement, for the caller's transaction (see the module's docstring)."""
        lock = sql.lock_id(key)
        params = {"id": lock, "key": key, "owner": owner.token, "record": record, "ttl": ttl,
                  "payload": str(lock)}  # fmt: skip
        return [SQLStep(FINISH_IN_TRANSACTION, params, proves_hold=True)]

    def end_after_commit(self, key: str, owner: Owner) -> bool:
        return True  # the caller's commit deleted the lease row and woke the waiters

    def read_record(self, key: str) -> Recorded | None:
        store = cast("PostgresTableStore", self)
        rows = store._call(READ_RECORD, {"key": key}, f"reading the record of {key!r}")
        return recorded(store.url, key, *rows[0]) if rows else None
