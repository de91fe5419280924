# GENERATED from src/tenure/_async/backends/redis/scripts.py by scripts/unasync.py: do not edit; edit the source and re-run.
r"""The Lua scripts of the ``redis://`` backend, one per atomic step (Redlock reuses RELEASE).

Keys of one lock share its namespaced key in braces as prefix, each with its own suffix. No
suffix contains a '}' (tokens are hex), so the last '}' of a Redis key ends the lock's key, and
keys of different locks never meet (``namespaced_key`` keeps distinct locks' keys distinct):

    {<key>}:lock          the lease: "<token>\n<label>", with a PX expiry
    {<key>}:fence         the fence counter; only acquisitions bump it, so while the lock is
                          held its value is the holder's fence; a lock's is never deleted, an
                          idempotency run's expires with its lease (``records.py``)
    {<key>}:record        an idempotency key's record (``records.py``), with a PX expiry
    {<key>}:signal        a list pushed on release to wake one waiter (BLPOP)
    {<key>}:queue         fair waiters: zset token -> arrival time (ms)
    {<key>}:queue:alive   fair waiters: zset token -> time (ms) their entry dies unless refreshed
    {<key>}:queue:info    fair waiters: hash token -> "<ttl ms>\n<label>", for a direct hand-over
    {<key>}:wake:<token>  a list a fair waiter BLPOPs; a hand-over pushes the fence there
    {<key>}:changes       a pub/sub channel: elections announce their changes there, for observers
    {<key>}:limit         a semaphore's recorded limit (its ``:fence`` is the name's one counter);
                          each permit slot is a lock of its own (``permit_key``), whose ``:fence``
                          holds the fence its holder was given

The scripts take the prefix in ARGV rather than each key in KEYS because a hand-over must
address the head waiter's wake list, which no client can name in advance; RENEW, which renews
many leases of many locks in one call, touches only their leases and names them in KEYS. The prefix is
wrapped in a hash tag (``{key}``), so every key of one lock lives in one cluster slot (a key
never starts with '}': its namespace has its braces escaped, and a ':' follows it).

A permit step also touches its semaphore's slots, which the script names itself from the
two parts of their keys (``slot_parts``), so one call covers any limit: the keys of one step
then span many hash slots, which a single server (all this backend speaks to) does not mind.

The fence counter survives a server that restarts without persistence and loses every key:
a missing counter starts from the server's ``TIME`` in microseconds, which is larger than any
fence handed out before unless more than one acquisition per microsecond was ever made on the
name, or the server's clock stepped back across the restart.
"""

from __future__ import annotations

import hashlib

from tenure._core.semaphore import permit_key


def key_prefix(key: str) -> str:
    """Return the prefix of every Redis key of lock ``key``: a hash tag, one cluster slot."""
    return "{" + key + "}"


def slot_parts(key: str) -> tuple[str, str]:
    """Return what precedes and follows the slot number in semaphore ``key``'s slot keys.

    A script builds slot ``s``'s prefix as ``'{' .. head .. s .. tail .. '}'``, which is
    ``key_prefix(permit_key(key, s))``: the two keys of slots 0 and 1 differ in that digit only.
    """
    zero, one = permit_key(key, 0), permit_key(key, 1)
    at = next(i for i, (a, b) in enumerate(zip(zero, one, strict=True)) if a != b)
    return zero[:at], zero[at + 1 :]


def milliseconds(seconds: float) -> int:
    """Return ``seconds`` as whole milliseconds, at least 1 (Redis expiries are in ms)."""
    return max(1, round(seconds * 1000))


# Shared Lua, prepended to the scripts that use it: each script carries only what it needs,
# because Redis runs a script's whole text, function definitions included, on every call.
_DIGITS = r"""
-- Lua 5.1 numbers are doubles, and ".." would write a fence of 16 digits as 1.7e+15.
local function digits(n)
    return string.format('%.0f', n)
end
"""

