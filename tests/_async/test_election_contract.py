"""The election contract every backend passes: written once in async, the sync twin is generated."""

from __future__ import annotations

import time
from urllib.parse import quote

import pytest

import tenure
from tenure._concurrency import AsyncBackground, async_sleep
from tests._async.faults import stall_renewals
from tests.fenced import FencedRegister


async def test_a_campaign_makes_a_leader_with_its_value_and_term(coord: tenure.AsyncCoordinator) -> None:
    election = coord.election("scheduler", value="node-1", ttl=5)
    assert await election.leader() is None
    leadership = await election.campaign(timeout=2)
    assert leadership.value == "node-1" and isinstance(leadership.term, int)
    assert await election.leader() == tenure.Leader("node-1", leadership.term)
    leadership.check()
    assert 4 < leadership.remaining() <= 5
    assert await coord.inspect("scheduler") is None, "an election and a lock of one name are apart"
    with pytest.raises(tenure.ElectionError):
        await election.campaign(timeout=0)  # already the leader
    await leadership.resign()
    await leadership.resign()  # idempotent
    assert await election.leader() is None
    with pytest.raises(tenure.NotLeader):
        leadership.check()


async def test_a_second_candidate_waits_and_times_out(
    coord: tenure.AsyncCoordinator, rival: tenure.AsyncCoordinator
) -> None:
    async with await coord.election("scheduler", value="a").campaign() as leadership:
        started = time.monotonic()
        with pytest.raises(tenure.AcquireTimeout) as info:
            await rival.election("scheduler", value="b").campaign(timeout=0.3)
        assert 0.25 < time.monotonic() - started < 3
        assert "scheduler" in str(info.value)
        leadership.check()


async def test_campaign_is_also_a_context_manager(coord: tenure.AsyncCoordinator) -> None:
    election = coord.election("scheduler", value="node-1", ttl=5)
    async with election.campaign(timeout=2) as leadership:  # async code reads as sync code does
        assert isinstance(leadership, tenure.AsyncLeadership)
        assert await election.leader() == tenure.Leader("node-1", leadership.term)
    assert await election.leader() is None, "leaving the block resigns"
    again = await election.campaign(timeout=2)  # and awaiting it still returns the leadership
    assert again.term > leadership.term
    await again.resign()


async def test_a_leader_campaigning_again_through_another_candidate_is_told_at_once(
    coord: tenure.AsyncCoordinator, rival: tenure.AsyncCoordinator
) -> None:
    async with coord.election("scheduler", value="a").campaign(timeout=2) as leadership:
        started = time.monotonic()
        with pytest.raises(tenure.ElectionError, match="already leads"):
            await coord.election("scheduler", value="b").campaign(timeout=5)
        assert time.monotonic() - started < 1.0, "raised at once, not after the timeout"
        with pytest.raises(tenure.AcquireTimeout):  # another client's candidate still just waits
            await rival.election("scheduler", value="c").campaign(timeout=0.2)
        leadership.check()


async def test_resign_hands_over_to_the_next_candidate_with_a_larger_term(
    coord: tenure.AsyncCoordinator, rival: tenure.AsyncCoordinator
) -> None:
    first = await coord.election("scheduler", value="a", ttl=5).campaign(timeout=2)
    resigned_at = time.monotonic()

    async def resign_soon() -> None:
        nonlocal resigned_at
        await async_sleep(0.2)
        resigned_at = time.monotonic()
        await first.resign()

    resigner = AsyncBackground(resign_soon, name="resigner")  # a task here, a thread in sync
    resigner.start()
    second = await rival.election("scheduler", value="b", ttl=5).campaign(timeout=5)
    await resigner.join()
    assert time.monotonic() - resigned_at < 1.0
    assert second.term > first.term
    assert await rival.election("scheduler").leader() == tenure.Leader("b", second.term)
    await second.resign()


async def test_observe_yields_every_change_of_leader(
    coord: tenure.AsyncCoordinator, rival: tenure.AsyncCoordinator
) -> None:
    seen: list[tenure.Leader | None] = []
    observer = rival.election("scheduler").observe()

    async def watch() -> None:
        async for leader in observer:
            seen.append(leader)
            if len(seen) == 4:
                break

    watcher = AsyncBackground(watch, name="observer")
    watcher.start()
    await _until(lambda: len(seen) >= 1)
    a = await coord.election("scheduler", value="a").campaign(timeout=2)
    await _until(lambda: len(seen) >= 2)
    await a.resign()
    await _until(lambda: len(seen) >= 3)
    b = await coord.election("scheduler", value="b").campaign(timeout=2)
    await _until(lambda: len(seen) >= 4)
    await watcher.join()
    await observer.aclose()
    assert seen == [None, tenure.Leader("a", a.term), None, tenure.Leader("b", b.term)]
    await b.resign()


