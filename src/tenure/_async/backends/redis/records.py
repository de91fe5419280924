r"""The Lua scripts of the ``redis://`` backend's idempotency records (``Capability.RECORDS``).

A run of an idempotency key is the key's lock, taken by the lock's own ``take`` (ACQUIRE), so it
is renewed, released and described by the lock's scripts. Beside the lock's keys (one hash tag,
one cluster slot: ``scripts.py``), a key keeps

    {<key>}:record        a string: the run's fence in digits, a newline, the record's bytes;
                          PX the record's ttl, so a live record's presence is all a hit reads

and nothing lives forever: the record expires with its ttl, the lease with its PX, and a run's
fence counter ``{<key>}:fence`` is given its lease's expiry plus a grace when the run begins and
whenever RENEW_RUNS renews the lease, so a failed run's (released) or a dead runner's (expired)
counter goes soon after the lease; FINISH_RUN deletes it outright, the record keeping the fence.
A run's lease is renewed by RENEW_RUNS, not by the lock's RENEW: the store knows the runs it
began (``RunLeases``), so a lock's renewal never pays for a counter it does not have. A next run
then starts a new counter from the server's ``TIME`` in microseconds (``bump_fence``), above every
fence the key had, so fences of a key still only grow (the lock's caveat: unless more than one run
per microsecond was ever begun on it, or the server's clock stepped back).
"""

from __future__ import annotations

from tenure._async.backends.base import Renewal
from tenure._async.backends.redis.scripts import OWNED_BY, TAKE, digest
from tenure._core.tokens import Owner

RECORD_LIMIT = 4 * 1024 * 1024
"""Largest record kept: a hit copies it through Lua while the server waits (~0.5-1.5 ms per MiB)."""


class RunLeases:
    """The runs a store began and has not ended yet: whose renewals renew their fence counters too.

    A run ends in FINISH_RUN or in the lock's RELEASE (a failed run, an interrupted begin), both
    through this store, so the table holds only runs in progress.
    """

    def __init__(self) -> None:
        self._tokens: dict[str, str] = {}  # key -> the token of the run that holds it

    def __bool__(self) -> bool:
        return bool(self._tokens)

    def began(self, key: str, owner: Owner) -> None:
        self._tokens[key] = owner.token

    def ended(self, key: str, owner: Owner) -> None:
        if self._tokens.get(key) == owner.token:
            del self._tokens[key]

    def holds(self, renewal: Renewal) -> bool:
        return self._tokens.get(renewal.key) == renewal.owner.token


# How long a run's fence counter outlives its lease: a margin, so that no reader finds the lease
# without its fence, whatever the server's clock did between two commands.
_FENCE_GRACE = r"""
local FENCE_GRACE_MS = 1000
"""

# The signal a finished run leaves (beside the lock's "1"): a waiter that pops it knows a record is
# there, so the hit it then finds passes the wake-up on (``WokenKeys``).
RECORD_SIGNAL = b"record"


class WokenKeys:
    """Keys whose waiter popped a record's signal and has not begun again: its hit passes it on.

    Bounded: a waiter interrupted between its wake-up and its next begin leaves its key behind,
    whose next hit then pushes one needless signal (it expires in 2 s).
    """

    LIMIT = 1024

    def __init__(self) -> None:
        self._keys: set[str] = set()

    def woke(self, key: str, popped: bytes | str | None) -> None:
        if popped is not None and (popped == RECORD_SIGNAL or popped == RECORD_SIGNAL.decode()):
            if len(self._keys) >= self.LIMIT:
                self._keys.clear()
            self._keys.add(key)

    def take(self, key: str) -> bool:
        """Return whether ``key``'s waiter was woken by a record, forgetting it."""
        if key in self._keys:
            self._keys.discard(key)
            return True
        return False


_PASS_WAKE_ON = r"""
-- A finished run wakes one waiter, as a release does; every duplicate waiting for its result
-- should wake, so a waiter woken by the record's signal passes it on when it finds the record (a
-- short chain, one hop per waiter). Other hits, the usual replays, read and write nothing more.
local function pass_wake_on(prefix)
    local signal = prefix .. ':signal'
    if redis.call('LLEN', signal) == 0 then
        redis.call('RPUSH', signal, 'record')
        redis.call('PEXPIRE', signal, 2000)
    end
end
"""

