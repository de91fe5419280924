"""A lock's line of entries in etcd: where a waiter stands, what it watches, when its turn comes.

Every holder or waiter of lock ``K`` has its own key ``K NUL token``, attached to a session
lease. The entry with the lowest create revision holds the lock (its create revision is the
fence); the others wait in order of creation, FIFO by construction. A waiter watches only the
entry just before its own, so a release wakes one waiter and no herd. No entry is ever created
before an existing one, so once the only entry before ours is deleted, ours is first and the
lock is ours without another request. Otherwise the entries before ours are read again from
our own member (no round through the leader, see ``AsyncLine.look_behind``) and the new
predecessor is watched.

The holder rewrites its entry at every renewal while another entry stands behind it (a
renewal that finds nobody behind writes nothing, see ``proto.renewal``). The waiter just behind
it watches those writes too, and counts the holder's silence from when it first saw the entry
(after any renewal that found nobody behind) or its last write; once it saw none for the
holder's ttl plus the drift margin, the holder's validity has surely ended (it crashed, or
hangs), and ``expire_silent_holder`` deletes its entry, only if it was not written meanwhile.
A killed or paused holder is so replaced about its ttl after its last renewal, not when its
session expires (up to twice the ttl later).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from tenure._async.backends.etcd import proto
from tenure._async.backends.etcd.client import AsyncEtcdClient
from tenure._async.backends.etcd.session import Session
from tenure._core.renewal import drift_margin

log = logging.getLogger("tenure")


@dataclass(slots=True)
class Waiting:
    """A waiter's entry: its place in the line and the entry it watches."""

    revision: int  # the entry's create revision, its fence once it is first
    ttl: float
    session: Session  # the session whose lease the entry is attached to
    predecessor: bytes | None = None  # the entry just before it; None: to be looked up
    alone: bool = False  # the predecessor is the only entry before it: the holder
    since: int = 0  # the revision from which the predecessor is watched
    # The holder just before ours (when ``alone``): its entry's last write, its ttl, and when we
    # first saw that write (local clock). Silent for its ttl after that, its validity has ended.
    holder_key: bytes = b""
    holder_mod: int = 0
    holder_ttl: float = 0.0
    holder_seen: float = 0.0


class AsyncLine:
    """Wait in a lock's line: watch the predecessor, and expire a holder that fell silent."""

    def __init__(self, client: AsyncEtcdClient) -> None:
        self._client = client

    async def wait_first(self, key: str, name: bytes, waiting: Waiting, deadline: float) -> bool | None:
        """Wait until entry ``name`` of lock ``key`` is first in line, at most until ``deadline``.

        True: it is first. False: ``deadline`` passed. None: the entry is gone (its session
        expired), so the waiter must join the line again.
        """
        while True:
            if waiting.predecessor is None:
                kvs, revision = await self.look_behind(key, name, waiting)
                if not kvs:
                    return None
                if place(waiting, kvs, revision):
                    return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            assert waiting.predecessor is not None
            if waiting.alone:
                seen = await self._wait_for_holder(waiting, left)
            else:
                seen = await self._client.wait_deleted(waiting.predecessor, waiting.since, left)
            if seen is False:
                # Timed out. The next wait reads the line again and watches from then on: a watch
                # from an older revision would lag (etcd catches such watchers up every 100 ms).
                waiting.predecessor = None
                return False
            if seen and waiting.alone:
                return True
            waiting.predecessor = None  # others are still before ours, or the watch told nothing

    async def look_behind(self, key: str, name: bytes, waiting: Waiting) -> tuple[list[Any], int]:
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
        """Wait for the holder just before us to go, expiring it if it stops renewing.

        True: the holder is gone. False: ``timeout`` passed. None: look at the line again.
        """
        assert waiting.predecessor is not None
        ends = time.monotonic() + timeout
        while True:
            silent_until = silent_since(waiting.holder_seen, waiting.holder_ttl)
            now = time.monotonic()
            if now >= silent_until:
                expired = await self.expire_silent_holder(waiting.predecessor, waiting.holder_mod)
                return True if expired else None
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

    async def expire_silent_holder(self, name: bytes, mod: int) -> bool:
        """Delete holder entry ``name`` if it was not written since ``mod``; return whether done.

        Contract: call it only from the waiter just behind the holder (or from any waiter, for
        a permit's entry, which is rewritten at every renewal), once no write of ``name`` was
        seen for the holder's ttl plus the drift margin after the write at ``mod`` was first
        seen (``silent_since``). The holder counts its validity from before it sent that write, so
        its validity has ended by then: deleting its entry frees nothing it may still use. The
        delete compares the mod revision, so a holder that renewed meanwhile keeps its entry.
        """
        request = proto.delete_if_unchanged(name, mod)
        if (await self._client.call("kv", "Txn", request, "expiring a silent holder")).succeeded:
            log.info("tenure: %r was not renewed within its ttl; its entry was deleted", name)
            return True
        return False  # written or gone meanwhile


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
