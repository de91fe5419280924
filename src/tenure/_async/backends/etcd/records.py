"""Idempotency records on etcd: a run is a lock entry, its record the bare key beside the line.

A run of key K is an ordinary lock on K: an entry under ``K NUL`` whose create revision is the
fence. The record a finished run leaves is the key K itself, outside every lock's line
(``proto.record_key``), holding ``expiry stamp | fence | record`` (``record_value``).

- ``begin_run`` is one Txn (``proto.run_begin``, in the store): the record if its stamp is
  still ahead of now, else, nested, the lock's own acquire Txn, exactly as ``try_acquire``.
- ``finish_run`` is one Txn (``proto.run_finish``): only while the run's entry is still the
  one created at its fence, put the record and delete the entry, which wakes the waiters
  watching it as a release does.

**Expiry.** etcd has no clock a request can read or compare with, only leases, and a lease's
countdown starts over at every leader change (etcd renews every lease to its full TTL then).
So a record's exact end is stamped as wall-clock time by its writer and checked against the
reader's wall clock, in the Txn's compare for ``begin_run`` (as SQLite's records are against
the host's clock); and the server deletes the record through an etcd lease that outlives the
stamp, so nothing a key leaves stays. Fences are create revisions, one cluster-wide counter
that never repeats or goes back, so no per-key counter has to outlive the record.

**Leases are shared.** A lease per record would add a grant round trip to every finish and
leave millions of leases. A record goes on the lease of its expiry *bucket* instead: buckets
are aligned on a power-of-two width of about ttl/64 seconds (at least 1 s, etcd's unit), so a
record is deleted at most ~1/64 of its ttl (+ ``LEASE_MARGIN``) after its stamp, and a process
grants about 65 leases per ttl's length, each once, cached by the bucket's end. ``finish_run``
is then one Txn; the first record of a bucket adds one grant; a lease the server no longer has
is granted again and the Txn resent (it changed nothing).
"""

from __future__ import annotations

import math
import time
from typing import Any

from tenure._async.backends.base import Recorded
from tenure._async.backends.etcd import proto
from tenure._async.backends.etcd.client import AsyncEtcdClient, LeaseGone
from tenure._async.backends.etcd.entries import Entries
from tenure._async.backends.etcd.session import AsyncKeeper
from tenure._concurrency import AsyncMutex
from tenure._core.tokens import Owner
from tenure._exceptions import BackendError, BackendProtocolError, BackendUnavailable

# etcd refuses a request over --max-request-bytes (default 1.5 MiB): the finish Txn carries the
# record with its key, header and the entry's delete, and 1 MiB leaves room for all of them.
RECORD_LIMIT = 1024 * 1024
STAMP_DIGITS = 16  # the expiry, in microseconds of Unix time (enough until the year 2286)
FENCE_DIGITS = 20  # a revision is an int64
HEADER_BYTES = STAMP_DIGITS + FENCE_DIGITS
BUCKETS_PER_TTL = 64  # a bucket is about ttl/64 wide: how long past its stamp a record may stay
LEASE_MARGIN = 1  # seconds a bucket's lease outlives the bucket (the grant's rounding, latency)


def stamp(wall: float) -> bytes:
    """Return the fixed-width stamp of Unix time ``wall``: stamps sort as the times do."""
    return b"%0*d" % (STAMP_DIGITS, int(wall * 1_000_000))


def live_above(now: float) -> bytes:
    """Return what a record's value must sort after to be live at ``now`` (its stamp later)."""
    return stamp(now) + b"\xff"  # an equal stamp is followed by a fence digit, below 0xff


def record_value(expires: float, fence: int, record: bytes) -> bytes:
    """Return what a record's key stores: its expiry stamp, its run's fence, the record."""
    return stamp(expires) + b"%0*d" % (FENCE_DIGITS, fence) + record


def recorded(key: str, kv: Any, now: float) -> Recorded | None:
    """Return the record a key-value holds, if it is still live at ``now``."""
    value = bytes(kv.value)
    header = value[:HEADER_BYTES]
    if len(header) < HEADER_BYTES or not header.isdigit():
        raise BackendProtocolError(f"the etcd record of {key!r} is not one tenure wrote")
    # In whole microseconds, as ``live_above`` compares: live here exactly when live there.
    remaining = int(header[:STAMP_DIGITS]) - int(stamp(now))
    if remaining <= 0:
        return None  # expired: its bucket's lease deletes it soon
    return Recorded(value[HEADER_BYTES:], int(header[STAMP_DIGITS:]), remaining / 1_000_000)


