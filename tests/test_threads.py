"""Threads sharing one sync Coordinator: one renewer thread, no lost update, reentrancy per thread."""

from __future__ import annotations

import threading
import time

import tenure
from tenure._core.leader import check_value


def test_threads_sharing_a_coordinator_never_overlap(backend_url: str) -> None:
    counter = {"value": 0, "inside": 0, "overlaps": 0}
    fences: list[int] = []
    with tenure.Coordinator(backend_url) as coord:
        lock = coord.lock("shared", ttl=2, timeout=30)

        def work() -> None:
            for _ in range(20):
                with lock as lease:
                    counter["inside"] += 1
                    if counter["inside"] > 1:
                        counter["overlaps"] += 1
                    value = counter["value"]
                    time.sleep(0.0005)
                    counter["value"] = value + 1
                    fences.append(lease.fence)
                    counter["inside"] -= 1

        threads = [threading.Thread(target=work) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        renewers = [t for t in threading.enumerate() if t.name == "tenure-renewer"]
    assert counter["value"] == 120 and counter["overlaps"] == 0
    assert fences == sorted(fences) and len(set(fences)) == 120
    assert len(renewers) == 1, "one renewer per coordinator, never a thread per lock"


def test_many_short_leases_are_all_kept_alive_by_one_renewer(backend_url: str) -> None:
    with tenure.Coordinator(backend_url) as coord, tenure.Coordinator(backend_url) as rival:
        leases = [coord.lock(f"many-{i}", ttl=0.3).acquire() for i in range(20)]
        time.sleep(1.0)
        for i, lease in enumerate(leases):
            lease.check()
            assert rival.lock(f"many-{i}").try_acquire() is None
        for lease in leases:
            lease.release()


def test_reentrancy_is_per_thread(backend_url: str) -> None:
    with tenure.Coordinator(backend_url) as coord:
        lock = coord.lock("per-thread", ttl=5, reentrant=True)
        with lock:
            result: list[object] = []
            thread = threading.Thread(target=lambda: result.append(lock.try_acquire()))
            thread.start()
            thread.join()
            assert result == [None], "another thread must not re-enter this thread's hold"
            with lock as inner:
                inner.check()


def test_the_default_election_value_is_valid_whatever_the_thread_name(backend_url: str) -> None:
    outcome: list[object] = []

    def lead() -> None:
        try:
            election = coord.election("named", ttl=5)  # the value defaults to host/pid/thread name
            with election.campaign(timeout=5) as leadership:
                outcome.append((election.value, election.leader(), leadership.term))
        except Exception as exc:
            outcome.append(exc)

    with tenure.Coordinator(backend_url) as coord:
        # Nobody chose this name for a value: it is made valid (escaped, cut), not refused.
        thread = threading.Thread(target=lead, name="worker\nline two\x00\udcff" + "é" * 300)
        thread.start()
        thread.join()
    assert len(outcome) == 1 and isinstance(outcome[0], tuple), outcome
    value, leader, term = outcome[0]
    assert check_value(value) == value
    assert "/worker\\nline two\\x00\\udcff" in value
    assert leader == tenure.Leader(value, term)