BUMP_FENCE = r"""
local function bump_fence(fence_key)
    local fence = redis.call('INCR', fence_key)
    if fence == 1 then
        -- New name, or a server that lost its data: start above every fence it ever gave.
        local t = redis.call('TIME')
        redis.call('SET', fence_key, t[1] .. string.format('%06d', tonumber(t[2])))
        fence = redis.call('INCR', fence_key)
    end
    return fence
end
"""

OWNED_BY = r"""
local function owned_by(value, token)
    return value and string.sub(value, 1, #token + 1) == token .. '\n'
end
"""

_QUEUE = r"""
local function now_ms()
    local t = redis.call('TIME')
    return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function drop_dead_waiters(prefix, now)
    local dead = redis.call('ZRANGEBYSCORE', prefix .. ':queue:alive', '-inf', now)
    for _, token in ipairs(dead) do
        redis.call('ZREM', prefix .. ':queue', token)
        redis.call('ZREM', prefix .. ':queue:alive', token)
        redis.call('HDEL', prefix .. ':queue:info', token)
    end
end

local function leave_queue(prefix, token)
    redis.call('ZREM', prefix .. ':queue', token)
    redis.call('ZREM', prefix .. ':queue:alive', token)
    redis.call('HDEL', prefix .. ':queue:info', token)
end
"""

_HAND_OVER = r"""
-- Give a free lock to the oldest live fair waiter; else leave a wake-up for a plain waiter.
local function hand_over(prefix, signal_ttl_ms)
    if redis.call('EXISTS', prefix .. ':queue') == 1 then
        drop_dead_waiters(prefix, now_ms())
        local head = redis.call('ZRANGE', prefix .. ':queue', 0, 0)[1]
        if head then
            local info = redis.call('HGET', prefix .. ':queue:info', head)
            local nl = string.find(info, '\n', 1, true)
            local ttl_ms = string.sub(info, 1, nl - 1)
            local label = string.sub(info, nl + 1)
            redis.call('SET', prefix .. ':lock', head .. '\n' .. label, 'PX', ttl_ms)
            local fence = bump_fence(prefix .. ':fence')
            leave_queue(prefix, head)
            local wake = prefix .. ':wake:' .. head
            redis.call('DEL', wake)
            redis.call('RPUSH', wake, digits(fence))
            redis.call('PEXPIRE', wake, signal_ttl_ms)
            return
        end
    end
    -- One pending wake-up is enough: a waiter that finds it stale just tries and waits again.
    local signal = prefix .. ':signal'
    if redis.call('LLEN', signal) == 0 then
        redis.call('RPUSH', signal, 1)
        redis.call('PEXPIRE', signal, signal_ttl_ms)
    end
end
"""

# A semaphore's slots and its limit record, for the permit scripts of both backends.
SLOTS = r"""
-- Slot s of a semaphore: a lock whose keys start with this prefix (key_prefix(permit_key(key, s))).
local function slot_prefix(head, tail, s)
    return '{' .. head .. s .. tail .. '}'
end

-- Refuse another limit while a permit of either limit is live; else record this one.
-- Returns the recorded limit that refuses, or nil.
local function limit_refused(sem, head, tail, limit)
    local recorded = tonumber(redis.call('GET', sem .. ':limit'))
    if recorded == limit then
        return nil
    end
    if recorded then
        for s = 0, math.max(recorded, limit) - 1 do
            if redis.call('EXISTS', slot_prefix(head, tail, s) .. ':lock') == 1 then
                return recorded
            end
        end
    end
    redis.call('SET', sem .. ':limit', limit)
    return nil
end
"""

# What a script that frees the lock needs: the hand-over and everything it calls.
HANDING_OVER = _DIGITS + BUMP_FENCE + OWNED_BY + _QUEUE + _HAND_OVER

