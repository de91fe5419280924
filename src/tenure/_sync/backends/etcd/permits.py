# GENERATED from src/tenure/_async/backends/etcd/permits.py by scripts/unasync.py: do not edit; edit the source and re-run.
"""Semaphore permits on etcd: a permit is an ordinary lock entry on one of the name's slot keys.

Taking a permit is one Txn (``proto.permit_take``): if the name's limit record holds our limit,
the first slot, in ``slot_order``, whose line has no entry gets ours, under a session lease as
a lock's (so a single attempt never stands in a line). Past ``proto.MAX_CHAIN`` slots, the next
ones go in the next Txn. The fence is the entry's create revision, one cluster-wide counter,
so it grows per name across slots. Renewals, releases, ``holder`` and the keeper's deletion of
a stalled holder are the lock steps on the slot key. A permit's entry is rewritten at every
renewal (a lock's only while a waiter stands behind it), so a waiter sees a holder that stopped
renewing and expires its entry (``Line.expire_silent_holder``) about its ttl after its last
renewal, not when its session expires.

The limit record is the semaphore's bare key: ``4`` while permits are taken with limit 4,
``4>8`` while a changer to 8 checks that none is live. A change takes several steps; the race
is closed so: a take compares the record with its limit in its own Txn (``4>8`` matches none);
a changer writes ``4>8`` (compare-and-swap on the record's mod revision) and counts the
entries of every slot of either limit after that write, then writes ``8`` only if there were
none (by compare-and-swap again), else puts the old value back and the name is in use with 4.
A permit taken before the ``>`` write is counted; none is taken after it until ``8``.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any

from tenure._sync.backends.base import Permit
from tenure._sync.backends.etcd import proto
from tenure._sync.backends.etcd.client import EtcdClient, LeaseGone
from tenure._sync.backends.etcd.entries import Entries
from tenure._sync.backends.etcd.line import Line, silent_since
from tenure._sync.backends.etcd.session import Keeper, Sessions, Session
from tenure._core.holder import HolderInfo
from tenure._core.semaphore import limit_mismatch, permit_keys, slot_order
from tenure._core.tokens import Owner
from tenure._exceptions import BackendError, BackendUnavailable

READS = 120  # ranges per read Txn: etcd refuses more than --max-txn-ops (default 128) per level
TRIES = 4  # rounds of one attempt (a take, then a change of the record) before it gives up
HEARD = 4096  # permit entries whose last write is remembered; a hint, so cleared when full


@dataclass(slots=True)
class _Took:
    """What the take Txns of one round found."""

    session: Session | None = None
    entry: Any = None  # our entry, if a slot was taken
    agreed: bool = True  # False: the record does not hold our limit
    record: Any = None  # then: the record's kv, None if absent
    resent: bool = False  # a take Txn was sent twice: its first sending may have taken a slot


class Permits:
    """Take, watch and list the permits of an etcd store's semaphores."""

    def __init__(
        self,
        client: EtcdClient,
        sessions: Sessions,
        entries: Entries,
        keeper: Keeper,
        line: Line,
    ) -> None:
        self._client, self._sessions, self._entries = client, sessions, entries
        self._keeper, self._line = keeper, line
        # Permit entry -> its last write seen (mod revision), when we first saw it, its ttl.
        # Shared by callers on many threads (sync twin): iterated only through copies (atomic).
        self._heard: dict[bytes, tuple[int, float, float]] = {}

    def try_acquire(self, key: str, limit: int, owner: Owner, ttl: float) -> Permit | None:
        started = time.monotonic()
        slots = permit_keys(key, limit)
        names = [proto.entry_key(slot, owner.token) for slot in slots]
        ordered = [names[slot] for slot in slot_order(limit)]
        value = proto.entry_value(owner.label, ttl)
        for _ in range(TRIES):
            took = self._take(key, limit, ordered, value, ttl, started)
            if took.resent:
                took.entry = self._settle_resent(names, took)
            if took.entry is not None:
                assert took.session is not None
                name, fence = bytes(took.entry.key), int(took.entry.create_revision)
                self._entries.hold(name, ttl, started, took.session, fence, ttl, always=True)
                self._keeper.poke()  # the keeper must know when this entry's renewals are overdue
                return Permit(slots[names.index(name)], fence)
            if took.agreed:
                return None  # every slot is held
            self._change(key, limit, took.record)
        return None  # the record kept changing under us: the caller tries again

    def _take(
        self, key: str, limit: int, ordered: list[bytes], value: str, ttl: float, started: float
    ) -> _Took:
        """Send take Txns over the slots, ``MAX_CHAIN`` at a time, until one takes a slot."""
        took = _Took()
        record = proto.record_key(key)
        for start in range(0, len(ordered), proto.MAX_CHAIN):
            names = ordered[start : start + proto.MAX_CHAIN]
            for _ in range(2):
                took.session = self._sessions.session(ttl, started)
                request = proto.permit_take(record, limit, names, value, took.session.lease)
                sent: list[int] = []
                try:
                    reply = self._client.call("kv", "Txn", request, "acquiring a permit", sent=sent)
                    break
                except LeaseGone:
                    took.session.alive = False  # nothing was written: again under a new session
                finally:
                    took.resent = took.resent or len(sent) > 1
            else:
                raise BackendUnavailable(f"the etcd sessions on {self._client.url} keep expiring")
            if not reply.succeeded:
                kvs = reply.responses[0].response_range.kvs
                took.agreed, took.record = False, kvs[0] if kvs else None
                return took
            took.entry, firsts = proto.permit_taken(reply)
            if took.entry is not None:
                return took
            now = time.monotonic()
            for kv in firsts:  # the holders a waiter watches next: their silence counts from now
                self._hear(bytes(kv.key), kv, now)
        return took

    def _settle_resent(self, names: list[bytes], took: _Took) -> Any:
        """Keep one of our entries, the one this round took if any; delete any other.

        A take Txn resent after its node failed may have been applied twice, the first time
        into another slot, or once, by the sending whose reply was lost.
        """
        found = [kv for reply in self._read([proto.get(name) for name in names]) for kv in _kvs(reply)]
        mine = [kv for kv in found if took.session is not None and kv.lease == took.session.lease]
        keep = took.entry or min(mine, key=lambda kv: int(kv.create_revision), default=None)
        for kv in found:
            if keep is None or kv.key != keep.key:
                with contextlib.suppress(BackendError):  # the keeper retries it
                    self._keeper.delete(bytes(kv.key), took.session, "deleting a second permit")
        return keep

    def _change(self, key: str, limit: int, record: Any) -> None:
        """Make ``limit`` the name's record if no permit of either limit is live; else raise.

        Returns also when the record was written meanwhile, or the lines were not empty and no
        limit was confirmed yet: the caller looks again.
        """
        name = proto.record_key(key)
        old = bytes(record.value) if record is not None else None
        mod = int(record.mod_revision) if record is not None else 0
        confirmed = proto.record_confirmed(old)
        if confirmed == limit:  # "4>8": a changer to 8 is at work, or died; ours is the live limit
            self._swap(name, mod, str(limit).encode(), [])
            return
        prefixes = [proto.lock_prefix(slot) for slot in permit_keys(key, max(confirmed or 0, limit))]
        pending = f"{'' if confirmed is None else confirmed}>{limit}".encode()
        reply = self._swap(name, mod, pending, prefixes[:READS])
        if not reply.succeeded:
            return  # written meanwhile
        written = int(reply.header.revision)
        counts = [int(response.response_range.count) for response in reply.responses[1:]]
        if len(prefixes) > READS:  # read after the write, as the rest
            more = self._read([proto.count_entries(prefix) for prefix in prefixes[READS:]])
            counts.extend(int(part.response_range.count) for reply in more for part in reply.responses)
        if not any(counts):
            self._swap(name, written, str(limit).encode(), [])
            return
        self._swap(name, written, old, [])  # put back what it was; nobody took a slot since
        if confirmed is not None:
            raise limit_mismatch(key, limit, confirmed)

    def _swap(self, name: bytes, mod: int, value: bytes | None, prefixes: list[bytes]) -> Any:
        request = proto.record_swap(name, mod, value, prefixes)
        return self._client.call("kv", "Txn", request, "changing a semaphore's limit")

    def _read(self, requests: list[Any]) -> list[Any]:
        """Run the Range ``requests``, ``READS`` per Txn; return the Txn replies."""
        replies = []
        for part in _chunks(requests, READS):
            replies.append(self._client.call("kv", "Txn", proto.reads(part), "reading permits"))
        return replies

    def holders(self, key: str, limit: int) -> list[HolderInfo]:
        requests = [proto.first_entry(proto.lock_prefix(slot)) for slot in permit_keys(key, limit)]
        firsts = [kv for reply in self._read(requests) for kv in _kvs(reply)]
        # Each holder renews its ttl while its session lives: at most the smaller of both is left.
        left: dict[int, float] = {}
        for lease in {int(kv.lease) for kv in firsts}:
            request = proto.lease_time_to_live(lease)
            reply = self._client.call("lease", "LeaseTimeToLive", request, "inspecting")
            left[lease] = float(reply.TTL)
        holders = []
        now = time.monotonic()
        for kv in firsts:
            self._hear(bytes(kv.key), kv, now)  # a waiter's next wait judges their silence
            ttl, label = proto.parse_value(kv.value)
            remaining = min(ttl, left[int(kv.lease)]) if left[int(kv.lease)] >= 0 else ttl
            holders.append(HolderInfo(label, int(kv.create_revision), remaining))
        return holders

    def wait_released(self, key: str, limit: int, timeout: float) -> None:
        """Watch the slots' lines: return on a deletion, or once a holder was found silent.

        The holders' writes seen (by a failed take, ``holders`` or a wait) are remembered, so a
        deletion since is not missed, and a holder that stopped renewing is expired once none
        was seen for its ttl plus the drift margin (``line.silent_since``).
        """
        ends = time.monotonic() + timeout
        prefixes = {proto.lock_prefix(slot) for slot in permit_keys(key, limit)}
        if self._expire_silent(prefixes):
            return
        reads = [
            proto.reads([_serializable(proto.first_entry(prefix)) for prefix in part])
            for part in _chunks(sorted(prefixes), READS)
        ]

        def settled(kind: str, what: Any) -> bool:
            now = time.monotonic()
            if kind == "read":
                # A holder seen before and gone now was released since: the caller tries again.
                # (A slot free all along is no news: a sequence's are, most of them.)
                firsts = {bytes(kv.key): kv for reply in what for kv in _kvs(reply)}
                gone = [n for n in self._heard.copy() if _line(n) in prefixes and n not in firsts]
                for name in gone:
                    self._heard.pop(name, None)
                for name, kv in firsts.items():
                    self._hear(name, kv, now)
                return bool(gone) or self._next_silence(prefixes) <= now
            name = bytes(what.kv.key)
            if _line(name) not in prefixes:
                return False  # another semaphore's slot, in the watched range
            if what.type == proto.DELETE_EVENT:
                self._heard.pop(name, None)
                return True
            self._hear(name, what.kv, now)  # a renewal, or a slot taken
            return False

        wake = min(ends, self._next_silence(prefixes))
        start, end = min(prefixes), proto.prefix_end(max(prefixes))
        self._client.wait_range(start, end, wake - time.monotonic(), reads, settled)
        self._expire_silent(prefixes)

    def _hear(self, name: bytes, kv: Any, now: float) -> None:
        """Note entry ``name``'s write ``kv`` if newer than the last one seen (from ``now`` on)."""
        heard = self._heard.get(name)
        if heard is None or heard[0] < int(kv.mod_revision):
            if len(self._heard) >= HEARD:
                self._heard.clear()
            self._heard[name] = (int(kv.mod_revision), now, proto.parse_value(kv.value)[0])

    def _next_silence(self, prefixes: set[bytes]) -> float:
        """Return when the first holder in ``prefixes`` is silent for its ttl, if not written."""
        return min(
            (
                silent_since(seen, ttl)
                for n, (_, seen, ttl) in self._heard.copy().items()
                if _line(n) in prefixes
            ),
            default=float("inf"),
        )

    def _expire_silent(self, prefixes: set[bytes]) -> bool:
        """Delete the entries of the holders in ``prefixes`` silent for their ttl; return whether any was."""
        now = time.monotonic()
        silent = [
            (name, mod)
            for name, (mod, seen, ttl) in self._heard.copy().items()
            if _line(name) in prefixes and silent_since(seen, ttl) <= now
        ]
        expired = False
        for name, mod in silent:
            self._heard.pop(name, None)
            # Any waiter may judge a permit's holder: it writes its entry at every renewal.
            expired = self._line.expire_silent_holder(name, mod) or expired
        return expired


def _kvs(reply: Any) -> list[Any]:
    """Return the kvs every Range of a Txn reply found, in order."""
    return [kv for response in reply.responses for kv in response.response_range.kvs]


def _line(name: bytes) -> bytes:
    """Return the line (lock prefix) of entry ``name``."""
    return name[: name.find(b"\x00") + 1]


def _serializable(request: Any) -> Any:
    request.serializable = True  # read from the watching member, no round through the leader
    return request


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[start : start + size] for start in range(0, len(items), size)]
