"""etcd v3 request messages, built from the protobuf modules that ship in ``aetcd``.

Only aetcd's generated ``rpc_pb2``/``rpc_pb2_grpc`` modules are used, never its client. They
have no type stubs, so this module is the one typed boundary: messages are ``Any`` here and the
backends read only the few fields they need. Nothing here does I/O or depends on the colour.
"""

from __future__ import annotations

from typing import Any

from aetcd.rpc import rpc_pb2, rpc_pb2_grpc  # type: ignore[import-untyped]

KVStub: Any = rpc_pb2_grpc.KVStub
LeaseStub: Any = rpc_pb2_grpc.LeaseStub


# grpc's sync client otherwise runs every stream call (a watch, a keep-alive) through a thread
# it starts for the channel and stops once no stream is open, so a waiter's watch cost a thread
# start and a hop between threads on each hand-over. With this option the calling thread reads
# its own stream: opening a watch costs the client 0.23 instead of 0.33 ms of CPU (measured).
# grpc's asyncio channel reads every call on its event loop anyway and ignores the option.
CHANNEL_OPTIONS = (("SingleThreadedUnaryStream", 1),)  # grpc.experimental.ChannelOptions


class OneRequestStreams:
    """Watch and LeaseKeepAlive called as one request, then replies (gRPC's unary-stream form).

    Both are bidirectional streams in etcd's API, but tenure sends one request per call and
    then only reads. Called this way, grpc's sync client spends no thread on a request
    iterator: opening a watch costs the client about half the CPU (0.46 against 0.90 ms,
    measured), and etcd keeps serving a stream whose client side is closed.
    """

    def __init__(self, channel: Any) -> None:
        self.watch: Any = channel.unary_stream(
            "/etcdserverpb.Watch/Watch",
            request_serializer=rpc_pb2.WatchRequest.SerializeToString,
            response_deserializer=rpc_pb2.WatchResponse.FromString,
        )
        self.keepalive: Any = channel.unary_stream(
            "/etcdserverpb.Lease/LeaseKeepAlive",
            request_serializer=rpc_pb2.LeaseKeepAliveRequest.SerializeToString,
            response_deserializer=rpc_pb2.LeaseKeepAliveResponse.FromString,
        )


PUT_EVENT = 0  # mvccpb.Event.EventType.PUT
DELETE_EVENT = 1  # mvccpb.Event.EventType.DELETE


def lock_prefix(key: str) -> bytes:
    """Return the prefix under which the entries of lock ``key`` live.

    Lock names never contain NUL, so ``key + NUL`` cannot be the prefix of another lock's keys
    (with ``/`` as separator, lock "a" would see the entries of lock "a/b").
    """
    return key.encode() + b"\x00"


def entry_key(key: str, token: str) -> bytes:
    """Return the etcd key of ``token``'s entry (holder or waiter) for lock ``key``."""
    return lock_prefix(key) + token.encode()


def prefix_end(prefix: bytes) -> bytes:
    """Return the end of the range of every key starting with ``prefix`` (prefix has no 0xff)."""
    return prefix[:-1] + bytes([prefix[-1] + 1])


def first_entry(prefix: bytes, *, below: int = 0, last: bool = False, limit: int = 1) -> Any:
    """Range over a lock's entries by creation: the oldest, or (``last``) the newest.

    ``below`` > 0 keeps entries created at or before that revision.
    """
    return rpc_pb2.RangeRequest(
        key=prefix,
        range_end=prefix_end(prefix),
        limit=limit,
        sort_order=rpc_pb2.RangeRequest.DESCEND if last else rpc_pb2.RangeRequest.ASCEND,
        sort_target=rpc_pb2.RangeRequest.CREATE,
        max_create_revision=below,
    )


def get(key: bytes) -> Any:
    """Return a Range request for one key."""
    return rpc_pb2.RangeRequest(key=key)


def delete(key: bytes) -> Any:
    """Return a DeleteRange request for one key."""
    return rpc_pb2.DeleteRangeRequest(key=key)


