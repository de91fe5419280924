# GENERATED from src/tenure/_async/backends/mysql/sql.py by scripts/unasync.py: do not edit; edit the source and re-run.
"""SQL text, lock names and URL reading for the ``mysql://`` backend, without any I/O.

Placeholders are ``%(name)s``, filled with the driver's own escaping (``Connection.escape``).
Every statement is autocommitted on its own, and each acquisition and release is one round trip.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from tenure._config import BackendConfig
from tenure._core.keys import key_digest
from tenure._core.tokens import Owner
from tenure._exceptions import ConfigurationError

LOCK_NAME_PREFIX = "tenure:"
MAX_LOCK_NAME = 64  # GET_LOCK's limit, in characters
DEFAULT_PORT = 3306
MAX_LABEL = 255  # bytes of a holder's label kept in the holder row (characters in table mode)
LONGEST_SERVER_WAIT = 3600.0  # seconds a queued waiter's GET_LOCK waits on the server per statement


def lock_name(key: str) -> str:
    """Return the GET_LOCK name of ``key``: a digest, as GET_LOCK takes at most 64 characters.

    224 bits of BLAKE2b: distinct keys do not collide in practice; lower-case hex, because
    GET_LOCK names compare case-insensitively.
    """
    name = LOCK_NAME_PREFIX + key_digest(key, length=MAX_LOCK_NAME - len(LOCK_NAME_PREFIX) - 1)
    assert len(name) <= MAX_LOCK_NAME
    return name


def label_text(label: object) -> str:
    """Return a label read back from a byte column (advisory) or a text column (table)."""
    return label.decode("utf-8", "replace") if isinstance(label, (bytes, bytearray)) else str(label)


def holder_params(owner: Owner, ttl: float) -> dict[str, object]:
    """Return a holder row's owner, label and ttl params (advisory mode)."""
    # At most 255 bytes of UTF-8 (a byte column keeps the MEMORY table's fixed-width rows small).
    label = owner.label.encode("utf-8", "replace")[:MAX_LABEL].decode("utf-8", "ignore")
    return {"owner": owner.token, "label": label, "ttl": ttl}


def idle_limit(ttl: float) -> int:
    """Return the session's ``wait_timeout`` for a hold of ``ttl`` seconds (whole seconds, >= 1)."""
    return max(1, math.ceil(ttl))


def connection_options(config: BackendConfig) -> dict[str, object]:
    """Return host, port, user, password and database from a ``mysql://`` URL; no I/O.

    Raises ``ConfigurationError`` for a URL without exactly one host or without a database.
    """
    url = config.url
    if len(url.hosts) != 1:
        raise ConfigurationError(f"mysql:// takes exactly one host[:port] (got {url})")
    database = url.path.strip("/")
    if not database or "/" in database:
        raise ConfigurationError(f"mysql:// needs a database name, e.g. mysql://user@host/locks (got {url})")
    host = url.hosts[0]
    return {
        "host": host.host,
        "port": host.port or DEFAULT_PORT,
        "user": url.username or "",
        "password": url.password or "",
        "db": database,
    }


# Run before CREATE ... IF NOT EXISTS, whose "already exists" notes the drivers turn into warnings.
QUIET_NOTES = "SET SESSION sql_notes = 0"

# -- advisory mode: GET_LOCK on a few shared sessions, fences from a sequence ----------------

# Fences come from one server-wide SEQUENCE (MariaDB >= 10.3): drawing a value writes nothing
# per acquisition (values are cached in memory; running out of them stores the end of the next
# 1000). That store is not flushed by the drawing statement's commit, whatever
# innodb_flush_log_at_trx_commit says: after a crash (kill -9 of mariadbd, tests/test_mysql.py)
# the sequence can resume below values already handed out. So fences restart FENCE_JUMP higher
# after every restart of the server (FENCE_EPOCH). One sequence for every name is still
# strictly monotonic per name.
CREATE_SEQUENCE = "CREATE SEQUENCE IF NOT EXISTS tenure_fence_seq START WITH 1 INCREMENT BY 1 CACHE 1000"

# Far more values than a server hands out between two flushes of its redo log (InnoDB writes
# and flushes it at least once a second); 2^31 restarts fit below BIGINT's end.
FENCE_JUMP = 2**32

