# GENERATED from tests/_async/test_lock_contract.py by scripts/unasync.py: do not edit; edit the source and re-run.
"""The lock contract every backend passes: written once in async, the sync twin is generated.

A new backend joins by adding a ``<name>_url`` fixture and its name to ``tests/conftest.py``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from urllib.parse import quote

import pytest

import tenure
from tenure._concurrency import Background, sleep
from tenure._core.guarantees import Guarantee
from tenure._core.tokens import Owner
from tenure._exceptions import BackendError, BackendUnavailable
from tests._sync.faults import replace_renew, stall_renewals


def test_acquire_and_release(coord: tenure.Coordinator) -> None:
    lock = coord.lock("job", ttl=5)
    lease = lock.acquire(timeout=1)
    assert lease.name == "job" and isinstance(lease.fence, int)
    assert 4 < lease.remaining() <= 5
    assert not lease.lost
    lease.check()
    info = coord.inspect("job")
    assert info is not None and info.fence == lease.fence and "pid" in info.label
    lease.release()
    assert coord.inspect("job") is None
    lease.release()  # idempotent once released
    with pytest.raises(tenure.NotOwner):
        lease.check()


def test_try_acquire_returns_none_when_held_elsewhere(
    coord: tenure.Coordinator, rival: tenure.Coordinator
) -> None:
    with coord.lock("job", ttl=5) as lease:
        assert rival.lock("job").try_acquire() is None
        assert rival.try_lock("job") is None
        lease.check()
    again = rival.lock("job").try_acquire()
    assert again is not None
    again.release()


def test_acquire_times_out_when_held_elsewhere(
    coord: tenure.Coordinator, rival: tenure.Coordinator
) -> None:
    with coord.lock("job", ttl=5):
        started = time.monotonic()
        with pytest.raises(tenure.AcquireTimeout) as info:
            rival.lock("job").acquire(timeout=0.3)
        waited = time.monotonic() - started
        assert 0.25 <= waited < 2.0
        assert isinstance(info.value, TimeoutError)
        assert "job" in str(info.value)
        with pytest.raises(tenure.AcquireTimeout):
            rival.lock("job").acquire(timeout=0)  # a single try


def test_waiter_gets_the_lock_when_released(
    coord: tenure.Coordinator, rival: tenure.Coordinator
) -> None:
    lease = coord.lock("job", ttl=5).acquire()
    lock = rival.lock("job", ttl=5, timeout=5)
    released_at = time.monotonic()

    def release_soon() -> None:
        nonlocal released_at
        sleep(0.2)
        released_at = time.monotonic()
        lease.release()

    releaser = Background(release_soon, name="releaser")  # a task here, a thread in sync
    releaser.start()
    second = lock.acquire()
    releaser.join()
    assert second.fence > lease.fence
    assert time.monotonic() - released_at < 1.0
    second.release()


def test_fences_grow_with_every_acquisition(
    coord: tenure.Coordinator, rival: tenure.Coordinator
) -> None:
    fences = []
    for client in (coord, rival, coord, coord, rival):
        with client.lock("fenced", ttl=5) as lease:
            fences.append(lease.fence)
    if Guarantee.FENCING in coord.guarantees:
        assert fences == sorted(set(fences)), "fences must strictly increase and never repeat"
    else:
        assert len(set(fences)) == len(fences)


def test_tokens_are_unguessable_owner_secrets(coord: tenure.Coordinator) -> None:
    tokens = set()
    for _ in range(5):
        with coord.lock("tok", ttl=5) as lease:
            assert len(lease.token) >= 22
            assert lease.token not in repr(lease)
            tokens.add(lease.token)
    assert len(tokens) == 5
    with coord.lock("tok", ttl=5) as lease:
        info = coord.inspect("tok")
        assert info is not None and lease.token not in info.label


def test_the_lock_object_is_a_reusable_context_manager(coord: tenure.Coordinator) -> None:
    lock = coord.lock("reuse", ttl=5, timeout=1)
    with lock as first:
        pass
    with lock as second:
        assert second.fence > first.fence
    assert first.lost is False and first.remaining() == 0.0


def test_renew_sets_the_ttl_instead_of_adding(coord: tenure.Coordinator) -> None:
    with coord.lock("renew", ttl=5) as lease:
        lease.renew(2)
        assert 1.5 < lease.remaining() <= 2
        assert lease.ttl == 2
        info = coord.inspect("renew")
        assert info is not None and info.remaining is not None and info.remaining <= 2.05
        lease.renew()
        assert lease.remaining() <= 2
        with pytest.raises(tenure.ConfigurationError):
            lease.renew(0)


def test_auto_renew_keeps_a_short_lease_alive(
    coord: tenure.Coordinator, rival: tenure.Coordinator
) -> None:
    with coord.lock("busy", ttl=0.3) as lease:
        for _ in range(6):
            sleep(0.15)
            assert rival.lock("busy").try_acquire() is None
            lease.check()
        assert lease.remaining() > 0.1


def test_a_lease_taken_after_the_renewer_went_idle_is_renewed(
    coord: tenure.Coordinator, rival: tenure.Coordinator
) -> None:
    with coord.lock("long", ttl=30):
        pass  # the renewer now has nothing to do and sleeps without end
    sleep(0.1)
    with coord.lock("idle", ttl=0.3) as lease:
        sleep(0.8)
        lease.check()
        assert rival.lock("idle").try_acquire() is None
    with coord.lock("slow", ttl=30), coord.lock("fast", ttl=0.3) as fast:
        sleep(0.8)  # the renewer slept until "slow" needed renewing
        fast.check()


def test_a_bug_in_one_renewal_does_not_stop_the_renewer(
    coord: tenure.Coordinator, rival: tenure.Coordinator
) -> None:
    def buggy_renew(key: str, owner: Owner, ttl: float) -> bool:
        if key.endswith(":cursed"):
            raise RuntimeError("a bug in the backend")
        return real_renew(key, owner, ttl)

    real_renew = replace_renew(coord._store, buggy_renew)
    cursed = coord.lock("cursed", ttl=0.3).acquire()
    healthy = coord.lock("healthy", ttl=0.3).acquire()
    sleep(0.8)
    assert cursed.lost, "a lease whose renewals keep failing is lost when its validity runs out"
    healthy.check()  # the renewer survived and kept the other lease alive
    assert rival.lock("healthy").try_acquire() is None
    healthy.release()


def test_release_is_owner_checked(
    coord: tenure.Coordinator, rival: tenure.Coordinator
) -> None:
    lease = coord.lock("owned", ttl=0.4).acquire()
    stall_renewals(coord, seconds=1.2)
    sleep(0.6)  # past the TTL, with renewals failing
    thief = rival.lock("owned", ttl=5).acquire(timeout=1)
    assert thief.fence > lease.fence
    with pytest.raises(tenure.LockLost):
        lease.release()
    thief.check()  # the stale release did not free the new holder's lock
    assert coord.lock("owned").try_acquire() is None
    thief.release()


def test_loss_is_told_at_the_next_check(
    coord: tenure.Coordinator, rival: tenure.Coordinator
) -> None:
    lost: list[tenure.Lease] = []
    lease = coord.lock("fragile", ttl=0.4).acquire()
    lease.on_lost(lost.append)
    stall_renewals(coord, seconds=2.0)
    sleep(0.6)
    assert lost == [lease], "on_lost must fire when the validity runs out, not at release"
    with pytest.raises(tenure.LockLost) as info:
        lease.check()
    assert "fragile" in str(info.value)
    assert lease.lost and lease.remaining() == 0.0
    thief = rival.lock("fragile", ttl=5).acquire(timeout=1)
    assert thief.fence > lease.fence
    late: list[tenure.Lease] = []
    lease.on_lost(late.append)  # registering after the loss still gets called, once
    assert late == [lease] and lost == [lease]
    with pytest.raises(tenure.LockLost):
        lease.release()
    thief.release()


def test_leaving_the_block_of_a_lost_lease_raises(coord: tenure.Coordinator) -> None:
    lost: list[tenure.Lease] = []
    with pytest.raises(tenure.LockLost):
        with coord.lock("fragile", ttl=0.4) as lease:
            lease.on_lost(lost.append)
            stall_renewals(coord, seconds=2.0)
            for _ in range(16):  # async: the body is cancelled here when the lease is lost
                sleep(0.05)
    assert lost == [lease]


def test_reentrant_lock_counts_acquisitions(
    coord: tenure.Coordinator, rival: tenure.Coordinator
) -> None:
    lock = coord.lock("again", ttl=5, reentrant=True)
    with lock as outer:
        with lock as inner:
            assert inner is outer
            again = lock.acquire(timeout=0)
            assert again is outer
            again.release()
        outer.check()
        assert rival.lock("again").try_acquire() is None
    other = rival.lock("again").try_acquire()
    assert other is not None
    other.release()


def test_acquire_is_also_a_context_manager(
    coord: tenure.Coordinator, rival: tenure.Coordinator
) -> None:
    lock = coord.lock("block", ttl=5)
    with lock.acquire(timeout=1) as lease:  # sync code reads as sync code does
        assert isinstance(lease, tenure.Lease)
        lease.check()
        assert rival.lock("block").try_acquire() is None
        with pytest.raises(tenure.AcquireTimeout):
            with rival.lock("block").acquire(timeout=0):
                pytest.fail("the body must not run when the lock was not had")
    assert lease.remaining() == 0.0
    assert coord.inspect("block") is None, "leaving the block releases"
    again = lock.acquire(timeout=1)  # and awaiting it still returns the lease
    assert again.fence > lease.fence
    again.release()


def test_a_holder_asking_again_for_a_non_reentrant_lock_is_told_at_once(
    coord: tenure.Coordinator,
) -> None:
    fair_too = tenure.Capability.QUEUEING in coord.capabilities
    for fair in (False, True) if fair_too else (False,):
        lock = coord.lock("once", ttl=5, fair=fair)
        with lock.acquire(timeout=1) as lease:
            started = time.monotonic()
            # Through the same Lock object or another one of the same name: both wait for oneself.
            for again in (lock, coord.lock("once", ttl=5, fair=fair), coord.lock("once", reentrant=True)):
                with pytest.raises(tenure.AlreadyHeld, match="reentrant=True"):
                    again.acquire(timeout=5)
                with pytest.raises(tenure.AlreadyHeld):
                    again.try_acquire()
                with pytest.raises(tenure.AlreadyHeld):
                    with again:
                        pass
            assert time.monotonic() - started < 1.0, "raised at once, not after the timeout"
            lease.check()
            # Held by this task: another task (a thread, in sync code) still just waits.
            outcome: list[object] = []
            waiter = Background(_acquire_elsewhere(lock, outcome), name="other")
            waiter.start()
            waiter.join()
            assert len(outcome) == 1 and type(outcome[0]) is tenure.AcquireTimeout


def _acquire_elsewhere(lock: tenure.Lock, outcome: list[object]) -> Callable[[], Awaitable[None]]:
    def acquire() -> None:
        try:
            lock.acquire(timeout=0.3)
        except tenure.TenureError as exc:
            outcome.append(exc)

    return acquire


def test_close_releases_what_is_still_held(backend_url: str, rival: tenure.Coordinator) -> None:
    coordinator = tenure.Coordinator(backend_url)
    lease = coordinator.lock("left", ttl=30).acquire()
    coordinator.close()
    assert lease.remaining() == 0.0
    again = rival.lock("left").try_acquire()
    assert again is not None
    again.release()


@pytest.mark.parametrize(
    "bad",
    [
        {"name": ""},
        {"name": "x" * 513},
        {"name": 7},
        {"ttl": 0},
        {"ttl": -1},
        {"ttl": float("nan")},
        {"ttl": float("inf")},
        {"timeout": -1},
        {"reentrant": "yes"},
        {"fair": "no"},  # truthy: it used to mean fair
        {"fair": 1},
        {"ttl": 0.001},  # shorter than the drift margin: born lost
        {"ttl": 0.005},
        {"name": "lone \udcff surrogate"},  # undecodable bytes of argv, decoded by Python
    ],
)
def test_bad_input_fails_before_any_io(backend_url: str, bad: dict[str, object]) -> None:
    coordinator = tenure.Coordinator(backend_url)
    args: dict[str, object] = {"name": "ok", "ttl": 5, **bad}
    name = args.pop("name")
    with pytest.raises(tenure.ConfigurationError):
        coordinator.lock(name, **args)  # type: ignore[arg-type]
    assert not coordinator._connected, "validation must not connect"
    coordinator.close()


def test_leaving_a_block_never_entered_is_a_typed_error(coord: tenure.Coordinator) -> None:
    lock = coord.lock("never", ttl=5)
    with pytest.raises(tenure.NotOwner, match="never"):
        lock.__exit__(None, None, None)
    with lock as lease:  # the lock still works
        lease.check()


@pytest.mark.parametrize("connected", [False, True], ids=["never-connected", "connected"])
def test_a_closed_coordinator_refuses_every_operation_alike(backend_url: str, connected: bool) -> None:
    coordinator = tenure.Coordinator(backend_url)
    if connected:
        coordinator.connect()
    lock = coordinator.lock("shut", ttl=5)
    election = coordinator.election("shut", ttl=5)
    coordinator.close()
    operations = [
        coordinator.connect,
        lambda: coordinator.inspect("shut"),
        lambda: coordinator.try_lock("shut"),
        lambda: lock.acquire(timeout=0),
        lock.try_acquire,
        lock.holder,
        lambda: election.campaign(timeout=0),
        election.leader,
    ]
    for operation in operations:
        with pytest.raises(tenure.ConfigurationError, match="is closed") as info:
            operation()
        assert not isinstance(info.value, BackendError), "a closed coordinator is not a retryable outage"
    with pytest.raises(tenure.ConfigurationError, match="is closed"):
        with lock:
            pass
    with pytest.raises(tenure.ConfigurationError, match="is closed"):
        for _ in election.observe():
            pass
    coordinator.close()  # idempotent


def test_bad_durations_on_acquire_and_renew_are_rejected(coord: tenure.Coordinator) -> None:
    lock = coord.lock("durations", ttl=5, timeout=0.5)
    for timeout in (-1, -0.5, float("nan"), True):
        with pytest.raises(tenure.ConfigurationError):
            lock.acquire(timeout=timeout)
    with lock as lease:
        for ttl in (0, -1, float("inf"), float("nan"), True):
            with pytest.raises(tenure.ConfigurationError):
                lease.renew(ttl)
        lease.check()


def test_fair_waiters_are_served_in_arrival_order(
    coord: tenure.Coordinator, backend_url: str
) -> None:
    if tenure.Capability.QUEUEING not in coord.capabilities:
        with pytest.raises(tenure.BackendIncapable):
            coord.lock("fair", fair=True)
        return
    assert Guarantee.FIFO in coord.guarantees
    lease = coord.lock("fair", ttl=5, fair=True).acquire()
    served: list[int] = []
    waiters = []
    for index in range(4):
        waiters.append(Background(_fair_waiter(backend_url, index, served), name=f"waiter-{index}"))
        waiters[-1].start()
        sleep(0.15)  # arrival order: each waiter queues before the next starts
    newcomer = tenure.Coordinator(backend_url)
    assert newcomer.lock("fair", fair=True).try_acquire() is None, "a newcomer must not jump the line"
    newcomer.close()
    lease.release()
    for waiter in waiters:
        waiter.join()
    assert served == [0, 1, 2, 3]


def _fair_waiter(url: str, index: int, served: list[int]) -> Callable[[], Awaitable[None]]:
    def wait_in_line() -> None:
        with tenure.Coordinator(url) as client, client.lock("fair", ttl=5, fair=True, timeout=10):
            served.append(index)

    return wait_in_line


def test_an_outage_while_waiting_surfaces_as_backend_error(coord: tenure.Coordinator) -> None:
    coord.connect()

    def unreachable(*args: object, **kwargs: object) -> None:
        raise BackendUnavailable("injected outage")

    # A plain lock's blocking acquire may wait in the backend's line (plain_waiters_queue).
    coord._store.try_acquire = unreachable  # type: ignore[method-assign,assignment]
    coord._store.try_acquire_queued = unreachable  # type: ignore[method-assign,assignment]
    with pytest.raises(BackendUnavailable):
        coord.lock("down").acquire(timeout=1)


def test_names_with_colons_do_not_meet_across_namespaces(
    coord: tenure.Coordinator, backend_url: str
) -> None:
    # Keys were "<namespace>:<name>": namespace N + name "b:c" was namespace "N:b" + name "c".
    inner_url = _in_namespace(backend_url, f"{coord.namespace}:b")
    with tenure.Coordinator(inner_url) as inner, coord.lock("b:c", ttl=5) as outer_lease:
        inner_lease = inner.lock("c", ttl=5).try_acquire()
        assert inner_lease is not None, "another namespace's lock blocked this one"
        outer_info, inner_info = coord.inspect("b:c"), inner.inspect("c")
        assert outer_info is not None and outer_info.fence == outer_lease.fence
        assert inner_info is not None and inner_info.fence == inner_lease.fence
        inner_lease.release()
        assert coord.inspect("b:c") is not None and inner.inspect("c") is None


def _in_namespace(url: str, namespace: str) -> str:
    """Return ``url`` with its ``namespace`` option set to ``namespace``."""
    base, _, query = url.partition("?")
    options = [pair for pair in query.split("&") if pair and not pair.startswith("namespace=")]
    return f"{base}?{'&'.join([*options, 'namespace=' + quote(namespace, safe='')])}"
