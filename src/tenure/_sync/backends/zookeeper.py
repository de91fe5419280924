# GENERATED from src/tenure/_async/backends/zookeeper.py by scripts/unasync.py: do not edit; edit the source and re-run.
r"""The ``zookeeper://`` backend: the ZooKeeper lock recipe on kazoo, one session per coordinator.

URL: ``zookeeper://host1:2181,host2:2181,host3:2181[/chroot][?session_timeout=30]``.

A lock is a persistent directory node ``<chroot>/<key>``; every contender creates an ephemeral
*sequential* child ``<token>-<sequence>`` whose data is ``<ttl ms>\n<label>``. The child with
the lowest sequence holds the lock. The others wait in line, each watching only the child just
before its own (no herd when the holder leaves). That is also how a plain (``fair=False``) lock
waits (``plain_waiters_queue``), as in kazoo's and Curator's recipe: retrying after each release
would cost every waiter a create and a delete. A single plain ``try_acquire`` that is not first
deletes its child at once; ``wait_released`` watches the holder (then each new first child)
until the line is empty. Acquiring sends the create and the listing together (one round trip:
the ensemble serves a session's requests in order); releasing deletes our child by name.

The fence is the child's ``czxid``: the id of the transaction that created it, which the
ensemble assigns in one total order that grows across leader elections (epoch in the high bits)
and never repeats, even if the directory is deleted and its sequence counter starts again.
Holders are served in sequence order, and a later sequence number always has a later czxid, so
fences grow with every acquisition.

Two things end a hold without the holder's help. The session: the child is ephemeral, so when
the holder's process dies or stays partitioned past the session timeout, the ensemble deletes
it. The TTL, for a holder that is alive but stuck (its renewals stall): every renewal rewrites
the child's data, which stamps ``mtime`` with the ensemble leader's clock, and a contender that
finds the first child not renewed within its TTL by that clock (its own fresh write is the
reading of "now") deletes it, conditionally on its version, so a renewal that lands first wins.
"""

from __future__ import annotations

import logging
import time
from typing import Any, ClassVar

from kazoo import exceptions as zk_errors  # type: ignore[import-untyped]
from kazoo.client import KazooState  # type: ignore[import-untyped]

from tenure._sync.backends.base import ChangeFeed, LeaseStore
from tenure._sync.backends.zookeeper_session import NEW_RESULT, ZooKeeperSession, CallInterrupted
from tenure._concurrency import await_result
from tenure._config import BackendConfig
from tenure._core.guarantees import Capability, Guarantee
from tenure._core.holder import HolderInfo
from tenure._core.renewal import drift_margin
from tenure._core.tokens import Owner
from tenure._core.zookeeper_nodes import (
    LineNode,
    check_ttl_fits,
    node_component,
    node_data,
    parse_location,
    parse_node_data,
    predecessor,
    sequence,
)
from tenure._exceptions import BackendUnavailable

log = logging.getLogger("tenure")

DEFAULT_SESSION_TIMEOUT = 30.0  # the longest ttl allowed; the default ttl (15 s) fits in it


