# GENERATED from src/tenure/_async/backends/postgresql/sql.py by scripts/unasync.py: do not edit; edit the source and re-run.
"""The SQL of ``postgresql://``, sans I/O: lock ids, session set-up and advisory mode's statements.

Advisory mode keeps a fence sequence and an unlogged holders table next to its session locks
(table mode's SQL lives in ``table.py``). Every statement is one round trip in autocommit.
"""

from __future__ import annotations

import math
from typing import Any

from tenure._config import BackendConfig
from tenure._core.keys import key_hash64
from tenure._core.semaphore import SLOT_KINDS, permit_key
from tenure._exceptions import ConfigurationError

DEFAULT_PORT = 5432
CHANNEL = "tenure_released"  # releases (table mode) and election changes: the payload is the lock id
PROBE_SETTING = "tenure.session_probe"  # a custom setting that tells one server session from another


_ids: dict[str, int] = {}
_SLOT_KINDS = frozenset(SLOT_KINDS.values())


def lock_id(key: str) -> int:
    """Return the signed 64-bit advisory lock id of a namespaced key (tooz's 16 bits collide)."""
    found = _ids.get(key)
    if found is None:
        if len(_ids) >= 4096:  # a cache for the hot path (acquire and release hash the same key)
            _ids.clear()
        found = _ids[key] = key_hash64(key)
    return found


def slot_affixes(key: str) -> tuple[str, str]:
    """Return what comes before and after the slot number in the slot keys of ``key``.

    ``key`` is a semaphore's (or read-write lock's): slot ``n``'s key is ``head + str(n) + tail``.
    """
    first = permit_key(key, 0)
    cut = first.index(":0:") + 1  # the namespace is escaped and the kind has no ':'
    return first[:cut], first[cut + 1 :]


def permits_channel(key: str) -> int:
    """Return the NOTIFY payload of the permits of ``key`` released: one per semaphore.

    The lock id of ``<ns>:<slot kind>:*:<name>``, a key no slot (nor anything else) has.
    """
    head, tail = slot_affixes(key)
    return lock_id(f"{head}*{tail}")


def release_channel(key: str) -> int | None:
    """Return the channel that releasing ``key`` wakes if it is a slot's key, else None."""
    parts = key.split(":", 3)
    if len(parts) == 4 and parts[1] in _SLOT_KINDS and parts[2].isdigit():
        return lock_id(f"{parts[0]}:{parts[1]}:*:{parts[3]}")
    return None


def lock_halves(lock: int) -> tuple[int, int]:
    """Return how ``pg_locks`` shows a bigint advisory key: (classid, objid), high half first."""
    unsigned = lock & 0xFFFF_FFFF_FFFF_FFFF
    return unsigned >> 32, unsigned & 0xFFFF_FFFF


def milliseconds(seconds: float) -> str:
    """Return ``seconds`` as a whole number of milliseconds (rounded up, at least 1) for a setting."""
    return str(max(1, math.ceil(seconds * 1000)))


def connect_params(config: BackendConfig) -> dict[str, Any]:
    """Return psycopg's connection keywords for ``config`` (no I/O); the password included.

    One host at most: a session lock lives on one server. No host means libpq's default (the
    local unix socket). The client-side keepalive and ``tcp_user_timeout`` make a dead peer or
    a lost network fail a call instead of hanging it; a frozen server is bounded by the store's
    own deadline on every call.
    """
    url = config.url
    if len(url.hosts) > 1:
        raise ConfigurationError(
            f"{url.redacted}: give one PostgreSQL server; a session lock lives on one server "
            "(point the URL at the primary, or at a session-pooling proxy)"
        )
    dbname = url.path.lstrip("/")
    if "/" in dbname:
        raise ConfigurationError(f"{url.redacted}: the path must be a database name, e.g. /postgres")
    common = config.common
    params: dict[str, Any] = {
        "application_name": "tenure",
        # libpq counts whole seconds, at least 2.
        "connect_timeout": max(2, math.ceil(common.connect_timeout)),
        "keepalives": 1,
        "keepalives_idle": max(1, math.ceil(common.op_timeout)),
        "keepalives_interval": 1,
        "keepalives_count": 3,
        "tcp_user_timeout": int(milliseconds(common.op_timeout)),
    }
    if url.hosts:
        params["host"] = url.hosts[0].host
        params["port"] = url.hosts[0].port or DEFAULT_PORT
    if url.username:
        params["user"] = url.username
    if url.password is not None:
        params["password"] = url.password
    if dbname:
        params["dbname"] = dbname
    return params


