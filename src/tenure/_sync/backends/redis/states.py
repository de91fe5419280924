# GENERATED from src/tenure/_async/backends/redis/states.py by scripts/unasync.py: do not edit; edit the source and re-run.
"""Small states on ``redis://`` (``update_state``): a key each, changed by an optimistic transaction.

A state is one Redis key, in its key's hash tag as a lock's keys are (``scripts.py``)::

    {<key>}:state         the state's bytes, PX its ttl

The change is Python (a shared breaker runs ``breaker_step``), so it cannot run in a script:
the update WATCHes the key, reads it and the server's ``TIME``, runs the change, and writes
with MULTI/SET PX/EXEC, all on one connection (redis-py's pipeline). EXEC fails if anyone wrote
the key after the WATCH; the update then starts again on the newer value, a bounded number of
times with a short jittered pause, so contending processes take turns. A change that stores
nothing (None) writes nothing and needs no EXEC: its read was as good as any.
"""

from __future__ import annotations

import math
import random
import time
from typing import Any

from redis import exceptions as redis_errors
from redis import Redis as Redis

from tenure._sync.backends.base import StateChange, T
from tenure._sync.backends.redis.connection import DRIVER_ERRORS, map_errors
from tenure._sync.backends.redis.scripts import key_prefix
from tenure._concurrency import sleep
from tenure._exceptions import BackendTimeout

ATTEMPTS = 64  # updates that lost the race, at most, before giving up
FIRST_PAUSE = 0.0005  # seconds after the first lost race; doubling, jittered, up to MAX_PAUSE
MAX_PAUSE = 0.01


def state_key(key: str) -> str:
    """Return the Redis key that keeps ``key``'s state."""
    return key_prefix(key) + ":state"


def update_state(
    client: Redis, key: str, change: StateChange[T], ttl: float, *, url: str, op_timeout: float
) -> T:
    """Run ``change`` on ``key``'s state as one optimistic transaction; retry lost races."""
    name = state_key(key)
    ttl_ms = max(1, math.ceil(ttl * 1000))
    pause, ends = FIRST_PAUSE, time.monotonic() + op_timeout
    for _ in range(ATTEMPTS):
        try:
            with client.pipeline(transaction=True) as typed:
                pipe: Any = typed  # redis-py types some pipeline methods in one colour only
                pipe.watch(name)
                current: bytes | None = pipe.get(name)
                seconds, micros = pipe.time()
                value, result = change(current, seconds + micros / 1_000_000)
                if value is None:
                    return result
                pipe.multi()
                pipe.set(name, value, px=ttl_ms)
                pipe.execute()
                return result
        except redis_errors.WatchError:
            pass  # another update came between: read again
        except DRIVER_ERRORS as exc:
            raise map_errors(exc, f"{url} (updating the state of {key!r})") from exc
        if time.monotonic() + pause > ends:
            break
        sleep(pause * (0.5 + random.random()))
        pause = min(pause * 2, MAX_PAUSE)
    raise BackendTimeout(
        f"{url}: the state of {key!r} kept changing under {ATTEMPTS} updates in a row (or op_timeout)"
    )
