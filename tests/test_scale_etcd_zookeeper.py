"""Many locks held at once on etcd and ZooKeeper: renewed in batches, each one still on its own.

Real servers (conftest's three-node etcd cluster and ZooKeeper ensemble). The renewer hands
every due lease to the store's ``renew_many``: etcd sends one Txn per session and
``CHUNK`` entries, ZooKeeper one multi per ``MULTI`` nodes, and each lease keeps its own
outcome (released, lost or renewed).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from kazoo.client import KazooClient  # type: ignore[import-untyped]

import tenure
from tenure._async.backends.etcd import proto
from tenure._async.backends.etcd.store import CHUNK
from tenure._async.backends.zookeeper.line import MULTI
from tenure._async.backends.zookeeper.nodes import node_component

BACKENDS = ["etcd", "zookeeper"]
MANY = 2000
TTL = 1.5


def url_of(request: pytest.FixtureRequest, backend: str) -> str:
    url: str = request.getfixturevalue(f"{backend}_url")
    return url


def count_round_trips(store: Any, backend: str) -> list[int]:
    """Count the store's renewal requests from now on; return the list of their sizes (entries)."""
    sizes: list[int] = []
    if backend == "etcd":
        client = store._client
        real_call = client.call

        def etcd_call(service: str, method: str, request: Any, what: str, **kwargs: Any) -> Any:
            if what == "renewing":
                sizes.append(len(request.success))
            return real_call(service, method, request, what, **kwargs)

        client.call = etcd_call
    else:
        zk = store._zk
        real_zk_call = zk.call

        def zk_call(make: Callable[[Any], Any], what: str) -> Any:
            if what == "renewing":
                sizes.append(0)  # one multi (kazoo builds it inside ``make``)
            return real_zk_call(make, what)

        zk.call = zk_call
    return sizes


def most_round_trips(leases: int, window: float, backend: str) -> int:
    """Return how many renewal requests ``leases`` may take over ``window`` seconds: O(N / batch).

    Renewals are due every ttl/3; the renewer takes those due within a tenth of the ttl together,
    so leases acquired over a while are renewed in a few groups per cycle, each chunked.
    """
    cycles = math.ceil(window / (TTL / 3)) + 1
    return cycles * (math.ceil(leases / (CHUNK if backend == "etcd" else MULTI)) + 4)


def wait_until(check: Callable[[], bool], within: float) -> bool:
    deadline = time.monotonic() + within
    while not check() and time.monotonic() < deadline:
        time.sleep(0.02)
    return check()


@pytest.mark.parametrize("backend", BACKENDS)
def test_2000_locks_are_held_for_3_ttl_renewed_in_batches_and_released_one_by_one(
    request: pytest.FixtureRequest, backend: str
) -> None:
    url = url_of(request, backend)
    with tenure.Coordinator(url) as coord, tenure.Coordinator(url) as rival:
        leases = [coord.lock(f"many-{i}", ttl=TTL).acquire(timeout=5) for i in range(MANY)]
        assert len({lease.fence for lease in leases}) == MANY
        sizes = count_round_trips(coord._store, backend)
        held_from = time.monotonic()
        time.sleep(3 * TTL)
        held_for = time.monotonic() - held_from
        assert [lease for lease in leases if lease.lost] == []
        for lease in leases:
            lease.check()
        # Renewals come every ttl/3: each cycle of 2,000 renewals is a few round trips, not 2,000.
        assert 0 < len(sizes) <= most_round_trips(MANY, held_for, backend), sizes
        if backend == "etcd":
            assert sum(sizes) >= MANY and max(sizes) <= CHUNK
        # Released one by one: the others stay held, a rival takes only the released one.
        leases[0].release()
        taken = rival.lock("many-0", ttl=TTL).try_acquire()
        assert taken is not None and taken.fence > leases[0].fence
        assert rival.lock("many-1", ttl=TTL).try_acquire() is None
        assert rival.lock(f"many-{MANY - 1}", ttl=TTL).try_acquire() is None
        for index, lease in enumerate(leases[1:], start=1):
            lease.release()
            if index % 500 == 0:
                assert all(not other.lost for other in leases[index + 1 :])
                assert rival.lock(f"many-{index + 1}", ttl=TTL).try_acquire() is None
                freed = rival.lock(f"many-{index}", ttl=TTL).try_acquire()
                assert freed is not None
                freed.release()
        taken.release()