def renewal(key: bytes, fence: int, value: str, lease: int, *, rewrite: bool) -> Any:
    """Return one entry's part of a batched renewal: a nested Txn, with its own outcome.

    It checks that the entry is still the one created at ``fence`` (not deleted by a waiter that
    saw it silent, nor by its session's end). Only if another entry of the lock stands behind it
    (some key under the prefix created after it) is it rewritten, same create revision, so that
    the waiter just behind it sees the holder is alive; ``rewrite`` rewrites it anyway (its
    ttl changed). ``renewed`` reads the outcome.
    """
    mine = rpc_pb2.Compare(
        result=rpc_pb2.Compare.EQUAL, target=rpc_pb2.Compare.CREATE, key=key, create_revision=fence
    )
    put = rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=key, value=value.encode(), lease=lease))
    if rewrite:
        return rpc_pb2.RequestOp(request_txn=rpc_pb2.TxnRequest(compare=[mine], success=[put]))
    prefix = key[: key.rindex(b"\x00") + 1]
    # Over a range, a compare holds if it holds for every key in it: none created after ours.
    alone = rpc_pb2.Compare(
        result=rpc_pb2.Compare.LESS,
        target=rpc_pb2.Compare.CREATE,
        key=prefix,
        range_end=prefix_end(prefix),
        create_revision=fence + 1,
    )
    written = rpc_pb2.RequestOp(request_txn=rpc_pb2.TxnRequest(compare=[mine], success=[put]))
    return rpc_pb2.RequestOp(request_txn=rpc_pb2.TxnRequest(compare=[mine, alone], failure=[written]))


def renewed(response: Any) -> bool:
    """Return whether the entry of a ``renewal`` part is still there (so renewed)."""
    txn = response.response_txn
    if txn.succeeded:
        return True  # there, and (without ``rewrite``) nobody behind it: nothing to write
    return bool(txn.responses) and bool(txn.responses[0].response_txn.succeeded)


def batch(parts: list[Any]) -> Any:
    """Return one Txn that runs every part (no compare: its success branch always runs)."""
    return rpc_pb2.TxnRequest(success=parts)


def create_if_absent(key: bytes, value: str, lease: int, *, guard: bytes | None = None) -> Any:
    """Return a Txn that puts ``key`` if it does not exist, then reads the lock's first entry.

    With ``guard`` (a lock prefix) the put happens only if no entry of that lock exists at all.
    """
    compare = rpc_pb2.Compare(
        result=rpc_pb2.Compare.EQUAL, target=rpc_pb2.Compare.CREATE, key=key, create_revision=0
    )
    if guard is not None:
        compare.key, compare.range_end = guard, prefix_end(guard)
    put = rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=key, value=value.encode(), lease=lease))
    mine = rpc_pb2.RequestOp(request_range=get(key))
    prefix = guard if guard is not None else key[: key.rindex(b"\x00") + 1]
    first = rpc_pb2.RequestOp(request_range=first_entry(prefix))
    return rpc_pb2.TxnRequest(compare=[compare], success=[put, mine, first], failure=[mine, first])


def join_queue(key: bytes, value: str, lease: int) -> Any:
    """Return a Txn that puts entry ``key`` if it does not exist and reads where it stands.

    Created: the lock's newest entries by creation (``LOOK_BEHIND``), ours first, then the one
    just before it (the predecessor) and the one before that, if any. Already there: our entry
    and the lock's first entry.
    """
    compare = rpc_pb2.Compare(
        result=rpc_pb2.Compare.EQUAL, target=rpc_pb2.Compare.CREATE, key=key, create_revision=0
    )
    prefix = key[: key.rindex(b"\x00") + 1]
    put = rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=key, value=value.encode(), lease=lease))
    behind = rpc_pb2.RequestOp(request_range=first_entry(prefix, last=True, limit=LOOK_BEHIND))
    mine = rpc_pb2.RequestOp(request_range=get(key))
    first = rpc_pb2.RequestOp(request_range=first_entry(prefix))
    return rpc_pb2.TxnRequest(compare=[compare], success=[put, behind], failure=[mine, first])


# Entries read from a waiter's own backwards: itself, its predecessor, and one more, which tells
# whether the predecessor is the only entry before it.
LOOK_BEHIND = 3


def look_behind(prefix: bytes, revision: int) -> Any:
    """Return a Range over the newest ``LOOK_BEHIND`` entries created at or before ``revision``."""
    return first_entry(prefix, below=revision, last=True, limit=LOOK_BEHIND)


def watch_entry(key: bytes, start_revision: int, *, puts: bool = True) -> Any:
    """Return a Watch request for the deletion of ``key`` (and, with ``puts``, every put of it)."""
    filters = [] if puts else [rpc_pb2.WatchCreateRequest.NOPUT]
    create = rpc_pb2.WatchCreateRequest(key=key, start_revision=start_revision, filters=filters)
    return rpc_pb2.WatchRequest(create_request=create)