# -- every session ----------------------------------------------------------------------------

# Run once per new connection. ``seen`` is the probe setting as this server session had it: a
# session that another open connection of ours already marked means a proxy shares server
# sessions between client connections (transaction pooling). The idle-session limit is off
# until a lock is held; lock and statement timeouts are off because the client bounds every
# call itself (a fair waiter's lock wait lasts as long as the caller wants); a server session
# blocked in a lock wait checks every second that its client is still there, so a waiter that
# died leaves the line.
SETUP = f"""
WITH before AS (SELECT current_setting('{PROBE_SETTING}', true) AS seen)
SELECT pg_backend_pid(), seen,
       set_config('{PROBE_SETTING}', %(token)s, false),
       set_config('idle_session_timeout', '0', false),
       set_config('lock_timeout', '0', false),
       set_config('statement_timeout', '0', false),
       set_config('client_connection_check_interval', '1000', false)
FROM before
"""

PROBE = f"SELECT pg_backend_pid(), current_setting('{PROBE_SETTING}', true)"

TABLES_EXIST = "SELECT bool_and(to_regclass(t) IS NOT NULL) FROM unnest(%(tables)s::text[]) AS t"

TERMINATE = "SELECT pg_terminate_backend(%(pid)s)"

LISTEN = f"LISTEN {CHANNEL}"
ANNOUNCE = f"SELECT pg_notify('{CHANNEL}', %(payload)s)"  # an election's change, for observers

# -- advisory mode ------------------------------------------------------------------------------

# Fences come from one server-wide SEQUENCE and the holders live in an UNLOGGED table, so an
# acquisition writes nothing that must reach the disk before it answers: a sequence logs ahead
# (one WAL record per 32 values), the holder row is not logged at all (session locks do not
# survive a crash either), and the acquisition's commit does not wait for a WAL flush. A crash
# can lose the WAL written in its last moments, and with it values already handed out: the
# sequence would hand them out again. So after a crash fences restart FENCE_JUMP above where the
# sequence then stands: the crash empties the unlogged epoch table, and no fence is drawn until
# RECOVER_FENCES has made the jump and started a new epoch. One sequence for every name is
# strictly monotonic per name too.
FENCE_SEQUENCE = "tenure_fence_seq"
HOLDERS_TABLE = "tenure_lock_holders"
EPOCH_TABLE = "tenure_fence_epoch"
OLD_FENCES_TABLE = "tenure_lock_fences"  # earlier versions: a logged table of per-name fences
# Far more values than a server can hand out between its last WAL flush and a crash (the WAL
# writer flushes what commits wrote within 3 x wal_writer_delay, 0.6 s by default and 30 s at
# most: 2^32 values in 30 s would be 143 million acquisitions a second); 2^31 crashes fit below
# bigint's end.
FENCE_JUMP = 2**32

# One DO block, run under a lock (see PostgresBase._prepare). A new sequence has handed out
# nothing, so its epoch starts without a jump; fences of the old side table carry over.
FENCES_SCHEMA = f"""
DO $tenure$
BEGIN
    CREATE UNLOGGED TABLE IF NOT EXISTS {EPOCH_TABLE} (
        since      timestamptz NOT NULL,   -- when fences (re)started: created, or after a crash
        fence_from bigint NOT NULL         -- the sequence's value then
    );
    IF to_regclass('{FENCE_SEQUENCE}') IS NULL THEN
        CREATE SEQUENCE {FENCE_SEQUENCE} AS bigint;
        IF to_regclass('{OLD_FENCES_TABLE}') IS NOT NULL THEN
            PERFORM setval('{FENCE_SEQUENCE}', greatest(max(fence), 1)) FROM {OLD_FENCES_TABLE};
        END IF;
        INSERT INTO {EPOCH_TABLE} SELECT clock_timestamp(), last_value FROM {FENCE_SEQUENCE};
    END IF;
    CREATE UNLOGGED TABLE IF NOT EXISTS {HOLDERS_TABLE} (
        id         bigint PRIMARY KEY,     -- the advisory lock id: a 64-bit hash of the key
        key        text NOT NULL,          -- the namespaced lock name, for people
        fence      bigint NOT NULL,        -- the holder's fence, from the sequence
        owner      text,                   -- the holder's token
        label      text,                   -- who that is, for people (tenure inspect)
        pid        integer,                -- its server session: pg_locks says if it still holds
        ttl        double precision,       -- seconds its session may stay silent
        renewed_at timestamptz             -- when it last proved itself (server clock)
    );
END
$tenure$
"""

