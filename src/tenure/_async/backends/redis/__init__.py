"""The ``redis://`` backend: one Redis server, one Lua script per atomic step, pushed wake-ups.

URLs: ``redis://[user:password@]host[:port][/db]``, ``rediss://`` for TLS, and
``redis+unix:///path/to/redis.sock[?db=N]`` for a unix socket, plus the common options
(``namespace``, ``connect_timeout``, ``op_timeout``). Both colours speak redis-py, which never
retries a command here, so a lost connection cannot resurrect a lost ownership.

**ttl** is the lease's expiry on the server (``PX``, the server's clock): a holder that stops
renewing loses the lock ``ttl`` after its last renewal. Acquiring takes the lock and bumps the
fence in one script (``scripts.py``); renew and release check the owner token. A fence counter
that the server lost starts again from its ``TIME``, above every fence handed out before.

**Waiting**: a release pushes onto a per-lock signal list that one plain waiter is blocked on
(BLPOP), so the hand-off is immediate; with ``fair=True`` the release hands the lock directly to
the oldest live waiter of a queue kept in Redis and pushes the fence to that waiter alone. The
push is a hint: the lease record is the truth, and a waiter also wakes when the holder's lease
would expire and after a bounded, jittered pause. Elections announce changes on a pub/sub
channel per lock. A semaphore's permit is a lock on one of its slots, taken by one script that
also bumps the name's fence and checks its recorded limit; its waiters BLPOP every slot's
signal list at once. Errors: ``BackendUnavailable`` (``BackendTimeout`` past ``op_timeout``).

**Idempotency keys** (``records.py``): one script returns a key's record or takes its lease as a
lock (a hit is one round trip); another stores the record (PX its ttl) and ends the lease as a
release does. A run's fence counter expires with its lease, so a key leaves nothing behind once
its record expires. Records are as durable as the server's persistence: one that restarts
without it forgets them, and the keys run again (with larger fences).

**Rate limits** (``ratelimit.py``): one script call per decision runs the GCRA step by the
server's ``TIME`` on one key of TATs, written only when it admits, PX until the bucket is full.
"""

from tenure._async.backends.redis.store import AsyncRedisStore

__all__ = ["AsyncRedisStore"]