def delete_if_unchanged(key: bytes, mod_revision: int) -> Any:
    """Return a Txn that deletes ``key`` only if it was not written since ``mod_revision``."""
    compare = rpc_pb2.Compare(
        result=rpc_pb2.Compare.EQUAL, target=rpc_pb2.Compare.MOD, key=key, mod_revision=mod_revision
    )
    delete_op = rpc_pb2.RequestOp(request_delete_range=rpc_pb2.DeleteRangeRequest(key=key))
    return rpc_pb2.TxnRequest(compare=[compare], success=[delete_op])


def watch_entries(prefix: bytes, start_revision: int) -> Any:
    """Return a Watch request for every change under ``prefix`` from ``start_revision`` on."""
    create = rpc_pb2.WatchCreateRequest(
        key=prefix, range_end=prefix_end(prefix), start_revision=start_revision
    )
    return rpc_pb2.WatchRequest(create_request=create)


def count_entries(prefix: bytes) -> Any:
    """Return a Range request that only counts the entries under ``prefix`` (for the revision)."""
    return rpc_pb2.RangeRequest(key=prefix, range_end=prefix_end(prefix), count_only=True)


def lease_grant(ttl: int) -> Any:
    """Return a LeaseGrant request (the server picks the id)."""
    return rpc_pb2.LeaseGrantRequest(TTL=ttl, ID=0)


def lease_keepalive(lease: int) -> Any:
    """Return a LeaseKeepAlive request."""
    return rpc_pb2.LeaseKeepAliveRequest(ID=lease)


def lease_time_to_live(lease: int) -> Any:
    """Return a LeaseTimeToLive request."""
    return rpc_pb2.LeaseTimeToLiveRequest(ID=lease)


def entry_value(label: str, ttl: float) -> str:
    """Return what an entry stores: the holder's ttl (for ``holder()``) and its label."""
    return f"{ttl!r} {label}"


def parse_value(value: bytes) -> tuple[float, str]:
    """Return the ttl and the label an entry stores."""
    ttl, _, label = bytes(value).decode().partition(" ")
    return float(ttl), label


def lease_revoke(lease: int) -> Any:
    """Return a LeaseRevoke request."""
    return rpc_pb2.LeaseRevokeRequest(ID=lease)


# -- semaphores: permits are lock entries on slot keys (``permits.py``) -----------------------


# The most slots one ``permit_take`` tries. Each is a Txn nested in the one before: etcd gives a
# nested Txn the --max-txn-ops budget (default 128) its parents left (2 per level here), and
# protobuf parsers refuse messages nested deeper than 100 (2 levels per slot in the reply).
MAX_CHAIN = 32


def record_key(key: str) -> bytes:
    """Return the key of semaphore ``key``'s limit record: the bare key, in no lock's line.

    A line holds ``key NUL token`` keys only, so the bare key is outside every line's range
    (the fair semaphore's line on ``key`` included).
    """
    return key.encode()


def record_confirmed(value: bytes | None) -> int | None:
    """Return the last confirmed limit of a record: ``4`` for ``b"4"`` and for ``b"4>8"``."""
    text = (value or b"").decode(errors="replace").partition(">")[0]
    return int(text) if text.isdigit() else None


def permit_take(record: bytes, limit: int, names: list[bytes], value: str, lease: int) -> Any:
    """Return a Txn that takes the first slot of ``names`` whose line is empty, if the record agrees.

    ``names`` are our entries' keys, one per slot, in the order to try. The record must read
    ``limit`` (not pending); then a chain of nested Txns tries each slot: put our entry if the
    slot's line has no entry at all (``create_if_absent`` with a guard), else try the next; the
    last one, if its slot is held too, reads every slot's first entry. Otherwise the record is
    read. ``permit_taken`` reads the outcome.
    """
    if not 0 < len(names) <= MAX_CHAIN:
        raise ValueError(f"a permit_take chain tries 1 to {MAX_CHAIN} slots, not {len(names)}")
    lines = [name[: name.index(b"\x00") + 1] for name in names]
    chain: Any = None
    for name, line in zip(reversed(names), reversed(lines), strict=True):
        empty = rpc_pb2.Compare(
            result=rpc_pb2.Compare.EQUAL,
            target=rpc_pb2.Compare.CREATE,
            key=line,
            range_end=prefix_end(line),
            create_revision=0,
        )
        put = rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=name, value=value.encode(), lease=lease))
        mine = rpc_pb2.RequestOp(request_range=get(name))
        if chain is None:
            failure = [rpc_pb2.RequestOp(request_range=first_entry(line)) for line in lines]
        else:
            failure = [rpc_pb2.RequestOp(request_txn=chain)]
        chain = rpc_pb2.TxnRequest(compare=[empty], success=[put, mine], failure=failure)
    agreed = rpc_pb2.Compare(
        result=rpc_pb2.Compare.EQUAL, target=rpc_pb2.Compare.VALUE, key=record, value=str(limit).encode()
    )
    take = rpc_pb2.RequestOp(request_txn=chain)
    read = rpc_pb2.RequestOp(request_range=get(record))
    return rpc_pb2.TxnRequest(compare=[agreed], success=[take], failure=[read])


