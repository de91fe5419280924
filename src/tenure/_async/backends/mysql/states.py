"""Small states on ``mysql://`` (both modes; ``update_state``): a row each, one transaction.

A key's state is a row of ``tenure_states`` (InnoDB; a BLAKE2b digest of the key is its primary
key, as ``tenure_rates``'s): its bytes and when they expire, in seconds of the server's clock.
The change is Python (a shared breaker runs ``breaker_step``), so an update is one transaction
of two round trips on one pooled connection:

1. ``START TRANSACTION`` (READ COMMITTED: no gap locks); ``INSERT ... ON DUPLICATE KEY UPDATE``
   creates the row if missing and either way leaves it locked exclusively (a plain INSERT
   IGNORE would take a shared lock, and two updates upgrading theirs would deadlock); then
   ``SELECT ... FOR UPDATE`` reads the bytes, their expiry and ``SYSDATE(6)`` under that lock;
2. the change runs here; then ``UPDATE`` (if it stores bytes) and ``COMMIT``.

Any failure closes the connection, which rolls the transaction back. Rows are not swept: a
breaker's state is one row per breaker name, rewritten in place.
"""

from __future__ import annotations

from tenure._async.backends.base import StateChange, T
from tenure._async.backends.mysql.connection import AsyncMySQLPool, AsyncSession
from tenure._core.keys import key_digest
from tenure._exceptions import BackendProtocolError

KEY_DIGEST = 56  # hex digits of the key's BLAKE2b digest: the 28-byte primary key

CREATE_STATES = """
CREATE TABLE IF NOT EXISTS tenure_states (
    key_hash   BINARY(28) NOT NULL PRIMARY KEY,     -- BLAKE2b of the key: keys run to ~1.6 KB
    state_key  TEXT CHARACTER SET utf8mb4 NOT NULL, -- the key itself, for inspection
    value      MEDIUMBLOB NULL,                     -- NULL: a row only made to be locked
    expires_at DOUBLE NOT NULL                      -- epoch seconds: from then on as no row
) ENGINE=InnoDB
"""

LOCK = """SET time_zone = '+00:00';
SET TRANSACTION ISOLATION LEVEL READ COMMITTED;
START TRANSACTION;
INSERT INTO tenure_states (key_hash, state_key, value, expires_at)
VALUES (UNHEX(%(hash)s), %(key)s, NULL, 0) ON DUPLICATE KEY UPDATE expires_at = expires_at;
SELECT value, expires_at, UNIX_TIMESTAMP(SYSDATE(6)) + 0e0 FROM tenure_states
WHERE key_hash = UNHEX(%(hash)s) FOR UPDATE
"""
WRITE = """UPDATE tenure_states SET value = UNHEX(%(value)s), expires_at = %(expires_at)s
WHERE key_hash = UNHEX(%(hash)s);
COMMIT
"""


class AsyncMySQLStates:
    """The ``update_state`` of both modes, mixed into their stores."""

    _pool: AsyncMySQLPool

    async def update_state(self, key: str, change: StateChange[T], ttl: float) -> T:
        params = {"hash": key_digest(key, length=KEY_DIGEST), "key": key}
        session, reply = await self._pool.run(LOCK, params)  # closed by the pool if it failed
        try:
            if len(reply.rows) != 1 or len(reply.rows[0]) != 3:
                raise BackendProtocolError(f"{self._pool.url}: the state of {key!r} came back {reply.rows!r}")
            stored, expires_at, now = reply.rows[0]
            now = float(now)
            value, result = change(bytes(stored) if stored is not None and expires_at > now else None, now)
            if value is None:
                await self._pool.execute(session, "COMMIT", {})
            else:
                write = {**params, "value": value.hex(), "expires_at": now + ttl}
                await self._pool.execute(session, WRITE, write)
        except BaseException:
            self._pool.discard(session)  # closing it rolls the transaction back
            raise
        self._pool.checkin(session)
        return result

    async def _start_states(self, session: AsyncSession) -> None:
        """Create the states table, on ``session``."""
        await self._pool.execute(session, CREATE_STATES, {})
