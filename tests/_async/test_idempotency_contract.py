"""The idempotency-key contract every backend with the Records capability passes (both colours).

The tests run on every backend that declares ``Capability.RECORDS`` (``records_url``, with the
``keeper`` and ``other`` coordinators on it from ``conftest.py``); the others must refuse to build
idempotency keys with ``BackendIncapable``, which the first test checks on every backend.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

import tenure
from tenure._async.backends.base import AsyncRecords, Recorded
from tenure._concurrency import AsyncBackground, async_sleep
from tenure._core.guarantees import Capability
from tenure._core.keys import namespaced_key
from tenure._core.tokens import Owner
from tests._async.faults import stall_renewals


class Calls:
    """A function that counts its runs and returns what it was given."""

    def __init__(self, pause: float = 0.0) -> None:
        self.runs: list[Any] = []
        self.pause = pause

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.runs.append((args, kwargs))
        if self.pause:
            await async_sleep(self.pause)
        return {"args": list(args), "kwargs": kwargs, "run": len(self.runs)}


class Declined(Exception):
    """A final error: recorded and raised again on replay."""


async def test_incapable_backend_refuses_idempotency(coord: tenure.AsyncCoordinator) -> None:
    if Capability.RECORDS in coord.capabilities:
        assert isinstance(coord._store, AsyncRecords)
        assert coord._store.record_limit > 1024
        assert coord.idempotency("payments").ttl == 86400
    else:
        assert not isinstance(coord._store, AsyncRecords)
        with pytest.raises(tenure.BackendIncapable, match="Records"):
            coord.idempotency("payments")


async def test_bad_input_is_refused_before_any_io(records_url: str) -> None:
    coord = tenure.AsyncCoordinator(records_url)
    for bad in ({"ttl": 0}, {"lease": -1}, {"timeout": -1}, {"max_size": 10}, {"max_size": 1 << 40}):
        with pytest.raises(tenure.ConfigurationError):
            coord.idempotency("payments", **bad)  # type: ignore[arg-type]
    with pytest.raises(tenure.ConfigurationError, match="store_errors"):
        coord.idempotency("payments", store_errors=("ValueError",))  # type: ignore[arg-type]
    with pytest.raises(tenure.ConfigurationError, match="serializer"):
        coord.idempotency("payments", serializer=object())  # type: ignore[arg-type]
    with pytest.raises(tenure.ConfigurationError):
        coord.idempotency("")
    keys = coord.idempotency("payments")
    calls = Calls()
    for key in ("", "x" * 256, "a\nb", "tab\there", None, 1.5, b"bytes", True):
        with pytest.raises(tenure.ConfigurationError):
            await keys.run(key, calls, 1)  # type: ignore[arg-type]
    with pytest.raises(tenure.ConfigurationError, match="fingerprint"):
        await keys.run("k", calls, object())
    with pytest.raises(tenure.ConfigurationError, match="payload"):
        await keys.run("k", calls, payload=12)  # type: ignore[arg-type]
    with pytest.raises(tenure.ConfigurationError, match="timeout"):
        await keys.run("k", calls, timeout=-2)
    assert calls.runs == []
    assert not coord._connected
    await coord.aclose()


async def test_a_key_runs_once_and_its_result_is_replayed_to_every_client(
    keeper: tenure.AsyncCoordinator, other: tenure.AsyncCoordinator
) -> None:
    calls = Calls()
    first = await keeper.idempotency("payments").run("req-1", calls, 42, currency="EUR")
    again = await keeper.idempotency("payments").run("req-1", calls, 42, currency="EUR")
    elsewhere = await other.idempotency("payments").run("req-1", calls, 42, currency="EUR")
    assert first == again == elsewhere == {"args": [42], "kwargs": {"currency": "EUR"}, "run": 1}
    assert len(calls.runs) == 1
    # Other keys, and the same key in another space, are apart.
    await keeper.idempotency("payments").run("req-2", calls, 42, currency="EUR")
    await keeper.idempotency("refunds").run("req-1", calls, 42, currency="EUR")
    await keeper.idempotency("pay:ments").run("req-1", calls, 42, currency="EUR")
    assert len(calls.runs) == 4


async def test_another_payload_under_a_used_key_is_refused_without_running(
    keeper: tenure.AsyncCoordinator,
) -> None:
    keys = keeper.idempotency("payments")
    calls = Calls()
    await keys.run("req-1", calls, 42)
    with pytest.raises(tenure.PayloadMismatch, match="another payload"):
        await keys.run("req-1", calls, 43)
    await keys.run("req-2", calls, 1, payload=b"body-1")
    assert await keys.run("req-2", calls, 2, payload=b"body-1") == {"args": [1], "kwargs": {}, "run": 2}
    with pytest.raises(tenure.PayloadMismatch):
        await keys.run("req-2", calls, 1, payload="body-2")
    assert len(calls.runs) == 2


async def test_concurrent_duplicates_run_once_and_all_get_its_result(
    keeper: tenure.AsyncCoordinator, other: tenure.AsyncCoordinator
) -> None:
    calls = Calls(pause=0.2)
    results: list[Any] = []

    async def duplicate(client: tenure.AsyncCoordinator) -> None:
        results.append(await client.idempotency("payments").run("req-1", calls, 7, timeout=20))

    workers = [
        AsyncBackground(lambda c=c: duplicate(c), name=f"dup-{i}") for i, c in enumerate([keeper, other] * 5)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        await worker.join()
    assert len(calls.runs) == 1
    assert results == [{"args": [7], "kwargs": {}, "run": 1}] * 10


async def test_a_duplicate_with_no_patience_is_told_in_progress_at_once(
    keeper: tenure.AsyncCoordinator, other: tenure.AsyncCoordinator
) -> None:
    calls = Calls(pause=1.0)
    runner = AsyncBackground(lambda: keeper.idempotency("payments").run("req-1", calls, 1), name="runner")
    runner.start()
    try:
        while not calls.runs:
            await async_sleep(0.01)
        started = time.monotonic()
        with pytest.raises(tenure.InProgress, match="req-1"):
            await other.idempotency("payments").run("req-1", calls, 1, timeout=0)
        with pytest.raises(tenure.InProgress):
            await other.idempotency("payments", timeout=0.2).run("req-1", calls, 1)
        assert time.monotonic() - started < 0.9
        state = await other.idempotency("payments").state("req-1")
        assert state.running is not None and state.running.remaining > 0 and state.done is None
    finally:
        await runner.join()
    state = await other.idempotency("payments").state("req-1")
    assert state.running is None and state.done is not None and state.done.remaining > 86000
    assert len(calls.runs) == 1


async def test_an_error_frees_the_key_unless_it_is_final(keeper: tenure.AsyncCoordinator) -> None:
    keys = keeper.idempotency("payments", store_errors=(Declined,))
    runs: list[int] = []

    async def flaky(amount: int) -> int:
        runs.append(amount)
        if len(runs) == 1:
            raise ConnectionError("partner down")
        if amount < 0:
            raise Declined("card declined", amount)
        return amount

    with pytest.raises(ConnectionError):
        await keys.run("req-1", flaky, 5)
    assert await keys.run("req-1", flaky, 5) == 5  # freed: the retry ran
    with pytest.raises(Declined) as first:
        await keys.run("req-2", flaky, -1)
    with pytest.raises(Declined) as replayed:
        await keys.run("req-2", flaky, -1)
    assert replayed.value.args == first.value.args == ("card declined", -1)
    assert runs == [5, 5, -1]
    # A client that does not list the error still cannot run the key again: it is told why.
    with pytest.raises(tenure.IdempotencyError, match=r"Declined: .*card declined"):
        await keeper.idempotency("payments").run("req-2", flaky, -1)
    assert runs == [5, 5, -1]


async def test_a_record_expires_after_its_ttl_and_the_key_runs_again(keeper: tenure.AsyncCoordinator) -> None:
    keys = keeper.idempotency("payments", ttl=1.0)
    calls = Calls()
    await keys.run("req-1", calls, 1)
    assert (await keys.run("req-1", calls, 1))["run"] == 1
    await async_sleep(1.2)
    assert (await keys.state("req-1")).done is None
    assert (await keys.run("req-1", calls, 2))["run"] == 2  # a new record: the old payload is gone


async def test_a_dead_runner_is_replaced_after_its_lease(
    keeper: tenure.AsyncCoordinator, other: tenure.AsyncCoordinator
) -> None:
    """A runner that died holds the key only until its lease ends; the next call runs again."""
    keys = other.idempotency("payments", lease=1.0)
    store = keeper._store
    assert isinstance(store, AsyncRecords)
    dead = await store.begin_run(
        namespaced_key(keeper.namespace, "payments:req-1", kind="idempotency"), Owner(), 1.0
    )
    assert isinstance(dead, int)
    calls = Calls()
    started = time.monotonic()
    result = await keys.run("req-1", calls, 1, timeout=5)
    waited = time.monotonic() - started
    assert result["run"] == 1 and 0.5 < waited < 1.0 + 0.6
    fence = (await keys.state("req-1")).done
    assert fence is not None and fence.fence > dead


async def test_a_runner_paused_past_its_lease_cannot_record_over_a_newer_run(
    keeper: tenure.AsyncCoordinator, other: tenure.AsyncCoordinator
) -> None:
    fences: list[int] = []

    async def slow(tag: str) -> str:
        lease = tenure.AsyncIdempotency.current_lease()
        assert lease is not None
        fences.append(lease.fence)
        if tag == "stale":
            await async_sleep(2.0)  # its renewals fail meanwhile: the lease runs out
        return tag

    errors: list[BaseException] = []

    async def stale_run() -> None:
        try:
            await keeper.idempotency("payments", lease=0.6).run("req-1", slow, "stale", payload=b"p")
        except tenure.LockLost as exc:
            errors.append(exc)

    await stall_renewals(keeper, seconds=5)
    stale = AsyncBackground(stale_run, name="stale")
    stale.start()
    await async_sleep(1.0)
    newer = await other.idempotency("payments", lease=5).run("req-1", slow, "x", payload=b"p", timeout=5)
    assert newer == "x"
    await stale.join()
    assert len(errors) == 1 and "not recorded" in str(errors[0])
    assert len(fences) == 2 and fences[1] > fences[0]
    state = await other.idempotency("payments").state("req-1")
    assert state.done is not None and state.done.fence == fences[1]


async def test_a_result_over_the_size_limit_frees_the_key(keeper: tenure.AsyncCoordinator) -> None:
    keys = keeper.idempotency("payments", max_size=1000)
    calls: list[int] = []

    async def big(size: int) -> str:
        calls.append(size)
        return "x" * size

    with pytest.raises(tenure.IdempotencyError, match="limit is 1000"):
        await keys.run("req-1", big, 2000)
    assert (await keys.state("req-1")) == tenure.KeyState(None, None)
    assert await keys.run("req-1", big, 10) == "x" * 10
    with pytest.raises(tenure.IdempotencyError, match="JSON"):
        await keys.run("req-2", lambda: {1, 2})
    assert (await keys.state("req-2")).running is None


async def test_a_serializer_and_the_largest_record_the_backend_keeps(keeper: tenure.AsyncCoordinator) -> None:
    class Raw:
        def dumps(self, value: Any) -> bytes:
            return bytes(value)

        def loads(self, data: bytes) -> Any:
            return data

    keys = keeper.idempotency("blobs", serializer=Raw())
    store = keeper._store
    assert isinstance(store, AsyncRecords)
    body = bytes(range(256)) * ((store.record_limit - 64) // 256)

    async def blob() -> bytes:
        return body

    assert await keys.run("big", blob) == body
    assert await keys.run("big", blob) == body


async def test_fences_grow_across_runs_and_the_decorator_keys_calls(keeper: tenure.AsyncCoordinator) -> None:
    keys = keeper.idempotency("orders")
    seen: list[int] = []

    @keys.idempotent(key=lambda order_id, amount: f"order-{order_id}")
    async def charge(order_id: int, amount: int) -> dict[str, int]:
        lease = tenure.AsyncIdempotency.current_lease()
        assert lease is not None and lease.remaining() > 0
        seen.append(lease.fence)
        if amount < 0:
            raise ValueError("negative")
        return {"order": order_id, "amount": amount}

    with pytest.raises(ValueError):
        await charge(1, -5)
    with pytest.raises(ValueError):
        await charge(1, -5)
    assert await charge(1, 5) == {"order": 1, "amount": 5}
    assert await charge(1, 5) == {"order": 1, "amount": 5}
    assert len(seen) == 3 and seen == sorted(set(seen))
    assert tenure.AsyncIdempotency.current_lease() is None
    # An int key, and a key too long for a lock name beside a long space name, work as any other.
    long_space = keeper.idempotency("s" * 500)
    calls = Calls()
    await long_space.run("k" * 255, calls, 1)
    await long_space.run("k" * 254 + "j", calls, 1)
    await keys.run(12345, calls, 2)
    assert await keys.run("12345", calls, 2) == {"args": [2], "kwargs": {}, "run": 3}
    assert len(calls.runs) == 3


async def test_a_record_is_what_tenure_wrote(keeper: tenure.AsyncCoordinator) -> None:
    """A record of another program is reported, not replayed as garbage."""
    store = keeper._store
    assert isinstance(store, AsyncRecords)
    key = namespaced_key(keeper.namespace, "payments:req-9", kind="idempotency")
    owner = Owner()
    fence = await store.begin_run(key, owner, 5)
    assert isinstance(fence, int)
    assert await store.finish_run(key, owner, json.dumps({"not": "tenure"}).encode(), 60)
    assert not await store.finish_run(key, owner, b"twice", 60)  # the lease ended with the record
    found = await store.read_record(key)
    assert isinstance(found, Recorded) and found.fence == fence
    with pytest.raises(tenure.IdempotencyError, match="not one tenure wrote"):
        await keeper.idempotency("payments").run("req-9", Calls(), 1)
