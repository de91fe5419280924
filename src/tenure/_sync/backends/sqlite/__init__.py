# GENERATED from src/tenure/_async/backends/sqlite/__init__.py by scripts/unasync.py: do not edit; edit the source and re-run.
"""The ``sqlite://`` backend: a lease table in one file, safe across processes on one host.

The embedded default: no server. URL: ``sqlite:///path/to/locks.db`` (``sqlite:///~/locks.db``
expands ``~``) with the options ``busy_timeout`` (seconds to wait for a file another process is
writing; default ``op_timeout``) and ``file_mode`` (of a new file, default ``0600``; ``0660``
and a common group share it between users), plus the common options. The file, its folder and
its ``-wal``/``-shm`` files must be writable by every user of it (``file.py``).

Each lock is a row that is never deleted, so its fence keeps growing, and never drops below the
wall clock in microseconds, so a recreated or truncated file does not repeat a fence (``sql.py``).
The table's calls are blocking (``table.py``): the async store runs each in a worker thread, the
generated sync store calls it directly. A file deleted or replaced under an open store is
followed, and a lease held in the old file ends there.

**ttl** is counted on the host's monotonic clock, which every process of one host shares,
tagged with the boot id so that a lease written before a reboot never looks valid after it.

**Waiting**: no notification crosses processes, so waiters poll with a short jittered backoff
(2 ms to 50 ms); with ``fair=True`` they join a line in the file and watch their place in it with
a cheap read, the nearer the front the more often.
"""

from tenure._sync.backends.sqlite.store import SQLiteStore

__all__ = ["SQLiteStore"]
