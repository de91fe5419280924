"""The ``etcd://h1:p1,h2:p2,...`` backend: etcd's own lock recipe over the v3 gRPC API.

The algorithm is the one of etcd's ``client/v3/concurrency`` package (session.go, mutex.go).
The store holds etcd leases as *sessions*, kept alive by one background keeper. Every holder or
waiter of lock ``K`` has its own etcd key ``K NUL token``, attached to a session lease and
created in one transaction only if it does not exist yet. The entry with the lowest create
revision holds the lock; its create revision is the fence (one counter for the whole cluster,
so it only grows and never repeats). A fair waiter keeps its entry, which queues it (FIFO by
construction), and watches only the entry just before its own for deletion, so a release wakes
one waiter and no herd. The create returns the entries just before the new one, so the waiter
knows its predecessor at once; when the only entry before its own is deleted (no entry is ever
created before it) it holds the lock without another request, else it reads the line again
from its own member (no round through the leader: see ``_look_behind``).
``try_acquire`` creates its entry only if the lock has no entry at all, so a plain attempt never
jumps the queue and leaves nothing behind when it fails; plain (``fair=False``) waiters watch the
holder's entry the failed attempt saw (its deletion and its rewrites), so a release wakes all
of them.

``ttl`` for a session-bound lock: the entry lives while its session lives, so a crashed holder
blocks others for the session's TTL. Locks of one ttl share a session whose lease is granted
lazily for a little more than ``ttl``, in whole seconds (etcd's unit), and at least the URL
option ``session_ttl`` (default 1; the server may raise it to its own minimum). A renewal
succeeds only while the session is known alive at the server for at least ``ttl`` more seconds
(a ``renew(ttl)`` longer than the session's TTL is therefore refused), so the local validity
never outlives the server's. When a holder's renewals stop for longer than ``ttl`` (a partition
only this store sees, a stuck renewer), the keeper deletes its entry, so others do not wait for
the whole session to expire. A holder that died cannot do that, so every renewal also rewrites
the entry, and a waiter that watches the holder (the fair waiter just behind it, or any plain
waiter) deletes the entry (only if it is unchanged: a compare on its mod revision) once it saw
no rewrite for the holder's ttl plus the drift margin, then tries again: the holder's
validity, counted from before it sent its last rewrite, has ended by then. A killed or paused
holder is so replaced about ``ttl`` after its last renewal, not when its session expires (up to
twice the ttl later, for a ttl of 1 s).

Every call carries ``op_timeout``; calls move on to the next endpoint while one is unreachable
(see ``etcd_client``: every request is idempotent by its entry's name, so no resend can take a
lock twice or bring back one that was lost). Faults of the cluster (a node killed, a leader
lost) must not leave an entry behind: the session would keep it alive, and the lock blocked,
for as long as this process lives. So a delete that fails (a release, a waiter leaving, a
stalled holder's entry) is retried by the keeper until it succeeds or the entry's session is
gone, and the failed release still raises. A create resent after its node failed that finds
its entry there (the first sending was applied, its answer lost) holds it: it was made only
if the lock had no entry, so it is first. A release resent the same way that finds nothing
returns True if no one else can have deleted the entry (the holder still valid, its session
alive).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Any, ClassVar

from tenure._async.backends.base import AsyncChangeFeed, AsyncLeaseStore
from tenure._async.backends.etcd import proto
from tenure._async.backends.etcd.client import AsyncEtcdClient, Session
from tenure._concurrency import AsyncBackground, AsyncSignal
from tenure._config import BackendConfig
from tenure._core.guarantees import Capability, Guarantee
from tenure._core.holder import HolderInfo
from tenure._core.renewal import drift_margin
from tenure._core.tokens import Owner
from tenure._exceptions import BackendError, BackendProtocolError, BackendUnavailable, ConfigurationError

log = logging.getLogger("tenure")

REAP_GRACE = 0.05  # seconds past a stalled holder's validity before its entry is deleted
BLOCKED_KEPT = 256  # locks whose last seen holder is kept for wait_released
DELETE_RETRY = 0.1  # seconds between the keeper's tries to delete an entry whose delete failed


@dataclass(slots=True)
class Sighting:
    """The last write of a holder's entry a plain waiter saw, and when it first saw it."""

    mod: int  # the entry's mod revision
    ttl: float  # the holder's ttl, as its entry says
    seen: float  # local monotonic time


