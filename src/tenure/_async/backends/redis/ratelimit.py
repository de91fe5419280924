r"""The Lua script of the ``redis://`` backend's rate limits (``Capability.COUNTERS``).

A rate limiter's key keeps one Redis key, in the key's hash tag as a lock's keys are
(``scripts.py``)::

    {<key>}:tats          the TATs of the key's rates, comma-separated floats (server seconds),
                          PX until the latest of them: then the bucket is full, as if absent

One script call per decision runs ``gcra_step`` (``tenure._core.ratelimit``) by the server's
``TIME`` and, when it admits a cost above 0, stores the new TATs with their expiry in one SET;
a refusal or a look (cost 0) writes nothing. Redis 5+ replicates a script's effects, not the
script, so reading ``TIME`` before a write is allowed.

Lua numbers are doubles, as Python's floats: the intervals and capacities travel as their
``repr`` and come back parsed exactly, so the script takes the same steps as ``gcra_step``.
Its reply is text for the same reason: Redis would turn a Lua number into an integer.
"""

from __future__ import annotations

import functools
from typing import Any

from tenure._async.backends.redis.scripts import digest, key_prefix
from tenure._core.ratelimit import Rate, RateStep

RATE_STEP = r"""
-- One GCRA step (gcra_step) on a key's TATs at the server's now; store them if admitted.
-- KEYS[1] the TATs ("<prefix>:tats"), ARGV[1] cost (0: only look),
-- ARGV[2] each rate's interval and capacity in seconds, "i1,c1,i2,c2,...", exact decimal text
-- Returns "<1 if admitted else 0>,<now>,<the TAT of each rate after the step>...": one string,
-- the cheapest reply to send and parse, its numbers as exact text.
local function text(n)
    return string.format('%.17g', n)  -- tostring keeps 14 digits; 17 give the double back
end
local cost = tonumber(ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local stored = {}
local value = redis.call('GET', KEYS[1])
if value then
    for part in string.gmatch(value, '[^,]+') do
        stored[#stored + 1] = tonumber(part)
    end
end
local params = {}
for part in string.gmatch(ARGV[2], '[^,]+') do
    params[#params + 1] = tonumber(part)
end
local current, new = {}, {}
local allowed = true
for i = 1, #params / 2 do
    local interval, capacity = params[2 * i - 1], params[2 * i]
    local tat = now  -- missing (the limiter gained a rate) or older than now: a full bucket
    if stored[i] and stored[i] > now then
        tat = stored[i]
    end
    current[i] = tat
    new[i] = tat + cost * interval
    if new[i] - capacity > now then
        allowed = false
    end
end
local tats = allowed and new or current
local texts = {}
for i = 1, #tats do
    texts[i] = text(tats[i])
end
if allowed and cost > 0 then
    -- Expire when the last bucket is full again: from then on the key means what no key means.
    local ttl_ms = math.ceil((math.max(unpack(new)) - now) * 1000)
    redis.call('SET', KEYS[1], table.concat(texts, ','), 'PX', string.format('%.0f', math.max(1, ttl_ms)))
end
return (allowed and '1,' or '0,') .. text(now) .. ',' .. table.concat(texts, ',')
"""

RATE_SCRIPTS = {"RATE_STEP": (RATE_STEP, digest(RATE_STEP))}
"""The rate-limit script by name, with its digest (beside ``scripts.SCRIPTS``)."""


def tats_key(key: str) -> str:
    """Return the Redis key that keeps rate limiter key ``key``'s TATs."""
    return key_prefix(key) + ":tats"


@functools.lru_cache(maxsize=1024)  # a limiter asks with the same rates and cost every time
def rate_args(rates: tuple[Rate, ...], cost: int) -> list[str]:
    """Return RATE_STEP's ARGV: the cost, then each rate's interval and capacity, exactly."""
    return [str(cost), ",".join(f"{rate.interval!r},{rate.capacity!r}" for rate in rates)]


def rate_reply(reply: Any, count: int) -> RateStep:
    """Return the step RATE_STEP answered for ``count`` rates (text, parsed back to floats).

    Raises ValueError for a reply of another shape (the store says which server sent it).
    """
    if isinstance(reply, bytes):
        reply = reply.decode("ascii")
    if not isinstance(reply, str):
        raise ValueError(f"not text: {reply!r}")
    allowed, now, *tats = reply.split(",")
    if len(tats) != count or allowed not in ("0", "1"):
        raise ValueError(f"{count} rates, got {reply!r}")
    return RateStep(allowed == "1", float(now), tuple(map(float, tats)))