def bucket_end(expires: float, ttl: float) -> int:
    """Return the end (Unix seconds) of the expiry bucket of a record of ``ttl`` ending at ``expires``."""
    width = 1 << max(0, math.ceil(math.log2(max(ttl / BUCKETS_PER_TTL, 1.0))))
    return math.ceil(expires / width) * width


class AsyncRecordLeases:
    """The etcd leases records are attached to: one per expiry bucket, granted once, cached."""

    def __init__(self, client: AsyncEtcdClient) -> None:
        self._client = client
        self._by_end: dict[int, int] = {}  # lease id by the end of its bucket
        self._mutex: AsyncMutex | None = None

    def open(self) -> None:
        """Get ready to grant (in the event loop that will use the leases)."""
        self._mutex = AsyncMutex()

    async def lease(self, expires: float, ttl: float) -> int:
        """Return a lease the server keeps past ``expires`` (Unix time), and not much longer."""
        end = bucket_end(expires, ttl)
        lease = self._by_end.get(end)
        if lease is not None:
            return lease
        assert self._mutex is not None, "open() first"
        async with self._mutex:  # one grant per bucket, however many finish at once
            lease = self._by_end.get(end)
            if lease is None:
                now = time.time()
                for past in [past for past in self._by_end if past <= now]:
                    del self._by_end[past]
                lease = self._by_end[end] = await self._grant(math.ceil(end - now) + LEASE_MARGIN)
        return lease

    async def drop(self, lease: int) -> None:
        """Forget ``lease``: the server no longer has it."""
        assert self._mutex is not None, "open() first"
        async with self._mutex:
            for end in [end for end, cached in self._by_end.items() if cached == lease]:
                del self._by_end[end]

    async def _grant(self, ttl: int) -> int:
        reply = await self._client.call(
            "lease", "LeaseGrant", proto.lease_grant(ttl), "granting a record lease"
        )
        if reply.error:
            raise BackendProtocolError(f"{self._client.url} refused a record lease: {reply.error}")
        return int(reply.ID)


class AsyncEtcdRecords:
    """Finish runs and read records (``begin_run`` is the store's: it is its acquire step)."""

    def __init__(self, client: AsyncEtcdClient, entries: Entries, keeper: AsyncKeeper) -> None:
        self._client, self._entries, self._keeper = client, entries, keeper
        self.leases = AsyncRecordLeases(client)

    async def finish_run(self, key: str, owner: Owner, record: bytes, ttl: float) -> bool:
        name = proto.entry_key(key, owner.token)
        held, session = self._entries.forget(name)  # no more renewals, whatever the outcome
        if held is None:
            return False  # lost already: a renewal found the entry gone, or it stalled
        expires = time.time() + ttl
        value = record_value(expires, held.fence, record)
        try:
            for _ in range(2):
                lease = await self.leases.lease(expires, ttl)
                request = proto.run_finish(name, held.fence, proto.record_key(key), value, lease)
                try:
                    reply = await self._client.call("kv", "Txn", request, "recording")
                except LeaseGone:
                    await self.leases.drop(lease)  # nothing was applied: grant another, send again
                    continue
                if reply.succeeded:
                    return True
                # The entry is gone. A finish resent after its first node failed finds its own
                # record there (the first sending was applied); fences are never reused.
                kvs = reply.responses[0].response_range.kvs
                found = recorded(key, kvs[0], time.time()) if kvs else None
                return found is not None and found.fence == held.fence
            raise BackendUnavailable(f"the record leases on {self._client.url} keep disappearing")
        except BackendError:
            # Not stored, or not known to be: the keeper deletes the entry, freeing the key as
            # a failed run would (a live session would keep it for as long as this process).
            self._keeper.doom(name, session)
            raise

    async def read_record(self, key: str) -> Recorded | None:
        now = time.time()
        reply = await self._client.call("kv", "Range", proto.get(proto.record_key(key)), "reading a record")
        return recorded(key, reply.kvs[0], now) if reply.kvs else None