# Taking a free lock, shared by ACQUIRE and an idempotency key's BEGIN_RUN (records.py).
TAKE = (
    BUMP_FENCE
    + r"""
-- Take the lock if it is free and bump the fence in the same step.
-- Returns: the new fence, or the negated remaining ms of the current holder (-1: no expiry).
local function take(prefix, token, ttl_ms, label)
    local lock = prefix .. ':lock'
    if not redis.call('SET', lock, token .. '\n' .. label, 'NX', 'PX', ttl_ms) then
        return -math.max(redis.call('PTTL', lock), 1)
    end
    return bump_fence(prefix .. ':fence')
end
"""
)

ACQUIRE = (
    TAKE
    + r"""
-- ARGV[1] prefix, ARGV[2] owner token, ARGV[3] ttl in ms, ARGV[4] holder label
return take(ARGV[1], ARGV[2], ARGV[3], ARGV[4])
"""
)

ACQUIRE_QUEUED = (
    BUMP_FENCE
    + OWNED_BY
    + _QUEUE
    + r"""
-- Join (or stay in) the fair queue; take the lock only when free and first in line.
-- ARGV[1] prefix, ARGV[2] owner token, ARGV[3] ttl in ms, ARGV[4] holder label,
-- ARGV[5] patience in ms: how long the queue entry lives unless this script runs again
-- Returns: the new fence, or the negated remaining ms of the current holder (-1: none yet).
local prefix, token, ttl_ms, label, patience = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local lock = prefix .. ':lock'
local current = redis.call('GET', lock)
if owned_by(current, token) then
    -- Handed over while we were not listening: it is ours, with the fence it was given.
    leave_queue(prefix, token)
    redis.call('DEL', prefix .. ':wake:' .. token)
    return tonumber(redis.call('GET', prefix .. ':fence'))
end
local now = now_ms()
drop_dead_waiters(prefix, now)
redis.call('ZADD', prefix .. ':queue', 'NX', now, token)
redis.call('ZADD', prefix .. ':queue:alive', now + patience, token)
redis.call('HSET', prefix .. ':queue:info', token, ttl_ms .. '\n' .. label)
for _, suffix in ipairs({':queue', ':queue:alive', ':queue:info'}) do
    redis.call('PEXPIRE', prefix .. suffix, patience * 2)
end
if current then
    return -math.max(redis.call('PTTL', lock), 1)
end
if redis.call('ZRANGE', prefix .. ':queue', 0, 0)[1] ~= token then
    return -1
end
leave_queue(prefix, token)
redis.call('SET', lock, token .. '\n' .. label, 'PX', ttl_ms)
return bump_fence(prefix .. ':fence')
"""
)

RENEW = (
    OWNED_BY
    + r"""
-- Set each lease to expire ttl ms from now if its owner still holds it; each outcome separate.
-- KEYS[i] the lease of lock i ("<prefix>:lock"), ARGV[2i-1] its owner token, ARGV[2i] its ttl in ms
-- Returns: per key, 1 if renewed, 0 if not held by this owner (expired, taken over, server restarted).
local renewed = {}
for i, lock in ipairs(KEYS) do
    renewed[i] = 0
    if owned_by(redis.call('GET', lock), ARGV[2 * i - 1]) then
        redis.call('PEXPIRE', lock, ARGV[2 * i])
        renewed[i] = 1
    end
end
return renewed
"""
)

RELEASE = (
    HANDING_OVER
    + r"""
-- Free the lock if the owner holds it, then hand it over or wake a waiter.
-- ARGV[1] prefix, ARGV[2] owner token, ARGV[3] ms a wake-up signal stays readable
-- Returns: 1 if released, 0 if not held by this owner.
local prefix = ARGV[1]
if not owned_by(redis.call('GET', prefix .. ':lock'), ARGV[2]) then
    return 0
end
redis.call('DEL', prefix .. ':lock')
hand_over(prefix, ARGV[3])
return 1
"""
)

LEAVE_QUEUE = (
    HANDING_OVER
    + r"""
-- Stop waiting in the fair queue; if the lock was handed over meanwhile, pass it on.
-- ARGV[1] prefix, ARGV[2] owner token, ARGV[3] ms a wake-up signal stays readable
-- Returns: 1 if a handed-over lock was passed on, else 0.
local prefix, token = ARGV[1], ARGV[2]
leave_queue(prefix, token)
redis.call('DEL', prefix .. ':wake:' .. token)
if owned_by(redis.call('GET', prefix .. ':lock'), token) then
    redis.call('DEL', prefix .. ':lock')
    hand_over(prefix, ARGV[3])
    return 1
end
return 0
"""
)

