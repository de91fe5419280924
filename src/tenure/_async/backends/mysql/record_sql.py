"""The SQL of idempotency records on the ``mysql://`` backend, in both modes, without any I/O.

A record is what a finished run left under its key: a row of ``tenure_records`` (InnoDB, so it
outlives a restart), keyed by the run's lock name, with the run's fence and an expiry by the
server's clock. A run is the key's lease: its GET_LOCK (advisory mode) or its lease row (table
mode). Each step is one round trip whose last reply says what happened.
"""

from __future__ import annotations

RECORD_LIMIT_CAP = 16 * 1024 * 1024  # a hit reads the whole record back in one row
PACKET_HEADROOM = 64 * 1024  # the statement around the record, with room to spare
MARIADB_DEFAULT_PACKET = 16 * 1024 * 1024  # max_allowed_packet's default since MariaDB 10.2.4


def record_limit(max_allowed_packet: int) -> int:
    """Return the largest record a server with this ``max_allowed_packet`` is sure to take.

    The drivers speak the text protocol, so a record travels inside its INSERT as hex digits,
    two per byte (``record_hex``), and the whole statement must fit in one packet: half the
    packet, less the statement. A larger one would make the server drop the connection, and
    with it every lock on the session.
    """
    return max(0, min(RECORD_LIMIT_CAP, (max_allowed_packet - PACKET_HEADROOM) // 2))


def record_hex(record: bytes) -> str:
    """Return ``record`` as the statements' ``record`` param: hex digits, which UNHEX() turns back.

    Not a bytes param: aiomysql cannot escape bytes with PyMySQL >= 1.1 (a name it imports
    from PyMySQL is a placeholder string there), and hex has a fixed size besides.
    """
    return record.hex()


CREATE_RECORDS = """
CREATE TABLE IF NOT EXISTS tenure_records (
    lock_name  VARBINARY(64) NOT NULL PRIMARY KEY,  -- the run's lock name: 'tenure:' + digest of the key
    record     LONGBLOB NOT NULL,                   -- what the run left: opaque bytes
    fence      BIGINT NOT NULL,                     -- the fence of the run that stored it
    owner      CHAR(32) CHARACTER SET ascii NOT NULL,  -- that run's token: see STORED_BY
    expires_at DATETIME(6) NOT NULL,                -- server UTC time
    KEY tenure_records_expiry (expires_at)
) ENGINE=InnoDB
"""

# The server's packet limit, read with the tables' creation: it bounds the records (record_limit).
PACKET_LIMIT = "SELECT @@max_allowed_packet"

# A finish whose connection broke under it: did it store its record? (The owner is a secret
# token, unique to the run.)
STORED_BY = "SELECT COUNT(*) FROM tenure_records WHERE lock_name = %(name)s AND owner = %(owner)s"

# Its reply: the record, its fence and the microseconds it still lives by the server's clock
# (an expired record: <= 0). A replay is this statement alone: a lookup by primary key whose
# expiry is judged by the caller, an integer, no DECIMAL to parse (each saves ~5 us a call).
READ_RECORD = """
SELECT record, fence, TIMESTAMPDIFF(MICROSECOND, UTC_TIMESTAMP(6), expires_at)
FROM tenure_records WHERE lock_name = %(name)s
"""

# Whether the key has a live record, into @tenure_live. {lock} makes it a locking read, which
# sees the latest commit rather than the transaction's first snapshot.
_LIVE_RECORD = """
SELECT COUNT(*) INTO @tenure_live FROM tenure_records
WHERE lock_name = %(name)s AND expires_at > @tenure_now{lock};
"""

# The reply of both begin steps: taken, the new fence, then the live record, its fence and its
# seconds left (NULLs if none). The record is read here, not kept in a session variable, which
# would hold its memory on the server as long as the session lives.
_BEGUN = """
SELECT @tenure_taken > 0 AND @tenure_live = 0, @tenure_fence, r.record, r.fence,
       TIMESTAMPDIFF(MICROSECOND, UTC_TIMESTAMP(6), r.expires_at) / 1000000
FROM (SELECT 1) AS one
LEFT JOIN tenure_records AS r ON r.lock_name = %(name)s AND r.expires_at > UTC_TIMESTAMP(6)
"""

# A few expired records go with every record stored, oldest first, so the table stays bounded
# by the records that live, without a sweeper. READ COMMITTED: it locks the rows it deletes
# and no gap, so two finishing runs never wait on each other's new records.
_DROP_EXPIRED = "DELETE FROM tenure_records WHERE expires_at <= @tenure_now ORDER BY expires_at LIMIT 8;\n"

_STORE_RECORD = """
INSERT INTO tenure_records (lock_name, record, fence, owner, expires_at)
SELECT %(name)s, UNHEX(%(record)s), @tenure_run, %(owner)s, @tenure_now + INTERVAL %(ttl_us)s MICROSECOND
FROM DUAL WHERE @tenure_run IS NOT NULL
ON DUPLICATE KEY UPDATE
    record = VALUES(record), fence = VALUES(fence), owner = VALUES(owner), expires_at = VALUES(expires_at);
"""

# -- advisory mode: the run is a GET_LOCK on the session that holds it -------------------------

# begin_run, on the shared session that will hold the lock. A live record is returned without
# touching the lock; else GET_LOCK(name, 0) (not when %(take)s is 0: this session holds the name
# already, and GET_LOCK would re-enter it). That first look is a plain read (SELECT ... INTO;
# a subquery of SET would lock under REPEATABLE READ), so a step never waits while the lock is
# held. Once taken, the record is read again: a run that finished meanwhile committed its record
# before it let the lock go, so it is seen now, and the lock is given back. That read locks: a
# record that a caller's transaction wrote before its run's session was lost (which let this
# step take the lock) is waited for, and seen if it commits (CALLER_ADVISORY_HELD). Only then
# the fence is drawn and the holder recorded, as ACQUIRE does.
ADVISORY_BEGIN = (
    """
SET @tenure_now := UTC_TIMESTAMP(6);
SELECT COUNT(*) INTO @tenure_seen FROM tenure_records WHERE lock_name = %(name)s AND expires_at > @tenure_now;
SET @tenure_got := IF(%(take)s AND @tenure_seen = 0, GET_LOCK(%(name)s, 0), 0);
SELECT COUNT(*) INTO @tenure_live FROM tenure_records
WHERE @tenure_got = 1 AND lock_name = %(name)s AND expires_at > @tenure_now LOCK IN SHARE MODE;
DO IF(@tenure_got = 1 AND @tenure_live > 0, RELEASE_LOCK(%(name)s), 0);
REPLACE INTO tenure_holders (lock_name, fence, owner, label, ttl, conn, renewed_at)
SELECT %(name)s, LAST_INSERT_ID(NEXTVAL(tenure_fence_seq)), %(owner)s, %(label)s, %(ttl)s,
       CONNECTION_ID(), UTC_TIMESTAMP(6)
FROM DUAL WHERE @tenure_got = 1 AND @tenure_live = 0;
SET @tenure_taken := ROW_COUNT();
SET @tenure_fence := LAST_INSERT_ID();
"""
    + _BEGUN
)

# finish_run, on the session that holds the lock: only if its holder row says this session
# holds it for this owner, store the record with the run's fence (autocommitted: durable and
# visible before the lock is let go, so whoever takes the lock next sees it), drop a few
# expired records, and release as RELEASE does. Affected rows 1: stored and released.
ADVISORY_FINISH = (
    """
SET @tenure_now := UTC_TIMESTAMP(6);
SET @tenure_run := (SELECT fence FROM tenure_holders
    WHERE lock_name = %(name)s AND owner = %(owner)s AND conn = CONNECTION_ID()
        AND IS_USED_LOCK(lock_name) = CONNECTION_ID());
"""
    + _STORE_RECORD
    + "SET TRANSACTION ISOLATION LEVEL READ COMMITTED;\n"
    + _DROP_EXPIRED
    + """
DELETE FROM tenure_holders
WHERE @tenure_run IS NOT NULL AND lock_name = %(name)s AND conn = CONNECTION_ID()
    AND RELEASE_LOCK(%(name)s) = 1
"""
)

# -- table mode: the run is the key's lease row ---------------------------------------------

# begin_run: one transaction. A live record (a plain read) leaves the lease alone. Else the
# lease row is taken as TABLE_ACQUIRE takes it, but with a fence of at least the server's time
# in microseconds: finish_run deletes the row, so a run after the record expired starts a new
# one, whose fence still exceeds every earlier one of the key. Then, under the row's lock, the
# record is read again, locking: a run that finished meanwhile (it deleted the row that this
# step then made anew) is seen, and the take is undone. READ COMMITTED: no gap locks, so
# duplicates racing on a new key queue on its row instead of deadlocking.
TABLE_BEGIN = (
    """
SET TRANSACTION ISOLATION LEVEL READ COMMITTED;
START TRANSACTION;
SET @tenure_now := UTC_TIMESTAMP(6);
SET @tenure_seed := TIMESTAMPDIFF(MICROSECOND, '1970-01-01', @tenure_now);
"""
    + _LIVE_RECORD.format(lock="")
    + """INSERT INTO tenure_leases (lock_name, owner, label, fence, expires_at)
SELECT %(name)s, %(owner)s, %(label)s, @tenure_seed, @tenure_now + INTERVAL %(ttl_us)s MICROSECOND
FROM DUAL WHERE @tenure_live = 0
ON DUPLICATE KEY UPDATE
    fence = IF(@tenure_take := (owner IS NULL OR expires_at <= @tenure_now),
               LAST_INSERT_ID(GREATEST(fence + 1, @tenure_seed)), fence),
    owner = IF(@tenure_take, VALUES(owner), owner),
    label = IF(@tenure_take, VALUES(label), label),
    expires_at = IF(@tenure_take, VALUES(expires_at), expires_at);
SET @tenure_taken := ROW_COUNT();
SET @tenure_fence := IF(@tenure_taken = 1, @tenure_seed, LAST_INSERT_ID());
"""
    + _LIVE_RECORD.format(lock=" LOCK IN SHARE MODE")
    + """
DELETE FROM tenure_leases
WHERE @tenure_taken > 0 AND @tenure_live > 0 AND lock_name = %(name)s AND owner = %(owner)s;
COMMIT;
"""
    + _BEGUN
)

# finish_run: one transaction. Only if ``owner`` holds a live lease: delete the lease row (the
# record keeps its fence), store the record, drop a few expired records. Its reply: stored.
TABLE_FINISH = (
    """
SET TRANSACTION ISOLATION LEVEL READ COMMITTED;
START TRANSACTION;
SET @tenure_now := UTC_TIMESTAMP(6);
SELECT MAX(fence) INTO @tenure_run FROM tenure_leases
WHERE lock_name = %(name)s AND owner = %(owner)s AND expires_at > @tenure_now FOR UPDATE;
DELETE FROM tenure_leases WHERE @tenure_run IS NOT NULL AND lock_name = %(name)s AND owner = %(owner)s;
"""
    + _STORE_RECORD
    + _DROP_EXPIRED
    + """COMMIT;
SELECT @tenure_run IS NOT NULL
"""
)

# -- the caller's-transaction option: statements for the caller's own connection ---------------

# Each runs alone in the caller's open transaction, whatever its isolation level: one statement
# per call (its driver may not take several), no session variables (the session is not ours),
# and only locking reads and writes, which see the latest commit rather than the transaction's
# snapshot. The store's tables are named unqualified: the connection's database must be the URL's.

# Both modes: the record, with the run's fence, as _STORE_RECORD stores it. Its new row stays
# locked until the caller's transaction ends: a begin step that reads it locking waits for that.
CALLER_STORE_RECORD = """
INSERT INTO tenure_records (lock_name, record, fence, owner, expires_at)
VALUES (%(name)s, UNHEX(%(record)s), %(fence)s, %(owner)s, UTC_TIMESTAMP(6) + INTERVAL %(ttl_us)s MICROSECOND)
ON DUPLICATE KEY UPDATE
    record = VALUES(record), fence = VALUES(fence), owner = VALUES(owner), expires_at = VALUES(expires_at)
"""

# Advisory mode, after the record: a row only while the run's session still holds its lock. The
# record is written first so that a step that takes the lock after this proof (the session lost
# meanwhile) finds it locked, and then committed (ADVISORY_BEGIN); one that took it before fails
# the proof.
CALLER_ADVISORY_HELD = """
SELECT fence FROM tenure_holders
WHERE lock_name = %(name)s AND owner = %(owner)s AND conn = IS_USED_LOCK(%(name)s)
"""

# Table mode, first: a row only while the run's lease is live, locking it until the caller's
# transaction ends, so no begin step can take it over meanwhile, expired or not (it waits, then
# finds the row gone and the record committed: TABLE_BEGIN's locking read). Then the row goes,
# as with TABLE_FINISH.
CALLER_TABLE_HELD = """
SELECT fence FROM tenure_leases
WHERE lock_name = %(name)s AND owner = %(owner)s AND expires_at > UTC_TIMESTAMP(6) FOR UPDATE
"""
CALLER_TABLE_END_RUN = "DELETE FROM tenure_leases WHERE lock_name = %(name)s AND owner = %(owner)s"

# After the caller's commit, on the store's own session: a few expired records go (in the caller's
# transaction, that DELETE would lock the oldest records, shared by every key, until its commit).
SWEEP_EXPIRED = (
    "SET @tenure_now := UTC_TIMESTAMP(6);\nSET TRANSACTION ISOLATION LEVEL READ COMMITTED;\n" + _DROP_EXPIRED
)
