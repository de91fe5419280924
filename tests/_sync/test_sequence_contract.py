# GENERATED from tests/_async/test_sequence_contract.py by scripts/unasync.py: do not edit; edit the source and re-run.
"""The sequence (ordered turns) contract every backend with the Counting capability passes."""

from __future__ import annotations

import time

import pytest

import tenure
from tenure._concurrency import Background, sleep
from tenure._core.guarantees import Capability, Guarantee
from tests._sync.faults import stall_renewals


@pytest.fixture
def counting(coord: tenure.Coordinator) -> tenure.Coordinator:
    """The coordinator, for a test that needs sequences; the backends without them refuse."""
    if Capability.COUNTING not in coord.capabilities:
        pytest.skip("no Counting capability: test_incapable_backend_refuses_sequences covers it")
    return coord


def test_incapable_backend_refuses_sequences(coord: tenure.Coordinator) -> None:
    if Capability.COUNTING in coord.capabilities:
        assert coord.sequence("account:42").name == "account:42"
    else:
        with pytest.raises(tenure.BackendIncapable, match="Counting"):
            coord.sequence("account:42")


def test_bad_input_is_refused_before_any_io(backend_url: str) -> None:
    coord = tenure.Coordinator(backend_url)
    for bad in ({"ttl": 0}, {"timeout": -1}):
        with pytest.raises(tenure.ConfigurationError):
            coord.sequence("account:42", **bad)  # type: ignore[arg-type]
    with pytest.raises(tenure.ConfigurationError):
        coord.sequence("")
    assert not coord._connected
    coord.close()


def test_tickets_grow_and_turns_come_in_ticket_order(
    counting: tenure.Coordinator, rival: tenure.Coordinator
) -> None:
    mine, theirs = counting.sequence("account:42", ttl=5), rival.sequence("account:42", ttl=5)
    first, second, third = mine.ticket(), theirs.ticket(), mine.ticket()
    assert first < second < third or Guarantee.FENCING not in counting.guarantees
    served: list[int] = []

    def take_turn(sequence: tenure.Sequence, ticket: int) -> None:
        with sequence.turn(ticket, timeout=10) as lease:
            served.append(ticket)
            assert lease.fence == ticket
            sleep(0.05)

    # Started in reverse order: each still waits for the lower tickets.
    last = Background(lambda: take_turn(mine, third), name="third")
    middle = Background(lambda: take_turn(theirs, second), name="second")
    last.start()
    middle.start()
    sleep(0.3)
    assert served == []
    take_turn(mine, first)
    middle.join()
    last.join()
    assert served == [first, second, third]


def test_a_turn_times_out_behind_a_lower_ticket_and_gives_its_ticket_up(
    counting: tenure.Coordinator, rival: tenure.Coordinator
) -> None:
    mine, theirs = counting.sequence("account:42", ttl=5), rival.sequence("account:42", ttl=5)
    first = mine.ticket()
    second = theirs.ticket()
    third = mine.ticket()
    started = time.monotonic()
    with pytest.raises(tenure.AcquireTimeout, match="given up"):
        theirs.turn(second, timeout=0.3)
    assert 0.25 <= time.monotonic() - started < 2.0
    with pytest.raises(tenure.NotOwner):
        theirs.turn(second, timeout=1)  # given up: it no longer counts
    with mine.turn(first, timeout=1):
        pass
    with mine.turn(third, timeout=1) as lease:  # the given-up ticket is not waited for
        assert lease.fence == third


def test_a_dead_ticket_is_skipped_after_ttl_and_its_holder_told(
    counting: tenure.Coordinator, rival: tenure.Coordinator
) -> None:
    mine, theirs = counting.sequence("account:42", ttl=1), rival.sequence("account:42", ttl=5)
    first = mine.ticket()
    second = theirs.ticket()
    stall_renewals(counting, seconds=3.0)  # the first holder is cut off
    started = time.monotonic()
    with theirs.turn(second, timeout=5) as lease:
        assert time.monotonic() - started < 2.5
        lease.check()
    with pytest.raises(tenure.LockLost):
        mine.turn(first, timeout=1)


def test_cancel_lets_the_next_ticket_go(
    counting: tenure.Coordinator, rival: tenure.Coordinator
) -> None:
    mine, theirs = counting.sequence("account:42", ttl=5), rival.sequence("account:42", ttl=5)
    first = mine.ticket()
    second = theirs.ticket()
    mine.cancel(first)
    mine.cancel(first)  # idempotent
    with theirs.turn(second, timeout=1) as lease:
        lease.check()


def test_a_ticket_waiting_long_is_renewed(counting: tenure.Coordinator) -> None:
    turns = counting.sequence("account:42", ttl=1)
    ticket = turns.ticket()
    sleep(2.5)
    with turns.turn(ticket, timeout=1) as lease:
        lease.check()


def test_a_turn_of_a_foreign_ticket_is_refused(counting: tenure.Coordinator) -> None:
    with pytest.raises(tenure.NotOwner, match="ticket 12345"):
        counting.sequence("account:42").turn(12345, timeout=1)