# After a crash (the epoch table is empty): move the sequence FENCE_JUMP past where it stands
# and start a new epoch, one client at a time. This commit waits for the flush, even where the
# server's default is synchronous_commit=off: no fence is drawn above the jump before it is on
# disk.
RECOVER_FENCES = f"""
BEGIN;
SELECT pg_advisory_xact_lock({key_hash64("tenure:fence-epoch")});
SET LOCAL synchronous_commit = on;
INSERT INTO {EPOCH_TABLE}
SELECT clock_timestamp(), setval('{FENCE_SEQUENCE}', last_value + {FENCE_JUMP}) FROM {FENCE_SEQUENCE}
WHERE NOT EXISTS (SELECT 1 FROM {EPOCH_TABLE});
COMMIT
"""

# What a granted acquisition writes: the holder with a new fence, and the idle-session limit
# that ends a silent holder's session (and so its lock) ``ttl`` after its last statement. Its
# commit does not wait for a WAL flush (synchronous_commit off for this transaction alone): the
# holder row is not logged, and a sequence record lost in a crash is what FENCE_JUMP covers, so
# the flush would buy nothing (it cost every 32nd acquisition a disk write). A row with a NULL
# fence: no epoch (a crash emptied it), nothing taken: RECOVER_FENCES, then retry.
_BUMP = f"""
bumped AS (
    INSERT INTO {HOLDERS_TABLE} AS h (id, key, fence, owner, label, pid, ttl, renewed_at)
    SELECT %(id)s, %(key)s, nextval('{FENCE_SEQUENCE}'), %(owner)s, %(label)s, pg_backend_pid(),
           %(ttl)s, clock_timestamp()
    FROM taken WHERE taken.ok
    ON CONFLICT (id) DO UPDATE SET
        fence = excluded.fence, owner = excluded.owner, label = excluded.label, pid = excluded.pid,
        ttl = excluded.ttl, renewed_at = excluded.renewed_at
    RETURNING fence
)
SELECT fence, set_config('idle_session_timeout', %(idle)s, false),
       set_config('synchronous_commit', 'off', true)
FROM bumped
UNION ALL
SELECT NULL, NULL, NULL FROM epoch WHERE NOT epoch.ok
"""


def _acquire(take: str) -> str:
    """Return the acquisition statement that takes the lock with ``take`` (a boolean)."""
    return (
        f"WITH epoch AS (SELECT EXISTS (SELECT FROM {EPOCH_TABLE}) AS ok),\n"
        f"taken AS (SELECT {take} AS ok FROM epoch WHERE epoch.ok),\n" + _BUMP
    )


# One round trip. ``taken`` calls a volatile function, so PostgreSQL evaluates it once, as its
# own step, before the INSERT that reads it: the fence is drawn only if the lock was taken, and
# the lock taken only in an epoch. No row back: the lock is held by another session (or others
# wait in line for it).
TRY_ACQUIRE = _acquire("pg_try_advisory_lock(%(id)s)")

# The same, waiting in the server's lock queue (FIFO) for as long as it takes: left running
# (a task, or a worker thread) while the caller waits for its reply in slices; the caller ends
# the session to leave the line.
# pg_advisory_lock returns void, which is not NULL: ``ok`` is true once the lock is granted.
WAIT_ACQUIRE = _acquire("pg_advisory_lock(%(id)s) IS NOT NULL")

