"""MariaDB at scale: thousands of locks on a few shared sessions, batched renewal, lost sessions.

The server here allows 100 connections, far fewer than the locks one coordinator holds.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import tenure
from tenure._async.backends.base import Renewal
from tenure._async.backends.mysql.sql import lock_name
from tenure._async.backends.mysql.store import MAX_SHARED
from tenure._core.keys import namespaced_key
from tenure._core.tokens import Owner
from tests.servers_mysql import USER, MariaDBServer

pytestmark = pytest.mark.slow

MAX_CONNECTIONS = 100
HELD = 2000


@pytest.fixture(scope="module")
def small_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDBServer]:
    """A server that allows only MAX_CONNECTIONS connections at once."""
    server = MariaDBServer(tmp_path_factory.mktemp("mariadb-small"), max_connections=MAX_CONNECTIONS).start()
    yield server
    server.stop()


@pytest.fixture
def own_small_server(tmp_path: Path) -> Iterator[MariaDBServer]:
    """A low-limit server of this test's own, free to be restarted."""
    server = MariaDBServer(tmp_path / "mariadb", max_connections=MAX_CONNECTIONS).start()
    yield server
    server.stop()


def namespaced(url: str, **options: object) -> str:
    query = "&".join([f"namespace=test-{uuid.uuid4().hex[:12]}", *(f"{k}={v}" for k, v in options.items())])
    return f"{url}?{query}"


def status(server: MariaDBServer, name: str) -> int:
    return int(server.sql(f"SHOW GLOBAL STATUS LIKE '{name}'").split()[1])


def connections(server: MariaDBServer) -> int:
    """Return how many sessions the test user has open (tenure's, as the tests' own are root's)."""
    return int(server.sql(f"SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = '{USER}'"))


