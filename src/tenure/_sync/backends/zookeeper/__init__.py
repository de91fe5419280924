# GENERATED from src/tenure/_async/backends/zookeeper/__init__.py by scripts/unasync.py: do not edit; edit the source and re-run.
r"""The ``zookeeper://`` backend: the ZooKeeper lock recipe on kazoo, one session per coordinator.

URL: ``zookeeper://host1:2181,host2:2181,host3:2181[/chroot][?session_timeout=30]`` plus the
common options (``namespace``, ``connect_timeout``, ``op_timeout``). kazoo runs its own threads
in both colours; a call's result is awaited on the caller's loop (``session.py``).

A lock is a persistent directory node ``<chroot>/<key>``; every contender creates an ephemeral
*sequential* child ``<token>-<sequence>`` holding ``<ttl ms>\n<label>`` (``nodes.py``). The child
with the lowest sequence holds the lock; its fence is the child's ``czxid``, which the ensemble
assigns in one total order that grows across leader elections and never repeats.

**ttl** sets the renewal cadence and how long a holder that stopped renewing keeps the lock
against contenders; it must not exceed ``session_timeout`` (default 30 s). Each renewal rewrites
the child, which stamps ``mtime`` with the ensemble leader's clock; a contender that finds the
first child not renewed within its ttl by that clock deletes it (conditionally on its version).
The session ends a hold too: a holder whose process dies or stays partitioned past the session
timeout loses its ephemeral child.

**Waiting**: every blocking acquire (plain or ``fair=True``) waits in line, each waiter watching
only the child just before its own, so a release wakes one waiter (``line.py``). A single plain
``try_acquire`` that is not first deletes its child at once. Acquiring sends the create and the
listing together (one round trip); releasing deletes our child by name.

**Idempotency records** (``records.py``): a run is a lock on its key; the multi that ends it
deletes its child and writes the persistent node ``<dir>/record``, judged live by its ``mtime``
and ttl; an expiry index lets later finishes delete expired records and their directories.
"""

from tenure._sync.backends.zookeeper.store import ZooKeeperStore

__all__ = ["ZooKeeperStore"]