# The renewal of every lease held on one session, in one statement: each one whose lock this
# session still holds (pg_locks, read once) and whose row is still its owner's is renewed, and
# comes back with ``renewed`` true; one missing: that lease is lost. The idle-session limit is set
# to the smallest ttl the session holds (``idle``), so a holder silent that long loses its session.
# A lease that its holder stopped renewing while others on its session go on (it was lost on the
# client's side) would keep the session's lock: a lock this session holds whose row was last
# renewed more than its ttl ago (by the server's clock) is unlocked here, and comes back with
# ``renewed`` false. pg_locks shows a bigint key as two oids, high half first: rebuilt as the id.
RENEW_MANY = f"""
WITH mine AS MATERIALIZED (
    SELECT (classid::bigint << 32) | objid::bigint AS id FROM pg_locks
    WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted AND objsubid = 1
), asked AS (
    SELECT * FROM unnest(%(ids)s::bigint[], %(owners)s::text[], %(ttls)s::float8[]) AS a(id, owner, ttl)
), touched AS (
    UPDATE {HOLDERS_TABLE} AS h SET ttl = a.ttl, renewed_at = clock_timestamp()
    FROM asked AS a
    WHERE h.id = a.id AND h.owner = a.owner AND a.id IN (SELECT id FROM mine)
    RETURNING h.id
), swept AS (
    SELECT h.id, pg_advisory_unlock(h.id) FROM mine JOIN {HOLDERS_TABLE} AS h ON h.id = mine.id
    WHERE h.pid = pg_backend_pid() AND h.id NOT IN (SELECT id FROM asked)
      AND h.renewed_at + h.ttl * interval '1 second' < clock_timestamp()
), limited AS (SELECT set_config('idle_session_timeout', %(idle)s, false))
SELECT id, true AS renewed FROM touched
UNION ALL
SELECT id, false FROM swept
UNION ALL
SELECT NULL, NULL FROM limited
"""

# Restart the idle-session limit, for a hand-over whose reply waited before it was read.
REFRESH = "SELECT set_config('idle_session_timeout', %(idle)s, false)"

# Unlock and set the idle limit to what the session still holds (``idle``: off when nothing, as
# the session goes back to the pool). pg_advisory_unlock returns false when this session did not
# hold the lock. No NOTIFY: waiters wait on the server
# (below), and a NOTIFY would cost every release a transaction id and a commit.
RELEASE = "SELECT pg_advisory_unlock(%(id)s), set_config('idle_session_timeout', %(idle)s, false)"

# A plain waiter's wait for a release, on the server: queue for a shared lock on the key, for at
# most ``timeout`` ms (the statement's own lock timeout), dropped when the statement's transaction
# ends. The server grants it the moment the lock is free, whether its holder released it or its
# session ended (a crash, the idle limit), which no NOTIFY could report. Running out of the lock
# timeout fails the statement with nothing taken. Fair waiters queued before it are served first.
# A transaction-level lock, not a session one that the statement unlocks: a lock timeout that
# fires just as the lock is granted fails the statement after the grant, and a session lock would
# then stay on the session (shared with held locks) and block every writer of the key for good.
WAIT_RELEASED = """
WITH limited AS (SELECT set_config('lock_timeout', %(timeout)s, true))
SELECT pg_advisory_xact_lock_shared(%(id)s) IS NOT NULL FROM limited
"""

# The holder as recorded, only if that session really holds the lock now: a crashed holder's
# row reads as free. ``remaining``: seconds until its session would be ended for silence.
HOLDER = f"""
SELECT f.label, f.fence, f.ttl - extract(epoch FROM clock_timestamp() - f.renewed_at)
FROM {HOLDERS_TABLE} AS f
WHERE f.id = %(id)s AND EXISTS (
    SELECT 1 FROM pg_locks AS l
    WHERE l.locktype = 'advisory' AND l.granted AND l.pid = f.pid
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND l.classid = %(classid)s::oid AND l.objid = %(objid)s::oid AND l.objsubid = 1
)
"""
