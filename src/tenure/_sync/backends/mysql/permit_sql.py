# GENERATED from src/tenure/_async/backends/mysql/permit_sql.py by scripts/unasync.py: do not edit; edit the source and re-run.
"""The SQL of semaphore permits on the ``mysql://`` backend, in both modes, without any I/O.

A permit is the lock of one slot key (``tenure._core.semaphore.permit_key``): in advisory mode
a GET_LOCK on the slot's name with its row in ``tenure_holders``, in table mode the slot's row
in ``tenure_leases``; it is renewed and released as a lock. The semaphore's own row in
``tenure_semaphores`` records the limit its live permits were taken with. Each builder returns
one round trip and its params; its reply's last row says what happened. A read-write lock's
readers and a sequence's tickets are permits too (of their own keys).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tenure._sync.backends.mysql.sql import LOCK_NAME_PREFIX, MAX_LOCK_NAME, label_text
from tenure._core.holder import HolderInfo
from tenure._core.keys import key_digest

GUARD_PREFIX = "tenure-permits:"

CREATE_SEMAPHORES = """
CREATE TABLE IF NOT EXISTS tenure_semaphores (
    lock_name VARBINARY(64) NOT NULL PRIMARY KEY,   -- 'tenure:' + digest of the semaphore's key
    lim       INT NOT NULL                          -- the limit its live permits were taken with
) ENGINE=InnoDB
"""


def guard_name(key: str) -> str:
    """Return the GET_LOCK name that serializes the permit steps of semaphore ``key``.

    Apart from every lock name (another prefix): a fair semaphore's line is the lock of its key.
    """
    name = GUARD_PREFIX + key_digest(key, length=MAX_LOCK_NAME - len(GUARD_PREFIX) - 1)
    assert len(name) <= MAX_LOCK_NAME and not name.startswith(LOCK_NAME_PREFIX)
    return name


def _names(prefix: str, names: Sequence[str], params: dict[str, object]) -> str:
    """Add ``names`` to ``params`` as ``<prefix><i>``; return their placeholders, comma-separated."""
    for index, name in enumerate(names):
        params[f"{prefix}{index}"] = name
    return ", ".join(f"%({prefix}{index})s" for index in range(len(names)))


# -- advisory mode ---------------------------------------------------------------------------

# One round trip under the semaphore's guard (a user lock held only for this round trip, so no
# other permit step of the name runs between the limit check and the take): read the recorded
# limit, agree with it (or, when a check is asked, replace it while no permit of the wider
# limit is live), then GET_LOCK(slot, 0) slot by slot in the given order until one is taken
# (CASE stops at the first), and only then draw the fence from the sequence and record the
# holder, as ACQUIRE does. No statement that names a table waits: the guard's wait and the
# slot locks are statements of their own. Its reply: guard taken, recorded limit, agreed,
# the slot's name taken (or NULL) and its fence.
_ADVISORY_TAKE = """
SET @tenure_guard := GET_LOCK(%(guard)s, %(guard_wait)s);
SET @tenure_rec := (SELECT lim FROM tenure_semaphores WHERE lock_name = %(sem)s);
SET @tenure_ok := COALESCE(@tenure_guard = 1 AND (@tenure_rec IS NULL OR @tenure_rec = %(limit)s{check}), 0);
INSERT INTO tenure_semaphores (lock_name, lim) SELECT %(sem)s, %(limit)s FROM DUAL
WHERE @tenure_ok = 1 AND NOT (@tenure_rec <=> %(limit)s)
ON DUPLICATE KEY UPDATE lim = VALUES(lim);
SET @tenure_slot := CASE WHEN @tenure_ok = 0 THEN NULL {takes} END;
REPLACE INTO tenure_holders (lock_name, fence, owner, label, ttl, conn, renewed_at)
SELECT @tenure_slot, LAST_INSERT_ID(NEXTVAL(tenure_fence_seq)), %(owner)s, %(label)s, %(ttl)s,
       CONNECTION_ID(), UTC_TIMESTAMP(6)