# The current epoch: a MEMORY table, empty after every restart of the server.
CREATE_EPOCH = """
CREATE TABLE IF NOT EXISTS tenure_fence_epoch (
    since DATETIME(6) NOT NULL                      -- server UTC time the fences restarted
) ENGINE=MEMORY
"""

# Every epoch, in InnoDB: inserting one commits a transaction, which flushes the redo log
# (with the default innodb_flush_log_at_trx_commit=1), the jump of the sequence included.
CREATE_EPOCHS = """
CREATE TABLE IF NOT EXISTS tenure_fence_epochs (
    since      DATETIME(6) NOT NULL,                -- server UTC time the fences restarted
    fence_from BIGINT NOT NULL                      -- the sequence's value after the jump
) ENGINE=InnoDB
"""

# Run on every new connection before it draws a fence (a restart ends every session, so each
# session that can draw one was opened after the last restart): if this server has no epoch
# yet, move the sequence FENCE_JUMP ahead (SETVAL takes only a literal, hence the prepared
# statement), record it, which flushes it, and start the epoch; one client at a time. NEXTVAL
# is drawn only on the branch IF takes. A round trip that finds the epoch changes nothing.
FENCE_EPOCH = f"""
DO GET_LOCK('tenure:fence-epoch', 10);
SET @tenure_jump := IF(EXISTS (SELECT 1 FROM tenure_fence_epoch), NULL,
                       NEXTVAL(tenure_fence_seq) + {FENCE_JUMP});
SET @tenure_setval := IF(@tenure_jump IS NULL, 'DO 0',
                         CONCAT('DO SETVAL(tenure_fence_seq, ', @tenure_jump, ')'));
PREPARE tenure_setval FROM @tenure_setval;
EXECUTE tenure_setval;
DEALLOCATE PREPARE tenure_setval;
INSERT INTO tenure_fence_epochs (since, fence_from)
SELECT UTC_TIMESTAMP(6), @tenure_jump FROM DUAL WHERE @tenure_jump IS NOT NULL;
INSERT INTO tenure_fence_epoch (since) SELECT UTC_TIMESTAMP(6) FROM DUAL WHERE @tenure_jump IS NOT NULL;
DO RELEASE_LOCK('tenure:fence-epoch')
"""

# Who holds what, for holder(): a MEMORY table (no disk write per acquisition). It empties when
# the server restarts, which ends every session and so frees every lock anyway. A row counts
# only while its connection still holds the lock (conn = IS_USED_LOCK(name)), so a crashed
# holder's row reads as free. Release deletes the row; MEMORY rows have a fixed width (about
# 400 bytes here), so the server's max_heap_table_size (16 MB by default) bounds the locks held
# at once to about 40,000.
CREATE_HOLDERS = """
CREATE TABLE IF NOT EXISTS tenure_holders (
    lock_name  VARBINARY(64) NOT NULL PRIMARY KEY,  -- GET_LOCK name: 'tenure:' + digest of the key
    fence      BIGINT NOT NULL,
    owner      CHAR(32) CHARACTER SET ascii NOT NULL,  -- the holder's secret token
    label      VARBINARY(255) NOT NULL,             -- who holds it (UTF-8), for tenure inspect
    ttl        DOUBLE NOT NULL,                     -- seconds the session may stay silent
    conn       BIGINT UNSIGNED NOT NULL,            -- CONNECTION_ID() of the holding session
    renewed_at DATETIME(6) NOT NULL                 -- server UTC time of the last proof of life
) ENGINE=MEMORY
"""

# REPLACE rather than INSERT ... ON DUPLICATE KEY UPDATE: the same effect on this table (a
# name's previous row, if any, is a stale one), a shorter statement, and measured as cheap as a
# bare SELECT GET_LOCK.
_RECORD_HOLDER = """
REPLACE INTO tenure_holders (lock_name, fence, owner, label, ttl, conn, renewed_at)
SELECT %(name)s, LAST_INSERT_ID(NEXTVAL(tenure_fence_seq)), %(owner)s, %(label)s, %(ttl)s,
       CONNECTION_ID(), UTC_TIMESTAMP(6)
FROM DUAL WHERE {taken}
"""

