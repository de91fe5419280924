"""The ``etcd3`` suite: locks over a three-node etcd cluster on loopback.

tenure's ``etcd://`` backend (plain and ``fair=True``) against aetcd's ``Lock`` (asyncio, run on
a private event loop per handle) and etcd3gw's ``Lock`` (etcd's v3 JSON gateway over HTTP), and
the floor: one guarded Put (a Txn) to acquire and one DeleteRange to release, sent with the same
generated gRPC stubs tenure uses over one plain channel. The cluster (tests/servers_etcd.py) is
started by the suite's environment, in the parent process. Every client talks to the first node;
the environment records which node leads (a follower forwards writes to the leader).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.servers_etcd import EtcdCluster

from benchmarks.registry import BenchContext, Contender, Role, Suite, Target
from benchmarks.suites.common import TIMEOUT, TTL, TenureHandle, client_versions

# The floor's lease outlives any handle (an uncontended repeat or a contended window) without a
# keep-alive; it is revoked at close.
FLOOR_LEASE_TTL = 60
# etcd3gw's Lock has no blocking acquire: the handle retries after this pause (each attempt
# grants a new lease, so a spin would flood the cluster with leases).
ETCD3GW_RETRY_SLEEP = 0.01


def _version(cluster: EtcdCluster) -> str:
    rows = cluster.status()
    status = rows[0].get("Status") if rows else None
    return f"etcd {status.get('version', '?')}" if isinstance(status, dict) else "etcd ?"


@contextlib.contextmanager
def three_nodes(workdir: Path) -> Iterator[dict[str, str]]:
    cluster = EtcdCluster(workdir / "etcd")
    try:
        cluster.start()
        first = cluster.nodes[0].endpoint
        yield {
            "tenure_url": cluster.url,
            "endpoint": first,  # the node every peer and the floor talk to
            "leader": cluster.leader().endpoint,
            "server": _version(cluster),
            "clients": client_versions("aetcd", "etcd3gw", "grpcio", "protobuf"),
            "server_pids": ",".join(str(n.proc.pid) for n in cluster.nodes if n.proc is not None),
        }
    finally:
        cluster.stop()


class EtcdFloor:
    """The floor: ``Txn(create_revision(prefix) == 0 ? Put(key, lease))`` + ``DeleteRange(key)``.

    A plain Put is not a lock, so the Put is guarded in the same request: it happens only if no
    key of the lock exists (one round trip, as tenure's create). Each handle's key is the lock's
    prefix plus a random token, so the unconditional DeleteRange can only free its own hold. One
    lease is granted per handle. A waiter whose Txn fails watches the prefix for a DELETE from
    the revision after the failed Txn, then tries again (no herd avoidance, no spinning writes).
    """

    def __init__(self, ctx: BenchContext, name: str) -> None:
        import grpc  # type: ignore[import-untyped]
        from aetcd.rpc import rpc_pb2  # type: ignore[import-untyped]  # the messages tenure uses

        from tenure._async.backends.etcd import proto

        self._rpc: Any = rpc_pb2
        self._grpc: Any = grpc
        self._channel = grpc.insecure_channel(ctx.params["endpoint"])
        self._kv = proto.KVStub(self._channel)
        self._streams = proto.OneRequestStreams(self._channel)  # as tenure opens its watches
        self._lease_stub = proto.LeaseStub(self._channel)
        self._lease = int(self._lease_stub.LeaseGrant(proto.lease_grant(FLOOR_LEASE_TTL)).ID)
        self._prefix = proto.lock_prefix(f"etcd-floor:{name}")
        self._end = proto.prefix_end(self._prefix)
        self._key = b""

    def _create(self) -> Any:
        rpc = self._rpc
        compare = rpc.Compare(
            result=rpc.Compare.EQUAL,
            target=rpc.Compare.CREATE,
            key=self._prefix,
            range_end=self._end,
            create_revision=0,
        )
        put = rpc.RequestOp(request_put=rpc.PutRequest(key=self._key, value=b"1", lease=self._lease))
        return rpc.TxnRequest(compare=[compare], success=[put])

    def acquire(self) -> None:
        self._key = self._prefix + os.urandom(8).hex().encode()
        request = self._create()
        deadline = time.monotonic() + TIMEOUT
        while True:
            reply = self._kv.Txn(request, timeout=TIMEOUT)
            if reply.succeeded:
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"etcd floor {self._prefix!r} not acquired within {TIMEOUT} s")
            self._wait_deleted(reply.header.revision + 1, left)

    def _wait_deleted(self, revision: int, timeout: float) -> None:
        rpc = self._rpc
        create = rpc.WatchCreateRequest(
            key=self._prefix,
            range_end=self._end,
            start_revision=revision,
            filters=[rpc.WatchCreateRequest.NOPUT],
        )
        call = self._streams.watch(rpc.WatchRequest(create_request=create), timeout=timeout)
        try:
            for reply in call:
                if reply.canceled or reply.events:  # NOPUT: every event is a delete
                    return
        except self._grpc.RpcError as exc:
            if exc.code() != self._grpc.StatusCode.DEADLINE_EXCEEDED:
                raise  # else the deadline passed: the caller checks its own
        finally:
            call.cancel()

    def release(self) -> None:
        reply = self._kv.DeleteRange(self._rpc.DeleteRangeRequest(key=self._key), timeout=TIMEOUT)
        if not reply.deleted:
            raise RuntimeError(f"etcd floor {self._key!r} was not held at release")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._lease_stub.LeaseRevoke(self._rpc.LeaseRevokeRequest(ID=self._lease), timeout=5)
        self._channel.close()


class AetcdLockHandle:
    """aetcd's ``Lock``: ``client.lock(key, ttl=10)``, ``await acquire(timeout=10)`` / ``release()``.

    aetcd is asyncio-only, so each handle owns a private event loop and runs every call to
    completion on it (``loop.run_until_complete``): the loop's overhead is paid per call, as a
    sync program using aetcd would pay it. Its acquire grants a new lease and then sends a Txn
    (create if absent); a waiter watches the key for its deletion; release is a compare-value Txn.
    """

    def __init__(self, ctx: BenchContext, name: str) -> None:
        import aetcd  # type: ignore[import-untyped]  # a bench peer: missing, skipped

        host, port = ctx.params["endpoint"].rsplit(":", 1)
        self._loop = asyncio.new_event_loop()
        self._client = aetcd.Client(host=host, port=int(port))
        self._run(self._client.connect())
        self._lock = self._client.lock(f"aetcd:{name}".encode(), ttl=int(TTL))

    def _run(self, coroutine: Any) -> Any:
        return self._loop.run_until_complete(coroutine)

    def acquire(self) -> None:
        if not self._run(self._lock.acquire(timeout=int(TIMEOUT))):
            raise TimeoutError(f"aetcd lock not acquired within {TIMEOUT} s")

    def release(self) -> None:
        if not self._run(self._lock.release()):
            raise RuntimeError("aetcd lock was not held at release")

    def close(self) -> None:
        try:
            self._run(self._client.close())
            # grpc.aio leaves status tasks behind; finish them so closing the loop is quiet.
            pending = asyncio.all_tasks(self._loop)
            if pending:
                self._run(asyncio.wait(pending, timeout=1.0))
        finally:
            self._loop.close()


class Etcd3gwLockHandle:
    """etcd3gw's ``Lock``: ``client.lock(name, ttl=10).acquire()`` over the v3 JSON gateway.

    Its acquire is a single attempt (grant a lease, then a create-if-absent Txn, two HTTP round
    trips); the handle retries every ``ETCD3GW_RETRY_SLEEP`` s. Release is a compare-value Txn
    that deletes the key but leaves the lease to expire.
    """

    def __init__(self, ctx: BenchContext, name: str) -> None:
        import etcd3gw  # a bench peer: missing, skipped

        host, port = ctx.params["endpoint"].rsplit(":", 1)
        self._client = etcd3gw.client(host=host, port=int(port), timeout=TIMEOUT)
        self._lock = self._client.lock(f"etcd3gw:{name}", ttl=int(TTL))

    def acquire(self) -> None:
        deadline = time.monotonic() + TIMEOUT
        while not self._lock.acquire():
            if time.monotonic() > deadline:
                raise TimeoutError(f"etcd3gw lock not acquired within {TIMEOUT} s")
            time.sleep(ETCD3GW_RETRY_SLEEP)

    def release(self) -> None:
        if not self._lock.release():
            raise RuntimeError("etcd3gw lock was not held at release")

    def close(self) -> None:
        self._client.session.close()


def tenure_etcd(ctx: BenchContext, name: str) -> TenureHandle:
    return TenureHandle(ctx.params["tenure_url"], name)


def tenure_etcd_fair(ctx: BenchContext, name: str) -> TenureHandle:
    return TenureHandle(ctx.params["tenure_url"], f"fair-{name}", fair=True)


SUITE = Suite(
    name="etcd3",
    description="locks over a three-node etcd cluster on loopback",
    baseline="aetcd",
    environment=three_nodes,
    contenders=(
        Contender(
            "tenure-etcd",
            Role.TENURE,
            tenure_etcd,
            floor="etcd-floor",
            ttl=True,
            fence=True,
            summary="tenure.Coordinator('etcd://h:p,…×3').lock(name, ttl=10).acquire() / .release()",
            notes="Txn create-if-absent + 2 reads; waiters watch the holder's key",
        ),
        Contender(
            "tenure-etcd-fair",
            Role.TENURE,
            tenure_etcd_fair,
            floor="etcd-floor",
            ttl=True,
            fence=True,
            summary="the same with fair=True: waiters queue by create revision",
            notes="each waiter watches only its predecessor's key",
        ),
        Contender(
            "aetcd",
            Role.PEER,
            AetcdLockHandle,
            floor="etcd-floor",
            ttl=True,
            summary="aetcd.Client(...).lock(key, ttl=10): await acquire(timeout=10) / release()",
            notes="asyncio on a private loop per handle; a lease per acquire; waiters watch the key",
        ),
        Contender(
            "etcd3gw",
            Role.PEER,
            Etcd3gwLockHandle,
            floor="etcd-floor",
            ttl=True,
            summary="etcd3gw.client(...).lock(name, ttl=10).acquire() / .release() (JSON gateway)",
            notes=f"try-only: the handle retries every {ETCD3GW_RETRY_SLEEP * 1e3:g} ms",
        ),
        Contender(
            "etcd-floor",
            Role.FLOOR,
            EtcdFloor,
            ttl=True,
            summary="raw gRPC stubs: Txn(no key of the lock ? Put) / DeleteRange",
            notes="one lease per handle; waiters watch the prefix for a delete",
        ),
    ),
    targets=(
        Target("tenure-etcd", "uncontended.p50_us", 1.15, "etcd-floor", label="uncontended"),
        Target("tenure-etcd", "contended.gap_p50_us", 1.3, "etcd-floor", label="hand-off"),
        Target("tenure-etcd-fair", "contended.gap_p50_us", 1.3, "etcd-floor", label="fair hand-off"),
        Target("tenure-etcd-fair", "contended.fairness", 0.99, at_most=False, label="fairness"),
    ),
)
