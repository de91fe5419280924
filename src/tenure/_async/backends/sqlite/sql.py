"""The SQL of the ``sqlite://`` backend: the lease table, the fair line, one statement per step.

Every statement takes named parameters: ``:key``, ``:owner`` (the token), ``:label``, ``:boot``
(the host's boot id), ``:now``, ``:expires_at`` and ``:alive_until`` (host monotonic seconds),
``:seed`` (the wall clock in microseconds, the least fence a new row may get) and ``:batch``
(many leases at once, a JSON array).
"""

SCHEMA = """
CREATE TABLE IF NOT EXISTS tenure_leases (
    key        TEXT PRIMARY KEY,
    owner      TEXT,               -- the holder's secret token; NULL while free
    label      TEXT,               -- who holds it, for people (tenure inspect)
    fence      INTEGER NOT NULL,   -- bumped by every acquisition, never reset
    boot       TEXT NOT NULL,      -- boot id of the host clock expires_at is read on
    expires_at REAL NOT NULL       -- host monotonic seconds
) WITHOUT ROWID
"""

# Fair waiters (fair=True), in arrival order; an entry dies unless refreshed before alive_until.
WAITERS_SCHEMA = """
CREATE TABLE IF NOT EXISTS tenure_waiters (
    key         TEXT NOT NULL,
    token       TEXT NOT NULL,
    arrived     REAL NOT NULL,     -- host monotonic seconds of the first attempt
    alive_until REAL NOT NULL,     -- host monotonic seconds
    boot        TEXT NOT NULL,
    PRIMARY KEY (key, token)
) WITHOUT ROWID
"""

# Semaphores: the limit their live permits were taken with (each permit is a row of tenure_leases
# under its slot's key; the semaphore's own row there is its fence counter).
SEMAPHORES_SCHEMA = """
CREATE TABLE IF NOT EXISTS tenure_semaphores (
    key     TEXT PRIMARY KEY,
    "limit" INTEGER NOT NULL
) WITHOUT ROWID
"""

# The recorded limit (NULL if none) and the live slots among :slots (a JSON array of keys).
PERMITS = """
SELECT (SELECT "limit" FROM tenure_semaphores WHERE key = :key), json_group_array(key)
FROM tenure_leases
WHERE key IN (SELECT value FROM json_each(:slots))
    AND owner IS NOT NULL AND boot = :boot AND expires_at > :now
"""

RECORD_LIMIT = """
INSERT INTO tenure_semaphores (key, "limit") VALUES (:key, :limit)
ON CONFLICT (key) DO UPDATE SET "limit" = excluded."limit"
"""

# The name's fence counter: its row in tenure_leases, bumped without touching its lease.
BUMP_FENCE = """
INSERT INTO tenure_leases (key, owner, label, fence, boot, expires_at)
VALUES (:key, NULL, NULL, :seed, :boot, 0)
ON CONFLICT (key) DO UPDATE SET fence = max(fence + 1, excluded.fence)
RETURNING fence
"""

# Take a slot the same transaction found free: its fence is the name's, not its own.
TAKE_SLOT = """
INSERT INTO tenure_leases (key, owner, label, fence, boot, expires_at)
VALUES (:slot, :owner, :label, :fence, :boot, :expires_at)
ON CONFLICT (key) DO UPDATE SET
    owner = excluded.owner, label = excluded.label, fence = excluded.fence,
    boot = excluded.boot, expires_at = excluded.expires_at
"""

HOLDERS = """
SELECT label, fence, expires_at FROM tenure_leases
WHERE key IN (SELECT value FROM json_each(:slots))
    AND owner IS NOT NULL AND boot = :boot AND expires_at > :now
ORDER BY fence
"""

DROP_DEAD_WAITERS = "DELETE FROM tenure_waiters WHERE key = :key AND (alive_until <= :now OR boot != :boot)"

JOIN_QUEUE = """
INSERT INTO tenure_waiters (key, token, arrived, alive_until, boot)
VALUES (:key, :owner, :now, :alive_until, :boot)
ON CONFLICT (key, token) DO UPDATE SET alive_until = excluded.alive_until
"""

HEAD_OF_QUEUE = "SELECT token FROM tenure_waiters WHERE key = :key ORDER BY arrived, token LIMIT 1"

LEAVE_QUEUE = "DELETE FROM tenure_waiters WHERE key = :key AND token = :owner"

# How many wait ahead of the caller (NULL if it is not in line) and whether the lock is free:
# one read, no write lock.
TURN = """
SELECT
    (SELECT COUNT(*) FROM tenure_waiters AS other
     WHERE other.key = :key AND (other.arrived < me.arrived
        OR (other.arrived = me.arrived AND other.token < me.token))),
    NOT EXISTS (
        SELECT 1 FROM tenure_leases
        WHERE key = :key AND owner IS NOT NULL AND boot = :boot AND expires_at > :now
    )
FROM (SELECT arrived, token FROM tenure_waiters WHERE key = :key AND token = :owner) AS me
"""

# Take the row if it is free, expired, or from another boot; bump the fence in the same step.
# The fence is never below :seed, the wall clock in microseconds: with synchronous=NORMAL a power
# loss can undo the last commits, and fences handed out by them, but not turn the clock back.
ACQUIRE = """
INSERT INTO tenure_leases (key, owner, label, fence, boot, expires_at)
VALUES (:key, :owner, :label, :seed, :boot, :expires_at)
ON CONFLICT (key) DO UPDATE SET
    owner = excluded.owner, label = excluded.label, fence = max(fence + 1, excluded.fence),
    boot = excluded.boot, expires_at = excluded.expires_at
WHERE owner IS NULL OR boot != excluded.boot OR expires_at <= :now
RETURNING fence
"""