def permit_taken(reply: Any) -> tuple[Any, list[Any]]:
    """Return our entry if a ``permit_take`` took a slot, else None and the slots' first entries."""
    txn = reply.responses[0].response_txn
    for _ in range(MAX_CHAIN):
        if txn.succeeded:
            return txn.responses[1].response_range.kvs[0], []
        if not txn.responses[0].HasField("response_txn"):
            return None, [kv for response in txn.responses for kv in response.response_range.kvs]
        txn = txn.responses[0].response_txn
    raise ValueError("a permit_take chain deeper than any sent")


def record_swap(record: bytes, mod: int, value: bytes | None, prefixes: list[bytes]) -> Any:
    """Return a Txn that writes the record (None: deletes it) if unwritten since ``mod`` (0: absent).

    It then counts the entries in each line of ``prefixes``, after the write, in the same Txn.
    """
    unchanged = rpc_pb2.Compare(
        result=rpc_pb2.Compare.EQUAL, target=rpc_pb2.Compare.MOD, key=record, mod_revision=mod
    )
    if value is None:
        write = rpc_pb2.RequestOp(request_delete_range=rpc_pb2.DeleteRangeRequest(key=record))
    else:
        write = rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=record, value=value))
    counts = [rpc_pb2.RequestOp(request_range=count_entries(prefix)) for prefix in prefixes]
    return rpc_pb2.TxnRequest(compare=[unchanged], success=[write, *counts])


def reads(requests: list[Any]) -> Any:
    """Return a Txn that runs every Range request of ``requests`` (read together, at one revision)."""
    return rpc_pb2.TxnRequest(success=[rpc_pb2.RequestOp(request_range=request) for request in requests])


def watch_range(start: bytes, end: bytes) -> Any:
    """Return a Watch request for every change of a key in [``start``, ``end``) from now on."""
    return rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=start, range_end=end))


# -- idempotency records: a record lives on the bare key of its run (``records.py``) ----------


def run_begin(record: bytes, live_above: bytes, acquire: Any) -> Any:
    """Return a Txn that reads ``record`` if it is live, else runs the lock's ``acquire`` Txn.

    A record's value starts with its expiry stamp, so it is live when its value sorts after
    ``live_above`` (the stamp of now): etcd compares values byte by byte, and fails a value
    compare on a missing key.
    """
    live = rpc_pb2.Compare(
        result=rpc_pb2.Compare.GREATER, target=rpc_pb2.Compare.VALUE, key=record, value=live_above
    )
    read = rpc_pb2.RequestOp(request_range=get(record))
    take = rpc_pb2.RequestOp(request_txn=acquire)
    return rpc_pb2.TxnRequest(compare=[live], success=[read], failure=[take])


def run_finish(entry: bytes, fence: int, record: bytes, value: bytes, lease: int) -> Any:
    """Return a Txn that, while ``entry`` is the one created at ``fence``, stores and deletes it.

    It puts the record under ``lease`` and deletes the holder's entry (which wakes its
    waiters, as a release does); else it reads the record (a resent finish finds its own).
    """
    mine = rpc_pb2.Compare(
        result=rpc_pb2.Compare.EQUAL, target=rpc_pb2.Compare.CREATE, key=entry, create_revision=fence
    )
    put = rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=record, value=value, lease=lease))
    end = rpc_pb2.RequestOp(request_delete_range=rpc_pb2.DeleteRangeRequest(key=entry))
    read = rpc_pb2.RequestOp(request_range=get(record))
    return rpc_pb2.TxnRequest(compare=[mine], success=[put, end], failure=[read])
