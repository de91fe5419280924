"""Redis under faults: a server that restarts empty, dies or freezes while a lock is held."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

import tenure
from tenure._core.keys import namespaced_key
from tenure._core.semaphore import permit_keys
from tests.servers import RedisServer, free_port

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    """A server of this test's own, free to be killed, frozen and restarted."""
    redis = RedisServer(tmp_path / "redis").start()
    yield redis
    redis.stop()


def test_restart_without_persistence_keeps_fences_growing_and_tells_the_holder(server: RedisServer) -> None:
    url = f"{server.url}?op_timeout=0.5&connect_timeout=0.5"
    with tenure.Coordinator(url) as coord:
        lost: list[tenure.Lease] = []
        lease = coord.lock("orders", ttl=0.6).acquire()
        lease.on_lost(lost.append)
        server.restart()  # every key is gone, the fence counter too
        deadline = time.monotonic() + 3
        while not lost and time.monotonic() < deadline:
            time.sleep(0.02)
        assert lost == [lease], "the holder must be told at its next renewal, not at release"
        with pytest.raises(tenure.LockLost):
            lease.check()
        with tenure.Coordinator(url) as rival:
            after = rival.lock("orders", ttl=5).acquire(timeout=2)
            assert after.fence > lease.fence, "a restarted server must not hand out an old fence"
            with pytest.raises(tenure.LockLost):
                lease.release()
            after.check()
            after.release()


def test_a_dead_server_is_reported_as_loss_by_the_renewer(server: RedisServer) -> None:
    url = f"{server.url}?op_timeout=0.3&connect_timeout=0.3"
    with tenure.Coordinator(url) as coord:
        lost: list[tenure.Lease] = []
        lease = coord.lock("orders", ttl=0.9).acquire()
        lease.on_lost(lost.append)
        server.kill()
        time.sleep(1.2)
        assert lost == [lease]
        with pytest.raises(tenure.LockLost):
            lease.check()
        with pytest.raises(tenure.BackendUnavailable):
            coord.lock("other").try_acquire()


def test_a_frozen_server_times_out_within_op_timeout(server: RedisServer) -> None:
    url = f"{server.url}?op_timeout=0.3&connect_timeout=0.3"
    with tenure.Coordinator(url) as coord:
        lease = coord.lock("orders", ttl=0.9).acquire()
        server.pause()
        try:
            started = time.monotonic()
            with pytest.raises(tenure.BackendTimeout):
                coord.lock("other").try_acquire()
            assert time.monotonic() - started < 1.5
            time.sleep(1.0)
            assert lease.lost, "renewals that time out must lose the lease once its validity ends"
        finally:
            server.resume()


def test_an_unreachable_server_fails_within_the_connect_timeout() -> None:
    started = time.monotonic()
    with pytest.raises(tenure.BackendUnavailable):
        tenure.Coordinator(f"redis://127.0.0.1:{free_port()}/0?connect_timeout=0.5").connect()
    assert time.monotonic() - started < 2.0


def test_the_password_stays_out_of_errors(server: RedisServer) -> None:
    url = f"redis://someone:hunter2-secret@127.0.0.1:{server.port}/0"
    with pytest.raises(tenure.BackendUnavailable) as info:
        tenure.Coordinator(url).connect()
    assert "hunter2-secret" not in str(info.value) and "***" in str(info.value)


def test_bad_redis_urls_are_rejected_before_any_io() -> None:
    for url in (
        "redis://h1:1,h2:2/0",
        "redis://localhost/notanumber",
        "redis+unix://host/x",
        "redis://h/0?db=1",
    ):
        with pytest.raises(tenure.ConfigurationError):
            tenure.Coordinator(url).lock("x")


def test_a_waiter_is_woken_by_the_release_not_by_polling(redis_url: str) -> None:
    with tenure.Coordinator(redis_url) as coord, tenure.Coordinator(redis_url) as rival:
        lease = coord.lock("push", ttl=10).acquire()
        got: list[float] = []
        thread = threading.Thread(target=lambda: got.append(_acquire_and_stamp(rival, "push")))
        thread.start()
        time.sleep(2.0)  # the waiter's fallback poll has backed off to its longest pause (0.5 s)
        released = time.monotonic()
        lease.release()
        thread.join(timeout=5)
        assert got and got[0] - released < 0.25, "the hand-off waited for a poll, not the push"


def test_fair_waiters_are_served_in_arrival_order_across_processes(redis_url: str, tmp_path: Path) -> None:
    with tenure.Coordinator(redis_url) as coord:
        lease = coord.lock("line", ttl=10, fair=True).acquire()
        order = tmp_path / "order"
        waiters = []
        for i in range(5):
            waiters.append(_waiter(redis_url, "line", i, order))
            _wait_for_queue_length(coord, "line", i + 1)
        lease.release()
        for proc in waiters:
            assert proc.wait(timeout=20) == 0, proc.stderr.read() if proc.stderr else ""
        assert order.read_text().split() == ["0", "1", "2", "3", "4"]


def test_a_dead_fair_waiter_does_not_block_the_line(redis_url: str, tmp_path: Path) -> None:
    with tenure.Coordinator(redis_url) as coord:
        lease = coord.lock("line", ttl=10, fair=True).acquire()
        doomed = _waiter(redis_url, "line", 0, tmp_path / "order")
        _wait_for_queue_length(coord, "line", 1)
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.wait()
        time.sleep(2.5)  # past the dead waiter's patience: its queue entry is dropped
        with tenure.Coordinator(redis_url) as rival:
            waiting = rival.lock("line", ttl=10, fair=True)
            got: list[float] = []
            thread = threading.Thread(target=lambda: got.append(_acquire_and_stamp(rival, "line", fair=True)))
            thread.start()
            time.sleep(0.2)
            released = time.monotonic()
            lease.release()
            thread.join(timeout=5)
            assert got and got[0] - released < 1.0, "the line was blocked by a dead waiter"
            assert waiting.name == "line"


