# GENERATED from src/tenure/_async/backends/mysql/__init__.py by scripts/unasync.py: do not edit; edit the source and re-run.
"""The ``mysql://`` backend: MariaDB ``GET_LOCK`` on a connection per hold, or a lease table.

URL: ``mysql://user[:password]@host[:port]/database[?mode=advisory|table]`` plus the common
options (``namespace``, ``connect_timeout``, ``op_timeout``). The async store speaks pymysql,
the generated sync twin PyMySQL, both through their public APIs; autocommit is on.

**Advisory mode** (the default, MariaDB >= 10.3; ``store.py``): a lock is a server-side user
lock named ``tenure:`` plus a digest of the key, held by one connection (session) per hold.
One statement acquires: GET_LOCK(name, 0), and only if taken, a fence drawn from a SEQUENCE and
the holder recorded in a MEMORY table; one statement releases. After a server restart the first
connection moves the sequence far ahead, so fences keep growing across crashes (``sql.py``).

**ttl** bounds silence: the hold's session carries ``wait_timeout = ceil(ttl)``, so the server
ends a frozen holder's session, which frees the lock; each renewal proves the session still
holds it. A dead connection or a restarted server fails the next renewal: the lease is lost.

**Waiting**: every blocking acquire (plain or ``fair=True``) waits in the server's own queue,
first come, first served, on its hold's connection: ``GET_LOCK(name, timeout)`` is handed the
lock by the release and draws the fence in the same round trip. The async store awaits that
statement as a task, the sync twin in a helper thread; leaving the line ends it with
``KILL QUERY`` and closes the connection.

**Table mode** (``?mode=table``, MySQL or MariaDB; ``table.py``): an InnoDB lease table with
expiry by the server's clock, one statement per step; rows are never deleted. Waiters poll.
"""

from tenure._sync.backends.mysql.store import MySQLStore
from tenure._sync.backends.mysql.table import MySQLTableStore

__all__ = ["MySQLStore", "MySQLTableStore"]
