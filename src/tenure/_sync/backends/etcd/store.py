# GENERATED from src/tenure/_async/backends/etcd/store.py by scripts/unasync.py: do not edit; edit the source and re-run.
"""The etcd lease store: each lock step is one request (a transaction, a read or a delete).

The algorithm is the one of etcd's ``client/v3/concurrency`` package (session.go, mutex.go):
an entry per holder or waiter under the lock's prefix, the oldest one holds (``line.py``).
``try_acquire`` creates its entry only if the lock has no entry at all, so a single attempt
never jumps the line and leaves nothing behind when it fails. Every blocking acquire, plain or
``fair=True``, waits in the line (``plain_waiters_queue``): ``try_acquire_queued`` creates the
entry and learns its predecessor in the same transaction, ``wait_turn`` watches it.

Renewals go in batches (``renew_many``): one Txn per session and ``CHUNK`` entries, each
entry's part checking that it still exists, with its own outcome. An entry is rewritten (same
create revision, so the same fence) only if another entry of its lock stands behind it: the
waiter just behind sees the write, and expires a holder that stops writing (``line.py``); an
entry nobody waits behind is left as it is. A renewal succeeds only while the entry's session
covers the ttl (``session.py``), checked with at most one keep-alive per session.
A create resent after its node failed that finds its entry there (the first sending was
applied, its answer lost) holds it: it was made only if the lock had no entry, so it is first.
A release resent the same way that finds nothing returns True if no one else can have deleted
the entry (the holder still valid, its session alive). A delete that fails still raises, and
the keeper retries it.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Sequence
from typing import Any, ClassVar

from tenure._sync.backends.base import (
    ChangeFeed,
    LeaseStore,
    Permit,
    Recorded,
    Renewal,
    RenewOutcome,
)
from tenure._sync.backends.etcd import proto, records
from tenure._sync.backends.etcd.client import EtcdClient, LeaseGone, endpoints
from tenure._sync.backends.etcd.entries import Entries, Held
from tenure._sync.backends.etcd.line import Line, Waiting, place
from tenure._sync.backends.etcd.permits import Permits
from tenure._sync.backends.etcd.records import EtcdRecords
from tenure._sync.backends.etcd.session import Keeper, Sessions, Session
from tenure._config import BackendConfig
from tenure._core.guarantees import Capability, Guarantee
from tenure._core.holder import HolderInfo
from tenure._core.tokens import Owner
from tenure._exceptions import BackendError, BackendProtocolError, BackendUnavailable

# Entries per renewal Txn. etcd refuses a Txn with more than --max-txn-ops (default 128)
# operations at any level, the budget of a nested Txn being what its parents left: each entry's
# part is a Txn of two compares holding one of one compare, so up to 125 entries fit.
CHUNK = 100
# One entry's renewal, ready to send: its index in the batch, name, record, Txn part and ttl.
_Due = tuple[int, bytes, Held, Any, float]


class EtcdStore(LeaseStore):
    """Serve leases from an etcd v3 cluster, bound to a keep-alive session.

    **Guarantees.** FENCING: the fence is the entry's create revision, one cluster-wide counter
    that only grows. FIFO: waiters are served in order of their create revisions.
    SERVER_TIME: entries end when the session lease expires by the server's clock.
    SURVIVES_FAILOVER: the entries are replicated by raft, so a held lock survives the loss of
    a minority of nodes, and calls move on to the next endpoint. SESSION_BOUND: every entry
    dies with its session; before that, the waiter behind a crashed or paused holder takes
    over about the lock's ttl after its last renewal.
    CROSS_PROCESS, CROSS_HOST. Capabilities: SESSIONS, QUEUEING, COUNTING (``permits.py``),
    RECORDS (``records.py``).
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
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.SESSIONS, Capability.QUEUEING, Capability.COUNTING, Capability.RECORDS}
    )
    record_limit = records.RECORD_LIMIT  # 1 MiB: below etcd's 1.5 MiB request limit, with room for the Txn
    # A release wakes the watcher at once; the pause bounds what a missed event can cost.
    poll_interval: ClassVar[tuple[float, float]] = (0.05, 0.5)
    # The line wakes one waiter per release, which holds without another request, and the waiter
    # just behind a silent holder expires it: cheaper and quicker than retries after a release.
    plain_waiters_queue: ClassVar[bool] = True

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        session_ttl = math.ceil(float(config.extra.get("session_ttl", 1)))  # type: ignore[arg-type]
        self._client = EtcdClient(self.url, endpoints(config), op_timeout=config.common.op_timeout)
        self._sessions = Sessions(self._client, session_ttl)
        self._entries = Entries()
        self._keeper = Keeper(self._client, self._sessions, self._entries)
        self._line = Line(self._client)
        self._permits = Permits(self._client, self._sessions, self._entries, self._keeper, self._line)
        self._records = EtcdRecords(self._client, self._entries, self._keeper)

    def connect(self) -> None:
        if self._client.is_open:
            return
        self._client.open(self.config.common.connect_timeout)
        self._sessions.open()
        self._records.leases.open()
        self._keeper.start()

    def close(self) -> None:
        if not self._client.is_open:
            return
        self._keeper.stop()
        self._entries.clear()  # revoking the sessions deletes their entries
        self._client.close()

    def try_acquire(self, key: str, owner: Owner, ttl: float) -> int | None:
        started = time.monotonic()
        name, value, guard = (
            proto.entry_key(key, owner.token),
            proto.entry_value(owner.label, ttl),
            proto.lock_prefix(key),
        )
        session, reply = self._sessions.create(
            ttl, started, lambda lease: proto.create_if_absent(name, value, lease, guard=guard)
        )
        return self._created(name, ttl, started, session, reply)

    def begin_run(self, key: str, owner: Owner, ttl: float) -> Recorded | int | None:
        # One Txn: the live record, else (nested) the very Txn of ``try_acquire``.
        started, now = time.monotonic(), time.time()
        name, value, guard = (
            proto.entry_key(key, owner.token),
            proto.entry_value(owner.label, ttl),
            proto.lock_prefix(key),
        )
        live_above, record = records.live_above(now), proto.record_key(key)
        session, reply = self._sessions.create(
            ttl,
            started,
            lambda lease: proto.run_begin(
                record, live_above, proto.create_if_absent(name, value, lease, guard=guard)
            ),
        )
        if reply.succeeded:
            found = records.recorded(key, reply.responses[0].response_range.kvs[0], now)
            if found is None:  # the Txn's compare found it live at ``now``: so must we
                raise BackendProtocolError(f"{self.url} answered with an expired record of {key!r}")
            return found
        return self._created(name, ttl, started, session, reply.responses[0].response_txn)

    def finish_run(self, key: str, owner: Owner, record: bytes, ttl: float) -> bool:
        return self._records.finish_run(key, owner, record, ttl)

    def read_record(self, key: str) -> Recorded | None:
        return self._records.read_record(key)

    def _created(
        self, name: bytes, ttl: float, started: float, session: Session, reply: Any
    ) -> int | None:
        """Return the fence if a ``proto.create_if_absent`` Txn (``reply``) made ``name`` first."""
        if not reply.succeeded:
            mine = reply.responses[0].response_range.kvs
            if not mine:
                return None
            # A resent create whose first sending was applied (its answer was lost with the
            # node): the entry is ours, and first, since it was made only if none existed.
            if mine[0].lease == session.lease:
                fence = int(mine[0].create_revision)
                self._hold(name, ttl, started, session, fence, ttl)
                return fence
            # Left by an earlier session of ours, it must not block the lock; if the delete
            # fails, the keeper retries it.
            with contextlib.suppress(BackendError):
                self._keeper.delete(name, None, "deleting a stale entry")
            return None
        fence = int(reply.responses[1].response_range.kvs[0].create_revision)
        self._hold(name, ttl, started, session, fence, ttl)
        return fence

    def try_acquire_queued(
        self, key: str, owner: Owner, ttl: float, *, patience: float, will_wait: bool = True
    ) -> int | None:
        # ``patience`` is not needed: a waiter's entry dies with its session, and a waiter that
        # gives up deletes it (leave_queue). ``will_wait`` neither: joining the line takes a
        # free lock at once (the entry is then first), and a waiter not served leaves the line.
        name = proto.entry_key(key, owner.token)
        waiting = self._entries.waiting(name)
        if waiting is not None and waiting.session.alive and waiting.ttl == ttl:
            # In line already: no entry can be created before ours, so only wait_turn, which
            # watches the predecessor, can find that our turn has come. Nothing to send.
            return None
        started = time.monotonic()
        value = proto.entry_value(owner.label, ttl)
        session, reply = self._sessions.create(
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
            # The entry may have been there already, with another ttl: the next renewal rewrites it.
            self._hold(name, ttl, started, session, waiting.revision, ttl if reply.succeeded else None)
            return waiting.revision
        self._entries.wait(name, waiting)
        return None

    def wait_turn(self, key: str, owner: Owner, timeout: float) -> int | None:
        """Wait up to ``timeout`` for ``owner``'s entry to be first; return its fence if it is.

        The turn comes when every entry before ours is deleted: released, left, expired with
        its session, or expired by us as the waiter just behind a holder that stopped renewing
        (``Line.expire_silent_holder``). The lock is then ours without another request,
        if our session covers the hand-over; it is refreshed before the wait for that.
        """
        begun = time.monotonic()
        name = proto.entry_key(key, owner.token)
        waiting = self._entries.waiting(name)
        if waiting is None:
            return None
        if not self._sessions.covers(waiting.session, waiting.ttl, begun):
            self._session_lost(name, waiting)
            return None
        first = self._line.wait_first(key, name, waiting, begun + timeout)
        if first is None:
            self._entries.forget(name)  # our entry is gone with its session: join the line again
            return None
        if not first:
            return None
        if not self._sessions.covers(waiting.session, waiting.ttl, begun):
            self._session_lost(name, waiting)
            return None
        # The entry stores the ttl it was made with, maybe not this one: the next renewal rewrites it.
        self._hold(name, waiting.ttl, begun, waiting.session, waiting.revision, None)
        return waiting.revision

    def _session_lost(self, name: bytes, waiting: Waiting) -> None:
        """Forget a waiting entry whose session expired; raise if the session is just unreachable."""
        if waiting.session.alive:
            raise BackendUnavailable(f"the etcd session on {self.url} could not be kept alive")
        self._entries.forget(name)  # the entry expired with its session: the next attempt joins again

    def leave_queue(self, key: str, owner: Owner) -> None:
        name = proto.entry_key(key, owner.token)
        _, session = self._entries.forget(name)
        self._keeper.delete(name, session, "leaving the queue")

    def renew_many(self, renewals: Sequence[Renewal]) -> list[RenewOutcome]:
        """Renew every lease in one Txn per session and ``CHUNK`` entries; each outcome its own.

        A session that must be refreshed to cover a ttl gets one keep-alive for all its entries.
        An entry is rewritten only if another stands behind it (``proto.renewal``): the waiter
        there watches the holder's writes, and counts its silence from when it joined the line,
        which is after any renewal that found nobody behind.
        """
        started = time.monotonic()
        outcomes: list[RenewOutcome] = [False] * len(renewals)
        due: dict[int, tuple[Session, list[_Due]]] = {}  # by session lease
        failed: dict[int, BackendError] = {}  # sessions whose keep-alive failed, by lease
        for index, (key, owner, ttl) in enumerate(renewals):
            name = proto.entry_key(key, owner.token)
            held = self._entries.renewing(name, ttl, started)
            if held is None:
                continue  # released, or deleted by the keeper after its renewals stalled
            session = held.session
            try:
                if session.lease in failed:
                    raise failed[session.lease]
                covered = self._sessions.covers(session, ttl, started)
            except BackendError as exc:
                outcomes[index] = failed[session.lease] = exc
                continue
            if not covered:
                self._entries.forget(name)
                continue
            if held.stored_ttl != ttl:  # the entry must store the new ttl: rewritten anyway
                value = proto.entry_value(owner.label, ttl)
                part = proto.renewal(name, held.fence, value, session.lease, rewrite=True)
            else:
                if held.part is None:  # built once (it costs more than sending it)
                    value = proto.entry_value(owner.label, ttl)
                    held.part = proto.renewal(name, held.fence, value, session.lease, rewrite=held.always)
                part = held.part
            due.setdefault(session.lease, (session, []))[1].append((index, name, held, part, ttl))
        for session, entries in due.values():
            for start in range(0, len(entries), CHUNK):
                self._renew_chunk(session, entries[start : start + CHUNK], outcomes)
        return outcomes

    def _renew_chunk(self, session: Session, chunk: list[_Due], outcomes: list[RenewOutcome]) -> None:
        """Send one renewal Txn for ``chunk``, entries of ``session``; note each one's outcome."""
        responses: Any = ()
        try:
            reply = self._client.call("kv", "Txn", proto.batch([due[3] for due in chunk]), "renewing")
            responses = reply.responses
        except LeaseGone:
            session.alive = False  # a rewrite found the session's lease gone, and its entries with it
        except BackendError as exc:
            for due in chunk:
                outcomes[due[0]] = exc  # retried by the renewer while the lease is valid
            return
        for position, (index, name, held, _, ttl) in enumerate(chunk):
            if position < len(responses) and proto.renewed(responses[position]):
                if held.stored_ttl != ttl:
                    held.stored_ttl, held.part = ttl, None
                # The keeper forgets a stalled holder before deleting its entry.
                outcomes[index] = self._entries.holds(name)
            else:
                self._entries.forget(name)  # deleted: by a waiter that saw it silent, or its session

    def release(self, key: str, owner: Owner) -> bool:
        # The entry's name contains the owner's secret token: only its owner can name it.
        name = proto.entry_key(key, owner.token)
        held, session = self._entries.forget(name)
        sent: list[int] = []
        try:
            reply = self._client.call("kv", "DeleteRange", proto.delete(name), "releasing", sent=sent)
        except BackendError:
            self._keeper.doom(name, session)  # the keeper deletes it once the cluster answers again
            raise
        if int(reply.deleted) > 0:
            return True
        # Resent after its first node failed, the delete finds nothing if that node applied it.
        # Nobody else deletes a holder's entry while the holder is valid and its session lives.
        return len(sent) > 1 and held is not None and held.still_valid()

    def holder(self, key: str) -> HolderInfo | None:
        reply = self._client.call(
            "kv", "Range", proto.first_entry(proto.lock_prefix(key)), "inspecting"
        )
        if not reply.kvs:
            return None
        first = reply.kvs[0]
        ttl, label = proto.parse_value(first.value)
        # The holder renews its ttl while its session lives: at most the smaller of both is left.
        lease = self._client.call(
            "lease", "LeaseTimeToLive", proto.lease_time_to_live(first.lease), "inspecting"
        )
        remaining = min(ttl, float(lease.TTL)) if lease.TTL >= 0 else ttl
        return HolderInfo(label, int(first.create_revision), remaining)

    def wait_released(self, key: str, timeout: float) -> None:
        # Only a hint: watch the first entry's deletion. Blocking acquires wait in the line
        # (``plain_waiters_queue``), where a silent holder is expired; nothing is taken here.
        reply = self._client.call("kv", "Range", proto.first_entry(proto.lock_prefix(key)), "waiting")
        if reply.kvs:
            self._client.wait_deleted(bytes(reply.kvs[0].key), int(reply.header.revision) + 1, timeout)

    def watch(self, key: str) -> ChangeFeed:
        # Watch the lock's entries from the revision of this read on: nothing after it is missed.
        prefix = proto.lock_prefix(key)
        reply = self._client.call("kv", "Range", proto.count_entries(prefix), "watching")
        return EtcdFeed(self._client, prefix, int(reply.header.revision) + 1)

    def try_acquire_permit(self, key: str, limit: int, owner: Owner, ttl: float) -> Permit | None:
        return self._permits.try_acquire(key, limit, owner, ttl)

    def wait_permit_released(self, key: str, limit: int, timeout: float) -> None:
        self._permits.wait_released(key, limit, timeout)

    def permit_holders(self, key: str, limit: int) -> list[HolderInfo]:
        return self._permits.holders(key, limit)

    def _hold(
        self, name: bytes, ttl: float, started: float, session: Session, fence: int, stored_ttl: float | None
    ) -> None:
        self._entries.hold(name, ttl, started, session, fence, stored_ttl)
        self._keeper.poke()  # the keeper must know when this entry's renewals are overdue


class EtcdFeed(ChangeFeed):
    """Wake an observer on any change to a lock's entries: a creation, a deletion, a renewal."""

    def __init__(self, client: EtcdClient, prefix: bytes, since: int) -> None:
        super().__init__(client.op_timeout)
        self._client, self._prefix, self._since = client, prefix, since

    def wait(self, timeout: float) -> None:
        self._since = self._client.wait_changed(self._prefix, self._since, timeout)
