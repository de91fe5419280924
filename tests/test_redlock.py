"""Redlock over five real redis-server processes: instances killed, restarted empty and frozen.

The contract suite already runs against ``redlock://`` on shared servers; these tests break
servers, so each gets five of its own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio.connection
import redis.connection

import tenure
import tenure._sync.backends.redlock.store as redlock_store
from tenure._async.backends.redlock.quorum import Seen, majority_holder, quorum, validity_left
from tenure._core.keys import namespaced_key
from tenure._core.semaphore import permit_keys
from tenure._core.tokens import Owner
from tenure._sync.backends.redlock.scripts import SHAS
from tests.conftest import redlock_url_of
from tests.servers import RedisServer

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def five(tmp_path: Path) -> Iterator[list[RedisServer]]:
    servers: list[RedisServer] = []
    try:
        for i in range(5):
            servers.append(RedisServer(tmp_path / f"redis-{i}").start())
        yield servers
    finally:
        for server in servers:
            server.stop()  # also thaws a paused one


def lock_key(coord: tenure.Coordinator | tenure.AsyncCoordinator, name: str) -> str:
    """Return the Redis key each instance keeps the lease of ``name`` under."""
    return "{" + namespaced_key(coord.namespace, name) + "}:lock"


def direct(server: RedisServer) -> redis.Redis:
    return redis.Redis(port=server.port, socket_timeout=5)


# -- configuration ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "hosts",
    [
        "127.0.0.1:7000",
        "127.0.0.1:7000,127.0.0.1:7001",
        "h1:1,h2:2,h3:3,h4:4",
        "h1:1,h2:2,h1:1",
        "h1,h1:6379,h3",  # h1:6379 is h1 on the default port: listed twice
    ],
)
def test_a_bad_set_of_servers_fails_before_any_io(hosts: str) -> None:
    with pytest.raises(tenure.ConfigurationError) as info:
        tenure.Coordinator(f"redlock://user:s3cret@{hosts}/0")
    assert "s3cret" not in str(info.value)


def test_a_bad_database_fails_before_any_io() -> None:
    with pytest.raises(tenure.ConfigurationError):
        tenure.Coordinator("redlock://h1,h2,h3/zero")


def test_the_vote_arithmetic() -> None:
    assert [quorum(n) for n in (3, 5, 7)] == [2, 3, 4]
    assert validity_left(10.0, 1.0) == pytest.approx(10 - 1 - 0.102)
    assert validity_left(1.0, 0.99) < 0
    mine = [Seen("a", "me", 5, 1.0), Seen("a", "me", 7, 2.0), Seen("a", "me", 6, 3.0)]
    info = majority_holder([*mine, Seen("b", "other", 9, 9.0), None], 5)
    assert info is not None and (info.label, info.fence, info.remaining) == ("me", 7, 1.0)
    assert majority_holder([mine[0], mine[1], Seen("b", "other", 9, 9.0), None, None], 5) is None


# -- instances down --------------------------------------------------------------------------------


def test_one_instance_down_it_still_works(five: list[RedisServer]) -> None:
    five[0].kill()
    url = redlock_url_of(five)
    with tenure.Coordinator(url) as coord, tenure.Coordinator(url) as rival:
        lease = coord.lock("job", ttl=0.6).acquire(timeout=2)
        assert rival.lock("job").try_acquire() is None
        five[1].kill()  # a second one while held: still a majority of five
        time.sleep(1.0)  # past the TTL: only renewals on the live three keep it
        lease.check()
        assert rival.lock("job").try_acquire() is None
        lease.renew(2.0)
        assert 1.5 < lease.remaining() <= 2.0
        info = coord.inspect("job")
        assert info is not None and info.fence == lease.fence
        lease.release()
        again = rival.lock("job", ttl=5).acquire(timeout=2)
        assert again.fence > lease.fence
        again.release()


def test_inspect_reports_the_leases_fence_once_renewed_after_its_instance_went_down(
    five: list[RedisServer],
) -> None:
    # Each instance stores its own clock reading; the lease's fence is the largest of its vote.
    # The instance that gave it went down: the survivors' readings were all a little lower.
    url = redlock_url_of(five)
    with tenure.Coordinator(url) as coord, tenure.Coordinator(url) as observer:
        lease = coord.lock("job", ttl=10).acquire(timeout=2)  # no renewal for 3 s
        readings = {i: stored_fence(server, coord, "job") for i, server in enumerate(five)}
        held = [i for i, fence in readings.items() if fence is not None]
        assert max(readings[i] or 0 for i in held) == lease.fence
        gave = [i for i in held if readings[i] == lease.fence]
        assert len(held) - len(gave) >= quorum(5), "the vote needs a majority without the largest reading"
        for i in gave:
            five[i].kill()
        before = observer.inspect("job")
        # Until a renewal, the survivors report their own readings (see redlock/scripts.py).
        assert before is not None and before.fence < lease.fence
        lease.renew()
        for client in (coord, observer):
            info = client.inspect("job")
            assert info is not None and info.fence == lease.fence
        assert {stored_fence(five[i], coord, "job") for i in held if i not in gave} == {lease.fence}
        lease.release()
        again = observer.lock("job", ttl=5).acquire(timeout=2)
        assert again.fence > lease.fence
        again.release()


def stored_fence(server: RedisServer, coord: tenure.Coordinator, name: str) -> int | None:
    """Return the fence one instance stores with the lease of ``name``, or None if it has none."""
    value = direct(server).get(lock_key(coord, name))
    return None if value is None else int(value.split(b"\n")[1])


async def test_holders_exclude_each_other_with_an_instance_down(five: list[RedisServer]) -> None:
    five[3].kill()
    url = redlock_url_of(five)
    state = {"inside": 0, "overlaps": 0, "count": 0}
    fences: list[int] = []

    async def work(coord: tenure.AsyncCoordinator) -> None:
        for _ in range(10):
            async with coord.lock("counter", ttl=2, timeout=20) as lease:
                state["inside"] += 1
                state["overlaps"] += state["inside"] > 1
                await asyncio.sleep(0.002)
                state["count"] += 1
                fences.append(lease.fence)
                state["inside"] -= 1

    async with tenure.AsyncCoordinator(url) as one, tenure.AsyncCoordinator(url) as two:
        await asyncio.gather(work(one), work(two), work(one), work(two))
    assert state["count"] == 40 and state["overlaps"] == 0
    assert fences == sorted(fences) and len(set(fences)) == 40


def test_three_down_is_unavailable_and_says_so_quickly(five: list[RedisServer]) -> None:
    url = redlock_url_of(five)
    with tenure.Coordinator(url) as coord:
        lease = coord.lock("held", ttl=0.6).acquire(timeout=2)
        for server in five[:3]:
            server.kill()
        started = time.monotonic()
        with pytest.raises(tenure.BackendUnavailable) as info:
            coord.lock("other").acquire(timeout=5)
        assert time.monotonic() - started < 2.0, "a refused connection must fail at once"
        assert "2 of 5" in str(info.value) and "redlock://" in str(info.value)
        time.sleep(0.8)  # renewals cannot reach a majority: the lease runs out and is lost
        assert lease.lost
        with pytest.raises(tenure.BackendUnavailable):
            lease.release()


def test_connecting_to_a_minority_fails_with_the_password_redacted(five: list[RedisServer]) -> None:
    for server in five[:3]:
        server.kill()
    hosts = ",".join(f"127.0.0.1:{server.port}" for server in five)
    started = time.monotonic()
    coord = tenure.Coordinator(f"redlock://:s3cret@{hosts}/0?connect_timeout=1")
    with pytest.raises(tenure.BackendUnavailable) as info:
        coord.connect()
    assert time.monotonic() - started < 2.0
    text = str(info.value)
    assert "s3cret" not in text and ":***@" in text
    assert "s3cret" not in str(info.value.__cause__)


def test_a_restarted_instance_does_not_free_a_held_lock(five: list[RedisServer]) -> None:
    url = redlock_url_of(five)
    with tenure.Coordinator(url) as coord, tenure.Coordinator(url) as rival:
        lease = coord.lock("kept", ttl=0.6).acquire(timeout=2)
        key = lock_key(coord, "kept")
        # Three restarts in a row, each losing every key: without the renewal putting the lock
        # back on the restarted instance, the third would leave it on two of five.
        for server in five[:3]:
            before = direct(server).info("server")["run_id"]
            server.restart()  # no persistence: the new process starts empty
            # Not "the key is gone": a renewal may already have put it back (every ttl/3).
            assert direct(server).info("server")["run_id"] != before
            assert rival.lock("kept").try_acquire() is None, "four of five still hold it"
            time.sleep(0.5)  # a renewal or two, on the restarted instance too
            lease.check()
            assert direct(server).exists(key) == 1, "the renewal puts the lock back"
        assert rival.lock("kept").try_acquire() is None
        info = rival.inspect("kept")
        assert info is not None and info.fence == lease.fence
        lease.release()
        assert all(direct(server).exists(key) == 0 for server in five)
        again = rival.lock("kept").acquire(timeout=2)
        assert again.fence > lease.fence
        again.release()


# -- parallel fan-out ------------------------------------------------------------------------------


@pytest.mark.parametrize("colour", ["sync", "async"])
def test_every_instance_is_asked_before_any_reply_is_read(
    five: list[RedisServer], colour: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[tuple[str, int]] = []
    module: Any = redis.connection if colour == "sync" else redis.asyncio.connection
    cls = module.AbstractConnection
    real_send, real_read = cls.send_packed_command, cls.read_response

    def record(kind: str, real: Callable[..., Any]) -> Callable[..., Any]:
        if colour == "sync":

            def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
                events.append((kind, self.port))
                return real(self, *args, **kwargs)

            return wrapper

        async def async_wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            events.append((kind, self.port))
            return await real(self, *args, **kwargs)

        return async_wrapper

    monkeypatch.setattr(cls, "send_packed_command", record("send", real_send))
    monkeypatch.setattr(cls, "read_response", record("read", real_read))
    url = redlock_url_of(five)
    ports = sorted(server.port for server in five)

    def check_one_step() -> None:
        assert [kind for kind, _ in events] == ["send"] * 5 + ["read"] * 5, events
        assert sorted(port for _, port in events[:5]) == ports
        events.clear()

    if colour == "sync":
        with tenure.Coordinator(url) as coord:
            events.clear()
            lease = coord.lock("fan", ttl=30).acquire(timeout=0)
            check_one_step()
            lease.renew()
            check_one_step()
            coord.inspect("fan")
            check_one_step()
            lease.release()
            check_one_step()
        return

    async def run() -> None:
        async with tenure.AsyncCoordinator(url) as coord:
            events.clear()
            lease = await coord.lock("fan", ttl=30).acquire(timeout=0)
            check_one_step()
            await lease.renew()
            check_one_step()
            await coord.inspect("fan")
            check_one_step()
            await lease.release()
            check_one_step()

    asyncio.run(run())


def test_frozen_instances_cost_one_timeout_together_not_one_each(five: list[RedisServer]) -> None:
    url = redlock_url_of(five, op_timeout=1)
    with tenure.Coordinator(url) as coord:
        five[0].pause()
        five[1].pause()
        try:
            started = time.monotonic()
            lease = coord.lock("frozen", ttl=10).acquire(timeout=0)
            # In parallel: one op_timeout for both (about 1 s). One after another: at least 2 s.
            assert time.monotonic() - started < 1.8
            lease.check()
            lease.release()
        finally:
            five[0].resume()
            five[1].resume()


async def test_frozen_instances_cost_one_timeout_together_in_async_too(five: list[RedisServer]) -> None:
    url = redlock_url_of(five, op_timeout=1)
    async with tenure.AsyncCoordinator(url) as coord:
        five[2].pause()
        five[4].pause()
        try:
            started = time.monotonic()
            lease = await coord.lock("frozen", ttl=10).acquire(timeout=0)
            assert time.monotonic() - started < 1.8
            lease.check()
            await lease.release()
        finally:
            five[2].resume()
            five[4].resume()
        # The late replies were dropped with their connections: nothing answers the wrong command.
        async with coord.lock("frozen", ttl=5) as again:
            assert again.fence > lease.fence
            info = await coord.inspect("frozen")
            assert info is not None and info.fence == again.fence


def test_a_vote_is_cut_off_at_a_third_of_the_ttl(five: list[RedisServer]) -> None:
    url = redlock_url_of(five, op_timeout=5)
    with tenure.Coordinator(url) as coord:
        for server in five[:3]:
            server.pause()
        try:
            started = time.monotonic()
            with pytest.raises(tenure.BackendTimeout):
                coord._store.try_acquire(namespaced_key(coord.namespace, "slow"), Owner(), 0.3)
            assert time.monotonic() - started < 2.0, "waited for op_timeout instead of ttl/3"
        finally:
            for server in five[:3]:
                server.resume()


# -- votes, scripts and fences ---------------------------------------------------------------------


def test_the_holder_is_whoever_a_majority_reports(five: list[RedisServer]) -> None:
    url = redlock_url_of(five)
    with tenure.Coordinator(url) as coord:
        key = lock_key(coord, "split")
        for server in five[:2]:  # a minority already taken by someone else
            direct(server).set(key, "someone-token\n7\nsomeone", px=30_000)
        assert coord.inspect("split") is None
        lease = coord.lock("split", ttl=5).acquire(timeout=0)
        info = coord.inspect("split")
        assert info is not None and info.fence == lease.fence and info.label != "someone"
        with tenure.Coordinator(url) as other:
            assert other.lock("split").try_acquire() is None
        lease.release()
        assert coord.inspect("split") is None
        assert all(direct(server).exists(key) == 1 for server in five[:2]), "not ours to release"


def test_forgotten_scripts_are_sent_again(five: list[RedisServer]) -> None:
    url = redlock_url_of(five)
    with tenure.Coordinator(url) as coord:
        for server in five:
            direct(server).script_flush()
        with coord.lock("scripts", ttl=5) as lease:
            assert coord.inspect("scripts") is not None
            lease.renew()
        sem = coord.semaphore("scripts", limit=2, ttl=5)
        with sem.acquire(timeout=1):
            assert len(sem.holders()) == 1
        used = [sha for name, sha in SHAS.items() if name != "FORGET_PERMIT"]  # only when votes split
        assert all(all(direct(server).script_exists(*used)) for server in five)


def test_a_fence_never_goes_back_on_an_instance_whose_clock_did(five: list[RedisServer]) -> None:
    url = redlock_url_of(five)
    with tenure.Coordinator(url) as coord:
        ahead = 10**16 // 5  # microseconds far past any clock reading
        fence_key = "{" + namespaced_key(coord.namespace, "stepped") + "}:fence"
        for server in five:
            direct(server).set(fence_key, ahead)
        with coord.lock("stepped", ttl=5) as first:
            assert first.fence == ahead + 1
        with coord.lock("stepped", ttl=5) as second:
            assert second.fence == ahead + 2


# -- semaphores --------------------------------------------------------------------------------------


def slot_locks(coord: tenure.Coordinator, name: str, limit: int) -> list[str]:
    """Return the Redis keys each instance keeps the leases of ``name``'s permit slots under."""
    key = namespaced_key(coord.namespace, name, kind="semaphore")
    return ["{" + slot + "}:lock" for slot in permit_keys(key, limit)]