@dataclass(slots=True)
class Waiting:
    """A fair waiter's entry: its place in the line and the entry it watches."""

    revision: int  # the entry's create revision, its fence once it is first
    ttl: float
    session: Session  # the session whose lease the entry is attached to
    predecessor: bytes | None = None  # the entry just before it; None: to be looked up
    alone: bool = False  # the predecessor is the only entry before it
    since: int = 0  # the revision from which the predecessor's deletion is watched
    # The holder just before ours (when ``alone``): its entry's last write, its ttl, and when we
    # first saw that write (local clock). Silent for ttl after that, it is taken over.
    holder_key: bytes = b""
    holder_mod: int = 0
    holder_ttl: float = 0.0
    holder_seen: float = 0.0


class AsyncEtcdStore(AsyncLeaseStore):
    """Serve leases from an etcd v3 cluster, bound to a keep-alive session.

    **Guarantees.** FENCING: the fence is the entry's create revision, one cluster-wide counter
    that only grows. FIFO: fair waiters are served in order of their create revisions.
    SERVER_TIME: entries end when the session lease expires by the server's clock.
    SURVIVES_FAILOVER: the entries are replicated by raft, so a held lock survives the loss of
    a minority of nodes, and calls move on to the next endpoint. SESSION_BOUND: every entry
    dies with its session; before that, the waiters watching a crashed or paused holder take
    over about the lock's ttl after its last renewal.
    CROSS_PROCESS, CROSS_HOST. Capabilities: SESSIONS, QUEUEING.
    """

    scheme: ClassVar[str] = "etcd"
    description: ClassVar[str] = "keys under a session lease; fence = create revision; watch the predecessor"
    guarantees: ClassVar[frozenset[Guarantee]] = frozenset(
        {
            Guarantee.FENCING,
            Guarantee.FIFO,
            Guarantee.SERVER_TIME,
            Guarantee.SURVIVES_FAILOVER,
            Guarantee.SESSION_BOUND,
            Guarantee.CROSS_PROCESS,
            Guarantee.CROSS_HOST,
        }
    )
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.SESSIONS, Capability.QUEUEING})
    # A release wakes the watcher at once; the pause bounds what a missed event can cost.
    poll_interval: ClassVar[tuple[float, float]] = (0.05, 0.5)

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        session_ttl = math.ceil(float(config.extra.get("session_ttl", 1)))  # type: ignore[arg-type]
        self._client = AsyncEtcdClient(
            self.url, endpoints(config), session_ttl=session_ttl, op_timeout=config.common.op_timeout
        )
        self._table_lock = threading.Lock()  # the keeper and the callers share the tables below
        self._held: dict[bytes, tuple[float, float, Session]] = {}  # entry -> (ttl, last renewal, session)
        self._queued: dict[bytes, Waiting] = {}  # a fair waiter's entry -> its place
        self._blocked: dict[str, tuple[bytes, int]] = {}  # lock -> (holder, revision) last seen
        self._sightings: dict[bytes, Sighting] = {}  # a holder's entry -> its last write seen
        # Entries whose delete failed (release, leave, reap): the keeper deletes them, while the
        # session they belong to (None: unknown) lives. Else the session would keep them forever.
        self._doomed: dict[bytes, Session | None] = {}
        self._wake: AsyncSignal | None = None
        self._keeper: AsyncBackground | None = None
        self._closed = False

    async def connect(self) -> None:
        if self._client.is_open:
            return
        await self._client.open(self.config.common.connect_timeout)
        self._closed = False
        self._wake = self._client.wake = AsyncSignal()
        self._keeper = AsyncBackground(self._keep, name="tenure-etcd-sessions")
        self._keeper.start()

    async def aclose(self) -> None:
        if not self._client.is_open:
            return
        self._closed = True
        if self._wake is not None:
            self._wake.set()
        if self._keeper is not None:
            await self._keeper.join()
        with self._table_lock:
            self._held.clear()
            self._queued.clear()
            self._blocked.clear()
            self._sightings.clear()
            self._doomed.clear()  # revoking the sessions deletes their entries
        await self._client.aclose()

    # -- the lease store ------------------------------------------------------------------------

    async def try_acquire(self, key: str, owner: Owner, ttl: float) -> int | None:
        started = time.monotonic()
        name, value, guard = (
            proto.entry_key(key, owner.token),
            proto.entry_value(owner.label, ttl),
            proto.lock_prefix(key),
        )
        session, reply = await self._client.create(
            ttl, started, lambda lease: proto.create_if_absent(name, value, lease, guard=guard)
        )
        if not reply.succeeded:
            mine = reply.responses[0].response_range.kvs
            if mine:
                # A resent create whose first sending was applied (its answer was lost with the
                # node): the entry is ours, and first, since it was made only if none existed.
                if mine[0].lease == session.lease:
                    self._hold(name, ttl, started, session)
                    return int(mine[0].create_revision)
                await self._delete_or_doom(name, None, "deleting a stale entry")
                return None
            first = reply.responses[-1].response_range.kvs
            if first:  # where wait_released starts watching, without another read
                if len(self._blocked) >= BLOCKED_KEPT:
                    self._blocked.clear()  # only hints: failed tries on many locks must not pile up
                self._blocked[key] = (bytes(first[0].key), int(reply.header.revision) + 1)
                self._saw(first[0])
            return None
        self._hold(name, ttl, started, session)
        return int(reply.responses[1].response_range.kvs[0].create_revision)

    async def try_acquire_queued(
        self, key: str, owner: Owner, ttl: float, *, patience: float, will_wait: bool = True
    ) -> int | None:
        # ``patience`` is not needed: a waiter's entry dies with its session, and a waiter that
        # gives up deletes it (leave_queue).
        name = proto.entry_key(key, owner.token)
        with self._table_lock:
            waiting = self._queued.get(name)
        if waiting is not None and waiting.session.alive and waiting.ttl == ttl:
            # In line already: no entry can be created before ours, so only wait_turn, which
            # watches the predecessor, can find that our turn has come. Nothing to send.
            return None
        started = time.monotonic()
        value = proto.entry_value(owner.label, ttl)
        session, reply = await self._client.create(
            ttl, started, lambda lease: proto.join_queue(name, value, lease)
        )
        if reply.succeeded:  # created: ours is the newest entry, the ones before it follow
            behind = reply.responses[1].response_range.kvs
            mine, first = behind[:1], None
        else:  # ours was there already (a resent create): our entry and the first one
            mine, first = reply.responses[0].response_range.kvs, reply.responses[1].response_range.kvs
        if not mine or mine[0].key != name or mine[0].lease != session.lease:
            raise BackendProtocolError(f"{self.url} lost the queue entry of {key!r} right after creating it")
        waiting = Waiting(int(mine[0].create_revision), ttl, session)
        if first is None:
            in_turn = place(waiting, behind, int(reply.header.revision))
        else:
            in_turn = bool(first) and first[0].key == name
        if in_turn:
            with self._table_lock:
                self._queued.pop(name, None)
            self._hold(name, ttl, started, session)
            return waiting.revision
        with self._table_lock:
            self._queued[name] = waiting
        return None

    async def wait_turn(self, key: str, owner: Owner, timeout: float) -> int | None:
        # Entries are never created before ours, so once the only one before it is deleted our
        # entry is first: the lock is ours without another request (its session must cover the
        # hand-over). Else the entries before ours are read again and the new predecessor watched.
        begun = time.monotonic()
        deadline = begun + timeout
        name = proto.entry_key(key, owner.token)
        with self._table_lock:
            waiting = self._queued.get(name)
        if waiting is None:
            return None
        # The session is refreshed before the wait, so that the hand-over sends nothing more.
        if not await self._client.covers(waiting.session, waiting.ttl, begun):
            self._session_lost(name, waiting)
            return None
        while True:
            if waiting.predecessor is None:
                kvs, revision = await self._look_behind(key, name, waiting)
                if not kvs:
                    self._unhold(name)  # our entry is gone with its session: join the line again
                    return None
                if place(waiting, kvs, revision):
                    return await self._take_turn(name, waiting, begun)
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            assert waiting.predecessor is not None
            if waiting.alone:
                seen = await self._wait_for_holder(waiting, left)
            else:
                seen = await self._client.wait_deleted(waiting.predecessor, waiting.since, left, fresh=True)
            if seen is False:
                # Timed out. The next wait reads the line again and watches from then on: a watch
                # from an older revision would lag (etcd catches such watchers up every 100 ms).
                waiting.predecessor = None
                return None
            if seen and waiting.alone:
                return await self._take_turn(name, waiting, begun)
            waiting.predecessor = None  # others are still before ours, or the watch told nothing

    async def _look_behind(self, key: str, name: bytes, waiting: Waiting) -> tuple[list[Any], int]:
        """Return our entry and the ones before it, newest first (empty if ours is gone).

        A member's own state suffices (no round through the leader): no entry is ever created
        before ours, so a member that has applied ours shows at least every entry still before
        it. Only a member that has not applied ours yet needs the leader's word.
        """
        request = proto.look_behind(proto.lock_prefix(key), waiting.revision)
        for serializable in (True, False):
            request.serializable = serializable
            reply = await self._client.call("kv", "Range", request, "finding the predecessor")
            kvs = list(reply.kvs)
            if kvs and kvs[0].key == name and kvs[0].lease == waiting.session.lease:
                return kvs, int(reply.header.revision)
        return [], 0

    async def _wait_for_holder(self, waiting: Waiting, timeout: float) -> bool | None:
        """Wait for the holder just before us to go, taking over if it stops renewing.

        The holder rewrites its entry at every renewal, and its validity ends within its ttl of
        sending one; we see each write after it was sent. So once no write was seen for ttl plus
        the drift margin, the holder's validity has ended (it crashed, or hangs) and its entry is
        deleted, unless it was written meanwhile. A crashed holder is then replaced within about
        its ttl, rather than when its session lease expires.
        True: the holder is gone. False: ``timeout`` passed. None: look at the line again.
        """
        assert waiting.predecessor is not None
        ends = time.monotonic() + timeout
        while True:
            silent_until = silent_since(waiting.holder_seen, waiting.holder_ttl)
            now = time.monotonic()
            if now >= silent_until:
                return True if await self._take_over(waiting.predecessor, waiting.holder_mod) else None
            if now >= ends:
                return False
            kind, kv = await self._client.watch_entry(
                waiting.predecessor, waiting.since, min(ends, silent_until) - now
            )
            if kind == "deleted":
                return True
            if kind == "ended":
                return None
            if kind == "put":
                waiting.holder_seen = time.monotonic()
                waiting.holder_mod = int(kv.mod_revision)
                waiting.holder_ttl = proto.parse_value(kv.value)[0]
                waiting.since = waiting.holder_mod + 1

    async def _take_turn(self, name: bytes, waiting: Waiting, begun: float) -> int | None:
        """Hold ``name``, first in line, if its session outlives the hand-over; return its fence."""
        if not await self._client.covers(waiting.session, waiting.ttl, begun):
            self._session_lost(name, waiting)
            return None
        with self._table_lock:
            self._queued.pop(name, None)
        self._hold(name, waiting.ttl, begun, waiting.session)
        return waiting.revision

    def _session_lost(self, name: bytes, waiting: Waiting) -> None:
        """Forget a waiting entry whose session expired; raise if the session is just unreachable."""
        if waiting.session.alive:
            raise BackendUnavailable(f"the etcd session on {self.url} could not be kept alive")
        self._unhold(name)  # the entry expired with its session: the next attempt joins again

    async def leave_queue(self, key: str, owner: Owner) -> None:
        name = proto.entry_key(key, owner.token)
        with self._table_lock:
            waiting = self._queued.pop(name, None)
            record = self._held.pop(name, None)
        session = waiting.session if waiting is not None else record[2] if record is not None else None
        try:
            await self._client.call("kv", "DeleteRange", proto.delete(name), "leaving the queue")
        except BackendError:
            self._doom(name, session)
            raise

    async def renew(self, key: str, owner: Owner, ttl: float) -> bool:
        started = time.monotonic()
        name = proto.entry_key(key, owner.token)
        with self._table_lock:
            record = self._held.get(name)
            if record is None:
                return False  # released, or deleted by the keeper after its renewals stalled
            session = record[2]
            self._held[name] = (ttl, started, session)
        if not await self._client.covers(session, ttl, started):
            self._unhold(name)
            return False
        # Every renewal rewrites the entry (same create revision, so the same fence): the waiter
        # just behind it sees the write, and takes over from a holder that stops writing.
        request = proto.put_if_present(name, proto.entry_value(owner.label, ttl), session.lease)
        if not (await self._client.call("kv", "Txn", request, "renewing")).succeeded:
            self._unhold(name)
            return False
        with self._table_lock:
            return name in self._held  # the keeper deletes from the table before the server

    async def release(self, key: str, owner: Owner) -> bool:
        # The entry's name contains the owner's secret token: only its owner can name it.
        name = proto.entry_key(key, owner.token)
        with self._table_lock:
            record = self._held.pop(name, None)
            waiting = self._queued.pop(name, None)
        session = record[2] if record is not None else waiting.session if waiting is not None else None
        sent: list[int] = []
        try:
            reply = await self._client.call("kv", "DeleteRange", proto.delete(name), "releasing", sent=sent)
        except BackendError:
            self._doom(name, session)  # the keeper deletes it once the cluster answers again
            raise
        if int(reply.deleted) > 0:
            return True
        # Resent after its first node failed, the delete finds nothing if that node applied it.
        # Nobody else deletes a holder's entry while the holder is valid and its session lives.
        return len(sent) > 1 and record is not None and still_valid(*record)

    async def holder(self, key: str) -> HolderInfo | None:
        reply = await self._client.call(
            "kv", "Range", proto.first_entry(proto.lock_prefix(key)), "inspecting"
        )
        if not reply.kvs:
            return None
        first = reply.kvs[0]
        ttl, label = proto.parse_value(first.value)
        # The holder renews its ttl while its session lives: at most the smaller of both is left.
        lease = await self._client.call(
            "lease", "LeaseTimeToLive", proto.lease_time_to_live(first.lease), "inspecting"
        )
        remaining = min(ttl, float(lease.TTL)) if lease.TTL >= 0 else ttl
        return HolderInfo(label, int(first.create_revision), remaining)

    async def wait_released(self, key: str, timeout: float) -> None:
        # A plain waiter watches the holder's entry: its deletion wakes it, and a holder that
        # stopped rewriting it (crashed, paused) is taken over, as the fair waiter behind it does.
        ends = time.monotonic() + timeout
        blocked = self._blocked.pop(key, None)  # the holder the last failed attempt saw
        if blocked is None:
            reply = await self._client.call(
                "kv", "Range", proto.first_entry(proto.lock_prefix(key)), "waiting"
            )
            if not reply.kvs:
                return
            self._saw(reply.kvs[0])
            blocked = (bytes(reply.kvs[0].key), int(reply.header.revision) + 1)
        name, since = blocked
        while True:
            sighting = self._sightings.get(name)
            now = time.monotonic()
            silent_until = math.inf if sighting is None else silent_since(sighting.seen, sighting.ttl)
            if sighting is not None and now >= silent_until:
                await self._take_over(name, sighting.mod)
                return
            if now >= ends:
                return
            kind, kv = await self._client.watch_entry(name, since, min(ends, silent_until) - now)
            if kind in ("deleted", "ended"):
                return
            if kind == "put":
                self._saw(kv)
                since = int(kv.mod_revision) + 1

    def _saw(self, kv: Any) -> None:
        """Note a write of a holder's entry; its silence is counted from when it was first seen."""
        name, mod = bytes(kv.key), int(kv.mod_revision)
        known = self._sightings.get(name)
        if known is None or mod > known.mod:  # a read racing a watched write may be older
            if len(self._sightings) >= BLOCKED_KEPT:
                self._sightings.clear()  # hints: forgetting one only delays a take-over
            self._sightings[name] = Sighting(mod, proto.parse_value(kv.value)[0], time.monotonic())

    async def _take_over(self, name: bytes, mod: int) -> bool:
        """Delete a silent holder's entry if it was not written since ``mod``; return whether done."""
        self._sightings.pop(name, None)
        request = proto.delete_if_unchanged(name, mod)
        if (await self._client.call("kv", "Txn", request, "taking over")).succeeded:
            log.info("tenure: %r was not renewed within its ttl; taken over", name)
            return True
        return False  # written or gone meanwhile

    async def watch(self, key: str) -> AsyncChangeFeed:
        # Watch the lock's entries from the revision of this read on: nothing after it is missed.
        prefix = proto.lock_prefix(key)
        reply = await self._client.call("kv", "Range", proto.count_entries(prefix), "watching")
        return AsyncEtcdFeed(self._client, prefix, int(reply.header.revision) + 1)

    # -- the keeper: sessions alive, stalled holders' entries deleted ---------------------------

    async def _keep(self) -> None:
        assert self._wake is not None
        while not self._closed:
            self._wake.clear()
            now = time.monotonic()
            next_keepalive = await self._client.keep_sessions_alive(now)
            self._reap(now)
            retry = await self._delete_doomed()
            with self._table_lock:
                reaps = [started + ttl + REAP_GRACE for ttl, started, _ in self._held.values()]
            wake_at = min([next_keepalive, *reaps, time.monotonic() + DELETE_RETRY if retry else math.inf])
            await self._wake.wait(min(max(0.01, wake_at - time.monotonic()), 1.0))

    def _reap(self, now: float) -> None:
        """Have the entries of holders that stopped renewing (their validity has ended) deleted."""
        with self._table_lock:
            stalled = [
                (name, session)
                for name, (ttl, started, session) in self._held.items()
                if started + ttl + REAP_GRACE < now
            ]
            for name, _ in stalled:
                del self._held[name]  # before the delete: a renewal in flight then reports the loss
        for name, session in stalled:
            self._doom(name, session)  # deleted by _delete_doomed, right after this

    async def _delete_or_doom(self, name: bytes, session: Session | None, what: str) -> None:
        """Delete entry ``name``; if that fails, leave it to the keeper to retry."""
        try:
            await self._client.call("kv", "DeleteRange", proto.delete(name), what)
        except BackendError:
            self._doom(name, session)

    def _doom(self, name: bytes, session: Session | None) -> None:
        """Have the keeper delete ``name`` (a live session would keep it, and block the lock)."""
        with self._table_lock:
            self._doomed[name] = session
        if self._wake is not None:
            self._wake.set()

    async def _delete_doomed(self) -> bool:
        """Try once more to delete each entry whose delete failed; return whether some are left."""
        with self._table_lock:
            doomed = list(self._doomed.items())
        any_alive = any(session.alive for session in self._client.sessions.values())
        for name, session in doomed:
            # An entry dies with its session: once that (or, unknown, every one) is gone, so is it.
            if session.alive if session is not None else any_alive:
                # After a failure the rest wait for the next tick too: the cluster does not
                # answer yet, and each try could hold up the session keep-alives for op_timeout.
                try:
                    await self._client.call("kv", "DeleteRange", proto.delete(name), "deleting an entry")
                except BackendError:
                    break
            with self._table_lock:
                if self._doomed.get(name) is session:
                    del self._doomed[name]
        with self._table_lock:
            return bool(self._doomed)

    def _hold(self, name: bytes, ttl: float, started: float, session: Session) -> None:
        with self._table_lock:
            self._held[name] = (ttl, started, session)
            self._doomed.pop(name, None)
        if self._wake is not None:
            self._wake.set()  # the keeper must know when this entry's renewals are overdue

    def _unhold(self, name: bytes) -> None:
        with self._table_lock:
            self._held.pop(name, None)
            self._queued.pop(name, None)


