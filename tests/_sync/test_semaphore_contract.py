# GENERATED from tests/_async/test_semaphore_contract.py by scripts/unasync.py: do not edit; edit the source and re-run.
"""The semaphore contract every backend with the Counting capability passes (both colours).

A backend without it must refuse to build a semaphore with ``BackendIncapable``: the first test
checks that, and the fixture ``counting`` makes the others run only where the capability is
declared (the capability table and ``tests/test_core.py`` check that declarations are true).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import pytest

import tenure
from tenure._sync.backends.base import Counting, Permit
from tenure._concurrency import Background, sleep
from tenure._core.guarantees import Capability, Guarantee
from tenure._core.semaphore import permit_keys
from tenure._core.tokens import Owner
from tenure._exceptions import BackendUnavailable
from tests._sync.faults import stall_renewals


def has_counting(coord: tenure.Coordinator) -> bool:
    return Capability.COUNTING in coord.capabilities


@pytest.fixture
def counting(coord: tenure.Coordinator) -> tenure.Coordinator:
    """The coordinator, for a test that needs semaphores; the backends without them are refused."""
    if not has_counting(coord):
        pytest.skip("no Counting capability: test_incapable_backend_refuses_semaphores covers it")
    return coord


def test_incapable_backend_refuses_semaphores(coord: tenure.Coordinator) -> None:
    if has_counting(coord):
        assert isinstance(coord._store, Counting)
        assert coord.semaphore("slots", limit=2).limit == 2
    else:
        assert not isinstance(coord._store, Counting)
        with pytest.raises(tenure.BackendIncapable, match="Counting"):
            coord.semaphore("slots", limit=2)


def test_bad_input_is_refused_before_any_io(backend_url: str) -> None:
    coord = tenure.Coordinator(backend_url)
    for limit in (0, -1, 1025, 2.0, True, "3", None):
        with pytest.raises(tenure.ConfigurationError, match="limit"):
            coord.semaphore("slots", limit=limit)  # type: ignore[arg-type]
    with pytest.raises(tenure.ConfigurationError):
        coord.semaphore("", limit=2)
    with pytest.raises(tenure.ConfigurationError):
        coord.semaphore("slots", limit=2, ttl=0)
    with pytest.raises(tenure.ConfigurationError):
        coord.semaphore("slots", limit=2, fair="yes")  # type: ignore[arg-type]
    assert not coord._connected
    coord.close()


def test_at_most_limit_permits(
    counting: tenure.Coordinator, rival: tenure.Coordinator
) -> None:
    sem = counting.semaphore("slots", limit=3, ttl=5)
    permits = [sem.acquire(timeout=1) for _ in range(2)]
    permits.append(rival.semaphore("slots", limit=3, ttl=5).acquire(timeout=1))
    assert sem.try_acquire() is None
    assert rival.semaphore("slots", limit=3).try_acquire() is None
    holders = sem.holders()
    assert sorted(h.fence for h in holders) == sorted(p.fence for p in permits)
    assert all(h.remaining is None or 0 < h.remaining <= 5 for h in holders)
    assert all("pid" in h.label for h in holders)
    for permit in permits:
        permit.check()
        assert 4 < permit.remaining() <= 5
    permits[1].release()
    again = sem.try_acquire()
    assert again is not None
    for permit in (permits[0], permits[2], again):
        permit.release()
    assert sem.holders() == []


def test_fences_grow_per_name_across_permits(counting: tenure.Coordinator) -> None:
    sem = counting.semaphore("slots", limit=3, ttl=5)
    fences = []
    held = []
    for _ in range(9):  # fill, then churn, so that slots are reused in every order
        if len(held) == 3:
            held.pop(0).release()
        permit = sem.acquire(timeout=1)
        held.append(permit)
        fences.append(permit.fence)
    if Guarantee.FENCING in counting.guarantees:
        assert fences == sorted(set(fences)), "fences must strictly increase and never repeat"
    else:  # best-effort fences (README table): distinct at least
        assert len(set(fences)) == len(fences)
    for permit in held:
        permit.release()


def test_another_limit_is_refused_while_permits_are_held(
    counting: tenure.Coordinator, rival: tenure.Coordinator
) -> None:
    permit = counting.semaphore("slots", limit=2, ttl=5).acquire(timeout=1)
    for limit in (1, 3):
        with pytest.raises(tenure.ConfigurationError, match="limit=2"):
            rival.semaphore("slots", limit=limit).try_acquire()
        with pytest.raises(tenure.ConfigurationError, match="limit=2"):
            rival.semaphore("slots", limit=limit).acquire(timeout=1)
    permit.release()
    # Once no permit is held, the name may change its limit.
    wider = rival.semaphore("slots", limit=3, ttl=5).acquire(timeout=1)
    with pytest.raises(tenure.ConfigurationError, match="limit=3"):
        counting.semaphore("slots", limit=2).try_acquire()
    wider.release()


def test_acquire_waits_for_a_release_and_times_out(
    counting: tenure.Coordinator, rival: tenure.Coordinator
) -> None:
    sem = counting.semaphore("slots", limit=1, ttl=5)
    permit = sem.acquire(timeout=1)
    started = time.monotonic()
    with pytest.raises(tenure.AcquireTimeout, match="slots"):
        rival.semaphore("slots", limit=1).acquire(timeout=0.3)
    assert 0.25 <= time.monotonic() - started < 2.0

    def release_soon() -> None:
        sleep(0.3)
        permit.release()

    releaser = Background(release_soon, name="releaser")  # a task here, a thread in sync
    releaser.start()
    started = time.monotonic()
    with rival.semaphore("slots", limit=1, ttl=5).acquire(timeout=5) as second:
        waited = time.monotonic() - started
        second.check()
    releaser.join()
    assert 0.2 <= waited < 2.0


def test_context_manager_releases(counting: tenure.Coordinator) -> None:
    sem = counting.semaphore("slots", limit=1, ttl=5, timeout=1)
    with sem as permit:
        assert sem.try_acquire() is None
        permit.check()
    with sem.acquire(timeout=1) as permit:
        assert len(sem.holders()) == 1
    assert sem.holders() == []


def test_permits_are_renewed_past_their_ttl(counting: tenure.Coordinator) -> None:
    sem = counting.semaphore("slots", limit=2, ttl=1)
    permits = [sem.acquire(timeout=1) for _ in range(2)]
    sleep(2.5)
    for permit in permits:
        permit.check()
    assert sem.try_acquire() is None
    for permit in permits:
        permit.release()


def test_a_silent_holder_loses_its_permit_within_ttl(
    counting: tenure.Coordinator, rival: tenure.Coordinator
) -> None:
    permit = counting.semaphore("slots", limit=1, ttl=1).acquire(timeout=1)
    stall_renewals(counting, seconds=3.0)  # as a partition: the server stays up
    started = time.monotonic()
    taken = rival.semaphore("slots", limit=1, ttl=5).acquire(timeout=5)
    assert time.monotonic() - started < 2.5
    assert permit.lost
    with pytest.raises(tenure.LockLost):
        permit.check()
    if Guarantee.FENCING in counting.guarantees:
        assert taken.fence > permit.fence
    taken.release()


def test_an_attempt_that_fails_midway_leaks_no_permit(
    counting: tenure.Coordinator, rival: tenure.Coordinator
) -> None:
    """The Curator bug class: the step took a slot, but the reply never came."""
    store = counting._store
    assert isinstance(store, Counting)
    real = store.try_acquire_permit

    def reply_lost(key: str, limit: int, owner: Owner, ttl: float) -> Permit | None:
        real(key, limit, owner, ttl)
        raise BackendUnavailable("injected: the connection dropped before the reply")

    store.try_acquire_permit = reply_lost  # type: ignore[method-assign]
    try:
        with pytest.raises(BackendUnavailable):
            counting.semaphore("slots", limit=1, ttl=30).acquire(timeout=1)
    finally:
        store.try_acquire_permit = real  # type: ignore[method-assign]
    # Freed at once by the clean-up, not after the 30 s ttl.
    permit = rival.semaphore("slots", limit=1, ttl=5).try_acquire()
    assert permit is not None
    permit.release()


def test_a_wait_that_times_out_leaks_no_permit(
    counting: tenure.Coordinator, rival: tenure.Coordinator
) -> None:
    sem = counting.semaphore("slots", limit=1, ttl=30)
    held = sem.acquire(timeout=1)
    with pytest.raises(tenure.AcquireTimeout):
        rival.semaphore("slots", limit=1, ttl=30).acquire(timeout=0.2)
    held.release()
    assert sem.holders() == []


def test_one_coordinator_may_hold_several_permits(counting: tenure.Coordinator) -> None:
    sem = counting.semaphore("slots", limit=2, ttl=5)
    with sem.acquire(timeout=1) as first, sem.acquire(timeout=1) as second:
        assert first.fence != second.fence
        assert sem.try_acquire() is None
    assert sem.holders() == []


def test_semaphores_and_locks_of_one_name_are_apart(counting: tenure.Coordinator) -> None:
    with counting.lock("slots", ttl=5), counting.semaphore("slots", limit=1, ttl=5).acquire(timeout=1):
        assert counting.inspect("slots") is not None


def test_fair_waiters_are_served_in_arrival_order(
    counting: tenure.Coordinator, rival: tenure.Coordinator
) -> None:
    if Capability.QUEUEING not in counting.capabilities:
        with pytest.raises(tenure.BackendIncapable, match="Queueing"):
            counting.semaphore("slots", limit=1, fair=True)
        return
    sem = counting.semaphore("slots", limit=1, ttl=5, fair=True)
    held = sem.acquire(timeout=1)
    served: list[int] = []

    def waiter(number: int) -> None:
        with rival.semaphore("slots", limit=1, ttl=5, fair=True).acquire(timeout=10):
            served.append(number)

    first = Background(lambda: waiter(1), name="waiter-1")
    second = Background(lambda: waiter(2), name="waiter-2")
    first.start()
    sleep(0.3)
    second.start()
    sleep(0.3)
    # A single attempt respects the line too: it fails while others wait, though none is free.
    assert rival.semaphore("slots", limit=1, fair=True).try_acquire() is None
    held.release()
    first.join()
    second.join()
    assert served == [1, 2]


def test_holders_lists_live_permits_only(counting: tenure.Coordinator) -> None:
    sem = counting.semaphore("slots", limit=4, ttl=5)
    permits: Sequence[tenure.Lease] = [sem.acquire(timeout=1) for _ in range(3)]
    permits[0].release()
    holders = sem.holders()
    assert sorted(h.fence for h in holders) == sorted(p.fence for p in permits[1:])
    for permit in permits[1:]:
        permit.release()
    assert len(permit_keys(sem.key, sem.limit)) == 4


def test_many_tasks_of_one_coordinator_take_permits_at_once(counting: tenure.Coordinator) -> None:
    """Permits granted in one order may be answered in another: none is refused for it."""
    sem = counting.semaphore("slots", limit=4, ttl=5)
    fences: list[int] = []

    def take_some() -> None:
        for _ in range(5):
            with sem.acquire(timeout=10) as permit:
                fences.append(permit.fence)

    workers = [Background(take_some, name=f"taker-{i}") for i in range(6)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert len(fences) == 30 and len(set(fences)) == 30
    assert sem.holders() == []


def test_a_burst_of_first_takers_on_a_new_name_all_get_through(
    counting: tenure.Coordinator, rival: tenure.Coordinator
) -> None:
    """Many first acquisitions at once, before any limit is recorded, must not stall each other."""
    served: list[float] = []
    started = time.monotonic()

    def take(client: tenure.Coordinator) -> None:
        with client.semaphore("fresh", limit=4, ttl=5).acquire(timeout=20):
            served.append(time.monotonic())
            sleep(0.01)

    workers = [
        Background(lambda c=c: take(c), name=f"first-{i}") for i, c in enumerate([counting, rival] * 6)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert len(served) == 12
    assert max(served) - started < 10.0
