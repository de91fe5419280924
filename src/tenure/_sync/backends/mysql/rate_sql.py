# GENERATED from src/tenure/_async/backends/mysql/rate_sql.py by scripts/unasync.py: do not edit; edit the source and re-run.
"""The SQL of rate limits on the ``mysql://`` backend (both modes), without any I/O.

A key's bucket is a row of ``tenure_rates``: one TAT per rate of the limiter (``tat0`` ...
``tat7``, DOUBLE seconds since the epoch by the server's clock) and the time the row means a
full bucket from then on (``expires_at``, the latest TAT). A decision is one round trip of a few
statements (``step``) that runs ``tenure._core.ratelimit.gcra_step`` on the server:

1. ``SET time_zone``: the server's clock is read as ``UNIX_TIMESTAMP(SYSDATE(6))``, a local time
   turned back into epoch seconds, which a zone with daylight saving makes ambiguous for an hour
   a year; the session reads it in UTC (nothing else of the backend reads local time).
2. ``SET @tenure_ok``: the step on a fresh bucket (every TAT = now). If a fresh bucket refuses
   ``cost``, every bucket does (a stored TAT is never below now once raised to it), so nothing
   is written, not even a new row.
3. ``INSERT ... SELECT ... WHERE @tenure_ok ON DUPLICATE KEY UPDATE``: a new key's row is
   inserted with the fresh step's TATs; an existing row is locked by InnoDB and its update runs
   the step again on the stored TATs, by ``SYSDATE(6)`` read under that lock (the time the
   function runs, not the statement's start), so concurrent deciders of every process are
   serialised on the row and none decides on a stale read. The first assignment decides into
   ``@tenure_ok`` (its assignments nested in one expression run in order); the others only
   read it, so they do not depend on the order the server applies them in. A refusal assigns
   every column its own value: InnoDB writes nothing.
4. ``SELECT``: admitted or not, the now the step ran at, and each rate's TAT after it (the new
   ones, else the ones that stand). A refusal of step 2 reads the row for those.

Every few decisions of a store, a sweep before step 3 deletes a bounded number of rows that
expired more than ``SWEEP_MARGIN`` ago (oldest first, by the ``expires_at`` index): a row whose
TATs are all past is the same as no row, so this is only space reclamation. The margin keeps a
step that read its clock (step 2) just before the sweep deleted its key's row from treating a
bucket that was still live then as fresh. A peek (cost 0) only reads the row and the clock
(``look``); ``gcra_step`` runs on them in the client, as they travel exactly (shortest
round-trip text).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from tenure._core.keys import key_digest
from tenure._core.ratelimit import MAX_RATES, Rate

SWEEP_LIMIT = 16  # expired rows deleted at most per sweep
SWEEP_MARGIN = 1.0  # seconds a row stays after it expired, before a sweep may delete it
KEY_DIGEST = 56  # hex digits of the key's BLAKE2b digest: the 28-byte primary key

CREATE_RATES = f"""
CREATE TABLE IF NOT EXISTS tenure_rates (
    key_hash   BINARY(28) NOT NULL PRIMARY KEY,     -- BLAKE2b of the key: keys run to ~1.6 KB
    rate_key   TEXT CHARACTER SET utf8mb4 NOT NULL, -- the key itself, for inspection
    {", ".join(f"tat{i} DOUBLE NULL" for i in range(MAX_RATES))},  -- TAT per rate, epoch s
    expires_at DOUBLE NOT NULL,                     -- the latest TAT: a full bucket from then on
    KEY tenure_rates_expiry (expires_at)
) ENGINE=InnoDB
"""

# Epoch seconds as a DOUBLE, read when the function runs (not at the statement's start).
_CLOCK = "UNIX_TIMESTAMP(SYSDATE(6)) + 0e0"
_UTC = "SET time_zone = '+00:00';\n"


def key_params(key: str) -> dict[str, object]:
    """Return a decision's key params: the digest (its primary key) and the key's text."""
    return {"hash": key_digest(key, length=KEY_DIGEST), "key": key}


def step_params(key: str, rates: Sequence[Rate], cost: int) -> dict[str, object]:
    """Return ``step``'s params: the key's, and per rate ``cost * interval`` and the capacity.

    Computed here as ``gcra_step`` computes them, so the server's arithmetic on DOUBLEs is the
    same to the last bit (the driver writes floats as exact DOUBLE literals).
    """
    params = key_params(key)
    for index, rate in enumerate(rates):
        params[f"inc{index}"] = cost * rate.interval
        params[f"cap{index}"] = rate.capacity
    return params


def _decide(count: int, current: str) -> str:
    """Return the expression of the GCRA step on ``count`` rates, true when it admits.

    It sets ``@tenure_now``, then per rate ``@tenure_c<i>`` (the TAT that stands, ``current``
    with ``{i}``) and ``@tenure_n<i>`` (the new one), all before the first comparison, so a
    refusal keeps every rate's standing TAT.
    """
    sets = [f"(@tenure_now := {_CLOCK}) IS NOT NULL"]
    for i in range(count):
        sets.append(f"(@tenure_c{i} := {current.format(i=i)}) IS NOT NULL")
        sets.append(f"(@tenure_n{i} := @tenure_c{i} + %(inc{i})s) IS NOT NULL")
    checks = [f"@tenure_n{i} - %(cap{i})s <= @tenure_now" for i in range(count)]
    return "\n    AND ".join(sets + checks)


def _latest(count: int) -> str:
    names = [f"@tenure_n{i}" for i in range(count)]
    return names[0] if count == 1 else f"GREATEST({', '.join(names)})"


@functools.cache
def step(count: int, *, sweep: bool = False) -> str:
    """Return the round trip of one decision on ``count`` rates taking cost > 0 (``step_params``).

    Its reply's one row: admitted (1 or 0), the server's now, then ``count`` TATs.
    """
    columns = ", ".join(f"tat{i}" for i in range(count))
    updates = [f"tat0 = IF(@tenure_ok := (\n    {_decide(count, _STORED)}), @tenure_n0, tat0)"]
    updates += [f"tat{i} = IF(@tenure_ok, @tenure_n{i}, tat{i})" for i in range(1, count)]
    # A limiter that dropped a rate leaves no TAT of it: a rate gained later starts idle.
    updates += [f"tat{i} = IF(@tenure_ok, NULL, tat{i})" for i in range(count, MAX_RATES)]
    updates.append(f"expires_at = IF(@tenure_ok, {_latest(count)}, expires_at)")
    assignments = ",\n".join(updates)
    reply = ", ".join(
        f"IF(@tenure_ok, @tenure_n{i}, GREATEST(COALESCE(r.tat{i}, @tenure_c{i}), @tenure_c{i}))"
        for i in range(count)
    )
    return (
        _UTC
        + f"SET @tenure_ok := (\n    {_decide(count, '@tenure_now')});\n"
        + (_SWEEP if sweep else "")
        + _READ_COMMITTED
        + f"""INSERT INTO tenure_rates (key_hash, rate_key, {columns}, expires_at)
