# GENERATED from tests/_async/test_election_contract.py by scripts/unasync.py: do not edit; edit the source and re-run.
"""The election contract every backend passes: written once in async, the sync twin is generated."""

from __future__ import annotations

import time
from urllib.parse import quote

import pytest

import tenure
from tenure._concurrency import Background, sleep
from tests._sync.faults import stall_renewals
from tests.fenced import FencedRegister


def test_a_campaign_makes_a_leader_with_its_value_and_term(coord: tenure.Coordinator) -> None:
    election = coord.election("scheduler", value="node-1", ttl=5)
    assert election.leader() is None
    leadership = election.campaign(timeout=2)
    assert leadership.value == "node-1" and isinstance(leadership.term, int)
    assert election.leader() == tenure.Leader("node-1", leadership.term)
    leadership.check()
    assert 4 < leadership.remaining() <= 5
    assert coord.inspect("scheduler") is None, "an election and a lock of one name are apart"
    with pytest.raises(tenure.ElectionError):
        election.campaign(timeout=0)  # already the leader
    leadership.resign()
    leadership.resign()  # idempotent
    assert election.leader() is None
    with pytest.raises(tenure.NotLeader):
        leadership.check()


def test_a_second_candidate_waits_and_times_out(
    coord: tenure.Coordinator, rival: tenure.Coordinator
) -> None:
    with coord.election("scheduler", value="a").campaign() as leadership:
        started = time.monotonic()
        with pytest.raises(tenure.AcquireTimeout) as info:
            rival.election("scheduler", value="b").campaign(timeout=0.3)
        assert 0.25 < time.monotonic() - started < 3
        assert "scheduler" in str(info.value)
        leadership.check()


def test_campaign_is_also_a_context_manager(coord: tenure.Coordinator) -> None:
    election = coord.election("scheduler", value="node-1", ttl=5)
    with election.campaign(timeout=2) as leadership:  # sync code reads as sync code does
        assert isinstance(leadership, tenure.Leadership)
        assert election.leader() == tenure.Leader("node-1", leadership.term)
    assert election.leader() is None, "leaving the block resigns"
    again = election.campaign(timeout=2)  # and awaiting it still returns the leadership
    assert again.term > leadership.term
    again.resign()


def test_a_leader_campaigning_again_through_another_candidate_is_told_at_once(
    coord: tenure.Coordinator, rival: tenure.Coordinator
) -> None:
    with coord.election("scheduler", value="a").campaign(timeout=2) as leadership:
        started = time.monotonic()
        with pytest.raises(tenure.ElectionError, match="already leads"):
            coord.election("scheduler", value="b").campaign(timeout=5)
        assert time.monotonic() - started < 1.0, "raised at once, not after the timeout"
        with pytest.raises(tenure.AcquireTimeout):  # another client's candidate still just waits
            rival.election("scheduler", value="c").campaign(timeout=0.2)
        leadership.check()


def test_resign_hands_over_to_the_next_candidate_with_a_larger_term(
    coord: tenure.Coordinator, rival: tenure.Coordinator
) -> None:
    first = coord.election("scheduler", value="a", ttl=5).campaign(timeout=2)
    resigned_at = time.monotonic()

    def resign_soon() -> None:
        nonlocal resigned_at
        sleep(0.2)
        resigned_at = time.monotonic()
        first.resign()

    resigner = Background(resign_soon, name="resigner")  # a task here, a thread in sync
    resigner.start()
    second = rival.election("scheduler", value="b", ttl=5).campaign(timeout=5)
    resigner.join()
    assert time.monotonic() - resigned_at < 1.0
    assert second.term > first.term
    assert rival.election("scheduler").leader() == tenure.Leader("b", second.term)
    second.resign()


