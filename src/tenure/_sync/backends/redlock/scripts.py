# GENERATED from src/tenure/_async/backends/redlock/scripts.py by scripts/unasync.py: do not edit; edit the source and re-run.
r"""The Lua scripts of the ``redlock://`` backend, run on each instance.

Every instance keeps the lock in the single-Redis layout (``<key>:lock`` holding
``"<token>\n<fence>\n<label>"`` with a PX expiry), so the ``redis://`` backend's RELEASE script
serves Redlock unchanged. Acquiring, renewing and describing the holder need their own scripts:

- ``ACQUIRE`` takes the fence from the instance's clock (``TIME`` in microseconds, never below
  the last fence it handed out for the name) instead of a per-instance counter. Counters on N
  instances start at different values and drift apart with every partial vote, so the largest
  fence of one majority says nothing about the next; clock readings of successive holders do
  follow hold order, as long as the instances' clocks agree to better than the gap between two
  holds. That is why Redlock's fences are best-effort.
- ``RENEW`` renews many leases in one call, each with its own outcome. It also writes each
  lease's fence (the largest of its vote) over the instance's own reading, and lifts the
  instance's floor to it. Until the first renewal the instances keep their own readings, so if
  the one with the largest went down meanwhile, ``HOLDER``'s majority reports a fence a little
  below the lease's (by the microseconds between two instances' readings); from the first
  renewal on, every instance holding the lease reports its fence.
- ``HOLDER`` also returns a digest of the owner token, so a vote counts one owner once without
  revealing its secret (labels are readable, not unique).
- ``PERMIT`` takes the first free slot of a semaphore in the order the client gave (every
  instance gets the same, so they agree on a slot unless they disagree on which are free) and
  checks the recorded limit, as ``redis://`` does; its fence is the instance's clock lifted to
  the next value that is the slot's number modulo the limit: two permits held at once hold two
  slots, so their fences differ whatever the clocks say. ``FORGET_PERMIT`` undoes an instance's
  vote for a slot that lost; ``PERMIT_HOLDERS`` is ``HOLDER`` for every live slot.
"""

from __future__ import annotations

from tenure._sync.backends.redis.scripts import RELEASE, SLOTS, digest

ACQUIRE = r"""
-- Take the lock on this instance if it is free; the fence is this instance's clock.
-- ARGV[1] prefix, ARGV[2] owner token, ARGV[3] ttl in ms, ARGV[4] holder label
-- Returns: the fence, or the negated remaining ms of the current holder (-1: no expiry).
local prefix = ARGV[1]
local lock = prefix .. ':lock'
if redis.call('EXISTS', lock) == 1 then
    return -math.max(redis.call('PTTL', lock), 1)
end
local t = redis.call('TIME')
local fence = tonumber(t[1]) * 1000000 + tonumber(t[2])
-- A clock that stepped back must not repeat a fence this instance already handed out.
local last = tonumber(redis.call('GET', prefix .. ':fence') or 0)
if fence <= last then
    fence = last + 1
end
-- Lua 5.1 numbers are doubles, and ".." would write a fence of 16 digits as 1.7e+15.
local text = string.format('%.0f', fence)
redis.call('SET', prefix .. ':fence', text)
redis.call('SET', lock, ARGV[2] .. '\n' .. text .. '\n' .. ARGV[4], 'PX', ARGV[3])
return fence
"""

RENEW = r"""
-- Extend each lease if its owner still holds it, and make this instance report the lease's fence.
-- KEYS[2i-1] the lease of lock i ("<prefix>:lock"), KEYS[2i] its fence ("<prefix>:fence");
-- ARGV[3i-2] its owner token, ARGV[3i-1] its ttl in ms, ARGV[3i] the lease's fence (0: keep)
-- Returns: per lease, 1 if renewed, 0 if not held by this owner (expired, taken over, restarted).
local renewed = {}
for i = 1, #KEYS / 2 do
    local lock, fence_key = KEYS[2 * i - 1], KEYS[2 * i]
    local token, ttl_ms, text = ARGV[3 * i - 2], ARGV[3 * i - 1], ARGV[3 * i]
    local value = redis.call('GET', lock)
    renewed[i] = 0
    if value and string.sub(value, 1, #token + 1) == token .. '\n' then
        renewed[i] = 1
        local fence = tonumber(text)
        if fence == 0 then
            redis.call('PEXPIRE', lock, ttl_ms)
        else
            local rest = string.sub(value, #token + 2)
            local label = string.sub(rest, string.find(rest, '\n', 1, true) + 1)
            redis.call('SET', lock, token .. '\n' .. text .. '\n' .. label, 'PX', ttl_ms)
            -- The next holder here then gets a larger fence than this lease's, not only than this instance's.
            if fence > tonumber(redis.call('GET', fence_key) or 0) then
                redis.call('SET', fence_key, text)
            end
        end
    end
end
return renewed
"""

