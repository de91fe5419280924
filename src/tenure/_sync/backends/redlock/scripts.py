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
"""

from __future__ import annotations

from tenure._sync.backends.redis.scripts import RELEASE, digest

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


# Every script a Redlock instance runs, by name, and the digests that name them (EVALSHA).
SCRIPTS = {"ACQUIRE": ACQUIRE, "RENEW": RENEW, "RELEASE": RELEASE, "HOLDER": HOLDER}
SHAS = {name: digest(source) for name, source in SCRIPTS.items()}