def kill_sessions(request: pytest.FixtureRequest, coord: tenure.Coordinator, backend: str) -> None:
    """End the coordinator's server sessions from outside, as the server does when they expire."""
    store: Any = coord._store
    if backend == "etcd":
        for session in list(store._client.sessions.values()):
            store._client.call("lease", "LeaseRevoke", proto.lease_revoke(session.lease), "test")
        return
    client = store._zk.live_client()
    # A second client on the same session id, closed: the ensemble ends the session.
    hosts = request.getfixturevalue("zookeeper_ensemble").hosts
    intruder = KazooClient(hosts=hosts, client_id=client.client_id)
    intruder.start(timeout=5)
    intruder.stop()
    intruder.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_killed_session_marks_every_lease_lost_within_the_ttl(
    request: pytest.FixtureRequest, backend: str
) -> None:
    url = url_of(request, backend)
    lost: set[int] = set()
    guard = threading.Lock()

    def on_lost(lease: tenure.Lease) -> None:
        with guard:
            lost.add(id(lease))

    with tenure.Coordinator(url) as coord, tenure.Coordinator(url) as rival:
        leases = [coord.lock(f"killed-{i}", ttl=TTL).acquire(timeout=5) for i in range(200)]
        for lease in leases:
            lease.on_lost(on_lost)
        killed = time.monotonic()
        kill_sessions(request, coord, backend)
        assert wait_until(lambda: len(lost) == len(leases), 2 * TTL)
        assert time.monotonic() - killed < TTL + 0.3
        assert all(lease.lost for lease in leases)
        # Each lock is free for others again.
        thief = rival.lock("killed-7", ttl=TTL).acquire(timeout=2)
        assert thief.fence > leases[7].fence
        thief.release()


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_coordinators_of_one_process_exclude_each_other(
    request: pytest.FixtureRequest, backend: str
) -> None:
    url = url_of(request, backend)
    with tenure.Coordinator(url) as first, tenure.Coordinator(url) as second:
        lease = first.lock("shared", ttl=TTL).acquire(timeout=2)
        assert second.lock("shared", ttl=TTL).try_acquire() is None
        time.sleep(TTL)  # renewed meanwhile, in batches with nothing else
        with pytest.raises(tenure.AcquireTimeout):
            second.lock("shared", ttl=TTL).acquire(timeout=TTL)
        lease.check()
        lease.release()
        taken = second.lock("shared", ttl=TTL).acquire(timeout=2)
        assert first.lock("shared", ttl=TTL).try_acquire() is None
        taken.release()


def delete_behind_its_back(
    request: pytest.FixtureRequest, url: str, backend: str, lease: tenure.Lease
) -> None:
    """Delete ``lease``'s entry (etcd) or node (ZooKeeper) as a contender taking it over would."""
    key = lease._holding.key  # the name as the backend stores it (with the namespace)
    if backend == "etcd":
        with tenure.Coordinator(url) as other:
            other.connect()
            store: Any = other._store
            name = proto.entry_key(key, lease.token)
            reply = store._client.call("kv", "DeleteRange", proto.delete(name), "test")
            assert int(reply.deleted) == 1
        return
    chroot = "/" + url.split("/", 3)[3].split("?")[0]
    lock_dir = f"{chroot}/{node_component(key)}"
    client = KazooClient(hosts=request.getfixturevalue("zookeeper_ensemble").hosts)
    client.start(timeout=5)
    try:
        (mine,) = [child for child in client.get_children(lock_dir) if child.startswith(lease.token + "-")]
        client.delete(f"{lock_dir}/{mine}")
    finally:
        client.stop()
        client.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_batch_reports_each_lease_on_its_own(request: pytest.FixtureRequest, backend: str) -> None:
    # Two leases of a batch are deleted at the server: those two are lost, the others renewed.
    url = url_of(request, backend)
    with tenure.Coordinator(url) as coord:
        leases = [coord.lock(f"each-{i}", ttl=TTL).acquire(timeout=5) for i in range(300)]
        sizes = count_round_trips(coord._store, backend)
        doomed = [leases[5], leases[250]]
        for lease in doomed:
            delete_behind_its_back(request, url, backend, lease)
        assert wait_until(lambda: all(lease.lost for lease in doomed), TTL)
        time.sleep(TTL)  # more renewals of the others
        assert [lease for lease in leases if lease.lost] == doomed
        assert len(sizes) <= most_round_trips(len(leases), 2 * TTL, backend), sizes
        for lease in leases:
            if lease not in doomed:
                lease.release()


def test_etcd_rewrites_a_holders_entry_only_while_a_waiter_stands_behind(etcd_url: str) -> None:
    with tenure.Coordinator(etcd_url) as coord, tenure.Coordinator(etcd_url) as rival:
        lease = coord.lock("written", ttl=TTL).acquire(timeout=2)
        store: Any = coord._store
        name = proto.entry_key(lease._holding.key, lease.token)

        def mod_revision() -> int:
            reply = store._client.call("kv", "Range", proto.get(name), "test")
            return int(reply.kvs[0].mod_revision)

        created = mod_revision()
        time.sleep(TTL)  # two or three renewals, nobody behind: nothing written
        assert mod_revision() == created
        lease.check()
        got: list[tenure.Lease | None] = []
        waiter = threading.Thread(
            target=lambda: got.append(rival.lock("written", ttl=TTL).acquire(timeout=3))
        )
        waiter.start()
        try:
            # A waiter behind it: every renewal rewrites the entry, which the waiter watches.
            assert wait_until(lambda: mod_revision() > created, TTL)
            first_write = mod_revision()
            assert wait_until(lambda: mod_revision() > first_write, TTL)
            assert not got, "the waiter took the lock from a live holder"
        finally:
            lease.release()
            waiter.join(timeout=5)
        assert got and got[0] is not None
        got[0].release()
