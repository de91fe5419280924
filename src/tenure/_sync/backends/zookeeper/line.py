# GENERATED from src/tenure/_async/backends/zookeeper/line.py by scripts/unasync.py: do not edit; edit the source and re-run.
"""The lines of a ``zookeeper://`` store's locks: our nodes in them and the calls that change them.

A lock's line is the directory ``<chroot>/<key>``; its children are the contenders' ephemeral
sequential nodes, the first of which holds the lock. ``Lines`` creates our node, finds out
whether it is first (taking over from a holder that outlived its ttl) and reads the line;
``ZooKeeperFeed`` wakes an observer when the line's first node changes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from kazoo import exceptions as zk_errors  # type: ignore[import-untyped]

from tenure._sync.backends.base import ChangeFeed
from tenure._sync.backends.zookeeper.nodes import (
    LineNode,
    node_component,
    node_data,
    parse_node_data,
    predecessor,
    sequence,
)
from tenure._sync.backends.zookeeper.session import NEW_RESULT, ZooKeeperSession, CallInterrupted
from tenure._concurrency import await_result
from tenure._core.renewal import drift_margin
from tenure._core.tokens import Owner

log = logging.getLogger("tenure")

# Nodes rewritten per multi: well below the 1 MB a ZooKeeper request may hold (jute.maxbuffer).
MULTI = 500
# What the other operations of a failed multi report: not applied because one op failed.
ROLLED_BACK = (zk_errors.RolledBackError, zk_errors.RuntimeInconsistency)
MULTI_TRIES = 3


class Lines:
    """Our nodes in the locks' lines (by key and owner token), and every call on those lines."""

    def __init__(self, zk: ZooKeeperSession, root: str, op_timeout: float) -> None:
        self._zk = zk
        self._root = root
        self._op_timeout = op_timeout
        self.nodes: dict[tuple[str, str], LineNode] = {}  # (key, token) -> our child
        # key -> the first child a plain try last found (watched if its TTL was read): first
        # still, or gone, since a child never comes back; ``wait_released`` watches it.
        self.heads: dict[str, str] = {}
        # The keys whose directory we saw made (a lock's directory stays): bounded, a hint only.
        self._made: set[str] = set()

    def dir(self, key: str) -> str:
        return f"{self._root}/{node_component(key)}"

    def create(
        self, key: str, owner: Owner, ttl: float, *, also: Callable[[Any], Any] | None = None
    ) -> tuple[LineNode, int, list[str] | None, Any]:
        """Create our child at the end of ``key``'s line.

        Return it, the server's time (ms) and the line as listed right after the create, or None
        if that listing is unusable. The listing is sent with the create, without waiting for
        its reply: the ensemble serves one session's requests in order, so a listing that holds
        our child was read after it was created (one round trip for both). For a lock whose
        directory we have not seen yet, a create of the directory goes first in the same way
        (it fails harmlessly if it exists): a new name costs no more round trips than an old one.
        ``also(client)`` sends one more request after the listing; its pending result is returned
        last (None if the create had to be sent again: the caller sends it then).
        """
        self.nodes.pop((key, owner.token), None)  # a dead node of ours; a failure below: release lists
        client = self._zk.live_client()
        deadline = time.monotonic() + self._op_timeout
        exact = True
        while True:
            listing: Any = None
            if exact and key not in self._made:
                client.create_async(self.dir(key), b"")  # its outcome does not matter
            result = client.create_async(
                f"{self.dir(key)}/{owner.token}-",
                node_data(ttl, owner.label),
                ephemeral=True,
                sequence=True,
                makepath=True,
                include_data=True,
            )
            if exact:
                listing = client.get_children_async(self.dir(key))
            after = also(client) if exact and also is not None else None
            try:
                path, stat = self._zk.result(result, deadline, "joining the line")
                break
            except CallInterrupted as retry:
                exact = False
                # The create may have been applied before the connection dropped: the token in
                # the name finds it (after a sync, so the member we reach now has seen it).
                self._zk.call(lambda c: c.sync_async(self.dir(key)), "syncing")
                found = self.find_own(key, owner)
                if found is not None:
                    path, stat = found
                    listing = after = None
                    break
                if time.monotonic() >= deadline:
                    raise self._zk.mapped(retry.__cause__, "joining the line") from retry.__cause__
            except BaseException:
                # Late or interrupted: if the create still succeeds, delete what it made.
                result.rawlink(lambda done: done.successful() and client.delete_async(done.value[0]))
                raise
        if len(self._made) >= 4096:
            self._made.clear()
        self._made.add(key)
        node = LineNode(path.rsplit("/", 1)[1], int(stat.czxid), int(stat.ephemeralOwner), ttl, owner.label)
        node.exact = exact
        self.nodes[(key, owner.token)] = node
        children = None
        if listing is not None:
            try:
                names = self._zk.result(listing, deadline, "listing the line")
            except (CallInterrupted, zk_errors.NoNodeError):
                names = None  # e.g. the directory was made by the create's retry: list again
            if names is not None:
                children = sorted((n for n in names if sequence(n) >= 0), key=sequence)
        return node, int(stat.ctime), children, after

    def find_own(self, key: str, owner: Owner) -> tuple[str, Any] | None:
        """Return the path and stat of our newest child of ``key``, or None."""
        for name in reversed(self.children(key)):
            if name.startswith(owner.token + "-"):
                got = self.get(f"{self.dir(key)}/{name}")
                if got is not None:
                    return f"{self.dir(key)}/{name}", got[1]
        return None

    def first_or_take_over(
        self,
        key: str,
        node: LineNode,
        created_ms: int | None,
        listed: list[str] | None = None,
        *,
        plain: bool = False,
    ) -> int | None:
        """Return our fence if our node is first, taking over from a holder whose TTL ran out.

        ``created_ms`` is the server's time when our node was just created, else None;
        ``listed`` the line as listed since, used only if it holds our node. ``plain``: a plain
        try, whose caller waits on the first child next; reading it also arms that watch.
        """
        now_ms = created_ms
        node.holder_ends = None
        children = listed if listed is not None and node.name in listed else self.children(key)
        for _ in range(len(children) + 1):
            if not children or children[0] == node.name:
                break
            first = f"{self.dir(key)}/{children[0]}"
            if children[0].startswith(node.name.rpartition("-")[0] + "-"):
                # Ours, from a create whose reply was lost and which we made again: drop it.
                self.delete(first)
                children = self.children(key)
                continue
            if created_ms is None and predecessor(children, node.name) != children[0]:
                break  # a waiter further back: the one just behind the holder judges it
            got = self._zk.get(first, "reading the holder", watch=plain)
            if got is not None:
                data, stat = got
                ttl, _ = parse_node_data(data)
                if now_ms is None:
                    now_ms = self.server_now(key)
                ends_ms = stat.mtime + (ttl + drift_margin(ttl)) * 1000
                if now_ms <= ends_ms:
                    # A live holder (or a waiter just handed the lock). Read after the server's
                    # clock was, our own clock errs late: the wake-up is never early.
                    node.holder_ends = time.monotonic() + (ends_ms - now_ms) / 1000
                    break
                log.info("tenure: %s was not renewed within its ttl; taking over %r", first, key)
                self.delete(first, version=stat.version)
            children = self.children(key)
        node.in_line = node.name in children
        node.predecessor = predecessor(children, node.name)
        if not children or children[0] != node.name:
            if plain and children:
                if len(self.heads) >= 4096:  # stay bounded: a dropped entry costs one listing
                    self.heads.clear()
                self.heads[key] = children[0]
            return None
        # First after waiting: stamp the node so contenders count the TTL from now.
        if created_ms is None and self.touch(key, node, node.ttl) is None:
            return None
        node.held = True
        return node.fence

    def server_now(self, key: str) -> int:
        """Return the ensemble's time (ms) by writing ``key``'s directory; 0 if it is gone."""
        stat = self._zk.call(lambda c: c.set_async(self.dir(key), b""), "reading the server time")
        return 0 if stat is None else int(stat.mtime)

    def touch(self, key: str, node: LineNode, ttl: float) -> Any:
        """Rewrite our node's data (stamping mtime with the server's time); None if it is gone."""
        node.ttl = ttl
        path = f"{self.dir(key)}/{node.name}"
        return self._zk.call(lambda c: c.set_async(path, node_data(ttl, node.label)), "renewing")

    def touch_many(self, touches: list[tuple[str, LineNode, float]]) -> list[bool]:
        """Rewrite our nodes as ``touch`` does, ``MULTI`` per multi; return whether each was there.

        A multi is atomic: if a node is gone, none is written, and the reply names the one that
        failed. That one is not renewed, and the others are sent again in another multi; after
        ``MULTI_TRIES`` multis that failed, the rest are rewritten one by one (a node gone is
        rare: taken over after its holder fell silent, or gone with an expired session).
        """
        renewed = [False] * len(touches)
        for start in range(0, len(touches), MULTI):
            left = list(range(start, min(start + MULTI, len(touches))))
            for _ in range(MULTI_TRIES):  # each multi settles every node, or at least one
                writes = []
                for index in left:
                    key, node, ttl = touches[index]
                    node.ttl = ttl
                    if not node.path:
                        node.path = f"{self.dir(key)}/{node.name}"
                    writes.append((node.path, node_data(ttl, node.label)))
                results = self._zk.call(_multi(writes), "renewing")
                failures = [(i, r) for i, r in zip(left, results, strict=True) if isinstance(r, Exception)]
                if not failures:
                    for index in left:
                        renewed[index] = True
                    break
                gone = {index for index, r in failures if isinstance(r, zk_errors.NoNodeError)}
                other = [r for _, r in failures if not isinstance(r, (zk_errors.NoNodeError, *ROLLED_BACK))]
                if other or not gone:
                    raise self._zk.mapped(other[0] if other else failures[0][1], "renewing")
                left = [index for index in left if index not in gone]
                if not left:
                    break
            else:
                for index in left:
                    key, node, ttl = touches[index]
                    renewed[index] = self.touch(key, node, ttl) is not None
        return renewed

    def children(self, key: str) -> list[str]:
        """Return ``key``'s line in order (first = holder); empty if the lock was never used."""
        names = self._zk.call(lambda c: c.get_children_async(self.dir(key)), "listing the line")
        return sorted((n for n in names or () if sequence(n) >= 0), key=sequence)

    def delete(self, path: str, version: int = -1) -> bool:
        """Delete ``path`` (if still at ``version``); return whether it was deleted."""
        return self._zk.call(lambda c: c.delete_async(path, version=version), "deleting") is not None

    def get(self, path: str) -> tuple[bytes, Any] | None:
        """Return a node's data and stat, or None if it is gone."""
        return self._zk.get(path, "reading the holder")