PEEK = "SELECT owner, label, fence, boot, expires_at FROM tenure_leases WHERE key = :key"

# Renew and release check the owner; an expired lease is never revived.
RENEW = """
UPDATE tenure_leases SET expires_at = :expires_at
WHERE key = :key AND owner = :owner AND boot = :boot AND expires_at > :now
"""

# Many renewals in one statement (SQLite 3.38+: RETURNING and ->> on JSON built in). :batch is a
# JSON array of [key, owner, expires_at]; each renewed lease comes back as (key, owner).
RENEW_MANY = """
UPDATE tenure_leases SET expires_at = batch.value ->> 2
FROM json_each(:batch) AS batch
WHERE tenure_leases.key = batch.value ->> 0 AND tenure_leases.owner = batch.value ->> 1
    AND tenure_leases.boot = :boot AND tenure_leases.expires_at > :now
RETURNING key, owner
"""

# Only a valid lease is freed; an expired row left with the old token already counts as free.
RELEASE = """
UPDATE tenure_leases SET owner = NULL, label = NULL, expires_at = 0
WHERE key = :key AND owner = :owner AND boot = :boot AND expires_at > :now
"""

# Idempotency records: what a finished run left under its key, until expires_at (wall clock
# seconds: a record outlives reboots, unlike a lease). The run itself is a lease in tenure_leases.
RECORDS_SCHEMA = """
CREATE TABLE IF NOT EXISTS tenure_records (
    key        TEXT PRIMARY KEY,
    record     BLOB NOT NULL,
    fence      INTEGER NOT NULL,   -- the fence of the run that stored it
    expires_at REAL NOT NULL       -- Unix time in seconds
) WITHOUT ROWID
"""
RECORDS_EXPIRY_INDEX = "CREATE INDEX IF NOT EXISTS tenure_records_expiry ON tenure_records (expires_at)"

READ_RECORD = "SELECT record, fence, expires_at FROM tenure_records WHERE key = :key AND expires_at > :wall"

# The run's lease ends with its record stored: deleted, not freed, since the record keeps its
# fence and a later run's fence is at least the wall clock anyway (the ACQUIRE seed).
END_RUN = """
DELETE FROM tenure_leases
WHERE key = :key AND owner = :owner AND boot = :boot AND expires_at > :now
RETURNING fence
"""

STORE_RECORD = """
INSERT INTO tenure_records (key, record, fence, expires_at) VALUES (:key, :record, :fence, :expires_at)
ON CONFLICT (key) DO UPDATE SET
    record = excluded.record, fence = excluded.fence, expires_at = excluded.expires_at
"""

# A few expired records go with every record stored, oldest first: the table stays bounded by
# the records that live, without a sweeper.
DROP_EXPIRED_RECORDS = """
DELETE FROM tenure_records WHERE key IN (
    SELECT key FROM tenure_records WHERE expires_at <= :wall ORDER BY expires_at LIMIT 8
)
"""

# Rate limits: each key's GCRA times (tenure._core.ratelimit), by the host's wall clock.
RATES_SCHEMA = """
CREATE TABLE IF NOT EXISTS tenure_rates (
    key        TEXT PRIMARY KEY,
    tats       TEXT NOT NULL,      -- each rate's theoretical arrival time, Unix seconds
    expires_at REAL NOT NULL       -- the latest of them: a full bucket from then on
) WITHOUT ROWID
"""
RATES_EXPIRY_INDEX = "CREATE INDEX IF NOT EXISTS tenure_rates_expiry ON tenure_rates (expires_at)"

READ_TATS = "SELECT tats FROM tenure_rates WHERE key = :key"
STORE_TATS = """
INSERT INTO tenure_rates (key, tats, expires_at) VALUES (:key, :tats, :expires_at)
ON CONFLICT (key) DO UPDATE SET tats = excluded.tats, expires_at = excluded.expires_at
"""
# A few idle buckets go with every permit taken, oldest first: the table stays bounded by the
# buckets in use, without a sweeper (an idle bucket is a full one, the same as no row).
DROP_IDLE_RATES = """
DELETE FROM tenure_rates WHERE key IN (
    SELECT key FROM tenure_rates WHERE expires_at <= :now ORDER BY expires_at LIMIT 8
)
"""

# Small states kept by update_state (a shared circuit breaker's record), by the host's wall clock.
STATES_SCHEMA = """
CREATE TABLE IF NOT EXISTS tenure_states (
    key        TEXT PRIMARY KEY,
    value      BLOB NOT NULL,
    expires_at REAL NOT NULL       -- Unix seconds: from then on the same as no row
) WITHOUT ROWID
"""
STATES_EXPIRY_INDEX = "CREATE INDEX IF NOT EXISTS tenure_states_expiry ON tenure_states (expires_at)"

READ_STATE = "SELECT value FROM tenure_states WHERE key = :key AND expires_at > :now"
STORE_STATE = """
INSERT INTO tenure_states (key, value, expires_at) VALUES (:key, :value, :expires_at)
ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at
"""
# A few expired states go with every write, oldest first: the table stays bounded by the live.
DROP_EXPIRED_STATES = """
DELETE FROM tenure_states WHERE key IN (
    SELECT key FROM tenure_states WHERE expires_at <= :now ORDER BY expires_at LIMIT 8
)
"""
