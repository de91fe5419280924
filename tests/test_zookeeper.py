"""ZooKeeper under faults: members killed while a lock is held, a holder frozen past its session."""

from __future__ import annotations

import itertools
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kazoo.client import KazooClient  # type: ignore[import-untyped]

import tenure
from tenure._async.backends.zookeeper.nodes import node_component
from tenure._core.keys import namespaced_key
from tests._sync.faults import replace_renew
from tests.servers import free_port
from tests.servers_zookeeper import ZooKeeperEnsemble, four_letter_word
from tests.workers import read_line, worker

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZooKeeperEnsemble]:
    """An ensemble of this module's own, free to lose members."""
    zk = ZooKeeperEnsemble(tmp_path_factory.mktemp("zk-faults")).start()
    yield zk
    zk.stop()


@pytest.fixture
def url(ensemble: ZooKeeperEnsemble) -> Iterator[str]:
    """A fresh chroot on a whole ensemble; members killed by the test are started again after."""
    yield ensemble.url(f"/faults-{uuid.uuid4().hex[:12]}", op_timeout=10)
    for node in ensemble.nodes:
        node.resume()
        if not node.running:
            node.start()
    ensemble.wait_for_quorum()


def connected_port(coord: tenure.Coordinator) -> int:
    """Return the client port of the member this coordinator's session is connected to."""
    client: Any = coord._store._zk._client  # type: ignore[attr-defined]
    port: int = client._connection._socket.getpeername()[1]
    return port