def place(waiting: Waiting, behind: list[Any], revision: int) -> bool:
    """Note the predecessor from ``behind`` (ours, then the entries before it, newest first).

    Return whether ours is first. ``revision`` is the store's revision when ``behind`` was read.
    """
    if len(behind) == 1:
        return True
    before = behind[1]
    waiting.predecessor = bytes(before.key)
    waiting.alone = len(behind) == 2
    waiting.since = revision + 1
    # A read racing a watched rewrite may be older than a write already seen: only newer counts.
    unseen = waiting.holder_key != waiting.predecessor or int(before.mod_revision) > waiting.holder_mod
    if waiting.alone and unseen:
        # A holder, or a write of it, not seen before: its silence is counted from now.
        waiting.holder_key, waiting.holder_mod = waiting.predecessor, int(before.mod_revision)
        waiting.holder_ttl = proto.parse_value(before.value)[0]
        waiting.holder_seen = time.monotonic()
    return False


def silent_since(seen: float, ttl: float) -> float:
    """Return when a holder whose last write was first seen at ``seen`` is surely no longer valid.

    The holder counts its validity from before it sent the write, for ``ttl`` less the drift
    margin; the write is seen after it was sent.
    """
    return seen + ttl + drift_margin(ttl)


def still_valid(ttl: float, started: float, session: Session) -> bool:
    """Return whether a holder whose last renewal was sent at ``started`` is still surely valid."""
    now = time.monotonic()
    return session.alive and session.valid_until > now and now < started + ttl - drift_margin(ttl)


def endpoints(config: BackendConfig) -> list[str]:
    """Return the ``host:port`` gRPC targets of a validated ``etcd://`` URL (no I/O)."""
    url = config.url
    if url.path.strip("/"):
        raise ConfigurationError(
            f"etcd:// takes no path, only hosts: etcd://h1:2379,h2:2379 ({url.redacted})"
        )
    if url.username or url.password:
        raise ConfigurationError(f"etcd:// authentication is not supported yet ({url.redacted})")
    if not url.hosts:
        return ["127.0.0.1:2379"]
    return [f"{host.host or '127.0.0.1'}:{host.port or 2379}" for host in url.hosts]


class AsyncEtcdFeed(AsyncChangeFeed):
    """Wake an observer on any change to a lock's entries: a creation, a deletion, a renewal."""

    def __init__(self, client: AsyncEtcdClient, prefix: bytes, since: int) -> None:
        super().__init__(client.op_timeout)
        self._client, self._prefix, self._since = client, prefix, since

    async def wait(self, timeout: float) -> None:
        self._since = await self._client.wait_changed(self._prefix, self._since, timeout)