def test_2000_locks_stay_held_for_3_ttl_on_a_few_sessions_and_release_independently(
    small_server: MariaDBServer,
) -> None:
    url = namespaced(small_server.url)
    ttl = 1.5
    with tenure.Coordinator(url) as coord, tenure.Coordinator(url) as rival:
        leases = [coord.lock(f"job-{index}", ttl=ttl).acquire(timeout=5) for index in range(HELD)]
        assert connections(small_server) <= MAX_SHARED + 2, "a few shared sessions, not one per lock"
        updates = status(small_server, "Com_update")
        time.sleep(3 * ttl)
        assert not [lease for lease in leases if lease.lost], "none lost while renewed"
        # Each lease was renewed about 9 times: one at a time that would be some 18,000 UPDATEs.
        cycles = 3 * ttl / (ttl / 3)
        assert status(small_server, "Com_update") - updates <= cycles * 4 * MAX_SHARED
        leases[0].release()
        taken = rival.lock("job-0", ttl=ttl).try_acquire()
        assert taken is not None and taken.fence > leases[0].fence, "the released one is free"
        for index in (1, 2, HELD // 2, HELD - 1):
            assert rival.lock(f"job-{index}").try_acquire() is None, "the others stay held"
            info = coord.inspect(f"job-{index}")
            assert info is not None and info.fence == leases[index].fence
        for lease in leases[1:]:
            lease.release()  # raises LockLost if it was lost
        taken.release()
        for index in (1, HELD // 2, HELD - 1):
            with rival.lock(f"job-{index}", ttl=ttl) as again:
                assert again.fence > leases[index].fence


async def test_1000_locks_held_from_one_async_coordinator_under_100_connections(
    small_server: MariaDBServer,
) -> None:
    url = namespaced(small_server.url)
    async with tenure.AsyncCoordinator(url) as coord:
        leases = [await coord.lock(f"a-{index}", ttl=5).acquire(timeout=5) for index in range(1000)]
        assert connections(small_server) <= MAX_SHARED + 2
        await leases[10].release()
        assert (await coord.inspect("a-10")) is None
        assert (await coord.inspect("a-11")) is not None, "releasing one leaves the others held"
        for lease in leases[:10] + leases[11:]:
            await lease.release()


def test_renew_many_renews_2000_leases_in_a_round_trip_per_session(small_server: MariaDBServer) -> None:
    url = namespaced(small_server.url)
    with tenure.Coordinator(url) as coord:
        leases = [coord.lock(f"r-{index}", ttl=60).acquire() for index in range(HELD)]
        store = coord._store
        renewals = [Renewal(lease._holding.key, lease._holding.owner, 60.0) for lease in leases]
        updates, selects = status(small_server, "Com_update"), status(small_server, "Com_select")
        assert store.renew_many(renewals) == [True] * HELD
        # 2,000 leases over at most 4 sessions of one idle limit: one UPDATE and one SELECT each.
        assert status(small_server, "Com_update") - updates <= 4
        assert status(small_server, "Com_select") - selects <= 4 + 1  # + SHOW STATUS's own
        stranger = Renewal(namespaced_key(coord.namespace, "never-held"), Owner(label="x"), 60.0)
        assert store.renew_many([renewals[0], stranger, renewals[1]]) == [True, False, True]
        for lease in leases:
            lease.release()


def test_table_mode_renews_many_leases_in_one_statement_each_with_its_outcome(
    small_server: MariaDBServer,
) -> None:
    url = namespaced(small_server.url, mode="table")
    with tenure.Coordinator(url) as coord, tenure.Coordinator(url) as rival:
        leases = [coord.lock(f"t-{index}", ttl=60).acquire() for index in range(HELD)]
        store = coord._store
        renewals = [Renewal(lease._holding.key, lease._holding.owner, 60.0) for lease in leases]
        updates = status(small_server, "Com_update")
        assert store.renew_many(renewals) == [True] * HELD
        assert status(small_server, "Com_update") - updates <= 2, "1,000 leases per statement"
        # A lease that expired and was taken over is refused; the others in its batch are not.
        stale = Renewal(namespaced_key(coord.namespace, "t-short"), Owner(label="short"), 60.0)
        assert store.try_acquire(stale.key, stale.owner, 0.2) is not None  # nobody renews it
        time.sleep(0.4)
        with rival.lock("t-short", ttl=5):
            assert store.renew_many([renewals[0], stale, renewals[1]]) == [True, False, True]
        for lease in leases:
            lease.release()


def test_a_killed_session_loses_every_lease_on_it_and_only_those(small_server: MariaDBServer) -> None:
    url = namespaced(small_server.url)
    ttl = 1.5
    with tenure.Coordinator(url) as coord:
        leases = {f"k-{index}": coord.lock(f"k-{index}", ttl=ttl).acquire() for index in range(400)}
        names = {lock_name(namespaced_key(coord.namespace, name)): name for name in leases}
        rows = small_server.sql(
            "SELECT conn, lock_name FROM tenure.tenure_holders WHERE lock_name IN ("
            + ", ".join(f"'{name}'" for name in names)
            + ")"
        )
        on_session: dict[str, set[str]] = {}
        for line in rows.splitlines():
            conn, name = line.split("\t")
            on_session.setdefault(conn, set()).add(names[name])
        assert 2 <= len(on_session) <= MAX_SHARED, "spread over a few shared sessions"
        victim = min(on_session)
        small_server.sql(f"KILL CONNECTION {victim}")
        killed = time.monotonic()
        deadline = killed + ttl
        while time.monotonic() < deadline and not all(leases[name].lost for name in on_session[victim]):
            time.sleep(0.05)
        assert all(leases[name].lost for name in on_session[victim]), "all lost within ttl"
        time.sleep(ttl / 3)  # another renewal cycle: nothing else goes
        survivors = [lease for name, lease in leases.items() if name not in on_session[victim]]
        assert survivors and not [lease for lease in survivors if lease.lost]
        with tenure.Coordinator(url) as rival:
            name = next(iter(on_session[victim]))
            assert rival.lock(name).try_acquire() is not None, "the server freed the killed session's locks"
        for lease in survivors:
            lease.release()


def test_a_restart_loses_every_held_lease_within_ttl(own_small_server: MariaDBServer) -> None:
    url = namespaced(own_small_server.url, op_timeout=1)
    ttl = 1.5
    with tenure.Coordinator(url) as coord:
        leases = [coord.lock(f"s-{index}", ttl=ttl).acquire() for index in range(500)]
        own_small_server.restart()
        deadline = time.monotonic() + ttl + 0.5  # + the restart's own moment
        while time.monotonic() < deadline and not all(lease.lost for lease in leases):
            time.sleep(0.05)
        assert all(lease.lost for lease in leases)
        with coord.lock("s-0", ttl=ttl) as again:  # the store works again on fresh sessions
            assert again.fence > leases[0].fence


@pytest.mark.parametrize("fair", [False, True], ids=["plain", "fair"])
def test_two_locks_on_one_name_exclude_each_other_in_one_coordinator_and_across_two(
    small_server: MariaDBServer, fair: bool
) -> None:
    url = namespaced(small_server.url)
    with tenure.Coordinator(url) as coord, tenure.Coordinator(url) as other:
        # Filler locks, so attempts land on every shared session in turn.
        fillers = [coord.lock(f"filler-{index}", ttl=5).acquire() for index in range(8)]
        first = coord.lock("same", ttl=5, fair=fair).acquire()
        key = namespaced_key(coord.namespace, "same")
        with ThreadPoolExecutor(1) as elsewhere:  # another thread: another holder, same coordinator
            for _ in range(2 * MAX_SHARED):  # GET_LOCK would re-enter on the session holding it
                assert coord._store.try_acquire(key, Owner(label="second"), 5.0) is None
                assert elsewhere.submit(coord.lock("same", fair=fair).try_acquire).result() is None
                assert other.lock("same", fair=fair).try_acquire() is None
            with pytest.raises(tenure.AcquireTimeout):
                elsewhere.submit(coord.lock("same", fair=fair).acquire, timeout=0.3).result()
            first.release()
            second = elsewhere.submit(coord.lock("same", ttl=5, fair=fair).acquire, timeout=2).result()
            assert second.fence > first.fence
            assert other.lock("same").try_acquire() is None
            assert coord.lock("same").try_acquire() is None
            elsewhere.submit(second.release).result()
        with other.lock("same", ttl=5, timeout=2) as third:
            assert third.fence > second.fence
            assert coord.lock("same").try_acquire() is None
        for lease in fillers:
            lease.release()