class ZooKeeperFeed(ChangeFeed):
    """Wake an observer when the first child of a lock's line changes, by a child watch.

    A watch fires once; a new one is armed (with the listing that reads the line) only after
    the last one fired, so an observer that sees no change never piles up watches.
    """

    def __init__(self, zk: ZooKeeperSession, directory: str, op_timeout: float) -> None:
        super().__init__(op_timeout)
        self._zk, self._dir = zk, directory
        self._head: str | None = None
        self._armed: Any = None

    def look(self) -> bool:
        """List the line, arming a watch if none is pending; return whether its head changed."""
        armed = None
        if self._armed is None or self._armed.ready():
            armed = getattr(self._zk.live_client().handler, NEW_RESULT)()
        watch = None if armed is None else armed.set
        names = self._zk.call(lambda c: c.get_children_async(self._dir, watch=watch), "watching")
        if names is None and armed is not None:  # no line yet: be told when it is created
            self._zk.call(lambda c: c.exists_async(self._dir, watch=armed.set), "watching")
        if armed is not None:
            self._armed = armed
        line = sorted((n for n in names or () if sequence(n) >= 0), key=sequence)
        head = line[0] if line else None
        changed, self._head = head != self._head, head
        return changed

    def wait(self, timeout: float) -> None:
        if self.look():
            return
        try:
            await_result(self._armed, max(0.0, timeout))
        except TimeoutError:
            return


def _multi(writes: list[tuple[str, bytes]]) -> Any:
    """Return a call that sends every ``(path, data)`` write in one multi (a kazoo transaction)."""

    def commit(client: Any) -> Any:
        transaction = client.transaction()
        for path, data in writes:
            transaction.set_data(path, data)
        return transaction.commit_async()

    return commit