SELECT UNHEX(%(hash)s), %(key)s, {", ".join(f"@tenure_n{i}" for i in range(count))}, {_latest(count)}
FROM DUAL WHERE @tenure_ok
ON DUPLICATE KEY UPDATE
{assignments};
SELECT @tenure_ok, @tenure_now, {reply}
FROM (SELECT 1) AS one LEFT JOIN tenure_rates AS r ON r.key_hash = UNHEX(%(hash)s)
"""
    )


# A stored TAT raised to now; a missing one (the limiter gained a rate) is now.
_STORED = "GREATEST(COALESCE(tat{i}, @tenure_now), @tenure_now)"

# The next statement's transaction (autocommitted) takes no gap locks: the insert's duplicate
# check locks only the key's row, and a sweep only the rows it deletes. Under REPEATABLE READ,
# the gap locks of new keys' inserts could join a deadlock.
_READ_COMMITTED = "SET TRANSACTION ISOLATION LEVEL READ COMMITTED;\n"

# The candidates, the oldest expired rows, are read into variables by a plain (non-locking)
# read of the expiry index, then deleted by primary key if still expired: rows are locked in
# the order a decision locks them (the row, then its index entry). A DELETE ranging over the
# index (even through a derived table) locked an entry, then its row, and deadlocked with the
# deciders of a hot key, whose update moves its entry (measured: about 1% of decisions).
_CANDIDATES = ", ".join(f"@tenure_old{i}" for i in range(SWEEP_LIMIT))
_SWEEP = (
    "SELECT "
    + ", ".join(f"MAX(IF(n = {i}, key_hash, NULL))" for i in range(SWEEP_LIMIT))
    + f""" INTO {_CANDIDATES}
FROM (SELECT key_hash, ROW_NUMBER() OVER (ORDER BY expires_at) - 1 AS n FROM tenure_rates
      WHERE expires_at < @tenure_now - {SWEEP_MARGIN} ORDER BY expires_at LIMIT {SWEEP_LIMIT}) AS old;
{_READ_COMMITTED}DELETE FROM tenure_rates
WHERE key_hash IN ({_CANDIDATES}) AND expires_at < @tenure_now - {SWEEP_MARGIN};
"""
)


@functools.cache
def look(count: int) -> str:
    """Return the round trip of a peek (``key_params``): the server's now and ``count`` stored TATs."""
    columns = ", ".join(f"r.tat{i}" for i in range(count))
    return (
        _UTC
        + f"""SELECT {_CLOCK}, {columns}
FROM (SELECT 1) AS one LEFT JOIN tenure_rates AS r ON r.key_hash = UNHEX(%(hash)s)
"""
    )
