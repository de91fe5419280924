"""The lock contract every backend passes: written once in async, the sync twin is generated.

A new backend joins by adding a ``<name>_url`` fixture and its name to ``tests/conftest.py``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from urllib.parse import quote

import pytest

import tenure
from tenure._concurrency import AsyncBackground, async_sleep
from tenure._core.guarantees import Guarantee
from tenure._core.tokens import Owner
from tenure._exceptions import BackendError, BackendUnavailable
from tests._async.faults import replace_renew, stall_renewals


async def test_acquire_and_release(coord: tenure.AsyncCoordinator) -> None:
    lock = coord.lock("job", ttl=5)
    lease = await lock.acquire(timeout=1)
    assert lease.name == "job" and isinstance(lease.fence, int)
    assert 4 < lease.remaining() <= 5
    assert not lease.lost
    lease.check()
    info = await coord.inspect("job")
    assert info is not None and info.fence == lease.fence and "pid" in info.label
    await lease.release()
    assert await coord.inspect("job") is None
    await lease.release()  # idempotent once released
    with pytest.raises(tenure.NotOwner):
        lease.check()


async def test_try_acquire_returns_none_when_held_elsewhere(
    coord: tenure.AsyncCoordinator, rival: tenure.AsyncCoordinator
) -> None:
    async with coord.lock("job", ttl=5) as lease:
        assert await rival.lock("job").try_acquire() is None
        assert await rival.try_lock("job") is None
        lease.check()
    again = await rival.lock("job").try_acquire()
    assert again is not None
    await again.release()


async def test_acquire_times_out_when_held_elsewhere(
    coord: tenure.AsyncCoordinator, rival: tenure.AsyncCoordinator
) -> None:
    async with coord.lock("job", ttl=5):
        started = time.monotonic()
        with pytest.raises(tenure.AcquireTimeout) as info:
            await rival.lock("job").acquire(timeout=0.3)
        waited = time.monotonic() - started
        assert 0.25 <= waited < 2.0
        assert isinstance(info.value, TimeoutError)
        assert "job" in str(info.value)
        with pytest.raises(tenure.AcquireTimeout):
            await rival.lock("job").acquire(timeout=0)  # a single try


async def test_waiter_gets_the_lock_when_released(
    coord: tenure.AsyncCoordinator, rival: tenure.AsyncCoordinator
) -> None:
    lease = await coord.lock("job", ttl=5).acquire()
    lock = rival.lock("job", ttl=5, timeout=5)
    released_at = time.monotonic()

    async def release_soon() -> None:
        nonlocal released_at
        await async_sleep(0.2)
        released_at = time.monotonic()
        await lease.release()

    releaser = AsyncBackground(release_soon, name="releaser")  # a task here, a thread in sync
    releaser.start()
    second = await lock.acquire()
    await releaser.join()
    assert second.fence > lease.fence
    assert time.monotonic() - released_at < 1.0
    await second.release()


async def test_fences_grow_with_every_acquisition(
    coord: tenure.AsyncCoordinator, rival: tenure.AsyncCoordinator
) -> None:
    fences = []
    for client in (coord, rival, coord, coord, rival):
        async with client.lock("fenced", ttl=5) as lease:
            fences.append(lease.fence)
    if Guarantee.FENCING in coord.guarantees:
        assert fences == sorted(set(fences)), "fences must strictly increase and never repeat"
    else:
        assert len(set(fences)) == len(fences)


async def test_tokens_are_unguessable_owner_secrets(coord: tenure.AsyncCoordinator) -> None:
    tokens = set()
    for _ in range(5):
        async with coord.lock("tok", ttl=5) as lease:
            assert len(lease.token) >= 22
            assert lease.token not in repr(lease)
            tokens.add(lease.token)
    assert len(tokens) == 5
    async with coord.lock("tok", ttl=5) as lease:
        info = await coord.inspect("tok")
        assert info is not None and lease.token not in info.label


async def test_the_lock_object_is_a_reusable_context_manager(coord: tenure.AsyncCoordinator) -> None:
    lock = coord.lock("reuse", ttl=5, timeout=1)
    async with lock as first:
        pass
    async with lock as second:
        assert second.fence > first.fence
    assert first.lost is False and first.remaining() == 0.0


async def test_renew_sets_the_ttl_instead_of_adding(coord: tenure.AsyncCoordinator) -> None:
    async with coord.lock("renew", ttl=5) as lease:
        await lease.renew(2)
        assert 1.5 < lease.remaining() <= 2
        assert lease.ttl == 2
        info = await coord.inspect("renew")
        assert info is not None and info.remaining is not None and info.remaining <= 2.05
        await lease.renew()
        assert lease.remaining() <= 2
        with pytest.raises(tenure.ConfigurationError):
            await lease.renew(0)


async def test_auto_renew_keeps_a_short_lease_alive(
    coord: tenure.AsyncCoordinator, rival: tenure.AsyncCoordinator
) -> None:
    async with coord.lock("busy", ttl=0.3) as lease:
        for _ in range(6):
            await async_sleep(0.15)
            assert await rival.lock("busy").try_acquire() is None
            lease.check()
        assert lease.remaining() > 0.1


async def test_a_lease_taken_after_the_renewer_went_idle_is_renewed(
    coord: tenure.AsyncCoordinator, rival: tenure.AsyncCoordinator
) -> None:
    async with coord.lock("long", ttl=30):
        pass  # the renewer now has nothing to do and sleeps without end
    await async_sleep(0.1)
    async with coord.lock("idle", ttl=0.3) as lease:
        await async_sleep(0.8)
        lease.check()
        assert await rival.lock("idle").try_acquire() is None
    async with coord.lock("slow", ttl=30), coord.lock("fast", ttl=0.3) as fast:
        await async_sleep(0.8)  # the renewer slept until "slow" needed renewing
        fast.check()


async def test_a_bug_in_one_renewal_does_not_stop_the_renewer(
    coord: tenure.AsyncCoordinator, rival: tenure.AsyncCoordinator
) -> None:
    async def buggy_renew(key: str, owner: Owner, ttl: float) -> bool:
        if key.endswith(":cursed"):
            raise RuntimeError("a bug in the backend")
        return await real_renew(key, owner, ttl)

    real_renew = replace_renew(coord._store, buggy_renew)
    cursed = await coord.lock("cursed", ttl=0.3).acquire()
    healthy = await coord.lock("healthy", ttl=0.3).acquire()
    await async_sleep(0.8)
    assert cursed.lost, "a lease whose renewals keep failing is lost when its validity runs out"
    healthy.check()  # the renewer survived and kept the other lease alive
    assert await rival.lock("healthy").try_acquire() is None
    await healthy.release()


async def test_release_is_owner_checked(
    coord: tenure.AsyncCoordinator, rival: tenure.AsyncCoordinator
) -> None:
    lease = await coord.lock("owned", ttl=0.4).acquire()
    await stall_renewals(coord, seconds=1.2)
    await async_sleep(0.6)  # past the TTL, with renewals failing
    thief = await rival.lock("owned", ttl=5).acquire(timeout=1)
    assert thief.fence > lease.fence
    with pytest.raises(tenure.LockLost):
        await lease.release()
    thief.check()  # the stale release did not free the new holder's lock
    assert await coord.lock("owned").try_acquire() is None
    await thief.release()


async def test_loss_is_told_at_the_next_check(
    coord: tenure.AsyncCoordinator, rival: tenure.AsyncCoordinator
) -> None:
    lost: list[tenure.AsyncLease] = []
    lease = await coord.lock("fragile", ttl=0.4).acquire()
    lease.on_lost(lost.append)
    await stall_renewals(coord, seconds=2.0)
    await async_sleep(0.6)
    assert lost == [lease], "on_lost must fire when the validity runs out, not at release"
    with pytest.raises(tenure.LockLost) as info:
        lease.check()
    assert "fragile" in str(info.value)
    assert lease.lost and lease.remaining() == 0.0
    thief = await rival.lock("fragile", ttl=5).acquire(timeout=1)
    assert thief.fence > lease.fence
    late: list[tenure.AsyncLease] = []
    lease.on_lost(late.append)  # registering after the loss still gets called, once
    assert late == [lease] and lost == [lease]
    with pytest.raises(tenure.LockLost):
        await lease.release()
    await thief.release()


async def test_leaving_the_block_of_a_lost_lease_raises(coord: tenure.AsyncCoordinator) -> None:
    lost: list[tenure.AsyncLease] = []
    with pytest.raises(tenure.LockLost):
        async with coord.lock("fragile", ttl=0.4) as lease:
            lease.on_lost(lost.append)
            await stall_renewals(coord, seconds=2.0)
            for _ in range(16):  # async: the body is cancelled here when the lease is lost
                await async_sleep(0.05)
    assert lost == [lease]


async def test_reentrant_lock_counts_acquisitions(
    coord: tenure.AsyncCoordinator, rival: tenure.AsyncCoordinator
) -> None:
    lock = coord.lock("again", ttl=5, reentrant=True)
    async with lock as outer:
        async with lock as inner:
            assert inner is outer
            again = await lock.acquire(timeout=0)
            assert again is outer
            await again.release()
        outer.check()
        assert await rival.lock("again").try_acquire() is None
    other = await rival.lock("again").try_acquire()
    assert other is not None
    await other.release()


async def test_acquire_is_also_a_context_manager(
    coord: tenure.AsyncCoordinator, rival: tenure.AsyncCoordinator
) -> None:
    lock = coord.lock("block", ttl=5)
    async with lock.acquire(timeout=1) as lease:  # async code reads as sync code does
        assert isinstance(lease, tenure.AsyncLease)
        lease.check()
        assert await rival.lock("block").try_acquire() is None
        with pytest.raises(tenure.AcquireTimeout):
            async with rival.lock("block").acquire(timeout=0):
                pytest.fail("the body must not run when the lock was not had")
    assert lease.remaining() == 0.0
    assert await coord.inspect("block") is None, "leaving the block releases"
    again = await lock.acquire(timeout=1)  # and awaiting it still returns the lease
    assert again.fence > lease.fence
    await again.release()


async def test_a_holder_asking_again_for_a_non_reentrant_lock_is_told_at_once(
    coord: tenure.AsyncCoordinator,
) -> None:
    fair_too = tenure.Capability.QUEUEING in coord.capabilities
    for fair in (False, True) if fair_too else (False,):
        lock = coord.lock("once", ttl=5, fair=fair)
        async with lock.acquire(timeout=1) as lease:
            started = time.monotonic()
            # Through the same Lock object or another one of the same name: both wait for oneself.
            for again in (lock, coord.lock("once", ttl=5, fair=fair), coord.lock("once", reentrant=True)):
                with pytest.raises(tenure.AlreadyHeld, match="reentrant=True"):
                    await again.acquire(timeout=5)
                with pytest.raises(tenure.AlreadyHeld):
                    await again.try_acquire()
                with pytest.raises(tenure.AlreadyHeld):
                    async with again:
                        pass
            assert time.monotonic() - started < 1.0, "raised at once, not after the timeout"
            lease.check()
            # Held by this task: another task (a thread, in sync code) still just waits.
            outcome: list[object] = []
            waiter = AsyncBackground(_acquire_elsewhere(lock, outcome), name="other")
            waiter.start()
            await waiter.join()
            assert len(outcome) == 1 and type(outcome[0]) is tenure.AcquireTimeout


def _acquire_elsewhere(lock: tenure.AsyncLock, outcome: list[object]) -> Callable[[], Awaitable[None]]:
    async def acquire() -> None:
        try:
            await lock.acquire(timeout=0.3)
        except tenure.TenureError as exc:
            outcome.append(exc)

    return acquire


async def test_close_releases_what_is_still_held(backend_url: str, rival: tenure.AsyncCoordinator) -> None:
    coordinator = tenure.AsyncCoordinator(backend_url)
    lease = await coordinator.lock("left", ttl=30).acquire()
    await coordinator.aclose()
    assert lease.remaining() == 0.0
    again = await rival.lock("left").try_acquire()
    assert again is not None
    await again.release()


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
async def test_bad_input_fails_before_any_io(backend_url: str, bad: dict[str, object]) -> None:
    coordinator = tenure.AsyncCoordinator(backend_url)
    args: dict[str, object] = {"name": "ok", "ttl": 5, **bad}
    name = args.pop("name")
    with pytest.raises(tenure.ConfigurationError):
        coordinator.lock(name, **args)  # type: ignore[arg-type]
    assert not coordinator._connected, "validation must not connect"
    await coordinator.aclose()


async def test_leaving_a_block_never_entered_is_a_typed_error(coord: tenure.AsyncCoordinator) -> None:
    lock = coord.lock("never", ttl=5)
    with pytest.raises(tenure.NotOwner, match="never"):
        await lock.__aexit__(None, None, None)
    async with lock as lease:  # the lock still works
        lease.check()


@pytest.mark.parametrize("connected", [False, True], ids=["never-connected", "connected"])
async def test_a_closed_coordinator_refuses_every_operation_alike(backend_url: str, connected: bool) -> None:
    coordinator = tenure.AsyncCoordinator(backend_url)
    if connected:
        await coordinator.connect()
    lock = coordinator.lock("shut", ttl=5)
    election = coordinator.election("shut", ttl=5)
    await coordinator.aclose()
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
            await operation()
        assert not isinstance(info.value, BackendError), "a closed coordinator is not a retryable outage"
    with pytest.raises(tenure.ConfigurationError, match="is closed"):
        async with lock:
            pass
    with pytest.raises(tenure.ConfigurationError, match="is closed"):
        async for _ in election.observe():
            pass
    await coordinator.aclose()  # idempotent


async def test_bad_durations_on_acquire_and_renew_are_rejected(coord: tenure.AsyncCoordinator) -> None:
    lock = coord.lock("durations", ttl=5, timeout=0.5)
    for timeout in (-1, -0.5, float("nan"), True):
        with pytest.raises(tenure.ConfigurationError):
            await lock.acquire(timeout=timeout)
    async with lock as lease:
        for ttl in (0, -1, float("inf"), float("nan"), True):
            with pytest.raises(tenure.ConfigurationError):
                await lease.renew(ttl)
        lease.check()


async def test_fair_waiters_are_served_in_arrival_order(
    coord: tenure.AsyncCoordinator, backend_url: str
) -> None:
    if tenure.Capability.QUEUEING not in coord.capabilities:
        with pytest.raises(tenure.BackendIncapable):
            coord.lock("fair", fair=True)
        return
    assert Guarantee.FIFO in coord.guarantees
    lease = await coord.lock("fair", ttl=5, fair=True).acquire()
    served: list[int] = []
    waiters = []
    for index in range(4):
        waiters.append(AsyncBackground(_fair_waiter(backend_url, index, served), name=f"waiter-{index}"))
        waiters[-1].start()
        await async_sleep(0.15)  # arrival order: each waiter queues before the next starts
    newcomer = tenure.AsyncCoordinator(backend_url)
    assert await newcomer.lock("fair", fair=True).try_acquire() is None, "a newcomer must not jump the line"
    await newcomer.aclose()
    await lease.release()
    for waiter in waiters:
        await waiter.join()
    assert served == [0, 1, 2, 3]


def _fair_waiter(url: str, index: int, served: list[int]) -> Callable[[], Awaitable[None]]:
    async def wait_in_line() -> None:
        async with tenure.AsyncCoordinator(url) as client, client.lock("fair", ttl=5, fair=True, timeout=10):
            served.append(index)

    return wait_in_line


async def test_an_outage_while_waiting_surfaces_as_backend_error(coord: tenure.AsyncCoordinator) -> None:
    await coord.connect()

    async def unreachable(*args: object, **kwargs: object) -> None:
        raise BackendUnavailable("injected outage")

    # A plain lock's blocking acquire may wait in the backend's line (plain_waiters_queue).
    coord._store.try_acquire = unreachable  # type: ignore[method-assign,assignment]
    coord._store.try_acquire_queued = unreachable  # type: ignore[method-assign,assignment]
    with pytest.raises(BackendUnavailable):
        await coord.lock("down").acquire(timeout=1)


async def test_names_with_colons_do_not_meet_across_namespaces(
    coord: tenure.AsyncCoordinator, backend_url: str
) -> None:
    # Keys were "<namespace>:<name>": namespace N + name "b:c" was namespace "N:b" + name "c".
    inner_url = _in_namespace(backend_url, f"{coord.namespace}:b")
    async with tenure.AsyncCoordinator(inner_url) as inner, coord.lock("b:c", ttl=5) as outer_lease:
        inner_lease = await inner.lock("c", ttl=5).try_acquire()
        assert inner_lease is not None, "another namespace's lock blocked this one"
        outer_info, inner_info = await coord.inspect("b:c"), await inner.inspect("c")
        assert outer_info is not None and outer_info.fence == outer_lease.fence
        assert inner_info is not None and inner_info.fence == inner_lease.fence
        await inner_lease.release()
        assert await coord.inspect("b:c") is not None and await inner.inspect("c") is None


def _in_namespace(url: str, namespace: str) -> str:
    """Return ``url`` with its ``namespace`` option set to ``namespace``."""
    base, _, query = url.partition("?")
    options = [pair for pair in query.split("&") if pair and not pair.startswith("namespace=")]
    return f"{base}?{'&'.join([*options, 'namespace=' + quote(namespace, safe='')])}"