def test_a_fair_waiter_that_gives_up_leaves_the_line(redis_url: str) -> None:
    with tenure.Coordinator(redis_url) as coord, tenure.Coordinator(redis_url) as rival:
        lease = coord.lock("line", ttl=10, fair=True).acquire()
        with pytest.raises(tenure.AcquireTimeout):
            rival.lock("line", ttl=10, fair=True).acquire(timeout=0.2)
        assert _queue_length(coord, "line") == 0
        lease.release()
        again = rival.lock("line", ttl=10, fair=True).try_acquire()
        assert again is not None, "a waiter that gave up must not hold the line"
        again.release()


# -- helpers -------------------------------------------------------------------------------------


def _acquire_and_stamp(coord: tenure.Coordinator, name: str, *, fair: bool = False) -> float:
    lease = coord.lock(name, ttl=10, fair=fair).acquire(timeout=10)
    stamp = time.monotonic()
    lease.release()
    return stamp


def _waiter(url: str, name: str, index: int, order: Path) -> subprocess.Popen[str]:
    code = (
        "import sys, tenure\n"
        "with tenure.Coordinator(sys.argv[1]) as c:\n"
        "    with c.lock(sys.argv[2], ttl=10, fair=True, timeout=30):\n"
        "        open(sys.argv[4], 'a').write(sys.argv[3] + '\\n')\n"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code, url, name, str(index), str(order)],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )


def _queue_length(coord: tenure.Coordinator, name: str) -> int:
    store = coord._store
    key = "{" + namespaced_key(coord.namespace, name) + "}:queue"
    return int(store._client.zcard(key))  # type: ignore[attr-defined]


def _wait_for_queue_length(coord: tenure.Coordinator, name: str, length: int) -> None:
    deadline = time.monotonic() + 15
    while _queue_length(coord, name) < length:
        assert time.monotonic() < deadline, f"the queue of {name!r} never reached {length}"
        time.sleep(0.01)


# -- semaphores --------------------------------------------------------------------------------------


def _direct(url: str) -> redis.Redis:
    return redis.Redis.from_url(url.split("?", 1)[0], socket_timeout=5)


def test_the_permit_script_names_each_slot_as_permit_key_does(redis_url: str) -> None:
    # A name with what could confuse building the slot keys: braces, colons and a slot-like part.
    name = "gpu:{0}}:1:"
    with tenure.Coordinator(redis_url) as coord:
        sem = coord.semaphore(name, limit=12, ttl=10)
        permits = [sem.acquire(timeout=1) for _ in range(12)]
        server = _direct(redis_url)
        key = namespaced_key(coord.namespace, name, kind="semaphore")
        assert sorted(p._holding.key for p in permits) == sorted(permit_keys(key, 12))
        assert all(server.exists("{" + slot + "}:lock") for slot in permit_keys(key, 12))
        assert sorted(h.fence for h in sem.holders()) == sorted(p.fence for p in permits)
        for permit in permits:
            permit.release()
        assert not any(server.exists("{" + slot + "}:lock") for slot in permit_keys(key, 12))


def test_a_permit_waiter_is_woken_by_a_release_not_by_polling(redis_url: str) -> None:
    with tenure.Coordinator(redis_url) as coord, tenure.Coordinator(redis_url) as rival:
        sem = coord.semaphore("push", limit=3, ttl=10)
        permits = [sem.acquire(timeout=1) for _ in range(3)]
        got: list[float] = []

        def wait() -> None:
            with rival.semaphore("push", limit=3, ttl=10).acquire(timeout=10):
                got.append(time.monotonic())

        thread = threading.Thread(target=wait)
        thread.start()
        time.sleep(2.0)  # the waiter's fallback poll has backed off to its longest pause (0.5 s)
        released = time.monotonic()
        permits[1].release()  # not the first slot: the waiter watches every slot's list
        thread.join(timeout=5)
        assert got and got[0] - released < 0.25, "the waiter waited for a poll, not the push"
        for permit in (permits[0], permits[2]):
            permit.release()


def test_a_permit_waiter_wakes_when_a_dead_holder_s_slot_expires(redis_url: str) -> None:
    with tenure.Coordinator(redis_url) as coord:
        key = namespaced_key(coord.namespace, "expiring", kind="semaphore")
        server = _direct(redis_url)
        server.set(f"{{{key}}}:limit", 1)
        server.set("{" + permit_keys(key, 1)[0] + "}:lock", "dead\nholder", px=1300)
        started = time.monotonic()
        permit = coord.semaphore("expiring", limit=1, ttl=5).acquire(timeout=5)
        waited = time.monotonic() - started
        assert 1.1 < waited < 1.45, f"took {waited:.2f} s: the wait did not end at the expiry"
        permit.release()


def test_permit_fences_keep_growing_across_a_restart_without_persistence(server: RedisServer) -> None:
    with tenure.Coordinator(f"{server.url}?op_timeout=0.5") as coord:
        before = coord.semaphore("slots", limit=2, ttl=0.6).acquire()
        server.restart()  # the name's fence counter and its limit record are gone
        with tenure.Coordinator(server.url) as rival:
            after = rival.semaphore("slots", limit=2, ttl=5).acquire(timeout=2)
            assert after.fence > before.fence
            after.release()
