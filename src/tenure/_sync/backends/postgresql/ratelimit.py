# GENERATED from src/tenure/_async/backends/postgresql/ratelimit.py by scripts/unasync.py: do not edit; edit the source and re-run.
"""Rate limits on ``postgresql://`` (both modes): one GCRA step per decision, in one function call.

A key's bucket is a row of ``tenure_rates``: its TATs (one per rate, as ``float8`` seconds of
the server's clock) and when the row may go. ``tenure_rate_step`` is ``gcra_step``
(``tenure._core.ratelimit``) run on the server, so one decision is one statement, one round trip
and one transaction:

- it locks the key's row (``FOR UPDATE``), so concurrent decisions on one key take turns, and
  only then reads ``now`` from ``clock_timestamp()``: decisions that waited for each other
  read clocks in the order they decide;
- it computes the new TATs with the same IEEE double arithmetic as ``gcra_step`` (the rates'
  intervals and capacities come from the client, computed the same way), so the answers are
  the same to the bit;
- it writes only an admitted step of ``cost`` > 0; a refused step or a look (``cost`` 0)
  writes nothing. A first insert that loses a race to another reads the winner's row and
  decides again (``ON CONFLICT DO NOTHING``, then the row lock).

**Expiry.** A row whose TATs are all past is a full bucket, the same as no row, so deleting it
only reclaims space. Only inserts make the table grow, and each deletes up to ``SWEEP`` expired
rows (by the expiry index, skipping rows being decided): the table stays bounded by the keys
live, with no sweeper and no scan per decision. ``expires_at`` is rounded up to whole seconds,
so that most updates of a busy key leave it unchanged and stay HOT (no new index entries).

Both modes share the table and the function: a server's rate limits are the same whichever mode
a client uses. They are created with the mode's schema, under a lock of their own, so stores of
either mode starting at once never race to create them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

from tenure._sync.backends.base import Rate, RateStep
from tenure._sync.backends.postgresql import sql
from tenure._concurrency import shielded, within
from tenure._exceptions import BackendProtocolError

if TYPE_CHECKING:
    from tenure._sync.backends.postgresql.common import PostgresBase

RATES_TABLE = "tenure_rates"
SWEEP = 4  # expired rows each insert deletes: more than one, so a burst of expiries drains
ATTEMPTS = 3  # a first insert that lost a race decides again on the winner's row; bounded

# Part of each mode's schema (run in its transaction); its own lock comes last, after the mode's.
SCHEMA = f"""
SELECT pg_advisory_xact_lock({sql.lock_id(f"tenure:create:{RATES_TABLE}")});
CREATE TABLE IF NOT EXISTS {RATES_TABLE} (
    key        text PRIMARY KEY,             -- the limiter's namespaced key (and the caller's key)
    tats       double precision[] NOT NULL,  -- one TAT per rate, seconds of the server's clock
    expires_at double precision NOT NULL     -- from then on a full bucket: the row may go
) WITH (fillfactor = 80);                     -- room on the page for HOT updates of a busy key
CREATE INDEX IF NOT EXISTS {RATES_TABLE}_expiry ON {RATES_TABLE} (expires_at);
CREATE OR REPLACE FUNCTION tenure_rate_step(
    rate_key text, intervals double precision[], capacities double precision[], cost integer,
    OUT allowed boolean, OUT now double precision, OUT tats double precision[]
) LANGUAGE plpgsql
-- Plans made once per session: custom ones, remade at each call, cost more than the call.
SET plan_cache_mode = force_generic_plan
AS $fn$
DECLARE
    stored double precision[];
    had_row boolean;
    standing double precision[];  -- the TATs as they stand: an idle one is now
BEGIN
    FOR attempt IN 1 .. {ATTEMPTS} LOOP
        SELECT r.tats INTO stored FROM {RATES_TABLE} AS r WHERE r.key = rate_key FOR UPDATE;
        had_row := FOUND;
        now := extract(epoch FROM clock_timestamp())::double precision;  -- after the row lock
        -- gcra_step: an idle (or missing) TAT is now; every rate must admit the cost.
        standing := '{{}}';
        tats := '{{}}';
        allowed := true;
        FOR i IN 1 .. cardinality(intervals) LOOP
            standing[i] := greatest(coalesce(stored[i], now), now);
            tats[i] := standing[i] + cost * intervals[i];
            IF tats[i] - capacities[i] > now THEN
                allowed := false;
            END IF;
        END LOOP;
        IF NOT allowed THEN
            tats := standing;
            RETURN;
        END IF;
        IF cost = 0 THEN
            RETURN;
        END IF;
        IF had_row THEN
            UPDATE {RATES_TABLE} AS r SET tats = tenure_rate_step.tats,
                expires_at = ceil((SELECT max(t) FROM unnest(tenure_rate_step.tats) AS t))
            WHERE r.key = rate_key;
            RETURN;
        END IF;
        INSERT INTO {RATES_TABLE} AS r (key, tats, expires_at)
        VALUES (rate_key, tats, ceil((SELECT max(t) FROM unnest(tats) AS t)))
        ON CONFLICT (key) DO NOTHING;
        IF FOUND THEN
            -- A new row: delete a few expired ones (never a row another decision holds).
            DELETE FROM {RATES_TABLE} AS r WHERE r.key IN (
                SELECT e.key FROM {RATES_TABLE} AS e WHERE e.expires_at <= now
                ORDER BY e.expires_at LIMIT {SWEEP} FOR UPDATE SKIP LOCKED
            );
            RETURN;
        END IF;
        -- Another decision inserted the key meanwhile: decide again on its row.
    END LOOP;
    RAISE EXCEPTION 'tenure_rate_step: the row of % kept changing', rate_key;
END
$fn$
"""

STEP = """
SELECT allowed, now, tats FROM tenure_rate_step(
    %(key)s, %(intervals)s::float8[], %(capacities)s::float8[], %(cost)s::integer
)
"""


class PostgresCounters:
    """The Counters capability of both modes: ``rate_step`` as one call of ``tenure_rate_step``."""

    def rate_step(
        self, key: str, rates: Sequence[Rate], cost: int, deadline: float | None = None
    ) -> RateStep:
        def step() -> RateStep:  # psycopg has no per-call timeout of its own: bound it
            return self._rate_step(key, rates, cost)

        if deadline is None:
            return step()
        return within(deadline, step)

    def _rate_step(self, key: str, rates: Sequence[Rate], cost: int) -> RateStep:
        store = cast("PostgresBase", self)
        params = {
            "key": key,
            "intervals": [rate.interval for rate in rates],
            "capacities": [rate.capacity for rate in rates],
            "cost": cost,
        }
        what = f"deciding on the rate limit of {key!r}"
        # A pooled session, as every plain statement: one that failed is closed, so a server
        # that went away and came back answers the next decision on a new session. Shielded: a
        # limiter that stops waiting at its deadline lets the call finish (within op_timeout)
        # and keep its session, as a thread does, instead of closing it and making every late
        # decision after it connect anew.
        rows = shielded(lambda: store._call(STEP, params, what))
        if len(rows) != 1:
            raise BackendProtocolError(f"{store.url}: the rate step of {key!r} returned {len(rows)} rows")
        allowed, now, tats = rows[0]
        if not isinstance(allowed, bool) or not isinstance(now, float) or not isinstance(tats, list):
            raise BackendProtocolError(f"{store.url}: the rate step of {key!r} returned {rows[0]!r}")
        return RateStep(allowed, now, tuple(float(tat) for tat in tats))
