"""What only the asyncio colour can do: cancel the body of ``async with``; run an acquisition as a task."""

from __future__ import annotations

import asyncio
import time

import pytest

import tenure
from tenure._exceptions import BackendUnavailable
from tests._async.faults import replace_renew


async def test_async_with_body_is_cancelled_on_loss(backend_url: str) -> None:
    async with tenure.AsyncCoordinator(backend_url) as coord:
        lock = coord.lock("cancel-me", ttl=0.4)
        started = time.monotonic()
        reached_end = False
        with pytest.raises(tenure.LockLost):
            async with lock:
                store = coord._store

                async def refuse(*args: object) -> bool:
                    raise BackendUnavailable("injected partition")

                replace_renew(store, refuse)
                await asyncio.sleep(30)
                reached_end = True
        assert not reached_end
        assert time.monotonic() - started < 2.0, "the body must be cancelled when the lease runs out"
        assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_outer_cancellation_is_not_mistaken_for_loss(backend_url: str) -> None:
    async with tenure.AsyncCoordinator(backend_url) as coord:

        async def hold() -> None:
            async with coord.lock("outer", ttl=5):
                await asyncio.sleep(30)

        task = asyncio.create_task(hold())
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await coord.inspect("outer") is None, "cancellation must still release the lock"


async def test_a_body_that_notices_the_loss_itself_is_not_cancelled_too(backend_url: str) -> None:
    async with tenure.AsyncCoordinator(backend_url) as coord:
        lease = await coord.lock("self-check", ttl=0.3).acquire()

        async def refuse(*args: object) -> bool:
            raise BackendUnavailable("injected partition")

        replace_renew(coord._store, refuse)
        with pytest.raises(tenure.LockLost):
            async with lease:
                time.sleep(0.4)  # block the loop: the renewer cannot run, the body checks first
                lease.check()
        assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
        await asyncio.sleep(0.01)  # no stray cancellation is pending for this task


async def test_run_stops_fn_when_leadership_is_lost(backend_url: str) -> None:
    async with tenure.AsyncCoordinator(backend_url) as coord:
        election = coord.election("run-me", value="runner", ttl=0.4)
        started = time.monotonic()
        finished = False

        async def lead() -> None:
            nonlocal finished
            store = coord._store

            async def refuse(*args: object) -> bool:
                raise BackendUnavailable("injected partition")

            replace_renew(store, refuse)
            await asyncio.sleep(30)
            finished = True

        with pytest.raises(tenure.LeadershipLost) as info:
            await election.run(lead)
        assert isinstance(info.value, tenure.LockLost) and "run-me" in str(info.value)
        assert not finished
        assert time.monotonic() - started < 2.0, "fn must be stopped when the leadership runs out"
        assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


@pytest.mark.parametrize("backend", ["memory", "sqlite", "redis"])
def test_a_coordinator_used_from_a_second_event_loop_is_refused(
    backend: str, request: pytest.FixtureRequest
) -> None:
    url: str = request.getfixturevalue(f"{backend}_url")
    coord = tenure.AsyncCoordinator(url)  # made outside any loop: bound to the loop of its first use

    async def first() -> None:
        async with coord.lock("loop", ttl=0.3) as lease:
            await asyncio.sleep(0.5)  # renewed on this loop
            lease.check()

    asyncio.run(first())

    async def second() -> None:
        # Before: this acquired, and the lease was never renewed (the renewer task died with the
        # first loop), so it was lost silently. Now the first use says why at once.
        with pytest.raises(tenure.ConfigurationError, match="another event loop"):
            lease = await coord.lock("loop", ttl=0.3).acquire(timeout=1)
            await asyncio.sleep(0.5)
            lease.check()
        with pytest.raises(tenure.ConfigurationError, match="another event loop"):
            await coord.inspect("loop")
        with pytest.raises(tenure.ConfigurationError, match="another event loop"):
            await coord.aclose()

    asyncio.run(second())
    with tenure.Coordinator(url) as rival:
        assert rival.inspect("loop") is None, "the first loop released its lease"


async def test_an_acquisition_can_run_as_a_task(backend_url: str) -> None:
    # What acquire() and campaign() return is a coroutine too: create_task takes it as it did.
    async with tenure.AsyncCoordinator(backend_url) as coord, tenure.AsyncCoordinator(backend_url) as rival:
        held = await coord.lock("task", ttl=5).acquire(timeout=1)
        waiting = asyncio.create_task(rival.lock("task", ttl=5).acquire(timeout=5))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        await held.release()
        lease = await asyncio.wait_for(waiting, 5)
        assert lease.fence > held.fence
        await lease.release()
        campaign = asyncio.create_task(coord.election("task-election", ttl=5).campaign(timeout=5))
        leadership = await asyncio.wait_for(campaign, 5)
        assert leadership.term >= 1
        await leadership.resign()
