"""The ``etcd://h1:p1,h2:p2,...`` backend: etcd's own lock recipe over the v3 gRPC API.

URL: ``etcd://host:port[,host:port...]`` (default ``127.0.0.1:2379``; no path, no
authentication yet) plus the common options (``namespace``, ``connect_timeout``,
``op_timeout``) and ``session_ttl`` (seconds, default 1). Both colours speak grpc (``grpc.aio``
for the async store) with the message classes generated in ``aetcd``, never its client.

**Locks** (``line.py``): every holder or waiter has its own key under the lock's prefix,
created under a session lease; the oldest holds, and its create revision is the fence (one
cluster-wide counter). Every blocking acquire, plain or fair, waits in that line, FIFO,
watching only the entry just before its own, so a release wakes one waiter, which then holds
without another request.

**ttl**: an entry lives while its session lives, a lease kept alive in the background and
granted for a little more than the ttl in whole seconds, at least ``session_ttl``
(``session.py``). A renewal succeeds only while the server keeps the session for ttl more
seconds. A holder that stops renewing is replaced about ttl after its last renewal: by its own
process if that still runs, else by the waiter just behind it, which watches its renewals.
Renewals go in batches, one Txn per session and 100 entries, and rewrite an entry only while
another entry of its lock stands behind it (``store.py``).

**Idempotency records** (``records.py``): a run is a lock entry; its record is the run's bare
key, stamped with its wall-clock expiry and attached to a lease shared by its expiry bucket,
so the server deletes it. Starting a run and finishing one are one Txn each.

**Faults**: every call carries ``op_timeout`` and moves on to the next endpoint while one is
unreachable (``client.py``); every request is idempotent by its entry's name, so no resend can
take a lock twice. A delete that fails is retried in the background until it succeeds or its
session is gone, so a fault of the cluster leaves no entry blocking the lock.
"""

from tenure._async.backends.etcd.store import AsyncEtcdStore

__all__ = ["AsyncEtcdStore"]