BEGIN_RUN = (
    TAKE
    + _FENCE_GRACE
    + _PASS_WAKE_ON
    + r"""
-- Return the key's live record; else take its lease as ACQUIRE does, the fence counter expiring
-- a grace after the lease. A hit is one GET: the record's own PX expiry makes its presence
-- enough, and its time left, which a replay does not use, is not read.
-- ARGV[1] prefix, ARGV[2] owner token, ARGV[3] lease ttl in ms, ARGV[4] holder label,
-- ARGV[5] '1' if the caller was woken by a record's signal (it passes the wake-up on)
-- Returns: the record's value ("<fence>\n<record>"); else the new fence, or the negated
-- remaining ms of the run that holds the key (-1: no expiry).
local prefix = ARGV[1]
local value = redis.call('GET', prefix .. ':record')
if value then
    if ARGV[5] == '1' then
        pass_wake_on(prefix)
    end
    return value
end
local fence = take(prefix, ARGV[2], ARGV[3], ARGV[4])
if fence > 0 then
    redis.call('PEXPIRE', prefix .. ':fence', ARGV[3] + FENCE_GRACE_MS)
end
return fence
"""
)

FINISH_RUN = (
    OWNED_BY
    + r"""
-- Store the record with the run's fence and end the run's lease, if the owner still holds it;
-- wake a waiter with the record's signal (a run's key has no fair line to hand over to).
-- ARGV[1] prefix, ARGV[2] owner token, ARGV[3] the record, ARGV[4] its ttl in ms,
-- ARGV[5] ms the wake-up signal stays readable
-- Returns: 1 if stored, 0 if the owner no longer holds the lease (nothing stored).
local prefix = ARGV[1]
if not owned_by(redis.call('GET', prefix .. ':lock'), ARGV[2]) then
    return 0
end
local fence = redis.call('GET', prefix .. ':fence')
if not fence then
    return redis.error_reply('the fence counter of a held idempotency key is missing (evicted?)')
end
redis.call('SET', prefix .. ':record', fence .. '\n' .. ARGV[3], 'PX', ARGV[4])
-- The record keeps the fence; a next run's counter starts above it from the server's clock.
redis.call('DEL', prefix .. ':lock', prefix .. ':fence')
-- A pending "1" (a failed run's release nobody took) gives way: the waiters want the record.
local signal = prefix .. ':signal'
redis.call('DEL', signal)
redis.call('RPUSH', signal, 'record')
redis.call('PEXPIRE', signal, ARGV[5])
return 1
"""
)

RENEW_RUNS = (
    OWNED_BY
    + _FENCE_GRACE
    + r"""
-- Renew runs' leases as RENEW renews a lock's, each with its fence counter, which must outlive it.
-- KEYS[2i-1] the lease of run i ("<prefix>:lock"), KEYS[2i] its fence counter ("<prefix>:fence"),
-- ARGV[2i-1] its owner token, ARGV[2i] its ttl in ms
-- Returns: per run, 1 if renewed, 0 if not held by this owner (expired, taken over, server restarted).
local renewed = {}
for i = 1, #KEYS / 2 do
    renewed[i] = 0
    local ttl_ms = ARGV[2 * i]
    if owned_by(redis.call('GET', KEYS[2 * i - 1]), ARGV[2 * i - 1]) then
        redis.call('PEXPIRE', KEYS[2 * i - 1], ttl_ms)
        redis.call('PEXPIRE', KEYS[2 * i], ttl_ms + FENCE_GRACE_MS)
        renewed[i] = 1
    end
end
return renewed
"""
)

READ_RECORD = r"""
-- The key's record with its time left, for ``tenure inspect``.
-- ARGV[1] prefix
-- Returns: {"<fence>\n<record>", remaining ms}, or nil.
local key = ARGV[1] .. ':record'
local value = redis.call('GET', key)
if not value then
    return nil
end
return {value, redis.call('PTTL', key)}
"""

# The record scripts by name, each with its digest (beside ``scripts.SCRIPTS``).
RECORD_SCRIPTS = {
    name: (source, digest(source))
    for name, source in {
        "BEGIN_RUN": BEGIN_RUN,
        "FINISH_RUN": FINISH_RUN,
        "RENEW_RUNS": RENEW_RUNS,
        "READ_RECORD": READ_RECORD,
    }.items()
}