def test_instances_that_disagree_on_the_free_slots_still_grant_one_and_keep_no_other(
    five: list[RedisServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redlock_store, "slot_order", lambda limit: list(range(limit)))  # slot 0 first
    with tenure.Coordinator(redlock_url_of(five)) as coord:
        locks = slot_locks(coord, "split", 2)
        for server in five[:2]:  # a leftover of a lost vote: slot 0 taken on a minority
            direct(server).set(locks[0], "stale\n1\nsomeone", px=30_000)
        sem = coord.semaphore("split", limit=2, ttl=5)
        first = sem.acquire(timeout=1)  # two instances take slot 1, three take slot 0: slot 0 wins
        assert first._holding.key.endswith(":permit:0:split")
        assert not any(direct(server).exists(locks[1]) for server in five), "a losing vote was kept"
        second = sem.acquire(timeout=1)
        assert second._holding.key.endswith(":permit:1:split")
        assert sem.try_acquire() is None
        assert sorted(h.fence for h in sem.holders()) == sorted([first.fence, second.fence])
        first.release()
        second.release()
        assert [direct(server).exists(locks[0]) for server in five] == [1, 1, 0, 0, 0]


def test_another_limit_is_refused_by_a_majority_not_by_a_minority(five: list[RedisServer]) -> None:
    with tenure.Coordinator(redlock_url_of(five)) as coord:
        key = namespaced_key(coord.namespace, "limits", kind="semaphore")
        locks = slot_locks(coord, "limits", 3)
        for server in five[:2]:  # a minority has a live permit taken with limit 3
            direct(server).set("{" + key + "}:limit", 3)
            direct(server).set(locks[2], "stale\n1\nsomeone", px=30_000)
        permit = coord.semaphore("limits", limit=2, ttl=5).acquire(timeout=1)
        permit.release()
        direct(five[2]).set("{" + key + "}:limit", 3)
        direct(five[2]).set(locks[2], "stale\n1\nsomeone", px=30_000)  # now a majority
        with pytest.raises(tenure.ConfigurationError, match="limit=3"):
            coord.semaphore("limits", limit=2, ttl=5).try_acquire()
        assert not any(direct(server).exists(*locks[:2]) for server in five), "a refused attempt took a slot"


def test_permits_held_at_once_have_distinct_fences_whatever_the_clocks(five: list[RedisServer]) -> None:
    with tenure.Coordinator(redlock_url_of(five)) as coord:
        key = namespaced_key(coord.namespace, "clocks", kind="semaphore")
        ahead = 10**15 * 3  # microseconds: two instances' clocks far ahead of the others'
        for server in five[:2]:
            direct(server).set("{" + key + "}:fence", ahead)
        sem = coord.semaphore("clocks", limit=3, ttl=5)
        permits = [sem.acquire(timeout=1) for _ in range(3)]
        assert sorted(p.fence % 3 for p in permits) == [0, 1, 2]
        assert len({p.fence for p in permits}) == 3
        for permit in permits:
            permit.release()


def test_a_permit_survives_one_instance_restarting_empty(five: list[RedisServer]) -> None:
    with tenure.Coordinator(redlock_url_of(five, op_timeout=0.5)) as coord:
        sem = coord.semaphore("restart", limit=1, ttl=1)
        permit = sem.acquire(timeout=1)
        five[0].restart()
        time.sleep(1.5)  # renewals put the lease back where it was lost
        permit.check()
        assert sem.try_acquire() is None
        assert len(sem.holders()) == 1
        permit.release()