async def test_a_partitioned_leader_is_deposed_and_its_fenced_writes_rejected(
    coord: tenure.AsyncCoordinator, rival: tenure.AsyncCoordinator
) -> None:
    register = FencedRegister()
    lost: list[tenure.AsyncLeadership] = []
    old = await coord.election("scheduler", value="old", ttl=0.4).campaign(timeout=2)
    old.on_lost(lost.append)
    assert register.write("from old", term=old.term)
    await stall_renewals(coord, seconds=2.0)  # the old leader is cut off (or paused)
    new = await rival.election("scheduler", value="new", ttl=5).campaign(timeout=3)
    assert new.term > old.term
    assert register.write("from new", term=new.term)
    # Split brain made harmless: the old leader learns it at its next check, and its late
    # write, fenced with its stale term, is rejected by the resource.
    await _until(lambda: lost == [old])
    with pytest.raises(tenure.LeadershipLost) as info:
        old.check()
    assert isinstance(info.value, tenure.LockLost)
    assert not register.write("late from old", term=old.term)
    assert register.value == "from new"
    with pytest.raises(tenure.LeadershipLost):
        await old.resign()
    assert await rival.election("scheduler").leader() == tenure.Leader("new", new.term)
    await new.resign()


async def test_run_returns_the_result_and_resigns(coord: tenure.AsyncCoordinator) -> None:
    election = coord.election("scheduler", value="runner")

    async def work(x: int, y: int) -> int:
        leader = await election.leader()
        assert leader is not None and leader.value == "runner"
        return x + y

    assert await election.run(work, 2, 3) == 5
    assert await election.leader() is None


@pytest.mark.parametrize(
    "bad",
    [
        {"name": ""},
        {"name": 42},
        {"value": 42},
        {"value": ""},
        {"value": "two\nlines"},
        {"value": "x" * 256},
        {"ttl": 0},
        {"ttl": -1},
    ],
)
async def test_bad_input_fails_before_any_io(backend_url: str, bad: dict[str, object]) -> None:
    coordinator = tenure.AsyncCoordinator(backend_url)
    args: dict[str, object] = {"name": "scheduler", "value": "v", "ttl": 5, **bad}
    name = args.pop("name")
    with pytest.raises(tenure.ConfigurationError):
        coordinator.election(name, **args)  # type: ignore[arg-type]
    election = coordinator.election("scheduler")
    with pytest.raises(tenure.ConfigurationError):
        await election.campaign(timeout=-1)
    assert not coordinator._connected, "bad input must be refused before connecting"
    await coordinator.aclose()


# -- helpers -------------------------------------------------------------------------------------


async def _until(condition: object, timeout: float = 5.0) -> None:
    """Wait until ``condition()`` holds (it is checked every 10 ms), or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out waiting for the condition"
        await async_sleep(0.01)


async def test_a_lock_named_like_an_election_does_not_lead_it(
    coord: tenure.AsyncCoordinator, backend_url: str
) -> None:
    # Election "boss" of namespace N had the key of lock "boss" in namespace "N.election".
    other_url = _in_namespace(backend_url, f"{coord.namespace}.election")
    async with tenure.AsyncCoordinator(other_url) as other, other.lock("boss", ttl=5) as lease:
        election = coord.election("boss", value="candidate", ttl=5)
        assert await election.leader() is None, "a lock was taken for the leader"
        async with await election.campaign(timeout=2) as leadership:
            assert await election.leader() == tenure.Leader("candidate", leadership.term)
            info = await other.inspect("boss")
            assert info is not None and info.fence == lease.fence
        assert await coord.inspect("boss") is None  # nor is the election a lock of its namespace


def _in_namespace(url: str, namespace: str) -> str:
    """Return ``url`` with its ``namespace`` option set to ``namespace``."""
    base, _, query = url.partition("?")
    options = [pair for pair in query.split("&") if pair and not pair.startswith("namespace=")]
    return f"{base}?{'&'.join([*options, 'namespace=' + quote(namespace, safe='')])}"