# Take the lock without waiting and, only if taken, draw the fence and record the holder: one
# statement. The WHERE clause runs before the select list, so the fence is drawn after the lock
# is ours (a failed attempt draws none; tests/test_mysql.py checks this). The fence travels back
# in the OK packet's insert id (LAST_INSERT_ID(expr)); affected rows 0 means "held elsewhere"
# (1 or 2 otherwise: a new row, or one that replaced a stale row).
# GET_LOCK must not block here: a MEMORY table stays locked for the whole statement.
ACQUIRE = _RECORD_HOLDER.format(taken="GET_LOCK(%(name)s, 0) = 1")

# A waiter, after ACQUIRE failed: block in GET_LOCK on the server (its wait queue is first come,
# first served, and a release hands the lock straight to the next in line), then record the
# holder and draw the fence, in one round trip whose reply comes only once the wait is over.
# The waiting statement names no table: a MEMORY table would stay locked while it waits, and
# any table's metadata lock held that long would hold up the CREATE ... IF NOT EXISTS of a
# client connecting meanwhile, and with it that client's place in the line (tests/test_mysql.py
# checks the order across many waits). A wait that ends without the lock (its time ran out, or
# KILL QUERY ended it) records nothing and draws no fence.
WAIT_TURN = "DO GET_LOCK(%(name)s, %(wait)s);" + _RECORD_HOLDER.format(
    taken="IS_USED_LOCK(%(name)s) = CONNECTION_ID()"
)

# Prepended to a statement, in the same round trip, when the hold's ttl changes: the server
# ends a session silent for this long, which frees its locks.
SET_IDLE_LIMIT = "SET SESSION wait_timeout = %(idle)s;"

# Release only what this session holds, and forget the holder row in the same step. The row's
# conn check runs before RELEASE_LOCK, so a session that does not hold the lock releases nothing.
RELEASE = """
DELETE FROM tenure_holders
WHERE lock_name = %(name)s AND conn = CONNECTION_ID() AND RELEASE_LOCK(%(name)s) = 1
"""

# A lock this session took but no longer counts as held (its holder row is gone): let it go.
FORGET = "DO RELEASE_LOCK(%(name)s)"

# Renew many holds of one session in one round trip (renew_holds). The probe proves the session
# still holds each lock (a restarted server or a killed session fails it) and records the new
# ttl, an UPDATE per distinct ttl; the round trip itself resets the session's idle timer. Then
# the names this session still holds: each lease's own outcome.
_RENEW_HOLDS = """
UPDATE tenure_holders SET ttl = %(ttl{group})s, renewed_at = UTC_TIMESTAMP(6)
WHERE lock_name IN ({names}) AND conn = CONNECTION_ID() AND IS_USED_LOCK(lock_name) = CONNECTION_ID();
"""
_STILL_HELD = """
SELECT lock_name FROM tenure_holders
WHERE lock_name IN ({names}) AND conn = CONNECTION_ID() AND IS_USED_LOCK(lock_name) = CONNECTION_ID()
"""


def renew_holds(holds: Sequence[tuple[str, float]]) -> tuple[str, dict[str, object]]:
    """Return the round trip renewing ``(lock name, ttl)`` holds of one session, and its params.

    Its reply's rows are the lock names the session still holds (bytes).
    """
    params: dict[str, object] = {}
    by_ttl: dict[float, list[str]] = {}
    for index, (name, ttl) in enumerate(holds):
        params[f"n{index}"] = name
        by_ttl.setdefault(ttl, []).append(f"%(n{index})s")
    parts = []
    for group, (ttl, names) in enumerate(by_ttl.items()):
        params[f"ttl{group}"] = ttl
        parts.append(_RENEW_HOLDS.format(group=group, names=", ".join(names)))
    parts.append(_STILL_HELD.format(names=", ".join(f"%(n{index})s" for index in range(len(holds)))))
    return "".join(parts), params


# Who holds it: only a row whose session really holds the lock now. Remaining = ttl since the
# last renewal, by the server's clock.
HOLDER = """
SELECT label, fence, ttl - TIMESTAMPDIFF(MICROSECOND, renewed_at, UTC_TIMESTAMP(6)) / 1000000
FROM tenure_holders WHERE lock_name = %(name)s AND conn = IS_USED_LOCK(%(name)s)
"""

# wait_released, a hint: wait in the line for the lock and give it back at once. Nothing calls
# it while plain waiters queue (``plain_waiters_queue``), but the seam offers it.
WAIT_RELEASED = "SELECT GET_LOCK(%(name)s, %(wait)s), RELEASE_LOCK(%(name)s)"

# -- table mode: a lease table with expiry by the server's clock -----------------------------