def test_observe_yields_every_change_of_leader(
    coord: tenure.Coordinator, rival: tenure.Coordinator
) -> None:
    seen: list[tenure.Leader | None] = []
    observer = rival.election("scheduler").observe()

    def watch() -> None:
        for leader in observer:
            seen.append(leader)
            if len(seen) == 4:
                break

    watcher = Background(watch, name="observer")
    watcher.start()
    _until(lambda: len(seen) >= 1)
    a = coord.election("scheduler", value="a").campaign(timeout=2)
    _until(lambda: len(seen) >= 2)
    a.resign()
    _until(lambda: len(seen) >= 3)
    b = coord.election("scheduler", value="b").campaign(timeout=2)
    _until(lambda: len(seen) >= 4)
    watcher.join()
    observer.close()
    assert seen == [None, tenure.Leader("a", a.term), None, tenure.Leader("b", b.term)]
    b.resign()


def test_a_partitioned_leader_is_deposed_and_its_fenced_writes_rejected(
    coord: tenure.Coordinator, rival: tenure.Coordinator
) -> None:
    register = FencedRegister()
    lost: list[tenure.Leadership] = []
    old = coord.election("scheduler", value="old", ttl=0.4).campaign(timeout=2)
    old.on_lost(lost.append)
    assert register.write("from old", term=old.term)
    stall_renewals(coord, seconds=2.0)  # the old leader is cut off (or paused)
    new = rival.election("scheduler", value="new", ttl=5).campaign(timeout=3)
    assert new.term > old.term
    assert register.write("from new", term=new.term)
    # Split brain made harmless: the old leader learns it at its next check, and its late
    # write, fenced with its stale term, is rejected by the resource.
    _until(lambda: lost == [old])
    with pytest.raises(tenure.LeadershipLost) as info:
        old.check()
    assert isinstance(info.value, tenure.LockLost)
    assert not register.write("late from old", term=old.term)
    assert register.value == "from new"
    with pytest.raises(tenure.LeadershipLost):
        old.resign()
    assert rival.election("scheduler").leader() == tenure.Leader("new", new.term)
    new.resign()


def test_run_returns_the_result_and_resigns(coord: tenure.Coordinator) -> None:
    election = coord.election("scheduler", value="runner")

    def work(x: int, y: int) -> int:
        leader = election.leader()
        assert leader is not None and leader.value == "runner"
        return x + y

    assert election.run(work, 2, 3) == 5
    assert election.leader() is None


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
def test_bad_input_fails_before_any_io(backend_url: str, bad: dict[str, object]) -> None:
    coordinator = tenure.Coordinator(backend_url)
    args: dict[str, object] = {"name": "scheduler", "value": "v", "ttl": 5, **bad}
    name = args.pop("name")
    with pytest.raises(tenure.ConfigurationError):
        coordinator.election(name, **args)  # type: ignore[arg-type]
    election = coordinator.election("scheduler")
    with pytest.raises(tenure.ConfigurationError):
        election.campaign(timeout=-1)
    assert not coordinator._connected, "bad input must be refused before connecting"
    coordinator.close()


# -- helpers -------------------------------------------------------------------------------------


def _until(condition: object, timeout: float = 5.0) -> None:
    """Wait until ``condition()`` holds (it is checked every 10 ms), or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out waiting for the condition"
        sleep(0.01)


def test_a_lock_named_like_an_election_does_not_lead_it(
    coord: tenure.Coordinator, backend_url: str
) -> None:
    # Election "boss" of namespace N had the key of lock "boss" in namespace "N.election".
    other_url = _in_namespace(backend_url, f"{coord.namespace}.election")
    with tenure.Coordinator(other_url) as other, other.lock("boss", ttl=5) as lease:
        election = coord.election("boss", value="candidate", ttl=5)
        assert election.leader() is None, "a lock was taken for the leader"
        with election.campaign(timeout=2) as leadership:
            assert election.leader() == tenure.Leader("candidate", leadership.term)
            info = other.inspect("boss")
            assert info is not None and info.fence == lease.fence
        assert coord.inspect("boss") is None  # nor is the election a lock of its namespace


def _in_namespace(url: str, namespace: str) -> str:
    """Return ``url`` with its ``namespace`` option set to ``namespace``."""
    base, _, query = url.partition("?")
    options = [pair for pair in query.split("&") if pair and not pair.startswith("namespace=")]
    return f"{base}?{'&'.join([*options, 'namespace=' + quote(namespace, safe='')])}"
