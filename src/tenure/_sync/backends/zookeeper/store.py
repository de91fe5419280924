# GENERATED from src/tenure/_async/backends/zookeeper/store.py by scripts/unasync.py: do not edit; edit the source and re-run.
"""The ZooKeeper store: the lock recipe on one kazoo session per coordinator."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import ClassVar

from kazoo.client import KazooState  # type: ignore[import-untyped]

from tenure._sync.backends.base import (
    ChangeFeed,
    LeaseStore,
    Permit,
    Recorded,
    Renewal,
    RenewOutcome,
)
from tenure._sync.backends.zookeeper.line import Lines, ZooKeeperFeed
from tenure._sync.backends.zookeeper.nodes import LineNode, check_ttl_fits, parse_location, parse_node_data
from tenure._sync.backends.zookeeper.permits import Permits
from tenure._sync.backends.zookeeper.records import RECORD_LIMIT, ZooKeeperRecords
from tenure._sync.backends.zookeeper.session import ZooKeeperSession
from tenure._config import BackendConfig
from tenure._core.guarantees import Capability, Guarantee
from tenure._core.holder import HolderInfo
from tenure._core.tokens import Owner
from tenure._exceptions import BackendError, BackendUnavailable, ConfigurationError

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
    contends. CROSS_PROCESS, CROSS_HOST: clients reach the ensemble over TCP. Capabilities:
    QUEUEING, SESSIONS, COUNTING (permits are lock nodes on slot keys, ``permits.py``), RECORDS
    (a record node beside the run's line, written in the multi that ends the run, ``records.py``).

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
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.QUEUEING, Capability.SESSIONS, Capability.COUNTING, Capability.RECORDS}
    )
    record_limit = RECORD_LIMIT  # records.py: a multi and a read must fit jute.maxbuffer (1 MiB)
    # A release wakes the watcher at once; the pause bounds how long a stuck holder's expiry
    # (which no watch reports) can go unnoticed.
    poll_interval: ClassVar[tuple[float, float]] = (0.05, 1.0)
    # A blocking plain acquire waits in line too: kazoo's and Curator's recipe. After a release,
    # retrying plain waiters would each create and delete a node (a herd of writes, every one a
    # round through the ensemble's leader), while the line wakes one waiter, whose node is there.
    plain_waiters_queue: ClassVar[bool] = True

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        hosts, root = parse_location(config)
        self._session_timeout = float(config.extra.get("session_timeout", DEFAULT_SESSION_TIMEOUT))  # type: ignore[arg-type]
        self._zk = ZooKeeperSession(
            self.url,
            hosts=hosts,
            session_timeout=self._session_timeout,
            connect_timeout=config.common.connect_timeout,
            op_timeout=config.common.op_timeout,
        )
        self._lines = Lines(self._zk, root, config.common.op_timeout)
        self._nodes = self._lines.nodes  # (key, token) -> our child
        self._permits = Permits(self._zk, self._lines, config.common.op_timeout)
        self._records = ZooKeeperRecords(self._zk, self._lines, root, config.common.op_timeout)

    def connect(self) -> None:
        self._zk.connect()

    def try_acquire(self, key: str, owner: Owner, ttl: float) -> int | None:
        check_ttl_fits(ttl, self._session_timeout, self.url)
        node, now_ms, children, _ = self._lines.create(key, owner, ttl)
        fence = self._lines.first_or_take_over(key, node, now_ms, children, plain=True)
        if fence is None:  # not first: leave no node behind
            self._lines.delete(f"{self._lines.dir(key)}/{node.name}")
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
            fence = self._lines.first_or_take_over(key, node, None)
            if fence is not None or node.in_line:
                return fence
            # Our node died with an expired session: join the line again, at its end.
        node, now_ms, children, _ = self._lines.create(key, owner, ttl)
        return self._lines.first_or_take_over(key, node, now_ms, children)

    def wait_turn(self, key: str, owner: Owner, timeout: float) -> int | None:
        node = self._nodes.get((key, owner.token))
        if node is None:
            return None
        if node.predecessor is not None:
            if node.holder_ends is not None:  # wake when the holder's TTL would run out
                timeout = min(timeout, max(0.001, node.holder_ends - time.monotonic() + 0.001))
            self._zk.wait_for_change(f"{self._lines.dir(key)}/{node.predecessor}", timeout)
        return self._lines.first_or_take_over(key, node, None)

    def leave_queue(self, key: str, owner: Owner) -> None:
        self.release(key, owner)

    def renew_many(self, renewals: Sequence[Renewal]) -> list[RenewOutcome]:
        """Rewrite every held node in one multi (per ``MULTI`` nodes); each outcome its own.

        Every node is rewritten: contenders judge a holder's TTL by its node's mtime, which the
        multi stamps with the leader's time.
        """
        outcomes: list[RenewOutcome] = [False] * len(renewals)
        touches: list[tuple[str, LineNode, float]] = []
        indices: list[int] = []
        session, url = self._zk.session_id(), self.url
        for index, (key, owner, ttl) in enumerate(renewals):
            try:
                check_ttl_fits(ttl, self._session_timeout, url)
            except ConfigurationError as exc:
                outcomes[index] = exc
                continue
            node = self._nodes.get((key, owner.token))
            if node is None:
                continue
            if self._zk.state == KazooState.LOST or (session is not None and session != node.session):
                self._nodes.pop((key, owner.token), None)
                continue  # the session that owned the node expired: the node is gone
            if self._zk.state != KazooState.CONNECTED:
                suspended = f"the connection to {url} is suspended; renewing {key!r} must wait"
                outcomes[index] = BackendUnavailable(suspended)
                continue
            touches.append((key, node, ttl))
            indices.append(index)
        if not touches:
            return outcomes
        try:
            renewed = self._lines.touch_many(touches)
        except BackendError as exc:
            for index in indices:
                outcomes[index] = exc
            return outcomes
        for index, (key, node, _), done in zip(indices, touches, renewed, strict=True):
            outcomes[index] = done
            if not done and self._nodes.get((key, renewals[index].owner.token)) is node:
                self._nodes.pop((key, renewals[index].owner.token), None)
        return outcomes

    def release(self, key: str, owner: Owner) -> bool:
        released = self._release(key, owner)
        self._records.end_failed_run(key, owner)  # an idempotency key's run: its directory
        return released

    def _release(self, key: str, owner: Owner) -> bool:
        node = self._nodes.pop((key, owner.token), None)
        if node is not None and node.exact:
            # Our only child, by name: one request. A node that was first when we took its
            # fence is still first while it exists (later children have higher sequences);
            # gone, it was taken over (TTL) or ended with its session: the hold was lost.
            deleted = self._lines.delete(f"{self._lines.dir(key)}/{node.name}")
            return deleted and node.held
        # An interrupted create (or none cached): every child of ours must go.
        children = self._children(key)
        # Every child of ours, not only the cached one: an interrupted create may have left one.
        ours = [name for name in children if name.startswith(owner.token + "-")]
        if node is not None and node.name not in ours:
            ours.append(node.name)  # listed before its creation was visible: delete anyway
        for name in ours:
            self._lines.delete(f"{self._lines.dir(key)}/{name}")
        return bool(children) and children[0] in ours

    def holder(self, key: str) -> HolderInfo | None:
        for _ in range(3):  # the first child may leave between listing and reading it
            children = self._children(key)
            if not children:
                return None
            got = self._lines.get(f"{self._lines.dir(key)}/{children[0]}")
            if got is None:
                continue
            data, stat = got
            ttl, label = parse_node_data(data)
            # The server's "now", read after the holder's mtime: the estimate errs short.
            remaining = (int(stat.mtime) - self._lines.server_now(key)) / 1000 + ttl
            if remaining <= 0:
                return None  # not renewed within its ttl: the next contender takes over
            return HolderInfo(label, int(stat.czxid), None if remaining == float("inf") else remaining)
        return None

    def wait_released(self, key: str, timeout: float) -> None:
        # Return only once the line is seen empty (or the time is up, so that the next try judges
        # a stuck holder's TTL): a waiter that wakes after another took the lock over watches the
        # new holder with two reads, instead of queueing a create and a delete for nothing.
        deadline = time.monotonic() + timeout
        head = self._lines.heads.pop(key, None)
        while True:
            if head is None:
                children = self._children(key)
                if not children:
                    return
                head = children[0]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._zk.wait_for_change(f"{self._lines.dir(key)}/{head}", remaining)
            if time.monotonic() >= deadline:
                return
            head = None

    def watch(self, key: str) -> ChangeFeed:
        feed = ZooKeeperFeed(self._zk, self._lines.dir(key), self.config.common.op_timeout)
        feed.look()  # the holder as of now: a change after this is not missed
        return feed

    def try_acquire_permit(self, key: str, limit: int, owner: Owner, ttl: float) -> Permit | None:
        # Slot by slot, each a lock's try (``permits.py``): no request takes "a free one".
        check_ttl_fits(ttl, self._session_timeout, self.url)
        return self._permits.try_acquire(key, limit, owner, ttl)

    def wait_permit_released(self, key: str, limit: int, timeout: float) -> None:
        self._permits.wait_released(key, limit, timeout)

    def permit_holders(self, key: str, limit: int) -> list[HolderInfo]:
        return self._permits.holders(key, limit)

    def begin_run(self, key: str, owner: Owner, ttl: float) -> Recorded | int | None:
        if ttl > self._session_timeout:  # checked here first: a replay need not format the URL
            check_ttl_fits(ttl, self._session_timeout, self.url)
        return self._records.begin_run(key, owner, ttl)

    def finish_run(self, key: str, owner: Owner, record: bytes, ttl: float) -> bool:
        return self._records.finish_run(key, owner, record, ttl)

    def read_record(self, key: str) -> Recorded | None:
        return self._records.read_record(key)

    def close(self) -> None:
        self._zk.close()  # ends the session: its nodes go with it

    def _children(self, key: str) -> list[str]:
        """Return ``key``'s line in order (first = holder); empty if the lock was never used."""
        return self._lines.children(key)
