r"""The ``postgresql://`` backend: session-level advisory locks (default) or a lease table.

URL: ``postgresql://user[:password]@host[:port]/dbname[?mode=advisory|table][&pool_size=N]``
plus the common options (``namespace``, ``connect_timeout``, ``op_timeout``). Needs
``tenure[postgresql]`` (psycopg 3) and, in advisory mode, PostgreSQL 14 or later.

**Sessions.** Short calls (reads such as ``inspect``, table mode's steps, rate decisions, record
reads) run on at most ``pool_size`` pooled sessions at once per store (default 16); more
callers wait in-process for a session to come back, up to ``op_timeout`` (then
``BackendTimeout``), so a burst of concurrent calls never runs into the server's
``max_connections``. Sessions that hold advisory locks (at most 7, shared by every hold), a
blocking waiter's own session and the LISTENing one are not counted: a holder or a waiter keeps
its session for as long as it needs it.

**Advisory mode.** A lock is an advisory lock on a 64-bit id hashed from the namespaced name,
held on one of a few server sessions (at most 7 per store) shared by many holds; only a blocking wait in
the server's lock queue takes a session of its own. One round trip acquires: the statement takes
the lock and only then draws the fence from the sequence ``tenure_fence_seq`` and records the
holder in the unlogged table ``tenure_lock_holders``. After a server crash the fences restart
2^32 higher, so they keep growing. *ttl*: a session's ``idle_session_timeout`` is the smallest
ttl it holds, so a holder silent that long loses its session, and its locks, by the server's
clock; one statement per session renews all its leases, proving with ``pg_locks`` that the
session still holds each lock (and freeing a lock whose lease went unrenewed for a ttl). A
crashed holder's locks are freed when its connections close. *Waiting*: a blocking acquire
(plain or ``fair=True``) tries once, then waits in PostgreSQL's lock queue, which grants in
arrival order; leaving the line closes that session. A transaction-pooling proxy (PgBouncer
``pool_mode=transaction``) is detected and refused with ``ConfigurationError``.

**Table mode** (``mode=table``): a lease table with the expiry by the server's clock, one
statement per step; it works through any pooler. Releases NOTIFY the waiters; an expiry is
noticed by polling.

**Semaphores** (both modes): a permit is a lease on one of the semaphore's slot keys, taken in
one round trip by a server-side function that also checks the name's recorded limit; in advisory
mode it is a session lock on the first free slot (the fence from the sequence), in table mode a
lease row (the fence from the name's own row). A permit's release NOTIFYs its semaphore's waiters.

**Rate limits** (both modes, sharing one table): a decision is one call of the server-side
function ``tenure_rate_step``, which locks the key's row, reads ``clock_timestamp()`` and runs
the GCRA step; only an admitted step writes (``ratelimit.py``).

Every call is bounded by ``op_timeout`` on the client side, so a frozen server gives
``BackendTimeout``.
"""

from tenure._async.backends.postgresql.store import AsyncPostgresStore
from tenure._async.backends.postgresql.table import AsyncPostgresTableStore

__all__ = ["AsyncPostgresStore", "AsyncPostgresTableStore"]
