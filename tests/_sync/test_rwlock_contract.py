# GENERATED from tests/_async/test_rwlock_contract.py by scripts/unasync.py: do not edit; edit the source and re-run.
"""The read-write lock contract every backend with the Counting capability passes (both colours)."""

from __future__ import annotations

import time

import pytest

import tenure
from tenure._sync.backends.base import Counting
from tenure._concurrency import Background, sleep
from tenure._core.guarantees import Capability, Guarantee
from tests._sync.faults import stall_renewals


@pytest.fixture
def counting(coord: tenure.Coordinator) -> tenure.Coordinator:
    """The coordinator, for a test that needs read-write locks; the backends without them refuse."""
    if Capability.COUNTING not in coord.capabilities:
        pytest.skip("no Counting capability: test_incapable_backend_refuses_rwlocks covers it")
    return coord


def test_incapable_backend_refuses_rwlocks(coord: tenure.Coordinator) -> None:
    if Capability.COUNTING in coord.capabilities:
        assert isinstance(coord._store, Counting)
        assert coord.rwlock("catalog").name == "catalog"
    else:
        with pytest.raises(tenure.BackendIncapable, match="Counting"):
            coord.rwlock("catalog")


def test_bad_input_is_refused_before_any_io(backend_url: str) -> None:
    coord = tenure.Coordinator(backend_url)
    with pytest.raises(tenure.ConfigurationError):
        coord.rwlock("")
    with pytest.raises(tenure.ConfigurationError):
        coord.rwlock("catalog", ttl=-1)
    with pytest.raises(tenure.ConfigurationError):
        coord.rwlock("catalog", timeout=-1)
    assert not coord._connected
    coord.close()


def test_readers_share_and_a_writer_excludes(
    counting: tenure.Coordinator, rival: tenure.Coordinator
) -> None:
    mine, theirs = counting.rwlock("catalog", ttl=5), rival.rwlock("catalog", ttl=5)
    first = mine.read(timeout=1)
    second = mine.read(timeout=1)  # readers share, even two of one task
    assert len(theirs.readers()) == 2
    assert theirs.try_write() is None
    first.release()
    assert theirs.try_write() is None  # one reader left
    second.release()
    writer = theirs.write(timeout=1)
    assert (mine.writer()) is not None
    assert mine.try_read() is None
    assert mine.try_write() is None
    writer.check()
    writer.release()
    assert mine.writer() is None
    reader = mine.try_read()
    assert reader is not None
    reader.release()


def test_fences_come_from_one_counter(
    counting: tenure.Coordinator, rival: tenure.Coordinator
) -> None:
    rw = counting.rwlock("catalog", ttl=5)
    fences = []
    for client in (counting, rival, counting):
        with client.rwlock("catalog", ttl=5).read(timeout=1) as reader:
            fences.append(reader.fence)
        with client.rwlock("catalog", ttl=5).write(timeout=1) as writer:
            fences.append(writer.fence)
    if Guarantee.FENCING in counting.guarantees:
        assert fences == sorted(set(fences)), "reader and writer fences must grow together"
    else:
        assert len(set(fences)) == len(fences)
    assert rw.readers() == []


def test_a_waiting_writer_stops_new_readers(
    counting: tenure.Coordinator, rival: tenure.Coordinator
) -> None:
    rw = counting.rwlock("catalog", ttl=5)
    reader = rw.read(timeout=1)
    got_write: list[float] = []

    def write() -> None:
        with rival.rwlock("catalog", ttl=5).write(timeout=10):
            got_write.append(time.monotonic())
            sleep(0.2)

    writer = Background(write, name="writer")  # a task here, a thread in sync
    writer.start()
    sleep(0.4)
    assert not got_write  # the reader still holds
    # The writer waits: a new reader is not admitted, though only readers hold the lock.
    assert rival.rwlock("catalog").try_read() is None
    released = time.monotonic()
    reader.release()
    late_reader = rival.rwlock("catalog", ttl=5).read(timeout=10)  # after the writer
    writer.join()
    assert got_write and got_write[0] - released < 2.0
    assert time.monotonic() >= got_write[0] + 0.2
    late_reader.release()


def test_a_writer_downgrades_without_a_gap(
    counting: tenure.Coordinator, rival: tenure.Coordinator
) -> None:
    rw = counting.rwlock("catalog", ttl=5)
    writer = rw.write(timeout=1)
    reader = writer.downgrade()
    with pytest.raises(tenure.NotOwner):
        writer.check()  # the write lease is gone
    reader.check()
    if Guarantee.FENCING in counting.guarantees:
        assert reader.fence > writer.fence
    other = counting.rwlock("catalog", ttl=5).read(timeout=1)  # readers share again
    assert rival.rwlock("catalog").try_write() is None
    other.release()
    reader.release()
    again = rival.rwlock("catalog", ttl=5).try_write()
    assert again is not None
    again.release()


def test_an_upgrade_is_refused_at_once(counting: tenure.Coordinator) -> None:
    rw = counting.rwlock("catalog", ttl=5)
    with rw.read(timeout=1):
        started = time.monotonic()
        with pytest.raises(tenure.AlreadyHeld, match="upgrade"):
            rw.write(timeout=5)
        assert time.monotonic() - started < 1.0


def test_a_second_write_in_one_task_is_refused(counting: tenure.Coordinator) -> None:
    rw = counting.rwlock("catalog", ttl=5)
    with rw.write(timeout=1):
        with pytest.raises(tenure.AlreadyHeld):
            rw.write(timeout=5)


def test_a_writer_times_out_while_readers_hold_and_leaves_no_trace(
    counting: tenure.Coordinator, rival: tenure.Coordinator
) -> None:
    reader = counting.rwlock("catalog", ttl=5).read(timeout=1)
    started = time.monotonic()
    with pytest.raises(tenure.AcquireTimeout, match="catalog"):
        rival.rwlock("catalog", ttl=5).write(timeout=0.3)
    assert 0.25 <= time.monotonic() - started < 2.0
    assert rival.rwlock("catalog").writer() is None  # it let go of the writer's key
    second = rival.rwlock("catalog", ttl=5).try_read()
    assert second is not None
    second.release()
    reader.release()


def test_a_silent_writer_loses_the_lock_within_ttl(
    counting: tenure.Coordinator, rival: tenure.Coordinator
) -> None:
    writer = counting.rwlock("catalog", ttl=1).write(timeout=1)
    stall_renewals(counting, seconds=3.0)
    started = time.monotonic()
    reader = rival.rwlock("catalog", ttl=5).read(timeout=5)
    assert time.monotonic() - started < 2.5
    assert writer.lost
    with pytest.raises(tenure.LockLost):
        writer.check()
    if Guarantee.FENCING in counting.guarantees:
        assert reader.fence > writer.fence
    reader.release()


def test_read_leases_are_renewed_past_their_ttl(
    counting: tenure.Coordinator, rival: tenure.Coordinator
) -> None:
    reader = counting.rwlock("catalog", ttl=1).read(timeout=1)
    sleep(2.5)
    reader.check()
    assert rival.rwlock("catalog").try_write() is None
    reader.release()
