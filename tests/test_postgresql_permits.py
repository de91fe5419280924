"""PostgreSQL's semaphore permits, both modes: what the contract suite cannot see from outside.

One store's concurrent attempts never take a slot twice (advisory locks are reentrant per
session), limits in conflict never hold permits together, a permit above a smaller limit is
seen, fences restart higher after a crash, an earlier version's database gets the permit
schema, a release wakes a waiter at once, and a permit is lost with its session.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

import tenure
from tenure._async.backends.base import AsyncCounting
from tenure._async.backends.postgresql import permits, sql
from tenure._async.backends.postgresql.table import SEMAPHORES_TABLE
from tenure._core.keys import namespaced_key
from tenure._core.semaphore import permit_key
from tenure._core.tokens import Owner
from tenure._sync.backends.base import Counting
from tests.servers_postgres import PostgresServer

pytestmark = pytest.mark.slow

MODES = ["advisory", "table"]


def url_of(base: str, mode: str) -> str:
    return f"{base}?mode={mode}&namespace=test-{uuid.uuid4().hex[:12]}"


def raw(url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(url, autocommit=True)


@pytest.fixture
def database(postgres_server: PostgresServer) -> Iterator[str]:
    """The URL of a database of this test's own (its fence epoch and schema are its own)."""
    name = f"db_{uuid.uuid4().hex[:12]}"
    with raw(postgres_server.url) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield postgres_server.url.rsplit("/", 1)[0] + f"/{name}"
    with raw(postgres_server.url) as conn:
        conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


def slot_key_of(lease: tenure.Lease) -> str:
    return lease._holding.key