CREATE_LEASES = """
CREATE TABLE IF NOT EXISTS tenure_leases (
    lock_name  VARBINARY(64) NOT NULL PRIMARY KEY,  -- 'tenure:' + digest of the key
    owner      CHAR(32) NULL,                       -- the holder's secret token; NULL while free
    label      VARCHAR(255) NULL,
    fence      BIGINT NOT NULL,                     -- bumped by every acquisition, never reset
    expires_at DATETIME(6) NOT NULL                 -- server UTC time
) ENGINE=InnoDB
"""

# Take the row if it is free or expired, bumping the fence: one statement. A new row reports
# 1 affected row (fence 1); a taken-over row 2, its new fence in the insert id; a row held by
# someone else 0 (no column changes). The assignments run left to right and each sees the
# columns already set, so the takeover decision is made once, first, into a session variable.
TABLE_ACQUIRE = """
INSERT INTO tenure_leases (lock_name, owner, label, fence, expires_at)
VALUES (%(name)s, %(owner)s, %(label)s, 1, UTC_TIMESTAMP(6) + INTERVAL %(ttl_us)s MICROSECOND)
ON DUPLICATE KEY UPDATE
    fence = IF(@tenure_take := (owner IS NULL OR expires_at <= UTC_TIMESTAMP(6)),
               LAST_INSERT_ID(fence + 1), fence),
    owner = IF(@tenure_take, VALUES(owner), owner),
    label = IF(@tenure_take, VALUES(label), label),
    expires_at = IF(@tenure_take, VALUES(expires_at), expires_at)
"""

# Release checks the owner; an expired lease is never revived (nor renewed, below).
TABLE_RELEASE = """
UPDATE tenure_leases SET owner = NULL, label = NULL, expires_at = UTC_TIMESTAMP(6)
WHERE lock_name = %(name)s AND owner = %(owner)s AND expires_at > UTC_TIMESTAMP(6)
"""

# Renew many leases in one round trip (table_renew_many): an UPDATE per distinct ttl, each
# checking the owner and that the lease has not expired, then the (name, owner) pairs now live:
# those renewed, as an expired lease is never revived and a live one never taken by another.
_TABLE_RENEW_SOME = """
UPDATE tenure_leases SET expires_at = UTC_TIMESTAMP(6) + INTERVAL %(us{group})s MICROSECOND
WHERE lock_name IN ({names}) AND (lock_name, owner) IN ({pairs}) AND expires_at > UTC_TIMESTAMP(6);
"""
_TABLE_LIVE = """
SELECT lock_name, owner FROM tenure_leases
WHERE lock_name IN ({names}) AND (lock_name, owner) IN ({pairs}) AND expires_at > UTC_TIMESTAMP(6)
"""


def table_renew_many(leases: Sequence[tuple[str, str, float]]) -> tuple[str, dict[str, object]]:
    """Return the round trip renewing ``(lock name, owner, ttl)`` leases, and its params.

    Its reply's rows are the ``(lock name, owner)`` pairs renewed (the name as bytes).
    """
    params: dict[str, object] = {}
    by_ttl: dict[int, list[int]] = {}
    for index, (name, owner, ttl) in enumerate(leases):
        params[f"n{index}"], params[f"o{index}"] = name, owner
        by_ttl.setdefault(micros(ttl), []).append(index)

    def where(indexes: Sequence[int]) -> dict[str, str]:
        return {
            "names": ", ".join(f"%(n{i})s" for i in indexes),
            "pairs": ", ".join(f"(%(n{i})s, %(o{i})s)" for i in indexes),
        }

    parts = []
    for group, (us, indexes) in enumerate(by_ttl.items()):
        params[f"us{group}"] = us
        parts.append(_TABLE_RENEW_SOME.format(group=group, **where(indexes)))
    parts.append(_TABLE_LIVE.format(**where(range(len(leases)))))
    return "".join(parts), params


TABLE_HOLDER = """
SELECT label, fence, TIMESTAMPDIFF(MICROSECOND, UTC_TIMESTAMP(6), expires_at) / 1000000
FROM tenure_leases
WHERE lock_name = %(name)s AND owner IS NOT NULL AND expires_at > UTC_TIMESTAMP(6)
"""


def micros(seconds: float) -> int:
    """Return ``seconds`` as whole microseconds (at least 1)."""
    return max(1, round(seconds * 1_000_000))