FROM DUAL WHERE @tenure_slot IS NOT NULL;
DO RELEASE_LOCK(%(guard)s);
SELECT @tenure_guard, @tenure_rec, @tenure_ok, @tenure_slot, IF(@tenure_slot IS NULL, NULL, LAST_INSERT_ID())
"""

# A permit is live while its holder row's session holds the slot's lock (a waiter that holds
# it for an instant in wait_permit_released has no row, and is not a permit).
_ADVISORY_NONE_LIVE = """ OR (@tenure_rec <= %(width)s AND NOT EXISTS (
    SELECT 1 FROM tenure_holders WHERE lock_name IN ({names}) AND conn = IS_USED_LOCK(lock_name)))"""


def advisory_take(
    semaphore: str,
    guard: str,
    limit: int,
    candidates: Sequence[str],
    wider: Sequence[str] | None,
    holder: dict[str, object],
    guard_wait: float,
) -> tuple[str, dict[str, object]]:
    """Return the round trip taking one of ``candidates`` (slot lock names, in order), and its params.

    ``wider`` (the lock names of every slot of a wider limit) asks for the check that lets the
    recorded limit be replaced while none of them is live; ``holder`` is ACQUIRE's owner,
    label and ttl; ``guard_wait`` how long to wait for another client's step of the name.
    """
    params: dict[str, object] = {**holder, "sem": semaphore, "guard": guard, "limit": limit}
    params["guard_wait"] = round(guard_wait, 3)
    takes = " ".join(
        f"WHEN GET_LOCK(%(c{index})s, 0) = 1 THEN %(c{index})s" for index in range(len(candidates))
    )
    _names("c", candidates, params)
    check = ""
    if wider is not None:
        params["width"] = len(wider)
        check = _ADVISORY_NONE_LIVE.format(names=_names("w", wider, params))
    return _ADVISORY_TAKE.format(check=check, takes=takes), params


_ADVISORY_HOLDERS = """
SELECT lock_name, label, fence, ttl - TIMESTAMPDIFF(MICROSECOND, renewed_at, UTC_TIMESTAMP(6)) / 1000000
FROM tenure_holders WHERE lock_name IN ({names}) AND conn = IS_USED_LOCK(lock_name)
"""


def advisory_holders(names: Sequence[str]) -> tuple[str, dict[str, object]]:
    """Return the read of the live permits among slot lock ``names``: (name, label, fence, remaining)."""
    params: dict[str, object] = {}
    return _ADVISORY_HOLDERS.format(names=_names("n", names, params)), params


# wait_permit_released, a hint: wait in the server's line of the live permit taken first (the
# likeliest to end first), or of ``any`` slot if none is live, and give it back at once.
_ADVISORY_WAIT = """
SET @tenure_wait := COALESCE((SELECT lock_name FROM tenure_holders
    WHERE lock_name IN ({names}) AND conn = IS_USED_LOCK(lock_name) ORDER BY fence LIMIT 1), %(any)s);
SELECT GET_LOCK(@tenure_wait, %(wait)s), RELEASE_LOCK(@tenure_wait)
"""


def advisory_wait(names: Sequence[str], any_name: str, wait: float) -> tuple[str, dict[str, object]]:
    """Return the round trip waiting up to ``wait`` seconds for a permit among ``names`` to end."""
    params: dict[str, object] = {"any": any_name, "wait": round(wait, 3)}
    return _ADVISORY_WAIT.format(names=_names("n", names, params)), params


# -- table mode ------------------------------------------------------------------------------

# One transaction in one round trip. The semaphore's row is created on first use and locked by
# the first statement until COMMIT, so permit steps of one name run one at a time. The free
# slot is picked by a plain read; the take re-checks it under the slot row's lock (a renewal
# still in flight when the read began could have kept it), and a slot found taken then is
# left as it is (the attempt returns no permit, and the fence it drew is skipped). The fence
# is the name's one counter, its key's own row in tenure_leases (a lock on the key, such as a
# read-write lock's writer, bumps it too), bumped without touching that row's lease; a new
# row starts at 1, as TABLE_ACQUIRE's do. Its reply: recorded limit, agreed, the slot's name
# taken (or NULL) and its fence.
_TABLE_TAKE = """
SET TRANSACTION ISOLATION LEVEL REPEATABLE READ;
START TRANSACTION;
INSERT INTO tenure_semaphores (lock_name, lim) VALUES (%(sem)s, %(limit)s) ON DUPLICATE KEY UPDATE lim = lim;
SELECT lim INTO @tenure_rec FROM tenure_semaphores WHERE lock_name = %(sem)s FOR UPDATE;
{agree}
SET @tenure_free := IF(@tenure_ok, (
    SELECT slot.name FROM ({slots}) AS slot
    LEFT JOIN tenure_leases AS lease ON lease.lock_name = slot.name
        AND lease.owner IS NOT NULL AND lease.expires_at > UTC_TIMESTAMP(6)
    WHERE lease.lock_name IS NULL ORDER BY slot.pos LIMIT 1), NULL);
