"""Idempotency records on etcd: what the contract suite cannot see from the outside.

The server deletes a record through a lease shared by its expiry bucket; a record outlives its
writer's connection (its sessions are revoked, not the record's lease); a lost lease is granted
again; a finish resent after its reply was lost knows it stored; the largest record fits.
"""

from __future__ import annotations

import time
from typing import Any

import tenure
from tenure._async.backends.etcd import proto
from tenure._core.keys import namespaced_key
from tenure._core.tokens import Owner


def raw_record(coord: tenure.Coordinator, name: str, key: str) -> Any:
    """Return the etcd key-value of a record (live or expired, as long as the server keeps it)."""
    store: Any = coord._store
    record = proto.record_key(namespaced_key(coord.namespace, f"{name}:{key}", kind="idempotency"))
    reply = store._client.call("kv", "Range", proto.get(record), "test")
    return reply.kvs[0] if reply.kvs else None


def test_a_record_outlives_its_writers_connection_and_the_server_deletes_it(etcd_url: str) -> None:
    with tenure.Coordinator(etcd_url) as writer:
        assert writer.idempotency("payments", ttl=1.0).run("req-1", lambda: "done") == "done"
    with tenure.Coordinator(etcd_url) as reader:
        keys = reader.idempotency("payments", ttl=1.0)
        assert keys.run("req-1", lambda: "again") == "done"  # the writer's close left it
        assert raw_record(reader, "payments", "req-1") is not None
        # Its bucket is 1 s wide and its lease outlives the bucket by 1 s: gone within 3 s.
        deadline = time.monotonic() + 4.0
        while raw_record(reader, "payments", "req-1") is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert raw_record(reader, "payments", "req-1") is None
        assert keys.state("req-1") == tenure.KeyState(None, None)


def test_an_expired_record_the_server_still_keeps_is_not_replayed(etcd_url: str) -> None:
    with tenure.Coordinator(etcd_url) as coord:
        keys = coord.idempotency("payments", ttl=1.0)
        assert keys.run("req-1", lambda: 1) == 1
        time.sleep(1.05)
        assert raw_record(coord, "payments", "req-1") is not None  # its lease outlives its stamp
        assert keys.state("req-1").done is None
        assert keys.run("req-1", lambda: 2) == 2


def test_records_of_one_bucket_share_one_lease(etcd_url: str) -> None:
    with tenure.Coordinator(etcd_url) as coord:
        keys = coord.idempotency("payments", ttl=3600)
        for index in range(20):
            keys.run(f"req-{index}", lambda: "done")
        leases = {int(raw_record(coord, "payments", f"req-{index}").lease) for index in range(20)}
        assert len(leases) <= 2  # one bucket is 64 s wide (3600/64 rounded up to a power of 2)
        store: Any = coord._store
        for lease in leases:
            left = store._client.call("lease", "LeaseTimeToLive", proto.lease_time_to_live(lease), "test")
            assert 3600 <= left.TTL <= 3600 + 64 + 2


def test_a_record_lease_the_server_lost_is_granted_again(etcd_url: str) -> None:
    with tenure.Coordinator(etcd_url) as coord:
        keys = coord.idempotency("payments", ttl=600)
        keys.run("req-1", lambda: 1)
        lease = int(raw_record(coord, "payments", "req-1").lease)
        store: Any = coord._store
        store._client.call("lease", "LeaseRevoke", proto.lease_revoke(lease), "test")
        assert raw_record(coord, "payments", "req-1") is None  # revoked with its lease
        assert keys.run("req-2", lambda: 2) == 2
        again = raw_record(coord, "payments", "req-2")
        assert again is not None and int(again.lease) != lease
        assert keys.run("req-2", lambda: 3) == 2


def test_a_finish_resent_after_its_reply_was_lost_knows_it_stored(etcd_url: str) -> None:
    with tenure.Coordinator(etcd_url) as coord:
        store: Any = coord._store
        real = store._client.call

        def applied_twice(service: str, method: str, request: Any, what: str, **options: Any) -> Any:
            if what == "recording":  # the first sending was applied, its reply lost
                real(service, method, request, what)
            return real(service, method, request, what, **options)

        store._client.call = applied_twice
        try:
            assert coord.idempotency("payments").run("req-1", lambda: "done") == "done"
        finally:
            store._client.call = real
        state = coord.idempotency("payments").state("req-1")
        assert state.running is None and state.done is not None
        # A finish whose lease is gone is told so, and leaves the record as it is.
        key = namespaced_key(coord.namespace, "payments:req-1", kind="idempotency")
        assert not store.finish_run(key, Owner(), b"late", 60)
        assert store.read_record(key).record == state.done.record


def test_a_record_of_record_limit_bytes_fits_under_the_longest_key(etcd_url: str) -> None:
    with tenure.Coordinator(etcd_url) as coord:
        store: Any = coord._store
        key = namespaced_key(coord.namespace, "p" * 400, kind="idempotency")
        owner = Owner()
        fence = store.begin_run(key, owner, 5.0)
        assert isinstance(fence, int)
        record = bytes(range(256)) * (store.record_limit // 256)
        assert len(record) == store.record_limit
        assert store.finish_run(key, owner, record, 60)
        found = store.read_record(key)
        assert found.record == record and found.fence == fence and 59 < found.remaining <= 60
        again = store.begin_run(key, Owner(), 5.0)
        assert again.record == record and again.fence == fence