def test_killing_the_leader_keeps_the_lock_and_the_line(ensemble: ZooKeeperEnsemble, url: str) -> None:
    holds: list[tuple[float, float, int]] = []
    record = threading.Lock()

    def waiter(fair: bool) -> None:
        with tenure.Coordinator(url) as coord, coord.lock("job", ttl=5, timeout=30, fair=fair) as lease:
            entered = time.monotonic()
            time.sleep(0.1)
            with record:
                holds.append((entered, time.monotonic(), lease.fence))

    with tenure.Coordinator(url) as coord:
        lease = coord.lock("job", ttl=5).acquire(timeout=5)
        entered = time.monotonic()
        threads = [threading.Thread(target=waiter, args=(i % 2 == 0,)) for i in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(0.5)  # the waiters are in line (or polling)
        ensemble.leader().kill()
        ensemble.wait_for_quorum()
        renew_after_reconnecting(lease)  # the session and its node survived the election
        lease.check()
        with tenure.Coordinator(url) as rival:
            assert rival.lock("job").try_acquire() is None, "the lock must stay held across the failover"
        holds.append((entered, time.monotonic(), lease.fence))
        lease.release()
        for thread in threads:
            thread.join(timeout=30)
            assert not thread.is_alive(), "a waiter was stranded by the failover"
    holds.sort()
    assert len(holds) == 5
    for (_, released, fence), (acquired, _, next_fence) in itertools.pairwise(holds):
        assert acquired >= released, "two holders overlapped across the failover"
        assert next_fence > fence, "fences must keep growing across a leader election"


def test_the_session_moves_to_another_member_when_its_member_dies(
    ensemble: ZooKeeperEnsemble, url: str
) -> None:
    with tenure.Coordinator(url) as coord:
        lease = coord.lock("moving", ttl=3).acquire(timeout=5)
        before = connected_port(coord)
        member = next(node for node in ensemble.nodes if node.client_port == before)
        member.kill()
        time.sleep(2.5)  # several renewals: the first may fail while kazoo reconnects
        lease.check()
        after = connected_port(coord)
        assert after != before, "kazoo must reconnect to another member"
        renew_after_reconnecting(lease)
        with tenure.Coordinator(url) as rival:
            assert rival.lock("moving").try_acquire() is None
        lease.release()


def test_a_frozen_holder_process_loses_its_session_and_is_told(ensemble: ZooKeeperEnsemble) -> None:
    chroot = f"/frozen-{uuid.uuid4().hex[:12]}"
    url = ensemble.url(chroot, session_timeout=1.5)
    holder = worker("hold-and-check", url, "frozen", "1.5")
    watcher = KazooClient(hosts=ensemble.hosts)
    watcher.start(timeout=5)
    try:
        first_fence = int(read_line(holder, "HELD").split()[1])
        lock_dir = f"{chroot}/{node_component(namespaced_key('tenure', 'frozen'))}"
        assert len(watcher.get_children(lock_dir)) == 1
        os.kill(holder.pid, signal.SIGSTOP)  # a GC pause, a VM migration, a ^Z
        deadline = time.monotonic() + 10
        while watcher.get_children(lock_dir) and time.monotonic() < deadline:
            time.sleep(0.1)
        # Nobody contended: the ensemble itself ended the session and removed its node.
        assert watcher.get_children(lock_dir) == [], "the hold must end with its session"
        with tenure.Coordinator(url) as coord:
            lease = coord.lock("frozen", ttl=1.5).acquire(timeout=2)
            assert lease.fence > first_fence
            os.kill(holder.pid, signal.SIGCONT)
            assert read_line(holder, "LOST") == f"LOST {first_fence} callback=True"
            assert read_line(holder, "RELEASE-REFUSED") == "RELEASE-REFUSED"
            lease.check()  # the stale holder's release did not free ours
            lease.release()
        assert holder.wait(timeout=10) == 0
    finally:
        if holder.poll() is None:
            os.kill(holder.pid, signal.SIGCONT)
            holder.kill()
        holder.wait()
        watcher.stop()
        watcher.close()


@pytest.mark.parametrize("fair", [True, False], ids=["fair", "plain"])
def test_waiters_watch_only_their_predecessor(ensemble: ZooKeeperEnsemble, url: str, fair: bool) -> None:
    # Plain locks wait in the line too (plain_waiters_queue): a release wakes one waiter.
    with tenure.Coordinator(url) as coord:
        lease = coord.lock("line", ttl=5).acquire()
        stop = threading.Event()
        waiters = [tenure.Coordinator(url) for _ in range(4)]

        served: list[int] = []

        def wait_in_line(client: tenure.Coordinator) -> None:
            try:
                with client.lock("line", ttl=5, fair=fair, timeout=15):
                    served.append(waiters.index(client))
            except tenure.AcquireTimeout:
                assert stop.is_set()

        threads = []
        for client in waiters:  # one after the other, so the line's order is known
            threads.append(threading.Thread(target=wait_in_line, args=(client,)))
            threads[-1].start()
            time.sleep(0.3)
        try:
            store: Any = coord._store  # type: ignore[attr-defined]
            line = store._children(namespaced_key("tenure", "line"))
            assert len(line) == 5
            lock_dir = f"{url_chroot(url)}/{node_component(namespaced_key('tenure', 'line'))}"
            complete = 0
            for _ in range(10):  # a watch that just fired is re-armed a moment later: sample
                watched = watched_children(ensemble, lock_dir)
                assert all(len(sessions) == 1 for sessions in watched.values()), f"a herd: {watched}"
                assert line[-1] not in watched, "nobody stands behind the last waiter"
                # Each node but the last is watched by exactly one session: its successor's.
                complete += all(name in watched for name in line[:-1])
                time.sleep(0.05)
            assert complete, f"some waiter watches nothing: {watched}"
            lease.release()
            for thread in threads:
                thread.join(timeout=20)
            assert served == [0, 1, 2, 3], "waiters must be served in the order they lined up"
        finally:
            stop.set()
            for client in waiters:
                client.close()


def test_a_frozen_ensemble_fails_within_op_timeout_and_the_holder_is_told(
    ensemble: ZooKeeperEnsemble, url: str
) -> None:
    with tenure.Coordinator(url.replace("op_timeout=10", "op_timeout=0.5")) as coord:
        lost: list[tenure.Lease] = []
        lease = coord.lock("frozen", ttl=1).acquire()
        lease.on_lost(lost.append)
        for node in ensemble.nodes:
            node.pause()
        started = time.monotonic()
        with pytest.raises(tenure.BackendUnavailable):  # BackendTimeout, or the connection drops
            coord.lock("other").try_acquire()
        assert time.monotonic() - started < 1.5
        time.sleep(1.2)
        assert lost == [lease], "renewals that cannot reach the ensemble lose the lease with its validity"


def test_a_fair_waiter_takes_over_from_a_stuck_holder_by_the_ensembles_clock(url: str) -> None:
    with tenure.Coordinator(url) as coord, tenure.Coordinator(url) as rival:
        lease = coord.lock("stuck", ttl=0.6).acquire()
        store: Any = coord._store  # type: ignore[attr-defined]

        def stalled(*args: object) -> bool:
            raise tenure.BackendUnavailable("injected: the holder is alive but cannot renew")

        replace_renew(store, stalled)  # its session stays alive: only the TTL can end this hold
        started = time.monotonic()
        taken = rival.lock("stuck", ttl=5, fair=True).acquire(timeout=5)
        assert time.monotonic() - started < 0.6 + 1.5
        assert taken.fence > lease.fence and lease.lost
        with pytest.raises(tenure.LockLost):
            lease.release()
        taken.check()
        taken.release()


def test_an_unreachable_ensemble_fails_within_connect_timeout() -> None:
    dead = ",".join(f"127.0.0.1:{free_port()}" for _ in range(3))
    coord = tenure.Coordinator(f"zookeeper://{dead}/x?connect_timeout=0.5")
    started = time.monotonic()
    with pytest.raises(tenure.BackendUnavailable):
        coord.lock("never").try_acquire()
    assert time.monotonic() - started < 2.0
    coord.close()


@pytest.mark.parametrize(
    "bad",
    [
        "zookeeper://",
        "zookeeper:///chroot",
        "zookeeper://127.0.0.1:2181/a//b",
        "zookeeper://127.0.0.1:2181/a/../b",
        "zookeeper://127.0.0.1:2181?session_timeout=soon",
        "zookeeper://127.0.0.1:2181?session_timeout=0",
        "zookeeper://127.0.0.1:2181?sessiontimeout=5",
    ],
)
def test_a_bad_url_fails_before_any_io(bad: str) -> None:
    with pytest.raises(tenure.ConfigurationError):
        tenure.Coordinator(bad)


def test_a_ttl_longer_than_the_session_is_refused(url: str) -> None:
    with tenure.Coordinator(f"{url}&session_timeout=2") as coord:
        with pytest.raises(tenure.ConfigurationError, match="session"):
            coord.lock("long", ttl=5).acquire(timeout=1)
        assert coord.inspect("long") is None, "the refused attempt must leave no node behind"


def test_no_node_is_left_behind_by_callers_that_gave_up(ensemble: ZooKeeperEnsemble, url: str) -> None:
    with tenure.Coordinator(url) as coord, tenure.Coordinator(url) as rival:
        lease = coord.lock("busy", ttl=5).acquire()
        assert rival.lock("busy").try_acquire() is None
        with pytest.raises(tenure.AcquireTimeout):
            rival.lock("busy", fair=True).acquire(timeout=0.3)
        with pytest.raises(tenure.AcquireTimeout):
            rival.lock("busy").acquire(timeout=0.3)
        store: Any = coord._store  # type: ignore[attr-defined]
        busy = namespaced_key("tenure", "busy")
        assert len(store._children(busy)) == 1, "only the holder's node may remain"
        lease.release()
        assert store._children(busy) == []


# -- semaphores: permits are lock nodes on slot keys ----------------------------------------------


def test_permit_attempts_leave_only_holders_and_a_record(url: str) -> None:
    with tenure.Coordinator(url) as coord, tenure.Coordinator(url) as rival:
        sem = coord.semaphore("slots", limit=3, ttl=5)
        permits = [sem.acquire(timeout=1) for _ in range(3)]
        assert rival.semaphore("slots", limit=3).try_acquire() is None
        with pytest.raises(tenure.AcquireTimeout):
            rival.semaphore("slots", limit=3).acquire(timeout=0.3)
        store: Any = coord._store  # type: ignore[attr-defined]
        slots = [f"tenure:permit:{slot}:slots" for slot in range(3)]
        assert [len(store._children(slot)) for slot in slots] == [1, 1, 1], "only holders' nodes remain"
        record = store._permits.record(namespaced_key("tenure", "slots", kind="semaphore"))
        assert store._zk._client.get(record)[0] == b"3"
        for permit in permits:
            permit.release()
        assert [store._children(slot) for slot in slots] == [[], [], []]


def test_waiters_are_not_woken_by_each_others_attempts(url: str) -> None:
    # A child watch fires when another waiter's attempt adds and drops its node behind a
    # holder: only a holder gone ends a wait, or the waiters would retry in a storm.
    coords = [tenure.Coordinator(url) for _ in range(4)]
    try:
        held = coords[0].semaphore("busy", limit=2, ttl=5)
        permits = [held.acquire(timeout=1) for _ in range(2)]
        attempts = [0, 0, 0]
        timeouts: list[bool] = []

        def wait(index: int) -> None:
            store: Any = coords[index + 1]._store  # type: ignore[attr-defined]
            real = store.try_acquire_permit

            def counted(*args: Any) -> Any:
                attempts[index] += 1
                return real(*args)

            store.try_acquire_permit = counted
            try:
                coords[index + 1].semaphore("busy", limit=2, ttl=5).acquire(timeout=2)
            except tenure.AcquireTimeout:
                timeouts.append(True)

        waiters = [threading.Thread(target=wait, args=(index,)) for index in range(3)]
        for waiter in waiters:
            waiter.start()
        for waiter in waiters:
            waiter.join(timeout=10)
        assert timeouts == [True, True, True]
        assert max(attempts) < 15, f"attempts per waiter in 2 s: {attempts}"
        for permit in permits:
            permit.release()
    finally:
        for coord in coords:
            coord.close()


def test_a_limit_change_that_died_midway_leaves_the_name_usable(url: str) -> None:
    with tenure.Coordinator(url) as coord:
        store: Any = coord._store  # type: ignore[attr-defined]
        sem = coord.semaphore("torn", limit=2, ttl=5)
        held = sem.acquire(timeout=1)
        record = store._permits.record(sem.key)
        store._zk._client.set(record, b"2>5")  # what a changer to 5 that died midway leaves
        with pytest.raises(tenure.ConfigurationError, match="limit=2"):
            coord.semaphore("torn", limit=5).try_acquire()
        second = sem.try_acquire()  # the live limit is 2: its holders put it back and go on
        assert second is not None
        assert sem.try_acquire() is None
        held.release()
        second.release()
        wider = coord.semaphore("torn", limit=5, ttl=5).try_acquire()
        assert wider is not None
        wider.release()
        assert store._zk._client.get(record)[0] == b"5"


# -- helpers -------------------------------------------------------------------------------------


def renew_after_reconnecting(lease: tenure.Lease, within: float = 5.0) -> None:
    """Renew ``lease`` once its client has reconnected (a suspended connection refuses)."""
    deadline = time.monotonic() + within
    while True:
        try:
            lease.renew()
            return
        except tenure.BackendUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def url_chroot(url: str) -> str:
    return "/" + url.split("/", 3)[3].split("?")[0]


def watched_children(ensemble: ZooKeeperEnsemble, lock_dir: str) -> dict[str, set[str]]:
    """Return, per child of ``lock_dir``, the sessions watching it, across every member."""
    watched: dict[str, set[str]] = {}
    for node in ensemble.nodes:
        path = None
        for line in four_letter_word(node.client_port, "wchp").splitlines():
            if line.startswith("/"):
                path = line.strip()
            elif path is not None and path.startswith(lock_dir + "/") and line.strip():
                watched.setdefault(path.rsplit("/", 1)[1], set()).add(line.strip())
    return watched