class ZooKeeperStore(LeaseStore):
    """Serve leases from a ZooKeeper ensemble as ephemeral sequential nodes.

    **Guarantees.** FENCING: the fence is the holder node's czxid, ensemble-wide monotonic.
    FIFO: contenders are served in the order their nodes were created. SERVER_TIME: a stuck
    holder's TTL is judged by the ensemble leader's clock (node mtimes), not the contender's;
    after a leader election the new leader's clock is used, so the members' clocks must agree
    within the drift margin (NTP). SURVIVES_FAILOVER: every write is committed by a quorum, so a
    held lock survives the loss of a minority of members; kazoo reconnects to another member
    and the session, its nodes and its watches carry over. SESSION_BOUND: a hold ends with its
    session, so a crashed holder frees the lock after the session timeout even if nobody
    contends. CROSS_PROCESS, CROSS_HOST: clients reach the ensemble over TCP.

    **What ``ttl`` means here.** It sets the renewal cadence (ttl/3) and how long a holder that
    stopped renewing keeps the lock against contenders. It must not exceed ``session_timeout``:
    a partitioned holder counts its validity from its last renewal, and the ensemble may end its
    session (and give the lock away) ``session_timeout`` after it last heard from it. While the
    connection is suspended a renewal reports the backend unavailable (not safe to act), so the
    lease is lost when its validity runs out unless kazoo reconnects in time; a session that
    expired loses the lease at the next renewal.
    """

    scheme: ClassVar[str] = "zookeeper"
    description: ClassVar[str] = "ephemeral sequential nodes, predecessor watches, fence = czxid"
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
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.QUEUEING, Capability.SESSIONS})
    # A release wakes the watcher at once; the pause bounds how long a stuck holder's expiry
    # (which no watch reports) can go unnoticed.
    poll_interval: ClassVar[tuple[float, float]] = (0.05, 1.0)
    # A blocking plain acquire waits in line too: kazoo's and Curator's recipe. After a release,
    # retrying plain waiters would each create and delete a node (a herd of writes, every one a
    # round through the ensemble's leader), while the line wakes one waiter, whose node is there.
    plain_waiters_queue: ClassVar[bool] = True

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        hosts, self._root = parse_location(config)
        self._session_timeout = float(config.extra.get("session_timeout", DEFAULT_SESSION_TIMEOUT))  # type: ignore[arg-type]
        self._zk = ZooKeeperSession(
            self.url,
            hosts=hosts,
            session_timeout=self._session_timeout,
            connect_timeout=config.common.connect_timeout,
            op_timeout=config.common.op_timeout,
        )
        self._nodes: dict[tuple[str, str], LineNode] = {}  # (key, token) -> our child
        # key -> the first child a plain try last found (watched if its TTL was read): first
        # still, or gone, since a child never comes back; ``wait_released`` watches it.
        self._heads: dict[str, str] = {}

    def connect(self) -> None:
        self._zk.connect()

    def try_acquire(self, key: str, owner: Owner, ttl: float) -> int | None:
        check_ttl_fits(ttl, self._session_timeout, self.url)
        node, now_ms, children = self._create(key, owner, ttl)
        fence = self._first_or_take_over(key, node, now_ms, children, plain=True)
        if fence is None:  # not first: leave no node behind
            self._delete_path(f"{self._dir(key)}/{node.name}")
            self._nodes.pop((key, owner.token), None)
        return fence

    def try_acquire_queued(
        self, key: str, owner: Owner, ttl: float, *, patience: float, will_wait: bool = True
    ) -> int | None:
        # ``patience`` is not needed: a crashed waiter's node dies with its session.
        check_ttl_fits(ttl, self._session_timeout, self.url)
        # A waiting node is not rewritten: that would wake its successor's watch for nothing.
        node = self._nodes.get((key, owner.token))
        if node is not None:
            node.ttl = ttl
            fence = self._first_or_take_over(key, node, None)
            if fence is not None or node.in_line:
                return fence
            # Our node died with an expired session: join the line again, at its end.
        node, now_ms, children = self._create(key, owner, ttl)
        return self._first_or_take_over(key, node, now_ms, children)

    def wait_turn(self, key: str, owner: Owner, timeout: float) -> int | None:
        node = self._nodes.get((key, owner.token))
        if node is None:
            return None
        if node.predecessor is not None:
            if node.holder_ends is not None:  # wake when the holder's TTL would run out
                timeout = min(timeout, max(0.001, node.holder_ends - time.monotonic() + 0.001))
            self._zk.wait_for_change(f"{self._dir(key)}/{node.predecessor}", timeout)
        return self._first_or_take_over(key, node, None)

    def leave_queue(self, key: str, owner: Owner) -> None:
        self.release(key, owner)

    def renew(self, key: str, owner: Owner, ttl: float) -> bool:
        check_ttl_fits(ttl, self._session_timeout, self.url)
        node = self._nodes.get((key, owner.token))
        if node is None:
            return False
        session = self._zk.session_id()
        if self._zk.state == KazooState.LOST or (session is not None and session != node.session):
            self._nodes.pop((key, owner.token), None)
            return False  # the session that owned the node expired: the node is gone
        if self._zk.state != KazooState.CONNECTED:
            raise BackendUnavailable(f"the connection to {self.url} is suspended; renewing {key!r} must wait")
        stat = self._touch(key, node, ttl)
        if stat is None:
            self._nodes.pop((key, owner.token), None)
            return False
        return True

    def release(self, key: str, owner: Owner) -> bool:
        node = self._nodes.pop((key, owner.token), None)
        if node is not None and node.exact:
            # Our only child, by name: one request. A node that was first when we took its
            # fence is still first while it exists (later children have higher sequences);
            # gone, it was taken over (TTL) or ended with its session: the hold was lost.
            deleted = self._delete_path(f"{self._dir(key)}/{node.name}")
            return deleted and node.held
        # An interrupted create (or none cached): every child of ours must go.
        children = self._children(key)
        # Every child of ours, not only the cached one: an interrupted create may have left one.
        ours = [name for name in children if name.startswith(owner.token + "-")]
        if node is not None and node.name not in ours:
            ours.append(node.name)  # listed before its creation was visible: delete anyway
        for name in ours:
            self._delete_path(f"{self._dir(key)}/{name}")
        return bool(children) and children[0] in ours

    def holder(self, key: str) -> HolderInfo | None:
        for _ in range(3):  # the first child may leave between listing and reading it
            children = self._children(key)
            if not children:
                return None
            got = self._get(f"{self._dir(key)}/{children[0]}")
            if got is None:
                continue
            data, stat = got
            ttl, label = parse_node_data(data)
            # The server's "now", read after the holder's mtime: the estimate errs short.
            remaining = (int(stat.mtime) - self._server_now(key)) / 1000 + ttl
            if remaining <= 0:
                return None  # not renewed within its ttl: the next contender takes over
            return HolderInfo(label, int(stat.czxid), None if remaining == float("inf") else remaining)
        return None

    def wait_released(self, key: str, timeout: float) -> None:
        # Return only once the line is seen empty (or the time is up, so that the next try judges
        # a stuck holder's TTL): a waiter that wakes after another took the lock over watches the
        # new holder with two reads, instead of queueing a create and a delete for nothing.
        deadline = time.monotonic() + timeout
        head = self._heads.pop(key, None)
        while True:
            if head is None:
                children = self._children(key)
                if not children:
                    return
                head = children[0]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._zk.wait_for_change(f"{self._dir(key)}/{head}", remaining)
            if time.monotonic() >= deadline:
                return
            head = None

    def watch(self, key: str) -> ChangeFeed:
        feed = ZooKeeperFeed(self._zk, self._dir(key), self.config.common.op_timeout)
        feed.look()  # the holder as of now: a change after this is not missed
        return feed

    def close(self) -> None:
        self._zk.close()  # ends the session: its nodes go with it

    # -- internals -------------------------------------------------------------------------------

    def _dir(self, key: str) -> str:
        return f"{self._root}/{node_component(key)}"

    def _create(self, key: str, owner: Owner, ttl: float) -> tuple[LineNode, int, list[str] | None]:
        """Create our child at the end of ``key``'s line.

        Return it, the server's time (ms) and the line as listed right after the create, or None
        if that listing is unusable. The listing is sent with the create, without waiting for
        its reply: the ensemble serves one session's requests in order, so a listing that holds
        our child was read after it was created (one round trip for both).
        """
        self._nodes.pop((key, owner.token), None)  # a dead node of ours; a failure below: release lists
        client = self._zk.live_client()
        deadline = time.monotonic() + self.config.common.op_timeout
        exact = True
        while True:
            listing: Any = None
            result = client.create_async(
                f"{self._dir(key)}/{owner.token}-",
                node_data(ttl, owner.label),
                ephemeral=True,
                sequence=True,
                makepath=True,
                include_data=True,
            )
            if exact:
                listing = client.get_children_async(self._dir(key))
            try:
                path, stat = self._zk.result(result, deadline, "joining the line")
                break
            except CallInterrupted as retry:
                exact = False
                # The create may have been applied before the connection dropped: the token in
                # the name finds it (after a sync, so the member we reach now has seen it).
                self._zk.call(lambda c: c.sync_async(self._dir(key)), "syncing")
                found = self._find_own(key, owner)
                if found is not None:
                    path, stat = found
                    listing = None
                    break
                if time.monotonic() >= deadline:
                    raise self._zk.mapped(retry.__cause__, "joining the line") from retry.__cause__
            except BaseException:
                # Late or interrupted: if the create still succeeds, delete what it made.
                result.rawlink(lambda done: done.successful() and client.delete_async(done.value[0]))
                raise
        node = LineNode(path.rsplit("/", 1)[1], int(stat.czxid), int(stat.ephemeralOwner), ttl, owner.label)
        node.exact = exact
        self._nodes[(key, owner.token)] = node
        children = None
        if listing is not None:
            try:
                names = self._zk.result(listing, deadline, "listing the line")
            except (CallInterrupted, zk_errors.NoNodeError):
                names = None  # e.g. the directory was made by the create's retry: list again
            if names is not None:
                children = sorted((n for n in names if sequence(n) >= 0), key=sequence)
        return node, int(stat.ctime), children

    def _find_own(self, key: str, owner: Owner) -> tuple[str, Any] | None:
        """Return the path and stat of our newest child of ``key``, or None."""
        for name in reversed(self._children(key)):
            if name.startswith(owner.token + "-"):
                got = self._get(f"{self._dir(key)}/{name}")
                if got is not None:
                    return f"{self._dir(key)}/{name}", got[1]
        return None

    def _first_or_take_over(
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
        children = listed if listed is not None and node.name in listed else self._children(key)
        for _ in range(len(children) + 1):
            if not children or children[0] == node.name:
                break
            first = f"{self._dir(key)}/{children[0]}"
            if children[0].startswith(node.name.rpartition("-")[0] + "-"):
                # Ours, from a create whose reply was lost and which we made again: drop it.
                self._delete_path(first)
                children = self._children(key)
                continue
            if created_ms is None and predecessor(children, node.name) != children[0]:
                break  # a waiter further back: the one just behind the holder judges it
            got = self._zk.get(first, "reading the holder", watch=plain)
            if got is not None:
                data, stat = got
                ttl, _ = parse_node_data(data)
                if now_ms is None:
                    now_ms = self._server_now(key)
                ends_ms = stat.mtime + (ttl + drift_margin(ttl)) * 1000
                if now_ms <= ends_ms:
                    # A live holder (or a waiter just handed the lock). Read after the server's
                    # clock was, our own clock errs late: the wake-up is never early.
                    node.holder_ends = time.monotonic() + (ends_ms - now_ms) / 1000
                    break
                log.info("tenure: %s was not renewed within its ttl; taking over %r", first, key)
                self._delete_path(first, version=stat.version)
            children = self._children(key)
        node.in_line = node.name in children
        node.predecessor = predecessor(children, node.name)
        if not children or children[0] != node.name:
            if plain and children:
                if len(self._heads) >= 4096:  # stay bounded: a dropped entry costs one listing
                    self._heads.clear()
                self._heads[key] = children[0]
            return None
        # First after waiting: stamp the node so contenders count the TTL from now.
        if created_ms is None and self._touch(key, node, node.ttl) is None:
            return None
        node.held = True
        return node.fence

    def _server_now(self, key: str) -> int:
        """Return the ensemble's time (ms) by writing ``key``'s directory; 0 if it is gone."""
        stat = self._zk.call(lambda c: c.set_async(self._dir(key), b""), "reading the server time")
        return 0 if stat is None else int(stat.mtime)

    def _touch(self, key: str, node: LineNode, ttl: float) -> Any:
        """Rewrite our node's data (stamping mtime with the server's time); None if it is gone."""
        node.ttl = ttl
        path = f"{self._dir(key)}/{node.name}"
        return self._zk.call(lambda c: c.set_async(path, node_data(ttl, node.label)), "renewing")

    def _children(self, key: str) -> list[str]:
        """Return ``key``'s line in order (first = holder); empty if the lock was never used."""
        names = self._zk.call(lambda c: c.get_children_async(self._dir(key)), "listing the line")
        return sorted((n for n in names or () if sequence(n) >= 0), key=sequence)

    def _delete_path(self, path: str, version: int = -1) -> bool:
        """Delete ``path`` (if still at ``version``); return whether it was deleted."""
        return self._zk.call(lambda c: c.delete_async(path, version=version), "deleting") is not None

    def _get(self, path: str) -> tuple[bytes, Any] | None:
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
