"""The ``mysql://`` backend: MariaDB ``GET_LOCK`` on a few shared sessions, or a lease table.

URL: ``mysql://user[:password]@host[:port]/database[?mode=advisory|table][&pool_size=N]`` plus
the common options (``namespace``, ``connect_timeout``, ``op_timeout``). The async store speaks
aiomysql, the generated sync twin PyMySQL, both through their public APIs; autocommit is on.

**Connections.** Short calls (reads such as ``inspect``, table mode's steps, rate decisions,
record reads) run on at most ``pool_size`` pooled connections at once per store (default 16);
more callers wait in-process for one to come back, up to ``op_timeout`` (then
``BackendTimeout``), so a burst of concurrent calls never runs into the server's
``max_connections`` (error 1040). The shared sessions that hold locks and a blocking waiter's
own connection are not counted: a holder or a waiter keeps its connection as long as it needs.

**Advisory mode** (the default, MariaDB >= 10.3; ``store.py``): a lock is a server-side user
lock named ``tenure:`` plus a digest of the key, held on one of a few sessions the store shares
among its holds (up to 4 per ``ceil(ttl)``; a name a session already holds is refused locally,
as GET_LOCK re-enters within a session). One statement acquires: GET_LOCK(name, 0), and only if
taken, a fence drawn from a SEQUENCE and the holder recorded in a MEMORY table; one statement
releases. After a server restart the first connection moves the sequence far ahead, so fences
keep growing across crashes (``sql.py``).

**ttl** bounds silence: the hold's session carries ``wait_timeout = ceil(ttl)`` (sessions are
keyed by it, so every lease on one has the same limit), so the server ends a frozen holder's
session, which frees its locks; each renewal proves the session still holds them, one round
trip per session for all its due leases. A dead connection or a restarted server fails the next
renewal: every lease on that session is lost.

**Waiting**: every blocking acquire (plain or ``fair=True``) that finds the lock held waits in
the server's own queue, first come, first served, on a connection of its own, which keeps the
lock once handed it: ``GET_LOCK(name, timeout)`` is handed the lock by the release and draws
the fence in the same round trip. The async store awaits that statement as a task, the sync
twin in a helper thread; leaving the line ends it with ``KILL QUERY`` and closes the connection.

**Table mode** (``?mode=table``, MySQL or MariaDB; ``table.py``): an InnoDB lease table with
expiry by the server's clock, one statement per step (``renew_many``: 1,000 leases per round
trip); a lock's row is never deleted. Waiters poll.

**Semaphores** (both modes; read-write locks' readers and sequences' tickets too): a permit is a
lock on one slot key, renewed and released as any lock, and ``tenure_semaphores`` records each
name's limit. Advisory mode takes one in a round trip under a per-name guard lock, trying
GET_LOCK(slot, 0) slot by slot, its fence from the sequence; table mode in one transaction that
locks the name's limit row and bumps the fence of the name's own lease row
(``permits.py``, ``permit_sql.py``).

**Idempotency records** (both modes; ``records.py``, ``record_sql.py``): a run is the key's lock,
its record a row of ``tenure_records`` (InnoDB: it outlives a restart) with the run's fence and
an expiry by the server's clock; each finish deletes a few expired ones. Advisory mode looks
for the record again once GET_LOCK is taken, and a finish commits the record before its
RELEASE_LOCK on the same session; table mode begins and finishes in one transaction each, and a
finish deletes the run's lease row, so a key leaves only its record. Records are at most half
the server's ``max_allowed_packet`` (they travel as hex in the statement), at most 16 MiB.

**Rate limits** (both modes; ``rates.py``, ``rate_sql.py``): a key's bucket is a row of
``tenure_rates`` (InnoDB; a BLAKE2b digest of the key is its primary key) holding one TAT per
rate. A decision is one round trip on a pooled connection (a short call; a deadlock's victim
is sent once more): one INSERT ... ON DUPLICATE KEY UPDATE runs the GCRA step under the row's
lock by the server's clock (``SYSDATE(6)``, read in UTC), and a SELECT answers; a refusal or a
peek writes nothing. Every 8th decision of a store deletes up to 16 rows expired more than a
second ago, in the same round trip.
"""

from tenure._async.backends.mysql.store import AsyncMySQLStore
from tenure._async.backends.mysql.table import AsyncMySQLTableStore

__all__ = ["AsyncMySQLStore", "AsyncMySQLTableStore"]
