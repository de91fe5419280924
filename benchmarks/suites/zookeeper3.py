"""The ``zookeeper3`` suite: locks over a three-node ZooKeeper ensemble on loopback.

tenure's ``zookeeper://`` backend (plain and ``fair=True``) against kazoo's ``Lock`` recipe, and
the floor: kazoo creating an ephemeral node to acquire and deleting it to release. The ensemble
(tests/servers_zookeeper.py) is started by the suite's environment, in the parent process.

Every client connects to the first member only. kazoo shuffles a multi-host connect string, so
with all three each handle would land on the leader or on a follower by chance (a follower
forwards writes to the leader: one more hop) and medians would jump between runs. Every write
still needs the quorum of three; the environment records which member leads.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.servers_zookeeper import ZooKeeperEnsemble, four_letter_word

from benchmarks.registry import BenchContext, Contender, Role, Suite, Target
from benchmarks.suites.common import TIMEOUT, TenureHandle, client_versions

CHROOT = "/tenure-bench"
SESSION_TIMEOUT = 30.0  # kazoo's default is 10 s; tenure's zookeeper:// default is 30 s


def _version(port: int) -> str:
    for line in four_letter_word(port, "srvr").splitlines():
        if line.startswith("Zookeeper version:"):
            return "ZooKeeper " + line.split(":", 1)[1].strip().split(",")[0]
    return "ZooKeeper ?"


@contextlib.contextmanager
def three_members(workdir: Path) -> Iterator[dict[str, str]]:
    ensemble = ZooKeeperEnsemble(workdir / "zookeeper")
    try:
        ensemble.start()
        first = ensemble.nodes[0]
        hosts = f"127.0.0.1:{first.client_port}"
        leader = ensemble.leader()
        yield {
            "tenure_url": f"zookeeper://{hosts}{CHROOT}",
            "hosts": hosts,  # the member every client talks to
            "ensemble": ensemble.hosts,
            "leader": f"127.0.0.1:{leader.client_port}",
            "server": _version(first.client_port),
            "clients": client_versions("kazoo"),
            "server_pids": ",".join(str(n.proc.pid) for n in ensemble.nodes if n.proc is not None),
        }
    finally:
        ensemble.stop()


def _client(ctx: BenchContext) -> Any:
    from kazoo.client import KazooClient  # type: ignore[import-untyped]  # missing: skipped

    client = KazooClient(hosts=ctx.params["hosts"], timeout=SESSION_TIMEOUT)
    client.start(timeout=TIMEOUT)
    return client


def _stop(client: Any) -> None:
    client.stop()
    client.close()


class ZooKeeperFloor:
    """The floor: ``create(path, ephemeral=True)`` to acquire, ``delete(path)`` to release.

    One kazoo client, so every call crosses kazoo's connection thread as tenure's and kazoo's
    lock calls do. The lock is one ephemeral node; a waiter whose create failed (NodeExists)
    sets an ``exists`` watch and waits for the node's deletion, then tries again. Only the
    holder deletes the node, and a session never outlives its handle, so no version check.
    """

    def __init__(self, ctx: BenchContext, name: str) -> None:
        self._client = _client(ctx)
        self._path = f"{CHROOT}/floor/{name}"
        self._client.ensure_path(f"{CHROOT}/floor")

    def acquire(self) -> None:
        from kazoo.exceptions import NodeExistsError  # type: ignore[import-untyped]

        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                self._client.create(self._path, b"", ephemeral=True)
                return
            except NodeExistsError:
                pass
            gone = threading.Event()
            if self._client.exists(self._path, watch=lambda _event, gone=gone: gone.set()) is None:
                continue  # deleted between the create and the watch: try again at once
            left = deadline - time.monotonic()
            if left <= 0 or not gone.wait(left):
                raise TimeoutError(f"zookeeper floor {self._path!r} not acquired within {TIMEOUT} s")

    def release(self) -> None:
        self._client.delete(self._path)

    def close(self) -> None:
        _stop(self._client)


class KazooLockHandle:
    """kazoo's ``Lock`` recipe: ``client.Lock(path).acquire(timeout=10)`` / ``.release()``.

    Its acquire creates an ephemeral sequential node and lists the lock's children; a waiter
    watches the node just before its own (FIFO, no herd). Release deletes the node. No TTL: a
    hold ends with the session (a hung holder keeps the lock) and nothing fences.
    """

    def __init__(self, ctx: BenchContext, name: str) -> None:
        self._client = _client(ctx)
        self._lock = self._client.Lock(f"{CHROOT}/kazoo/{name}", os.urandom(4).hex())

    def acquire(self) -> None:
        if not self._lock.acquire(blocking=True, timeout=TIMEOUT):
            raise TimeoutError(f"kazoo lock not acquired within {TIMEOUT} s")

    def release(self) -> None:
        if not self._lock.release():
            raise RuntimeError("kazoo lock was not held at release")

    def close(self) -> None:
        _stop(self._client)


def tenure_zookeeper(ctx: BenchContext, name: str) -> TenureHandle:
    return TenureHandle(ctx.params["tenure_url"], name)


def tenure_zookeeper_fair(ctx: BenchContext, name: str) -> TenureHandle:
    return TenureHandle(ctx.params["tenure_url"], f"fair-{name}", fair=True)


TENURE_NOTES = "skipped while this tenure has no zookeeper:// backend"
SUITE = Suite(
    name="zookeeper3",
    description="locks over a three-node ZooKeeper ensemble on loopback",
    baseline="kazoo",
    environment=three_members,
    contenders=(
        Contender(
            "tenure-zookeeper",
            Role.TENURE,
            tenure_zookeeper,
            floor="zookeeper-floor",
            ttl=True,
            fence=True,
            summary="tenure.Coordinator('zookeeper://h:p/chroot').lock(name, ttl=10).acquire() / .release()",
            notes=TENURE_NOTES + "; waiters watch the holder's node",
        ),
        Contender(
            "tenure-zookeeper-fair",
            Role.TENURE,
            tenure_zookeeper_fair,
            floor="zookeeper-floor",
            ttl=True,
            fence=True,
            summary="the same with fair=True: waiters queue by sequence number",
            notes=TENURE_NOTES + "; each waiter watches only its predecessor",
        ),
        Contender(
            "kazoo",
            Role.PEER,
            KazooLockHandle,
            floor="zookeeper-floor",
            summary="kazoo.recipe.lock.Lock(client, path).acquire(timeout=10) / .release()",
            notes="ephemeral sequential node + get_children; waiters watch their predecessor",
        ),
        Contender(
            "zookeeper-floor",
            Role.FLOOR,
            ZooKeeperFloor,
            summary="raw kazoo: create(path, ephemeral=True) / delete(path)",
            notes="waiters set an exists watch and wait for the delete",
        ),
    ),
    targets=(
        Target("tenure-zookeeper", "uncontended.p50_us", 1.25, "zookeeper-floor", label="uncontended"),
        Target("tenure-zookeeper", "contended.gap_p50_us", 1.3, "zookeeper-floor", label="hand-off"),
        Target(
            "tenure-zookeeper-fair", "contended.gap_p50_us", 1.3, "zookeeper-floor", label="fair hand-off"
        ),
        Target("tenure-zookeeper-fair", "contended.fairness", 0.99, at_most=False, label="fairness"),
    ),
)
