"""The sequence (ordered turns) contract every backend with the Counting capability passes."""

from __future__ import annotations

import time

import pytest

import tenure
from tenure._concurrency import AsyncBackground, async_sleep
from tenure._core.guarantees import Capability, Guarantee
from tests._async.faults import stall_renewals


@pytest.fixture
def counting(coord: tenure.AsyncCoordinator) -> tenure.AsyncCoordinator:
    """The coordinator, for a test that needs sequences; the backends without them refuse."""
    if Capability.COUNTING not in coord.capabilities:
        pytest.skip("no Counting capability: test_incapable_backend_refuses_sequences covers it")
    return coord


async def test_incapable_backend_refuses_sequences(coord: tenure.AsyncCoordinator) -> None:
    if Capability.COUNTING in coord.capabilities:
        assert coord.sequence("account:42").name == "account:42"
    else:
        with pytest.raises(tenure.BackendIncapable, match="Counting"):
            coord.sequence("account:42")


async def test_bad_input_is_refused_before_any_io(backend_url: str) -> None:
    coord = tenure.AsyncCoordinator(backend_url)
    for bad in ({"ttl": 0}, {"timeout": -1}):
        with pytest.raises(tenure.ConfigurationError):
            coord.sequence("account:42", **bad)  # type: ignore[arg-type]
    with pytest.raises(tenure.ConfigurationError):
        coord.sequence("")
    assert not coord._connected
    await coord.aclose()


async def test_tickets_grow_and_turns_come_in_ticket_order(
    counting: tenure.AsyncCoordinator, rival: tenure.AsyncCoordinator
) -> None:
    mine, theirs = counting.sequence("account:42", ttl=5), rival.sequence("account:42", ttl=5)
    first, second, third = await mine.ticket(), await theirs.ticket(), await mine.ticket()
    assert first < second < third or Guarantee.FENCING not in counting.guarantees
    served: list[int] = []

    async def take_turn(sequence: tenure.AsyncSequence, ticket: int) -> None:
        async with sequence.turn(ticket, timeout=10) as lease:
            served.append(ticket)
            assert lease.fence == ticket
            await async_sleep(0.05)

    # Started in reverse order: each still waits for the lower tickets.
    last = AsyncBackground(lambda: take_turn(mine, third), name="third")
    middle = AsyncBackground(lambda: take_turn(theirs, second), name="second")
    last.start()
    middle.start()
    await async_sleep(0.3)
    assert served == []
    await take_turn(mine, first)
    await middle.join()
    await last.join()
    assert served == [first, second, third]


async def test_a_turn_times_out_behind_a_lower_ticket_and_gives_its_ticket_up(
    counting: tenure.AsyncCoordinator, rival: tenure.AsyncCoordinator
) -> None:
    mine, theirs = counting.sequence("account:42", ttl=5), rival.sequence("account:42", ttl=5)
    first = await mine.ticket()
    second = await theirs.ticket()
    third = await mine.ticket()
    started = time.monotonic()
    with pytest.raises(tenure.AcquireTimeout, match="given up"):
        await theirs.turn(second, timeout=0.3)
    assert 0.25 <= time.monotonic() - started < 2.0
    with pytest.raises(tenure.NotOwner):
        await theirs.turn(second, timeout=1)  # given up: it no longer counts
    async with mine.turn(first, timeout=1):
        pass
    async with mine.turn(third, timeout=1) as lease:  # the given-up ticket is not waited for
        assert lease.fence == third


async def test_a_dead_ticket_is_skipped_after_ttl_and_its_holder_told(
    counting: tenure.AsyncCoordinator, rival: tenure.AsyncCoordinator
) -> None:
    mine, theirs = counting.sequence("account:42", ttl=1), rival.sequence("account:42", ttl=5)
    first = await mine.ticket()
    second = await theirs.ticket()
    await stall_renewals(counting, seconds=3.0)  # the first holder is cut off
    started = time.monotonic()
    async with theirs.turn(second, timeout=5) as lease:
        assert time.monotonic() - started < 2.5
        lease.check()
    with pytest.raises(tenure.LockLost):
        await mine.turn(first, timeout=1)


async def test_cancel_lets_the_next_ticket_go(
    counting: tenure.AsyncCoordinator, rival: tenure.AsyncCoordinator
) -> None:
    mine, theirs = counting.sequence("account:42", ttl=5), rival.sequence("account:42", ttl=5)
    first = await mine.ticket()
    second = await theirs.ticket()
    await mine.cancel(first)
    await mine.cancel(first)  # idempotent
    async with theirs.turn(second, timeout=1) as lease:
        lease.check()


async def test_a_ticket_waiting_long_is_renewed(counting: tenure.AsyncCoordinator) -> None:
    turns = counting.sequence("account:42", ttl=1)
    ticket = await turns.ticket()
    await async_sleep(2.5)
    async with turns.turn(ticket, timeout=1) as lease:
        lease.check()


async def test_a_turn_of_a_foreign_ticket_is_refused(counting: tenure.AsyncCoordinator) -> None:
    with pytest.raises(tenure.NotOwner, match="ticket 12345"):
        await counting.sequence("account:42").turn(12345, timeout=1)