HOLDER = r"""
-- Describe the current holder: its label, fence, remaining ms and a digest of its token.
-- ARGV[1] prefix
-- Returns: {label, fence, remaining ms, sha1 of the token} or nil when free.
local lock = ARGV[1] .. ':lock'
local value = redis.call('GET', lock)
if not value then
    return nil
end
local token, fence, label = string.match(value, '^([^\n]*)\n(%d+)\n(.*)$')
return {label, fence, redis.call('PTTL', lock), redis.sha1hex(token)}
"""


PERMIT = (
    SLOTS
    + r"""
-- Take the first free slot of a semaphore on this instance, in the rotation the client gave.
-- ARGV[1] the semaphore's prefix, ARGV[2] and ARGV[3] head and tail of its slots' prefixes,
-- ARGV[4] owner token, ARGV[5] ttl in ms, ARGV[6] holder label, ARGV[7] limit, ARGV[8] first slot
-- Returns: {slot, fence}; {-1, 0} when all are held here; {-2, the recorded limit} when another
-- limit is in use here (nothing taken).
local sem, head, tail = ARGV[1], ARGV[2], ARGV[3]
local limit, start = tonumber(ARGV[7]), tonumber(ARGV[8])
local refused = limit_refused(sem, head, tail, limit)
if refused then
    return {-2, refused}
end
for i = 0, limit - 1 do
    local slot = (start + i) % limit
    local lock = slot_prefix(head, tail, slot) .. ':lock'
    if redis.call('EXISTS', lock) == 0 then
        -- The clock, never below the last fence given here for the name, then up to the next
        -- value that is slot modulo limit: permits held at once hold distinct slots.
        local t = redis.call('TIME')
        local least = tonumber(t[1]) * 1000000 + tonumber(t[2])
        least = math.max(least, tonumber(redis.call('GET', sem .. ':fence') or 0) + 1)
        local fence = least - math.fmod(least, limit) + slot  -- fmod: exact on doubles
        if fence < least then
            fence = fence + limit
        end
        local text = string.format('%.0f', fence)
        redis.call('SET', sem .. ':fence', text)
        redis.call('SET', lock, ARGV[4] .. '\n' .. text .. '\n' .. ARGV[6], 'PX', ARGV[5])
        return {slot, fence}
    end
end
return {-1, 0}
"""
)

FORGET_PERMIT = r"""
-- Undo this instance's vote for a slot: free every slot of the semaphore the owner holds here
-- but the one it won (an instance that did not answer may have taken any).
-- ARGV[1] and ARGV[2] head and tail of the slots' prefixes, ARGV[3] owner token, ARGV[4] limit,
-- ARGV[5] the slot to keep (-1: none)
-- Returns: how many slots were freed.
local token, keep, freed = ARGV[3], tonumber(ARGV[5]), 0
for s = 0, tonumber(ARGV[4]) - 1 do
    local lock = '{' .. ARGV[1] .. s .. ARGV[2] .. '}:lock'
    local value = redis.call('GET', lock)
    if s ~= keep and value and string.sub(value, 1, #token + 1) == token .. '\n' then
        redis.call('DEL', lock)
        freed = freed + 1
    end
end
return freed
"""

PERMIT_HOLDERS = (
    SLOTS
    + r"""
-- Describe a semaphore's live slots on this instance, as HOLDER does a lock.
-- ARGV[1] and ARGV[2] head and tail of the slots' prefixes, ARGV[3] limit
-- Returns: per live slot, {slot, label, fence, remaining ms, sha1 of the token}.
local holders = {}
for s = 0, tonumber(ARGV[3]) - 1 do
    local lock = slot_prefix(ARGV[1], ARGV[2], s) .. ':lock'
    local value = redis.call('GET', lock)
    if value then
        local token, fence, label = string.match(value, '^([^\n]*)\n(%d+)\n(.*)$')
        holders[#holders + 1] = {s, label, fence, redis.call('PTTL', lock), redis.sha1hex(token)}
    end
end
return holders
"""
)

# Every script a Redlock instance runs, by name, and the digests that name them (EVALSHA).
SCRIPTS = {
    "ACQUIRE": ACQUIRE,
    "RENEW": RENEW,
    "RELEASE": RELEASE,
    "HOLDER": HOLDER,
    "PERMIT": PERMIT,
    "FORGET_PERMIT": FORGET_PERMIT,
    "PERMIT_HOLDERS": PERMIT_HOLDERS,
}
SHAS = {name: digest(source) for name, source in SCRIPTS.items()}
