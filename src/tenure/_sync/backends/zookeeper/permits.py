# GENERATED from src/tenure/_async/backends/zookeeper/permits.py by scripts/unasync.py: do not edit; edit the source and re-run.
"""Semaphore permits on ZooKeeper: a permit is an ordinary lock node on one of the name's slot keys.

No single request can take "the first free slot": a slot is held by the first child of its
line, known only by listing it. So the slots are tried one by one, in ``slot_order``, each by
the lock's own step (create our node and list the line in one round trip; first holds; a
holder not renewed within its ttl, by the leader's clock, is taken over; not first, our node
is deleted). The fence is the node's czxid, ensemble-wide, so it grows per name across slots.
Renewals, releases and ``holder`` are the lock steps on the slot key.

The limit record is the child ``limit`` of the semaphore key's directory (a line holds
sequential nodes only, which ``nodes.sequence`` tells apart): ``4`` while permits are taken with
limit 4, ``4>8`` while a changer to 8 checks that none is live. The race is closed by order: a
taker reads the record after its node was created (the read goes with the create, and the
ensemble serves one session's requests in order) and keeps the slot only if the record says
its limit; a changer writes ``4>8`` (by version) before it lists the slots, and writes ``8``
(by version) only if every line of either limit was empty, else puts the old value back. A node
created before the ``>`` write is in the listing; one created after it reads ``>`` and goes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from kazoo import exceptions as zk_errors  # type: ignore[import-untyped]

from tenure._sync.backends.base import Permit
from tenure._sync.backends.zookeeper.line import Lines
from tenure._sync.backends.zookeeper.nodes import parse_node_data, sequence
from tenure._sync.backends.zookeeper.session import NEW_RESULT, ZooKeeperSession, CallInterrupted
from tenure._concurrency import await_result, sleep
from tenure._core.holder import HolderInfo
from tenure._core.semaphore import limit_mismatch, permit_keys, slot_order
from tenure._core.tokens import Owner

RECORD = "limit"  # the record's name in the semaphore key's directory: never a line node
TRIES = 4  # rounds of one attempt (a take, then a change of the record) before it gives up
WATCHES = 4096  # slot directories with an armed child watch; a hint, so woken all when full
RETRY_PAUSE = 0.05  # seconds between sends of reads whose connection dropped
WAKES = 1000  # watches fired in one wait, at most (each a look at the lines): bounds the loop


class Permits:
    """Take, watch and list the permits of a ZooKeeper store's semaphores."""

    def __init__(self, zk: ZooKeeperSession, lines: Lines, op_timeout: float) -> None:
        self._zk, self._lines, self._op_timeout = zk, lines, op_timeout
        self._watches: dict[str, Any] = {}  # slot directory -> result set when its children change
        self._ends: dict[str, float] = {}  # semaphore key -> when its first holder's ttl runs out
        self._heads: dict[str, dict[str, str]] = {}  # semaphore key -> slot directory -> its holder

    def record(self, key: str) -> str:
        return f"{self._lines.dir(key)}/{RECORD}"

    def try_acquire(self, key: str, limit: int, owner: Owner, ttl: float) -> Permit | None:
        slots = permit_keys(key, limit)
        record = self.record(key)
        for _ in range(TRIES):
            seen: tuple[bytes, Any] | None = None
            heads: dict[str, str] = {}
            for slot in slot_order(limit):
                slot_key = slots[slot]
                node, now_ms, children, after = self._lines.create(
                    slot_key, owner, ttl, also=lambda client: client.get_async(record)
                )
                fence = self._lines.first_or_take_over(slot_key, node, now_ms, children)
                seen = self._read_record(record, after)
                agreed = seen is not None and seen[0] == str(limit).encode()
                if fence is not None and agreed:
                    return Permit(slot_key, fence)
                if fence is None and children:
                    heads[self._lines.dir(slot_key)] = children[0]
                if fence is None and node.holder_ends is not None:
                    if len(self._ends) >= WATCHES:
                        self._ends.clear()
                    self._ends[key] = min(self._ends.get(key, math.inf), node.holder_ends)
                self._lines.nodes.pop((slot_key, owner.token), None)
                self._lines.delete(f"{self._lines.dir(slot_key)}/{node.name}")
                if not agreed:
                    break
            else:
                self._saw(key, heads)
                return None  # every slot is held
            self._change(key, limit, seen)
        return None  # the record kept changing under us: the caller tries again

    def _read_record(self, record: str, pending: Any) -> tuple[bytes, Any] | None:
        """Return the record's data and stat, read after our create (``pending``, or now)."""
        if pending is not None:
            try:
                got: tuple[bytes, Any] = self._zk.result(
                    pending, time.monotonic() + self._op_timeout, "reading a limit"
                )
                return got
            except zk_errors.NoNodeError:
                return None
            except CallInterrupted:
                pass  # sent again below
        return self._zk.get(record, "reading a limit")

    def _change(self, key: str, limit: int, seen: tuple[bytes, Any] | None) -> None:
        """Make ``limit`` the name's record if no permit of either limit is live; else raise.

        Returns also when the record was written meanwhile, or the lines were not empty and no
        limit was confirmed yet: the caller looks again.
        """
        record = self.record(key)
        if seen is None:  # the name's first use: an empty record, to write by version
            self._zk.call(lambda client: client.ensure_path_async(record), "making a limit record")
            seen = self._zk.get(record, "reading a limit")
            if seen is None:
                return
        old, stat = seen
        confirmed = _confirmed(old)
        if confirmed == limit:  # "4>8": a changer to 8 is at work, or died; ours is the live limit
            self._swap(record, stat.version, str(limit).encode())
            return
        if confirmed is None:
            # No limit was ever confirmed, so no permit is live: a taker keeps a slot only after
            # reading its own limit in the record. The nodes in the lines are attempts that will
            # go; waiting for them to be gone let a burst of first takers stall each other.
            self._swap(record, stat.version, str(limit).encode())
            return
        pending = f"{'' if confirmed is None else confirmed}>{limit}".encode()
        version = self._swap(record, stat.version, pending)
        if version is None:
            return  # written meanwhile
        slots = permit_keys(key, max(confirmed or 0, limit))
        if not any(self._lines_of([self._lines.dir(slot) for slot in slots])):
            self._swap(record, version, str(limit).encode())
            return
        self._swap(record, version, old)  # put back what it was; nobody kept a slot since
        if confirmed is not None:
            raise limit_mismatch(key, limit, confirmed)

    def _swap(self, record: str, version: int, data: bytes) -> int | None:
        """Write the record if still at ``version``; return its new version, None if it was not."""
        stat = self._zk.call(
            lambda client: client.set_async(record, data, version=version), "changing a semaphore's limit"
        )
        return None if stat is None else int(stat.version)

    def _pipelined(self, calls: list[Callable[[Any], Any]], what: str) -> list[Any]:
        """Send every call before reading any reply (one round trip); return each value.

        A call on a node that does not exist gives None. All are sent again if the connection
        dropped (each must be idempotent), until ``op_timeout``.
        """
        deadline = time.monotonic() + self._op_timeout
        while True:
            client = self._zk.live_client()
            results = [call(client) for call in calls]
            values: list[Any] = []
            try:
                for result in results:
                    try:
                        values.append(self._zk.result(result, deadline, what))
                    except zk_errors.NoNodeError:
                        values.append(None)
                return values
            except CallInterrupted as retry:
                if time.monotonic() + RETRY_PAUSE >= deadline:
                    raise self._zk.mapped(retry.__cause__, what) from retry.__cause__
                sleep(RETRY_PAUSE)

    def _lines_of(self, paths: list[str], watches: dict[str, Any] | None = None) -> list[list[str]]:
        """Return the lines at ``paths`` (a missing one is empty), arming the child ``watches`` given."""

        def listing(path: str) -> Callable[[Any], Any]:
            watch = None if watches is None or path not in watches else watches[path].set
            return lambda client: client.get_children_async(path, watch=watch)

        found = self._pipelined([listing(path) for path in paths], "listing permits")
        return [sorted((n for n in names or () if sequence(n) >= 0), key=sequence) for names in found]

    def holders(self, key: str, limit: int) -> list[HolderInfo]:
        dirs = [self._lines.dir(slot) for slot in permit_keys(key, limit)]
        lines = self._lines_of(dirs)
        self._saw(key, {path: line[0] for path, line in zip(dirs, lines, strict=True) if line})
        firsts = [f"{path}/{line[0]}" for path, line in zip(dirs, lines, strict=True) if line]
        if not firsts:
            return []
        reads: list[Callable[[Any], Any]] = [_get(path) for path in firsts]
        # The server's "now", read after the holders' mtimes: the estimate errs short.
        clock = firsts[0].rpartition("/")[0]
        *got, stat = self._pipelined([*reads, lambda c: c.set_async(clock, b"")], "listing permits")
        now_ms = 0 if stat is None else int(stat.mtime)
        holders = []
        for data, node in (g for g in got if g is not None):  # None: released meanwhile
            ttl, label = parse_node_data(data)
            remaining = (int(node.mtime) - now_ms) / 1000 + ttl
            if remaining > 0:  # else not renewed within its ttl: the next taker takes over
                holders.append(
                    HolderInfo(label, int(node.czxid), None if remaining == math.inf else remaining)
                )
        return holders

    def wait_released(self, key: str, limit: int, timeout: float) -> None:
        """Return once a holder seen last is gone, or when a holder's ttl may have run out.

        The holders seen last (by a failed take, ``holders`` or the last wait) are compared
        with the lines; a child watch on each slot's directory wakes the wait to compare again.
        Only a holder gone counts: a node that comes and goes behind it (another taker trying
        the slot) does not, nor a slot free all along (a sequence's are, most of them). The
        watches are shared by every waiter of this session, each armed again once it fired.
        """
        ends = time.monotonic() + timeout
        expiry = self._ends.pop(key, None)
        if expiry is not None:
            ends = min(ends, expiry + 0.001)
        paths = [self._lines.dir(slot) for slot in permit_keys(key, limit)]
        seen = self._heads.pop(key, {})
        for _ in range(WAKES):
            handler = self._zk.live_client().handler
            fresh = {
                path: getattr(handler, NEW_RESULT)() for path in paths if _spent(self._watches.get(path))
            }
            lines = self._lines_of(paths, fresh)
            if len(self._watches) + len(fresh) > WATCHES:
                self._wake_all()
            self._watches.update(fresh)
            if any(
                head not in line for path, line in zip(paths, lines, strict=True) if (head := seen.get(path))
            ):
                return  # released since the caller looked: it tries again
            seen = {path: line[0] for path, line in zip(paths, lines, strict=True) if line}
            self._saw(key, seen)
            watches = [watch for watch in map(self._watches.get, paths) if watch is not None]
            if not self._any_fires(watches, ends):
                return

    def _any_fires(self, watches: list[Any], ends: float) -> bool:
        """Wait until one of ``watches`` fires (True), or until ``ends`` (False)."""
        fired = getattr(self._zk.live_client().handler, NEW_RESULT)()

        def fire(_: Any) -> None:
            if not fired.ready():
                fired.set(None)

        for watch in watches:
            watch.rawlink(fire)
        try:
            await_result(fired, max(0.0, ends - time.monotonic()))
            return True
        except TimeoutError:
            return False
        finally:
            for watch in watches:
                watch.unlink(fire)

    def _saw(self, key: str, heads: dict[str, str]) -> None:
        """Remember the first node of each held slot of ``key`` (by directory), as just seen."""
        if len(self._heads) >= WATCHES:
            self._heads.clear()
        self._heads[key] = heads

    def _wake_all(self) -> None:
        watches, self._watches = self._watches, {}
        for watch in watches.values():
            if not watch.ready():
                watch.set(None)


def _spent(watch: Any) -> bool:
    """Return whether a shared child watch must be armed again (none yet, or it fired)."""
    return watch is None or bool(watch.ready())


def _get(path: str) -> Callable[[Any], Any]:
    return lambda client: client.get_async(path)


def _confirmed(data: bytes) -> int | None:
    """Return the last confirmed limit of a record: 4 for ``4`` and for ``4>8``; None if none."""
    text = data.decode(errors="replace").partition(">")[0]
    return int(text) if text.isdigit() else None
