"""The read-write lock contract every backend with the Counting capability passes (both colours)."""

from __future__ import annotations

import time

import pytest

import tenure
from tenure._async.backends.base import AsyncCounting
from tenure._concurrency import AsyncBackground, async_sleep
from tenure._core.guarantees import Capability, Guarantee
from tests._async.faults import stall_renewals


@pytest.fixture
def counting(coord: tenure.AsyncCoordinator) -> tenure.AsyncCoordinator:
    """The coordinator, for a test that needs read-write locks; the backends without them refuse."""
    if Capability.COUNTING not in coord.capabilities:
        pytest.skip("no Counting capability: test_incapable_backend_refuses_rwlocks covers it")
    return coord


async def test_incapable_backend_refuses_rwlocks(coord: tenure.AsyncCoordinator) -> None:
    if Capability.COUNTING in coord.capabilities:
        assert isinstance(coord._store, AsyncCounting)
        assert coord.rwlock("catalog").name == "catalog"
    else:
        with pytest.raises(tenure.BackendIncapable, match="Counting"):
            coord.rwlock("catalog")


async def test_bad_input_is_refused_before_any_io(backend_url: str) -> None:
    coord = tenure.AsyncCoordinator(backend_url)
    with pytest.raises(tenure.ConfigurationError):
        coord.rwlock("")
    with pytest.raises(tenure.ConfigurationError):
        coord.rwlock("catalog", ttl=-1)
    with pytest.raises(tenure.ConfigurationError):
        coord.rwlock("catalog", timeout=-1)
    assert not coord._connected
    await coord.aclose()


async def test_readers_share_and_a_writer_excludes(
    counting: tenure.AsyncCoordinator, rival: tenure.AsyncCoordinator
) -> None:
    mine, theirs = counting.rwlock("catalog", ttl=5), rival.rwlock("catalog", ttl=5)
    first = await mine.read(timeout=1)
    second = await mine.read(timeout=1)  # readers share, even two of one task
    assert len(await theirs.readers()) == 2
    assert await theirs.try_write() is None
    await first.release()
    assert await theirs.try_write() is None  # one reader left
    await second.release()
    writer = await theirs.write(timeout=1)
    assert (await mine.writer()) is not None
    assert await mine.try_read() is None
    assert await mine.try_write() is None
    writer.check()
    await writer.release()
    assert await mine.writer() is None
    reader = await mine.try_read()
    assert reader is not None
    await reader.release()


async def test_fences_come_from_one_counter(
    counting: tenure.AsyncCoordinator, rival: tenure.AsyncCoordinator
) -> None:
    rw = counting.rwlock("catalog", ttl=5)
    fences = []
    for client in (counting, rival, counting):
        async with client.rwlock("catalog", ttl=5).read(timeout=1) as reader:
            fences.append(reader.fence)
        async with client.rwlock("catalog", ttl=5).write(timeout=1) as writer:
            fences.append(writer.fence)
    if Guarantee.FENCING in counting.guarantees:
        assert fences == sorted(set(fences)), "reader and writer fences must grow together"
    else:
        assert len(set(fences)) == len(fences)
    assert await rw.readers() == []


async def test_a_waiting_writer_stops_new_readers(
    counting: tenure.AsyncCoordinator, rival: tenure.AsyncCoordinator
) -> None:
    rw = counting.rwlock("catalog", ttl=5)
    reader = await rw.read(timeout=1)
    got_write: list[float] = []

    async def write() -> None:
        async with rival.rwlock("catalog", ttl=5).write(timeout=10):
            got_write.append(time.monotonic())
            await async_sleep(0.2)

    writer = AsyncBackground(write, name="writer")  # a task here, a thread in sync
    writer.start()
    await async_sleep(0.4)
    assert not got_write  # the reader still holds
    # The writer waits: a new reader is not admitted, though only readers hold the lock.
    assert await rival.rwlock("catalog").try_read() is None
    released = time.monotonic()
    await reader.release()
    late_reader = await rival.rwlock("catalog", ttl=5).read(timeout=10)  # after the writer
    await writer.join()
    assert got_write and got_write[0] - released < 2.0
    assert time.monotonic() >= got_write[0] + 0.2
    await late_reader.release()


async def test_a_writer_downgrades_without_a_gap(
    counting: tenure.AsyncCoordinator, rival: tenure.AsyncCoordinator
) -> None:
    rw = counting.rwlock("catalog", ttl=5)
    writer = await rw.write(timeout=1)
    reader = await writer.downgrade()
    with pytest.raises(tenure.NotOwner):
        writer.check()  # the write lease is gone
    reader.check()
    if Guarantee.FENCING in counting.guarantees:
        assert reader.fence > writer.fence
    other = await counting.rwlock("catalog", ttl=5).read(timeout=1)  # readers share again
    assert await rival.rwlock("catalog").try_write() is None
    await other.release()
    await reader.release()
    again = await rival.rwlock("catalog", ttl=5).try_write()
    assert again is not None
    await again.release()


async def test_an_upgrade_is_refused_at_once(counting: tenure.AsyncCoordinator) -> None:
    rw = counting.rwlock("catalog", ttl=5)
    async with rw.read(timeout=1):
        started = time.monotonic()
        with pytest.raises(tenure.AlreadyHeld, match="upgrade"):
            await rw.write(timeout=5)
        assert time.monotonic() - started < 1.0


async def test_a_second_write_in_one_task_is_refused(counting: tenure.AsyncCoordinator) -> None:
    rw = counting.rwlock("catalog", ttl=5)
    async with rw.write(timeout=1):
        with pytest.raises(tenure.AlreadyHeld):
            await rw.write(timeout=5)


async def test_a_writer_times_out_while_readers_hold_and_leaves_no_trace(
    counting: tenure.AsyncCoordinator, rival: tenure.AsyncCoordinator
) -> None:
    reader = await counting.rwlock("catalog", ttl=5).read(timeout=1)
    started = time.monotonic()
    with pytest.raises(tenure.AcquireTimeout, match="catalog"):
        await rival.rwlock("catalog", ttl=5).write(timeout=0.3)
    assert 0.25 <= time.monotonic() - started < 2.0
    assert await rival.rwlock("catalog").writer() is None  # it let go of the writer's key
    second = await rival.rwlock("catalog", ttl=5).try_read()
    assert second is not None
    await second.release()
    await reader.release()


async def test_a_silent_writer_loses_the_lock_within_ttl(
    counting: tenure.AsyncCoordinator, rival: tenure.AsyncCoordinator
) -> None:
    writer = await counting.rwlock("catalog", ttl=1).write(timeout=1)
    await stall_renewals(counting, seconds=3.0)
    started = time.monotonic()
    reader = await rival.rwlock("catalog", ttl=5).read(timeout=5)
    assert time.monotonic() - started < 2.5
    assert writer.lost
    with pytest.raises(tenure.LockLost):
        writer.check()
    if Guarantee.FENCING in counting.guarantees:
        assert reader.fence > writer.fence
    await reader.release()


async def test_read_leases_are_renewed_past_their_ttl(
    counting: tenure.AsyncCoordinator, rival: tenure.AsyncCoordinator
) -> None:
    reader = await counting.rwlock("catalog", ttl=1).read(timeout=1)
    await async_sleep(2.5)
    reader.check()
    assert await rival.rwlock("catalog").try_write() is None
    await reader.release()