# These two call the store's steps directly: what the server grants, with nothing in between.
@pytest.mark.parametrize("mode", MODES)
def test_threads_of_one_store_never_share_a_slot(postgres_server: PostgresServer, mode: str) -> None:
    # Advisory locks are reentrant per session: a slot taken on a shared session must never be
    # granted again to another attempt of the same store on that session.
    held, most = 0, 0
    fences: list[int] = []
    errors: list[BaseException] = []
    mutex = threading.Lock()
    with tenure.Coordinator(url_of(postgres_server.url, mode)) as coord:
        coord._context.ensure_connected()
        store = coord._store
        assert isinstance(store, Counting)
        key = namespaced_key(coord.namespace, "pool", kind="semaphore")

        def churn() -> None:
            try:
                work()
            except BaseException as exc:
                errors.append(exc)
                raise

        def work() -> None:
            nonlocal held, most
            for _ in range(25):
                owner = Owner()
                permit = store.try_acquire_permit(key, 3, owner, 5.0)
                if permit is None:
                    time.sleep(0.001)
                    continue
                with mutex:
                    held += 1
                    most = max(most, held)
                    fences.append(permit.fence)
                time.sleep(0.002)
                with mutex:
                    held -= 1
                assert coord._store.release(permit.key, owner)

        threads = [threading.Thread(target=churn) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert store.permit_holders(key, 3) == []
    assert not errors, errors
    assert most <= 3 and len(fences) > 25, (most, len(fences))
    assert len(set(fences)) == len(fences)


@pytest.mark.parametrize("mode", MODES)
async def test_tasks_of_one_store_never_share_a_slot(postgres_server: PostgresServer, mode: str) -> None:
    held, most = 0, 0
    async with tenure.AsyncCoordinator(url_of(postgres_server.url, mode)) as coord:
        await coord._context.ensure_connected()
        store = coord._store
        assert isinstance(store, AsyncCounting)
        key = namespaced_key(coord.namespace, "pool", kind="semaphore")

        async def churn() -> None:
            nonlocal held, most
            for _ in range(20):
                owner = Owner()
                permit = await store.try_acquire_permit(key, 2, owner, 5.0)
                if permit is None:
                    await asyncio.sleep(0.001)
                    continue
                held += 1
                most = max(most, held)
                await asyncio.sleep(0.002)
                held -= 1
                assert await coord._store.release(permit.key, owner)

        await asyncio.gather(*(churn() for _ in range(6)))
        assert await store.permit_holders(key, 2) == []
    assert most == 2


@pytest.mark.parametrize("mode", MODES)
def test_limits_in_conflict_never_hold_permits_together(postgres_server: PostgresServer, mode: str) -> None:
    url = url_of(postgres_server.url, mode)
    held = {1: 0, 2: 0}
    overlaps: list[tuple[int, int]] = []
    granted = {1: 0, 2: 0}
    refused = 0
    mutex = threading.Lock()
    stop = time.monotonic() + 2.0
    limits = [1, 2, 1, 2, 2, 1]
    coords = [tenure.Coordinator(url) for _ in limits]  # one each: see the note above
    errors: list[BaseException] = []

    def churn(limit: int, coord: tenure.Coordinator) -> None:
        try:
            work(limit, coord)
        except BaseException as exc:
            errors.append(exc)
            raise

    def work(limit: int, coord: tenure.Coordinator) -> None:
        nonlocal refused
        sem = coord.semaphore("pool", limit=limit, ttl=5)
        while time.monotonic() < stop:
            try:
                permit = sem.try_acquire()
            except tenure.ConfigurationError:
                with mutex:
                    refused += 1
                time.sleep(0.002)
                continue
            if permit is None:
                time.sleep(0.001)
                continue
            with mutex:
                held[limit] += 1
                granted[limit] += 1
                if (held[1] and held[2]) or held[limit] > limit:
                    overlaps.append((held[1], held[2]))
            time.sleep(0.003)
            with mutex:
                held[limit] -= 1
            permit.release()

    threads = [
        threading.Thread(target=churn, args=(limit, coord))
        for limit, coord in zip(limits, coords, strict=True)
    ]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        for coord in coords:
            coord.close()
    assert not errors, errors
    assert not overlaps, overlaps[:5]
    assert granted[1] and granted[2] and refused, (granted, refused)


@pytest.mark.parametrize("mode", MODES)
def test_a_permit_above_a_smaller_limit_refuses_it(postgres_server: PostgresServer, mode: str) -> None:
    with tenure.Coordinator(url_of(postgres_server.url, mode)) as coord:
        sem = coord.semaphore("pool", limit=3, ttl=5)
        top = permit_key(sem.key, 2)
        held = [sem.acquire(timeout=1) for _ in range(3)]
        for permit in held:
            if slot_key_of(permit) != top:
                permit.release()
        # Only slot 2 is live: a limit of 1 (slot 0 alone) must still see it.
        with pytest.raises(tenure.ConfigurationError, match="limit=3"):
            coord.semaphore("pool", limit=1).try_acquire()
        [last] = [permit for permit in held if slot_key_of(permit) == top]
        last.release()
        narrow = coord.semaphore("pool", limit=1, ttl=5).try_acquire()
        assert narrow is not None and narrow.fence > last.fence
        assert coord.semaphore("pool", limit=1).try_acquire() is None
        narrow.release()


def test_permit_fences_restart_higher_when_a_crash_emptied_the_epoch(database: str) -> None:
    url = f"{database}?namespace=epoch"
    with tenure.Coordinator(url) as coord:
        sem = coord.semaphore("pool", limit=2, ttl=5)
        before = sem.acquire(timeout=1)
        before.release()
        with raw(database) as conn:  # what a crash does to the unlogged epoch table
            conn.execute(f"DELETE FROM {sql.EPOCH_TABLE}")
        after = sem.acquire(timeout=1)
        assert after.fence > before.fence + sql.FENCE_JUMP - 1
        after.release()


@pytest.mark.parametrize("mode", MODES)
def test_a_database_of_an_earlier_version_gets_the_permit_schema(database: str, mode: str) -> None:
    url = f"{database}?mode={mode}&namespace=upgrade"
    with tenure.Coordinator(url) as coord, coord.lock("job").acquire(timeout=1):
        pass
    table, function = (
        (permits.LIMITS_TABLE, "tenure_take_permit")
        if mode == "advisory"
        else (SEMAPHORES_TABLE, "tenure_take_lease_permit")
    )
    with raw(database) as conn:  # as an earlier version left it: its lock tables only
        conn.execute(f"DROP TABLE {table}")
        conn.execute(f"DROP FUNCTION {function}")
    with tenure.Coordinator(url) as coord:
        permit = coord.semaphore("pool", limit=2, ttl=5).acquire(timeout=1)
        permit.release()


@pytest.mark.parametrize("mode", MODES)
def test_a_release_wakes_a_waiter_at_once(postgres_server: PostgresServer, mode: str) -> None:
    url = url_of(postgres_server.url, mode)
    acquired: list[float] = []
    with tenure.Coordinator(url) as coord, tenure.Coordinator(url) as rival:
        held = coord.semaphore("pool", limit=1, ttl=10).acquire(timeout=1)

        def wait_for_it() -> None:
            with rival.semaphore("pool", limit=1, ttl=10).acquire(timeout=10):
                acquired.append(time.monotonic())

        waiter = threading.Thread(target=wait_for_it)
        waiter.start()
        time.sleep(1.6)  # the waiter's pauses between attempts have grown to most of a second
        held.release()
        released = time.monotonic()
        waiter.join(timeout=10)
    assert acquired, "the waiter never got the permit"
    assert acquired[0] - released < 0.3  # a NOTIFY, not its next poll


def test_a_permit_is_lost_with_its_session(postgres_server: PostgresServer) -> None:
    url = url_of(postgres_server.url, "advisory")
    lost = threading.Event()
    with tenure.Coordinator(url) as coord:
        permit = coord.semaphore("pool", limit=1, ttl=1.5).acquire(timeout=1)
        permit.on_lost(lambda _: lost.set())
        with raw(postgres_server.url) as conn:
            row = conn.execute(
                f"SELECT pid FROM {sql.HOLDERS_TABLE} WHERE id = %s", (sql.lock_id(slot_key_of(permit)),)
            ).fetchone()
            assert row is not None
            conn.execute("SELECT pg_terminate_backend(%s)", (row[0],))
        assert lost.wait(timeout=2.0), "the next renewal must report the lost session"
        again = coord.semaphore("pool", limit=1, ttl=5).acquire(timeout=2)
        assert again.fence > permit.fence
        again.release()


def test_holders_wait_for_a_permit_being_taken(postgres_server: PostgresServer) -> None:
    # A taker in flight has drawn its fence but not committed its holder row: the holders are
    # read once it commits, so a lower fence is never missed by someone holding a higher one.
    with tenure.Coordinator(url_of(postgres_server.url, "advisory")) as coord:
        coord._context.ensure_connected()
        store = coord._store
        assert isinstance(store, Counting)
        key = namespaced_key(coord.namespace, "line", kind="semaphore")
        head, tail = sql.slot_affixes(key)
        first = Owner()  # records the limit: takers of the recorded limit share the guard
        taken = store.try_acquire_permit(key, 4, first, 5.0)
        assert taken is not None and store.release(taken.key, first)
        listed: list[list[int]] = []
        with raw(postgres_server.url) as conn:
            conn.execute("BEGIN")
            row = conn.execute(
                permits.TAKE,
                {
                    "sem_id": sql.lock_id(key),
                    "sem_key": key,
                    "head": head,
                    "tail": tail,
                    "ids": permits.slot_ids(key, 4),
                    "tries": [0],
                    "wanted": 4,
                    "owner": "raw",
                    "label": "in flight",
                    "ttl": 30.0,
                    "idle": "0",
                },
            ).fetchone()
            assert row is not None and row[0] == "taken"
            later = store.try_acquire_permit(key, 4, Owner(), 5.0)  # takers do not wait for each other
            assert later is not None and later.fence > row[2]
            reader = threading.Thread(
                target=lambda: listed.append([h.fence for h in store.permit_holders(key, 4)])
            )
            reader.start()
            time.sleep(0.3)
            assert not listed, "the holders were read while a permit was being taken"
            conn.execute("COMMIT")
            reader.join(timeout=5)
            assert listed == [[row[2], later.fence]]
