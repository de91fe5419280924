# GENERATED from src/tenure/_async/backends/redlock/__init__.py by scripts/unasync.py: do not edit; edit the source and re-run.
"""The ``redlock://`` backend: N independent Redis servers, a lease held while a majority agree.

URL: ``redlock://[user:password@]h1:p1,h2:p2,h3:p3[/db]``, an odd number (3 or more, typically
5) of distinct servers sharing the credentials and the database number, plus the common options
(``namespace``, ``connect_timeout``, ``op_timeout``).

Every step runs on all instances at once (``instances.py``): one round trip for N instances, and
frozen instances cost one deadline together, at most ``op_timeout`` and at most a third of the
lease's ttl. Per instance a Lua script does the work (``scripts.py``; release is the
``redis://`` backend's script); the vote is counted without I/O (``quorum.py``).

**ttl**: an acquisition wins when a majority granted it within Redlock's validity,
ttl − elapsed − drift (1% of ttl + 2 ms); otherwise it is undone on every instance that did not
refuse. A renewal keeps the lease while a majority confirm it within the same validity, and puts
the lock back on instances that lost it. Expiry is kept by each instance's clock; a client cut
off from a majority loses its lease when the validity runs out by its own monotonic clock.

**Waiting**: waiters poll with a short jittered backoff (Redlock's random retry delay): no single
instance can announce that a majority is free; ``fair=True`` is not offered. Fewer than a
majority answering is ``BackendUnavailable``. Keep ``op_timeout`` small next to the ttl.

**Semaphores**: a permit is a Redlock lock on one of the name's slots, the same slot on a
majority (each instance takes its first free slot in one order the client picks at random).
"""

from tenure._sync.backends.redlock.store import RedlockStore

__all__ = ["RedlockStore"]
