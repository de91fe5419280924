"""ZooKeeper's idempotency records: what a key leaves behind goes once its record expires."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kazoo.client import KazooClient  # type: ignore[import-untyped]

import tenure
from tenure._sync.backends.zookeeper.nodes import node_component
from tenure._sync.backends.zookeeper.records import BUCKET_MS, CLOCK_MARGIN_MS, INDEX, RECORD, SLACK_MS
from tests.servers_zookeeper import ZooKeeperEnsemble

pytestmark = pytest.mark.slow


@pytest.fixture
def chroot() -> str:
    return f"/records-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def raw(zookeeper_ensemble: ZooKeeperEnsemble) -> Iterator[Any]:
    """A plain kazoo client, to look at the tree the store left."""
    client = KazooClient(hosts=zookeeper_ensemble.hosts)
    client.start(timeout=15)
    yield client
    client.stop()
    client.close()


def key_dir(keys: tenure.Idempotency, chroot: str, key: str) -> str:
    return f"{chroot}/{node_component(keys._store_key(key))}"


def index_entries(raw: Any, chroot: str) -> list[str]:
    index = f"{chroot}/{INDEX}"
    return [entry for bucket in raw.get_children(index) for entry in raw.get_children(f"{index}/{bucket}")]


def test_expired_records_and_their_keys_are_deleted_by_later_finishes(
    zookeeper_ensemble: ZooKeeperEnsemble, chroot: str, raw: Any
) -> None:
    with tenure.Coordinator(zookeeper_ensemble.url(chroot)) as coord:
        short = coord.idempotency("payments", ttl=0.5)
        long = coord.idempotency("payments", ttl=600)
        fences: dict[str, int] = {}

        def charge(key: str) -> str:
            lease = short.current_lease()
            assert lease is not None
            fences[key] = lease.fence
            return key

        for key in ("a", "b", "c"):
            assert short.run(key, charge, key) == key
            assert raw.exists(f"{key_dir(short, chroot, key)}/{RECORD}") is not None
        assert len(index_entries(raw, chroot)) == 3
        time.sleep(0.6)
        first_c = fences["c"]
        assert long.run("c", charge, "c") == "c"  # expired: runs again, its record rewritten
        assert fences["c"] > first_c
        # Finishes of new keys clean the due buckets; the first three are due within two widths.
        deadline = time.monotonic() + (2 * BUCKET_MS + SLACK_MS) / 1000 + 10
        gone = False
        for number in range(1000):
            long.run(f"filler-{number}", charge, "x")
            if all(raw.exists(key_dir(short, chroot, key)) is None for key in ("a", "b")):
                gone = True
                break
            assert time.monotonic() < deadline, "expired records were not deleted"
            time.sleep(0.5)
        assert gone
        # The rewritten record stays (its first entry went alone); only live records are filed.
        state = long.state("c")
        assert state.done is not None and state.done.fence == fences["c"]
        entries = index_entries(raw, chroot)
        assert not any(
            entry.startswith(f"{fence}-")
            for fence in (fences["a"], fences["b"], first_c)
            for entry in entries
        )
        assert any(entry.startswith(f"{fences['c']}-") for entry in entries)
        # A key run after its directory went gets a fence above every earlier one.
        assert short.run("a", charge, "a") == "a"
        assert fences["a"] > max(first_c, fences["c"])


def test_a_record_outlives_the_session_that_wrote_it(
    zookeeper_ensemble: ZooKeeperEnsemble, chroot: str
) -> None:
    url = zookeeper_ensemble.url(chroot)
    calls: list[int] = []

    def once() -> int:
        calls.append(1)
        return len(calls)

    with tenure.Coordinator(url) as coord:
        assert coord.idempotency("jobs").run("k", once) == 1
    with tenure.Coordinator(url) as coord:  # a new session: the writer's ephemeral nodes are gone
        keys = coord.idempotency("jobs")
        assert keys.run("k", once) == 1
        state = keys.state("k")
        assert state.running is None and state.done is not None and state.done.remaining > 0
    assert calls == [1]


def test_a_failed_run_leaves_no_directory_behind(
    zookeeper_ensemble: ZooKeeperEnsemble, chroot: str, raw: Any
) -> None:
    def fail() -> None:
        raise RuntimeError("declined")

    with tenure.Coordinator(zookeeper_ensemble.url(chroot)) as coord:
        keys = coord.idempotency("payments")
        with pytest.raises(RuntimeError, match="declined"):
            keys.run("k", fail)
        assert raw.exists(key_dir(keys, chroot, "k")) is None
        assert keys.run("k", lambda: 7) == 7  # the key runs again, and its directory comes back
        assert raw.exists(f"{key_dir(keys, chroot, 'k')}/{RECORD}") is not None


def test_a_replay_only_reads_and_a_record_near_its_end_is_judged_by_the_ensembles_time(
    zookeeper_ensemble: ZooKeeperEnsemble, chroot: str, raw: Any
) -> None:
    calls: list[str] = []

    def once(key: str) -> str:
        calls.append(key)
        return key

    with tenure.Coordinator(zookeeper_ensemble.url(chroot)) as coord:
        keys = coord.idempotency("payments", ttl=600)
        assert keys.run("k", once, "k") == "k"
        directory = key_dir(keys, chroot, "k")
        before = raw.exists(directory)
        for _ in range(5):
            assert keys.run("k", once, "k") == "k"
        # No node was created or deleted in the key's line: each replay was one read.
        assert raw.exists(directory).cversion == before.cversion
        # A record within the margin of its end (CLOCK_MARGIN_MS) is not taken from the estimate:
        # the exact path judges it, and once it has expired the key runs again.
        short = coord.idempotency("short", ttl=CLOCK_MARGIN_MS / 1000 / 2)
        assert short.run("s", once, "s") == "s"
        short_dir = key_dir(short, chroot, "s")
        lined = raw.exists(short_dir).cversion
        assert short.run("s", once, "s") == "s"  # live: replayed, by the exact path (a node came and went)
        assert raw.exists(short_dir).cversion > lined
        time.sleep(CLOCK_MARGIN_MS / 1000 / 2 + 0.1)
        assert short.run("s", once, "s") == "s"
    assert calls == ["k", "s", "s"]
