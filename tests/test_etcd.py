"""Faults only an etcd cluster has: a leader killed, a session lost, a holder frozen past it.

The contract suite already runs against etcd (conftest's ``etcd_url``); these tests use a
cluster of their own, because they kill and restart its nodes.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tenure
from tenure._async.backends.etcd import proto
from tenure._core.keys import namespaced_key
from tenure._core.renewal import drift_margin
from tenure._exceptions import BackendUnavailable
from tests.servers import free_port
from tests.servers_etcd import EtcdCluster
from tests.workers import read_line, worker


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    cluster = EtcdCluster(tmp_path_factory.mktemp("etcd-faults")).start()
    yield cluster
    cluster.stop()


@pytest.fixture
def url(cluster: EtcdCluster) -> Iterator[str]:
    yield f"{cluster.url}?namespace=test-{uuid.uuid4().hex[:12]}&op_timeout=2"
    for node in cluster.nodes:  # leave every node running for the next test
        if not node.running:
            cluster.restart(node)
        node.resume()
    cluster.wait_healthy()


@pytest.mark.parametrize(
    "bad",
    [
        "etcd://127.0.0.1:2379/some/path",
        "etcd://127.0.0.1:2379?session_ttl=0",
        "etcd://127.0.0.1:2379?session_ttl=soon",
        "etcd://127.0.0.1:2379?lease=5",
        "etcd://user:secret@127.0.0.1:2379",
    ],
)
def test_bad_urls_fail_before_any_io(bad: str) -> None:
    with pytest.raises(tenure.ConfigurationError) as info:
        tenure.Coordinator(bad).lock("x")
    assert "secret" not in str(info.value)


def test_unreachable_endpoints_fail_within_connect_timeout() -> None:
    with socket.socket() as silent:  # accepts connections, never answers: a black hole
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        hosts = f"127.0.0.1:{free_port()},127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        coord = tenure.Coordinator(f"etcd://{hosts}?connect_timeout=0.5")
        with pytest.raises(BackendUnavailable):
            coord.lock("x").try_acquire()
        coord.close()
        assert time.monotonic() - started < 1.5


def test_a_dead_first_endpoint_is_skipped(cluster: EtcdCluster) -> None:
    url = f"etcd://127.0.0.1:{free_port()},{cluster.endpoints}?namespace=test-{uuid.uuid4().hex[:12]}"
    with tenure.Coordinator(url) as coord, coord.lock("x", ttl=2, timeout=2) as lease:
        assert lease.fence > 0


def test_killing_the_leader_keeps_the_lock_held_and_the_line_moving(url: str, cluster: EtcdCluster) -> None:
    inside: list[int] = []  # who is in the critical section right now
    served: list[tuple[int, int]] = []
    errors: list[BaseException] = []
    guard = threading.Lock()

    def waiter(index: int) -> None:
        deadline = time.monotonic() + 30
        with tenure.Coordinator(url) as coord:
            while time.monotonic() < deadline:
                try:
                    with coord.lock("job", ttl=1, fair=index % 2 == 0, timeout=20) as lease:
                        with guard:
                            inside.append(index)
                            assert len(inside) == 1, f"two holders at once: {inside}"
                        time.sleep(0.05)
                        lease.check()
                        with guard:
                            inside.remove(index)
                            served.append((index, lease.fence))
                        return
                except (BackendUnavailable, tenure.LockLost):
                    with guard:
                        if index in inside:
                            inside.remove(index)
                    time.sleep(0.1)  # the cluster is electing a leader: try again
                except BaseException as exc:
                    errors.append(exc)
                    return

    with tenure.Coordinator(url) as coord:
        # The holder's ttl must outlast a renewal stuck on the dying leader (op_timeout=2)
        # plus an election; a shorter lease is rightly reported lost when that happens.
        lease = coord.lock("job", ttl=5).acquire(timeout=5)
        threads = [threading.Thread(target=waiter, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(0.5)  # the waiters are queued or watching
        cluster.leader().kill()
        time.sleep(4.0)  # past a stuck renewal: the holder's renewals must move to a live node
        lease.check()
        assert not served, "a waiter got the lock while it was still held"
        lease.release()
        for thread in threads:
            thread.join(timeout=40)
    assert not errors, errors
    assert sorted(index for index, _ in served) == [0, 1, 2, 3]
    fences = [fence for _, fence in served]
    assert fences == sorted(fences) and fences[0] > lease.fence


def test_a_frozen_leader_is_left_behind(url: str, cluster: EtcdCluster) -> None:
    fast = url.replace("op_timeout=2", "op_timeout=0.5")
    with tenure.Coordinator(fast) as coord, tenure.Coordinator(fast) as rival:
        lease = coord.lock("frozen", ttl=3).acquire(timeout=2)
        cluster.leader().pause()  # SIGSTOP: connections stay open, nothing answers
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            # A call that went to the frozen node fails; the next one goes elsewhere.
            with contextlib.suppress(BackendUnavailable):
                assert rival.lock("frozen").try_acquire() is None
            time.sleep(0.2)
        lease.check()  # renewals moved to the nodes that elected a new leader
        lease.release()
        again = rival.lock("frozen", ttl=3).acquire(timeout=3)
        assert again.fence > lease.fence
        again.release()


def test_a_revoked_session_loses_its_locks(url: str) -> None:
    lost: list[tenure.Lease] = []
    with tenure.Coordinator(url) as coord, tenure.Coordinator(url) as rival:
        lease = coord.lock("session", ttl=1).acquire(timeout=2)
        lease.on_lost(lost.append)
        store: Any = coord._store
        for session in list(store._client.sessions.values()):  # what an expired session looks like
            store._client.call("lease", "LeaseRevoke", proto.lease_revoke(session.lease), "test")
        thief = rival.lock("session", ttl=1).acquire(timeout=2)
        assert thief.fence > lease.fence
        deadline = time.monotonic() + 2
        while not lost and time.monotonic() < deadline:
            time.sleep(0.02)
        assert lost == [lease]
        with pytest.raises(tenure.LockLost):
            lease.check()
        thief.check()
        thief.release()
        again = coord.lock("session", ttl=1).acquire(timeout=2)  # a new session is granted
        again.release()


def test_a_holder_paused_past_its_session_ttl_is_told(url: str) -> None:
    slow = f"{url}&session_ttl=2"
    holder = worker("hold-and-check", slow, "paused", "0.5")
    try:
        first_fence = int(read_line(holder, "HELD").split()[1])
        os.kill(holder.pid, signal.SIGSTOP)
        time.sleep(1.0)
        with tenure.Coordinator(slow) as coord:
            # The session still lives at the server (2 s): nobody may take the lock yet.
            assert coord.lock("paused", ttl=5).try_acquire() is None
            lease = coord.lock("paused", ttl=5).acquire(timeout=4)
            assert lease.fence > first_fence
            os.kill(holder.pid, signal.SIGCONT)
            assert read_line(holder, "LOST") == f"LOST {first_fence} callback=True"
            assert read_line(holder, "RELEASE-REFUSED")
            lease.check()
            lease.release()
        assert holder.wait(timeout=10) == 0
    finally:
        os.kill(holder.pid, signal.SIGCONT) if holder.poll() is None else None
        holder.kill()
        holder.wait()


def test_the_waiter_behind_a_killed_holder_takes_over_after_its_ttl(url: str) -> None:
    # The session lives 10 s after the kill; the waiter just behind the holder sees no renewal
    # (a rewrite of its entry) for the holder's ttl, and deletes its entry itself.
    long_session = f"{url}&session_ttl=10"
    holder = worker("hold-forever", long_session, "crashed", "1")
    try:
        first_fence = int(read_line(holder, "HELD").split()[1])
        with tenure.Coordinator(long_session) as coord:
            waiting: dict[str, tenure.Lease] = {}
            lock = coord.lock("crashed", ttl=5, fair=True)
            waiter = threading.Thread(target=lambda: waiting.update(lease=lock.acquire(timeout=8)))
            waiter.start()
            time.sleep(1.0)  # the waiter sees at least one renewal before the kill
            assert not waiting, "the lock was taken from a live holder"
            holder.kill()  # kill -9: no release, no goodbye
            holder.wait()
            killed = time.monotonic()
            waiter.join(timeout=10)
            took = time.monotonic() - killed
            assert waiting["lease"].fence > first_fence
            assert took < 2.5, f"took {took:.2f} s to take over a 1 s lease (the session lasts 10 s)"
            waiting["lease"].release()
    finally:
        holder.kill()
        holder.wait()


def test_waiters_watch_only_their_predecessor(url: str) -> None:
    watched: dict[int, list[bytes]] = {}
    tokens: dict[int, str] = {}

    def waiter(index: int) -> None:
        with tenure.Coordinator(url) as coord:
            coord.connect()
            store: Any = coord._store
            client = store._client
            real_wait, real_watch = client.wait_deleted, client.watch_entry

            # Deletions are watched by waiters further back; the waiter just behind the holder
            # also watches its renewals (to take over from a holder that stops renewing).
            def spy_wait(name: bytes, revision: int, timeout: float, **options: Any) -> Any:
                watched.setdefault(index, []).append(name)
                return real_wait(name, revision, timeout, **options)

            def spy_watch(name: bytes, revision: int, timeout: float) -> Any:
                watched.setdefault(index, []).append(name)
                return real_watch(name, revision, timeout)

            client.wait_deleted, client.watch_entry = spy_wait, spy_watch
            with coord.lock("line", ttl=2, fair=True, timeout=20) as lease:
                tokens[index] = lease.token
                time.sleep(0.1)

    with tenure.Coordinator(url) as coord:
        lease = coord.lock("line", ttl=2, fair=True).acquire(timeout=2)
        tokens[-1] = lease.token
        threads = [threading.Thread(target=waiter, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
            time.sleep(0.3)  # arrival order
        lease.release()
        for thread in threads:
            thread.join(timeout=20)
    key = namespaced_key(url.split("namespace=")[1].split("&")[0], "line")
    for index in range(4):
        predecessor = proto.entry_key(key, tokens[index - 1])
        assert watched[index], f"waiter {index} never watched"
        assert set(watched[index]) == {predecessor}, f"waiter {index} watched {watched[index]}"


def test_the_cluster_helper_finds_the_leader(cluster: EtcdCluster, tmp_path: Path) -> None:
    assert cluster.leader() in cluster.nodes


def entries_left(url: str, name: str) -> int:
    """Return how many entries (holders and waiters) lock ``name`` has in etcd right now."""
    key = namespaced_key(url.split("namespace=")[1].split("&")[0], name)
    with tenure.Coordinator(url) as coord:
        coord.connect()
        store: Any = coord._store
        reply = store._client.call("kv", "Range", proto.count_entries(proto.lock_prefix(key)), "test")
        return int(reply.count)


@pytest.mark.parametrize("fair", ["plain", "fair"])
def test_every_process_acquires_again_after_the_leader_is_killed(
    url: str, cluster: EtcdCluster, tmp_path: Path, fair: str
) -> None:
    # Five processes cycle on one lock (ttl 1 s) while the leader is killed, then restarted 1 s
    # later, twice. An entry whose create or release was lost in the fault must not stay behind,
    # kept alive by its session: the lock would never be acquired again.
    ttl, seconds, workers = 1.0, 14.0, 5
    logs = [tmp_path / f"cycle-{i}.json" for i in range(workers)]
    procs = [worker("cycle", url, "busy", str(ttl), fair, str(seconds), str(log), stdin=-1) for log in logs]
    try:
        time.sleep(2.0)
        faults: list[tuple[float, float]] = []  # (killed, back up)
        for _ in range(2):
            leader = cluster.leader()
            killed = time.monotonic()
            leader.kill()
            time.sleep(1.0)
            cluster.restart(leader)
            faults.append((killed, time.monotonic()))
            time.sleep(2.0)
        for proc in procs:
            read_line(proc, "DONE")
        runs = [json.loads(log.read_text()) for log in logs]
        errors = sorted({error for run in runs for _, error in run["errors"]})
        # Every process still holds its sessions: a lost entry would still be there.
        assert entries_left(url, "busy") == 0, f"an entry was left behind; errors: {errors}"
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    ends = faults[-1][1] + 2.0  # the workers run at least this long
    every = sorted(t for run in runs for t in run["acquired"])
    # The lock moves on within ttl + an election (+ a call stuck on the dead node) of each kill.
    bound = ttl + 1.0 + 2.0
    for killed, _ in faults:
        after = [t for t in every if t > killed]
        assert after and after[0] - killed < bound + 1.0, f"no acquisition within {bound + 1:g} s of a kill"
    gaps = [b - a for a, b in itertools.pairwise(every) if a > faults[0][0]]
    assert max(gaps) < bound, f"the lock stood still for {max(gaps):.2f} s"
    for index, run in enumerate(runs):
        assert any(faults[-1][1] < t < ends for t in run["acquired"]), f"worker {index} never acquired again"


@pytest.mark.parametrize("fault", ["kill", "stop"])
@pytest.mark.parametrize("fair", ["plain", "fair"])
def test_a_killed_or_paused_holder_is_replaced_within_its_ttl(url: str, fair: str, fault: str) -> None:
    # The session's TTL is whole seconds (2 s for a 1 s lock): a waiter that waited for it to
    # expire would wait about twice the ttl. The waiter watching the holder takes over once it
    # saw no renewal for the ttl (plus the drift margin), plain or fair.
    ttl = 1.0
    holder = worker("hold-and-report", url, "crash", str(ttl), fair)
    valid: list[float] = []
    try:
        fence = int(read_line(holder, "HELD").split()[1])
        assert holder.stdout is not None
        reader = threading.Thread(
            target=lambda: valid.extend(
                float(line.split()[1]) for line in holder.stdout or [] if "VALID" in line
            )
        )
        reader.start()
        with tenure.Coordinator(url) as coord:
            got: dict[str, Any] = {}
            lock = coord.lock("crash", ttl=ttl, fair=fair == "fair")
            waiter = threading.Thread(
                target=lambda: got.update(lease=lock.acquire(timeout=6), at=time.monotonic())
            )
            waiter.start()
            time.sleep(1.3)  # the waiter sees a few renewals
            assert not got, "the lock was taken from a live holder"
            struck = time.monotonic()
            # kill -9: no release, no goodbye; SIGSTOP: the same, until it is resumed
            os.kill(holder.pid, signal.SIGKILL if fault == "kill" else signal.SIGSTOP)
            waiter.join(timeout=10)
            assert got, "the waiter did not get the lock"
            last_valid = valid[-1]
            assert got["lease"].fence > fence
            got["lease"].release()
        os.kill(holder.pid, signal.SIGCONT)  # a paused holder sees its lease lost, and leaves
        holder.wait(timeout=10)
        reader.join(timeout=5)
        # The holder's last renewal was sent at its last validity deadline less the ttl (and margin).
        renewed = last_valid - ttl + drift_margin(ttl)
        after_fault, after_renewal = got["at"] - struck, got["at"] - renewed
        assert after_renewal < ttl + 0.25, (
            f"{after_renewal:.3f} s after the last renewal ({after_fault:.3f} after the {fault})"
        )
    finally:
        if holder.poll() is None:
            os.kill(holder.pid, signal.SIGCONT)
            holder.kill()
        holder.wait()


# -- semaphores: permits are lock entries on slot keys ----------------------------------------


def test_a_killed_permit_holder_is_expired_by_a_waiter_before_its_session_ends(
    url: str, tmp_path: Path
) -> None:
    # The session lives 10 s after the kill; a permit's entry is rewritten at every renewal,
    # so the waiter sees none for the ttl and deletes the entry itself.
    long_session = f"{url}&session_ttl=10"
    holder = worker("hold-permit", long_session, "crashed", "1", str(tmp_path / "register.db"))
    try:
        first_fence = int(read_line(holder, "HELD").split()[1])
        with tenure.Coordinator(long_session) as coord:
            sem = coord.semaphore("crashed", limit=1, ttl=5)
            with pytest.raises(tenure.AcquireTimeout):
                sem.acquire(timeout=1.5)  # longer than the ttl: a live holder keeps its permit
            holder.kill()  # kill -9: no release, no goodbye
            holder.wait()
            killed = time.monotonic()
            permit = sem.acquire(timeout=8)
            took = time.monotonic() - killed
            assert permit.fence > first_fence
            assert took < 2.0, f"took {took:.2f} s to take over a 1 s permit (the session lasts 10 s)"
            permit.release()
    finally:
        holder.kill()
        holder.wait()


def test_many_slots_take_several_txns_and_change_their_limit_in_several_reads(url: str) -> None:
    # 130 slots: a take tries them proto.MAX_CHAIN at a time, a change counts them READS at a time.
    with tenure.Coordinator(url) as coord, tenure.Coordinator(url) as rival:
        sem = coord.semaphore("many", limit=130, ttl=10)
        permits = [sem.try_acquire() for _ in range(130)]
        assert all(permits)
        fences = [p.fence for p in permits if p is not None]
        assert fences == sorted(set(fences))
        assert sem.try_acquire() is None
        assert len(sem.holders()) == 130
        with pytest.raises(tenure.ConfigurationError, match="limit=130"):
            rival.semaphore("many", limit=200).try_acquire()
        with pytest.raises(tenure.ConfigurationError, match="limit=130"):
            rival.semaphore("many", limit=3).try_acquire()
        for permit in permits[:-1]:
            assert permit is not None
            permit.release()
        with pytest.raises(tenure.ConfigurationError, match="limit=130"):
            rival.semaphore("many", limit=200).try_acquire()  # one is still live, in any slot
        assert permits[-1] is not None
        permits[-1].release()
        wider = rival.semaphore("many", limit=200, ttl=5).try_acquire()
        assert wider is not None
        wider.release()


def test_a_limit_change_that_died_midway_leaves_the_name_usable(url: str) -> None:
    with tenure.Coordinator(url) as coord:
        store: Any = coord._store
        sem = coord.semaphore("torn", limit=2, ttl=5)
        held = sem.acquire(timeout=1)
        record = proto.record_key(sem.key)
        current = store._client.call("kv", "Range", proto.get(record), "test").kvs[0]
        # What a changer to 5 that died between its two writes leaves behind.
        swapped = proto.record_swap(record, int(current.mod_revision), b"2>5", [])
        assert store._client.call("kv", "Txn", swapped, "test").succeeded
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


def test_a_take_resent_after_its_reply_was_lost_keeps_one_permit(url: str) -> None:
    with tenure.Coordinator(url) as coord:
        store: Any = coord._store
        real = store._client.call

        def applied_twice(service: str, method: str, request: Any, what: str, **options: Any) -> Any:
            if what == "acquiring a permit":  # the first sending was applied, its reply lost
                real(service, method, request, what)
                options.get("sent", []).append(0)
            return real(service, method, request, what, **options)

        store._client.call = applied_twice
        sem = coord.semaphore("resent", limit=3, ttl=5)
        try:
            permit = sem.acquire(timeout=1)
        finally:
            store._client.call = real
        assert [h.fence for h in sem.holders()] == [permit.fence]
        others = [sem.try_acquire(), sem.try_acquire()]
        assert all(others)
        assert sem.try_acquire() is None
        for lease in [permit, *others]:
            assert lease is not None
            lease.release()
        assert sem.holders() == []
