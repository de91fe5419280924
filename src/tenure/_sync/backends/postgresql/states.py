# GENERATED from src/tenure/_async/backends/postgresql/states.py by scripts/unasync.py: do not edit; edit the source and re-run.
"""Small states on ``postgresql://`` (both modes; ``update_state``): a row each, one transaction.

A key's state is a row of ``tenure_states``: its bytes and when they expire, in seconds of the
server's clock. The change is Python (a shared breaker runs ``breaker_step``), so an update is
one transaction of a few round trips on one pooled session:

1. ``BEGIN``;
2. ``tenure_state_lock(key)`` locks the key's row (``FOR UPDATE``; a missing row is inserted
   first, ``ON CONFLICT DO NOTHING``, so two first updates take turns on it too) and only then
   reads ``clock_timestamp()``; it returns the bytes (NULL if expired) and that now;
3. the change runs here; bytes to store are written with their expiry (``UPDATE``);
4. ``COMMIT``.

Any failure closes the session, which rolls the transaction back. A new row deletes up to
``SWEEP`` expired ones (skipping rows being updated), so the table stays bounded by the live
states without a sweeper. Both modes share the table and the function, created with the
mode's schema under a lock of their own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from tenure._sync.backends.base import StateChange, T
from tenure._sync.backends.postgresql import sql
from tenure._exceptions import BackendProtocolError

if TYPE_CHECKING:
    from tenure._sync.backends.postgresql.common import PostgresBase

STATES_TABLE = "tenure_states"
SWEEP = 4  # expired rows each new row deletes

SCHEMA = f"""
SELECT pg_advisory_xact_lock({sql.lock_id(f"tenure:create:{STATES_TABLE}")});
CREATE TABLE IF NOT EXISTS {STATES_TABLE} (
    key        text PRIMARY KEY,
    value      bytea,                        -- NULL: a row only made to be locked
    expires_at double precision NOT NULL     -- seconds of the server's clock: then as no row
);
CREATE INDEX IF NOT EXISTS {STATES_TABLE}_expiry ON {STATES_TABLE} (expires_at);
CREATE OR REPLACE FUNCTION tenure_state_lock(
    state_key text, OUT value bytea, OUT now double precision
) LANGUAGE plpgsql AS $fn$
DECLARE
    until double precision;
BEGIN
    FOR attempt IN 1 .. 3 LOOP
        SELECT s.value, s.expires_at INTO value, until
        FROM {STATES_TABLE} AS s WHERE s.key = state_key FOR UPDATE;
        IF FOUND THEN
            now := extract(epoch FROM clock_timestamp())::double precision;  -- after the row lock
            IF until <= now THEN
                value := NULL;
            END IF;
            RETURN;
        END IF;
        INSERT INTO {STATES_TABLE} AS s (key, value, expires_at) VALUES (state_key, NULL, 0)
        ON CONFLICT (key) DO NOTHING;
        IF FOUND THEN
            value := NULL;
            now := extract(epoch FROM clock_timestamp())::double precision;
            DELETE FROM {STATES_TABLE} AS s WHERE s.key IN (
                SELECT e.key FROM {STATES_TABLE} AS e WHERE e.expires_at <= now AND e.key <> state_key
                ORDER BY e.expires_at LIMIT {SWEEP} FOR UPDATE SKIP LOCKED
            );
            RETURN;
        END IF;
        -- Another update inserted the row meanwhile: lock it now that it is committed.
    END LOOP;
    RAISE EXCEPTION 'tenure_state_lock: the row of % kept changing', state_key;
END
$fn$
"""

LOCK = "SELECT value, now FROM tenure_state_lock(%(key)s)"
WRITE = f"UPDATE {STATES_TABLE} SET value = %(value)s, expires_at = %(expires_at)s WHERE key = %(key)s"


class PostgresStates:
    """The ``update_state`` of both modes: a transaction on a pooled session."""

    def update_state(self, key: str, change: StateChange[T], ttl: float) -> T:
        pool = cast("PostgresBase", self)._pool
        what = f"updating the state of {key!r}"
        session = pool.checkout()
        try:
            pool.run(session, "BEGIN", None, what, rows=False)
            rows = pool.run(session, LOCK, {"key": key}, what)
            if len(rows) != 1 or not isinstance(rows[0][1], float):
                raise BackendProtocolError(f"{pool.url}: {what}: the lock returned {rows!r}")
            stored, now = rows[0]
            value, result = change(None if stored is None else bytes(stored), now)
            if value is not None:
                params = {"key": key, "value": value, "expires_at": now + ttl}
                pool.run(session, WRITE, params, what, rows=False)
            pool.run(session, "COMMIT", None, what, rows=False)
        except BaseException:
            pool.discard(session)  # closing it rolls the transaction back
            raise
        pool.checkin(session)
        return result