HOLDER = r"""
-- Describe the current holder without revealing its token.
-- ARGV[1] prefix
-- Returns: {label, fence, remaining ms} or nil when free.
local lock = ARGV[1] .. ':lock'
local value = redis.call('GET', lock)
if not value then
    return nil
end
local label = string.sub(value, string.find(value, '\n', 1, true) + 1)
return {label, redis.call('GET', ARGV[1] .. ':fence'), redis.call('PTTL', lock)}
"""


PERMIT = (
    _DIGITS
    + BUMP_FENCE
    + SLOTS
    + r"""
-- Take a free slot of a semaphore and bump the name's fence, in one step.
-- ARGV[1] the semaphore's prefix, ARGV[2] and ARGV[3] head and tail of its slots' prefixes,
-- ARGV[4] owner token, ARGV[5] ttl in ms, ARGV[6] holder label, ARGV[7] limit, ARGV[8] the slot
-- tried first (the others follow in a rotation)
-- Returns: {slot, fence}; {-1, ms until the first held slot expires} when all are held;
-- {-2, the recorded limit} when another limit is in use (nothing taken).
local sem, head, tail = ARGV[1], ARGV[2], ARGV[3]
local limit, start = tonumber(ARGV[7]), tonumber(ARGV[8])
local refused = limit_refused(sem, head, tail, limit)
if refused then
    return {-2, refused}
end
local soonest = nil
for i = 0, limit - 1 do
    local slot = (start + i) % limit
    local prefix = slot_prefix(head, tail, slot)
    if redis.call('SET', prefix .. ':lock', ARGV[4] .. '\n' .. ARGV[6], 'NX', 'PX', ARGV[5]) then
        local fence = bump_fence(sem .. ':fence')
        -- The slot's own counter then names its holder's fence, as a lock's does (HOLDER).
        redis.call('SET', prefix .. ':fence', digits(fence))
        return {slot, fence}
    end
    local left = redis.call('PTTL', prefix .. ':lock')
    if left > 0 and (soonest == nil or left < soonest) then
        soonest = left
    end
end
return {-1, soonest or 1}
"""
)

PERMIT_HOLDERS = (
    SLOTS
    + r"""
-- Describe a semaphore's live permits without revealing their tokens.
-- ARGV[1] and ARGV[2] head and tail of the slots' prefixes, ARGV[3] limit
-- Returns: per live slot, in slot order, {label, fence, remaining ms}.
local holders = {}
for s = 0, tonumber(ARGV[3]) - 1 do
    local prefix = slot_prefix(ARGV[1], ARGV[2], s)
    local value = redis.call('GET', prefix .. ':lock')
    if value then
        local label = string.sub(value, string.find(value, '\n', 1, true) + 1)
        local fence = redis.call('GET', prefix .. ':fence')
        holders[#holders + 1] = {label, fence, redis.call('PTTL', prefix .. ':lock')}
    end
end
return holders
"""
)


def digest(source: str) -> str:
    """Return the SHA1 that names a script on the server (EVALSHA)."""
    return hashlib.sha1(source.encode()).hexdigest()


# The single-server backend's scripts by name, each with its digest.
SCRIPTS = {
    name: (source, digest(source))
    for name, source in {
        "ACQUIRE": ACQUIRE,
        "ACQUIRE_QUEUED": ACQUIRE_QUEUED,
        "RENEW": RENEW,
        "RELEASE": RELEASE,
        "LEAVE_QUEUE": LEAVE_QUEUE,
        "HOLDER": HOLDER,
        "PERMIT": PERMIT,
        "PERMIT_HOLDERS": PERMIT_HOLDERS,
    }.items()
}
