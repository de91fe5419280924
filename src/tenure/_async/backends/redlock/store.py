"""The Redlock store: each step is a vote of N independent Redis instances."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, ClassVar

from redis.asyncio import Redis as AsyncRedis

from tenure._async.backends.base import AsyncChangeFeed, AsyncLeaseStore, Permit, Renewal, RenewOutcome
from tenure._async.backends.redis.connection import AsyncRedisFeed
from tenure._async.backends.redis.scripts import key_prefix, milliseconds, slot_parts
from tenure._async.backends.redlock.instances import AsyncRedlockInstances, Reply, failures
from tenure._async.backends.redlock.quorum import (
    Seen,
    Tally,
    majority_holder,
    parse_seen,
    permit_vote,
    quorum,
    validity_left,
    winning_slot,
)
from tenure._concurrency import async_sleep
from tenure._config import BackendConfig
from tenure._core.guarantees import Capability, Guarantee
from tenure._core.holder import HolderInfo
from tenure._core.renewal import RENEW_FRACTION
from tenure._core.semaphore import limit_mismatch, permit_key, slot_order
from tenure._core.tokens import Owner
from tenure._exceptions import BackendError, BackendProtocolError, BackendUnavailable

SIGNAL_TTL_MS = 1  # the release script's wake-up list: no Redlock waiter reads it, so drop it
RENEW_CHUNK = 1000  # leases per RENEW call on an instance: about a millisecond of its time


class AsyncRedlockStore(AsyncLeaseStore):
    """Serve leases from N independent Redis servers by majority vote (Redlock).

    **Guarantees.** CROSS_PROCESS and CROSS_HOST: the leases live on network servers that every
    client reaches. SURVIVES_FAILOVER: a lease is held on a majority, so any minority of
    instances may crash, restart empty or be partitioned away while it stays held and rivals
    stay out; the next renewal puts the lock back on instances that lost it. An instance that
    restarts empty before that renewal, while the lease held only a bare majority, may hand the
    lock to a rival, which is why Redlock's authors advise restarting a crashed instance only
    after the longest TTL has passed (or running it with ``appendfsync always``). A client cut
    off from a majority can neither acquire nor renew, and its lease is lost when its validity
    runs out by its own monotonic clock; a holder paused past its TTL loses the lease the same
    way and learns it at its next ``check()``. Not SERVER_TIME: expiry is kept by N independent
    clocks, and safety assumes they run at about the same rate (the drift margin is 1% of the
    TTL + 2 ms) and do not jump; a clock stepped forward on a majority ends leases early. Not
    FENCING: fences come from the instances' clocks, never repeat on one instance and follow
    hold order while those clocks agree to better than the gap between two holds; they are
    best-effort, so a resource must not trust them alone. Not QUEUEING: waiters are not served
    in order (``fair=True`` raises ``BackendIncapable``).

    **Semaphores.** Each permit is a Redlock lock on one slot: every instance takes its first
    free slot in one rotation, and the permit is the slot a majority took within the validity
    (the other votes are undone). An instance with a live permit refuses another limit, so a
    limit that differs from the live permits' cannot win a majority. Fences as for locks, and
    also distinct between permits held at once, whatever the clocks (``scripts.py``).
    """

    scheme: ClassVar[str] = "redlock"
    description: ClassVar[str] = (
        "N independent Redis, parallel majority vote, validity = ttl − elapsed − drift; fences best-effort"
    )
    guarantees: ClassVar[frozenset[Guarantee]] = frozenset(
        {Guarantee.CROSS_PROCESS, Guarantee.CROSS_HOST, Guarantee.SURVIVES_FAILOVER}
    )
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.COUNTING})
    # Redlock's random retry delay: without a push from a majority, this pause is the wake-up.
    poll_interval: ClassVar[tuple[float, float]] = (0.005, 0.05)

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        self._instances = AsyncRedlockInstances(config)
        self._count = self._instances.count
        self._fences: dict[tuple[str, str], int] = {}  # (key, token) -> fence, while held here

    async def connect(self) -> None:
        await self._instances.connect(self._deadline(time.monotonic()))

    async def try_acquire(self, key: str, owner: Owner, ttl: float) -> int | None:
        started = time.monotonic()
        args = [key_prefix(key), owner.token, milliseconds(ttl), owner.label]
        replies = await self._instances.script("ACQUIRE", args, self._deadline(started, ttl))
        granted = [reply for reply in replies if _is_int(reply) and reply > 0]
        tally = Tally(len(granted), sum(_is_int(r) and r <= 0 for r in replies), failures(replies))
        if tally.majority(self._count) and validity_left(ttl, time.monotonic() - started) > 0:
            fence = int(max(granted))
            self._fences[(key, owner.token)] = fence
            return fence
        # Lost the vote or ran out of validity: undo every vote that may be ours, including
        # those of instances that did not answer (the grant may have got there).
        undo = [i for i, reply in enumerate(replies) if not (_is_int(reply) and reply <= 0)]
        if undo:
            release = [key_prefix(key), owner.token, SIGNAL_TTL_MS]
            await self._instances.script("RELEASE", release, self._deadline(time.monotonic(), ttl), undo)
        if not tally.reachable(self._count):
            self._instances.raise_unreachable("acquiring", replies)
        return None

    async def renew_many(self, renewals: Sequence[Renewal]) -> list[RenewOutcome]:
        # One RENEW script per instance and chunk, sent to every instance at once; each lease
        # is then decided by its own vote, as if it had been renewed alone.
        outcomes: list[RenewOutcome] = []
        for start in range(0, len(renewals), RENEW_CHUNK):
            outcomes.extend(await self._renew_chunk(renewals[start : start + RENEW_CHUNK]))
        return outcomes

    async def release(self, key: str, owner: Owner) -> bool:
        self._fences.pop((key, owner.token), None)
        args = [key_prefix(key), owner.token, SIGNAL_TTL_MS]
        replies = await self._instances.script("RELEASE", args, self._deadline(time.monotonic()))
        tally = Tally(replies.count(1), replies.count(0), failures(replies))
        if not tally.reachable(self._count):
            self._instances.raise_unreachable("releasing", replies)
        return tally.majority(self._count)

    async def holder(self, key: str) -> HolderInfo | None:
        replies = await self._instances.script("HOLDER", [key_prefix(key)], self._deadline(time.monotonic()))
        if failures(replies) > self._count - quorum(self._count):
            self._instances.raise_unreachable("reading the holder", replies)
        try:
            views = [parse_seen(reply) for reply in replies if not isinstance(reply, Exception)]
        except (ValueError, TypeError) as exc:
            raise BackendProtocolError(f"unexpected reply from {self.url} (holder): {exc}") from exc
        return majority_holder(views, self._count)

    async def wait_released(self, key: str, timeout: float) -> None:
        # No single instance can say that a majority is free: wait out Redlock's random retry
        # delay (the caller's jittered backoff), then the caller votes again.
        await async_sleep(timeout)

    async def try_acquire_permit(self, key: str, limit: int, owner: Owner, ttl: float) -> Permit | None:
        started = time.monotonic()
        head, tail = slot_parts(key)
        # One rotation for every instance: they take the same slot unless they disagree on which are free.
        start = slot_order(limit)[0]
        args = [key_prefix(key), head, tail, owner.token, milliseconds(ttl), owner.label, limit, start]
        replies = await self._instances.script("PERMIT", args, self._deadline(started, ttl))
        votes = [permit_vote(reply) for reply in replies]
        won = winning_slot(votes, self._count)
        if won is not None and validity_left(ttl, time.monotonic() - started) <= 0:
            won = None
        keep = -1 if won is None else won[0]
        # Undo every other slot that may be ours: those that lost, and any an instance that did
        # not answer may have taken.
        undo = [
            i for i, vote in enumerate(votes) if isinstance(vote, Exception) or vote[0] not in (keep, -1, -2)
        ]
        if undo:
            forget = [head, tail, owner.token, limit, keep]
            await self._instances.script("FORGET_PERMIT", forget, self._deadline(time.monotonic(), ttl), undo)
        if won is not None:
            slot_key = permit_key(key, won[0])
            self._fences[(slot_key, owner.token)] = won[1]
            return Permit(slot_key, won[1])
        # An instance refuses another limit while it has a live permit, and a live permit is on
        # a majority: a majority refusing is the answer; a minority, leftovers of lost votes.
        refused = [vote[1] for vote in votes if not isinstance(vote, Exception) and vote[0] == -2]
        if len(refused) >= quorum(self._count):
            raise limit_mismatch(key, limit, max(set(refused), key=refused.count))
        if failures(votes) > self._count - quorum(self._count):
            self._instances.raise_unreachable("acquiring a permit", votes)
        return None

    async def wait_permit_released(self, key: str, limit: int, timeout: float) -> None:
        # As wait_released: no instance can say that a slot is free on a majority.
        await async_sleep(timeout)

    async def permit_holders(self, key: str, limit: int) -> list[HolderInfo]:
        head, tail = slot_parts(key)
        args = [head, tail, limit]
        replies = await self._instances.script("PERMIT_HOLDERS", args, self._deadline(time.monotonic()))
        if failures(replies) > self._count - quorum(self._count):
            self._instances.raise_unreachable("reading the permits", replies)
        views: dict[int, list[Seen | None]] = {}  # slot -> what each instance reports of it
        try:
            for reply in replies:
                for slot, *seen in [] if isinstance(reply, Exception) else reply:
                    views.setdefault(int(slot), []).append(parse_seen(seen))
        except (ValueError, TypeError) as exc:
            raise BackendProtocolError(f"unexpected reply from {self.url} (permit holders): {exc}") from exc
        holders = (majority_holder(views[slot], self._count) for slot in sorted(views))
        return [holder for holder in holders if holder is not None]

    async def announce(self, key: str) -> None:
        # To every instance at once: an observer listens to whichever answered it first.
        publish = ("PUBLISH", f"{key_prefix(key)}:changes", "")
        replies = await self._instances.command(range(self._count), publish, self._deadline(time.monotonic()))
        if all(isinstance(reply, Exception) for reply in replies):
            self._instances.raise_unreachable("announcing a change", replies)

    async def watch(self, key: str) -> AsyncChangeFeed:
        # Elections announce their changes on every instance; listening to the first one that
        # answers hears them, and the observer looks again now and then anyway.
        error: Exception | None = None
        for pool in self._instances.pools:
            client: Any = AsyncRedis(connection_pool=pool)
            feed = AsyncRedisFeed(client.pubsub(), self.config.common.op_timeout, self.url)
            try:
                await feed.subscribe(f"{key_prefix(key)}:changes")
            except BackendError as exc:
                error = exc
                continue
            return feed
        raise BackendUnavailable(f"cannot subscribe to any instance of {self.url}") from error

    async def aclose(self) -> None:
        await self._instances.aclose()

    # -- internals -------------------------------------------------------------------------------

    async def _renew_chunk(self, renewals: Sequence[Renewal]) -> list[RenewOutcome]:
        started = time.monotonic()
        keys: list[str] = []
        args: list[Any] = []
        for key, owner, ttl in renewals:
            keys += [f"{key_prefix(key)}:lock", f"{key_prefix(key)}:fence"]
            # Every instance then reports the lease's fence (0: not known here, keep theirs).
            args += [owner.token, milliseconds(ttl), self._fences.get((key, owner.token), 0)]
        shortest = min(renewal.ttl for renewal in renewals)
        replies = await self._instances.script("RENEW", args, self._deadline(started, shortest), keys=keys)
        votes = [_votes(reply, len(renewals)) for reply in replies]
        answered = [(i, vote) for i, vote in enumerate(votes) if not isinstance(vote, Exception)]
        # Each instance votes 1 or 0 per lease: a lease's yes votes are its column's sum.
        yes_votes = [sum(column) for column in zip(*(vote for _, vote in answered), strict=True)]
        elapsed = time.monotonic() - started
        outcomes: list[RenewOutcome] = []
        restore: list[list[tuple[Any, ...]]] = [[] for _ in range(self._count)]
        for n, (key, owner, ttl) in enumerate(renewals):
            yes = yes_votes[n] if answered else 0
            tally = Tally(yes, len(answered) - yes, self._count - len(answered))
            if tally.majority(self._count) and validity_left(ttl, elapsed) > 0:
                outcomes.append(True)
                for i in (i for i, vote in answered if vote[n] == 0):
                    restore[i].extend(self._restoring(key, owner, ttl))
            elif not tally.reachable(self._count):
                mine = [vote if isinstance(vote, Exception) else vote[n] for vote in votes]
                outcomes.append(self._instances.unreachable("renewing", mine))
            else:
                self._fences.pop((key, owner.token), None)
                outcomes.append(False)
        await self._restore(restore, shortest)
        return outcomes

    def _restoring(self, key: str, owner: Owner, ttl: float) -> list[tuple[Any, ...]]:
        """Return the command that puts a lease back on an instance that lost it, if still held.

        Only where the lock is free (SET NX), so a rival's vote is never overwritten.
        """
        fence = self._fences.get((key, owner.token))
        if fence is None:  # released meanwhile, nothing to restore
            return []
        value = f"{owner.token}\n{fence}\n{owner.label}"
        return [("SET", f"{key_prefix(key)}:lock", value, "NX", "PX", milliseconds(ttl))]

    async def _restore(self, commands: list[list[tuple[Any, ...]]], ttl: float) -> None:
        """Put leases confirmed by a majority back on instances that lost them (restarted empty).

        One pipeline per instance, all at once; failures are ignored, the next renewal tries again.
        """
        targets = [i for i, pipeline in enumerate(commands) if pipeline]
        if targets:
            pipelines = [commands[i] for i in targets]
            await self._instances.fan_out_each(targets, pipelines, self._deadline(time.monotonic(), ttl))

    def _deadline(self, started: float, ttl: float | None = None) -> float:
        """Return when to stop waiting for replies: after op_timeout, or a third of the TTL.

        A vote on a lease that took longer than a third of its TTL would leave it little
        validity, and a renewal that slow would run into the next one: instances slower than
        that count as missing votes, so one frozen instance cannot cost a short lease.
        """
        limit = self.config.common.op_timeout
        if ttl is not None:
            limit = min(limit, ttl * RENEW_FRACTION)
        return started + limit


def _is_int(reply: Reply) -> bool:
    return isinstance(reply, int) and not isinstance(reply, bool)


def _votes(reply: Reply, count: int) -> list[Reply] | Exception:
    """Return one instance's vote per lease of a RENEW call, or what stands for its missing answer."""
    if isinstance(reply, Exception):
        return reply
    if not isinstance(reply, list) or len(reply) != count or not set(reply) <= {0, 1}:
        return BackendProtocolError(f"unexpected RENEW reply {reply!r}")
    return reply