UPDATE tenure_semaphores SET lim = %(limit)s WHERE lock_name = %(sem)s AND @tenure_ok AND lim <> %(limit)s;
INSERT INTO tenure_leases (lock_name, owner, label, fence, expires_at)
SELECT %(sem)s, NULL, NULL, LAST_INSERT_ID(1), UTC_TIMESTAMP(6) FROM DUAL WHERE @tenure_free IS NOT NULL
ON DUPLICATE KEY UPDATE fence = LAST_INSERT_ID(fence + 1);
SET @tenure_fence := IF(@tenure_free IS NULL, NULL, LAST_INSERT_ID()),
    @tenure_take := @tenure_free IS NOT NULL;
INSERT INTO tenure_leases (lock_name, owner, label, fence, expires_at)
SELECT @tenure_free, %(owner)s, %(label)s, @tenure_fence, UTC_TIMESTAMP(6) + INTERVAL %(ttl_us)s MICROSECOND
FROM DUAL WHERE @tenure_free IS NOT NULL
ON DUPLICATE KEY UPDATE
    fence = IF(@tenure_take := (owner IS NULL OR expires_at <= UTC_TIMESTAMP(6)), VALUES(fence), fence),
    owner = IF(@tenure_take, VALUES(owner), owner),
    label = IF(@tenure_take, VALUES(label), label),
    expires_at = IF(@tenure_take, VALUES(expires_at), expires_at);
COMMIT;
SELECT @tenure_rec, @tenure_ok, IF(@tenure_take, @tenure_free, NULL), @tenure_fence
"""

_TABLE_AGREE = "SET @tenure_ok := @tenure_rec = %(limit)s;"

# Replacing the limit: a locking read, which waits for renewals in flight and sees what they
# committed (a plain read could miss a renewal made just before its lease would have expired).
_TABLE_NONE_LIVE = """
SELECT COUNT(*) INTO @tenure_live FROM tenure_leases
WHERE lock_name IN ({names}) AND owner IS NOT NULL AND expires_at > UTC_TIMESTAMP(6) LOCK IN SHARE MODE;
SET @tenure_ok := @tenure_rec = %(limit)s OR (@tenure_rec <= %(width)s AND @tenure_live = 0);"""


def table_take(
    semaphore: str, limit: int, order: Sequence[str], wider: Sequence[str] | None, lease: dict[str, object]
) -> tuple[str, dict[str, object]]:
    """Return the transaction taking the first free slot of ``order`` (lock names), and its params.

    ``wider`` asks for the limit check over every slot of a wider limit, as ``advisory_take``;
    ``lease`` is TABLE_ACQUIRE's owner, label and ttl_us.
    """
    params: dict[str, object] = {**lease, "sem": semaphore, "limit": limit}
    _names("s", order, params)
    # The first row's CAST makes the column binary, as lock_name is: the join then uses its key.
    slots = " UNION ALL ".join(
        f"SELECT {pos} AS pos, CAST(%(s{pos})s AS BINARY) AS name"
        if pos == 0
        else f"SELECT {pos}, %(s{pos})s"
        for pos in range(len(order))
    )
    agree = _TABLE_AGREE
    if wider is not None:
        params["width"] = len(wider)
        agree = _TABLE_NONE_LIVE.format(names=_names("w", wider, params))
    return _TABLE_TAKE.format(agree=agree, slots=slots), params


_TABLE_HOLDERS = """
SELECT lock_name, label, fence, TIMESTAMPDIFF(MICROSECOND, UTC_TIMESTAMP(6), expires_at) / 1000000
FROM tenure_leases
WHERE lock_name IN ({names}) AND owner IS NOT NULL AND expires_at > UTC_TIMESTAMP(6)
"""


def table_holders(names: Sequence[str]) -> tuple[str, dict[str, object]]:
    """Return the read of the live permits among slot lock ``names``: (name, label, fence, remaining)."""
    params: dict[str, object] = {}
    return _TABLE_HOLDERS.format(names=_names("n", names, params)), params


def holders_in_slot_order(names: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[HolderInfo]:
    """Return the holders read as (lock name, label, fence, remaining), slot 0 first."""
    slot = {name: index for index, name in enumerate(names)}
    ordered = sorted(rows, key=lambda row: slot[label_text(row[0])])
    return [
        HolderInfo(label_text(label), int(fence), max(0.0, float(remaining)))
        for _, label, fence, remaining in ordered
    ]
