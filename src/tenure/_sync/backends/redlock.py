# GENERATED from src/tenure/_async/backends/redlock.py by scripts/unasync.py: do not edit; edit the source and re-run.
"""The ``redlock://`` backend: N independent Redis servers, a lease held while a majority agree.

URL: ``redlock://[user:password@]h1:p1,h2:p2,h3:p3[/db]``, an odd number (3 or more, typically
5) of distinct servers sharing the credentials and the database number.

Every step runs on all instances at once: the command goes out on one connection per instance
before any reply is read, then the replies are read against one deadline. So N instances cost
one round trip, in the async and in the threaded colour alike, and frozen instances cost one
``op_timeout`` together, not one each (a vote on a lease waits at most a third of its TTL).
Instances that refuse connections cost nothing; connecting sends no handshake that waits for a
reply unless the URL has a password or a database other than 0. Per instance the Redis
backend's Lua scripts do the work (acquire, renew and holder are Redlock's own, see
``tenure._core.redlock``); an instance that restarted and forgot them gets their source (EVAL).

An acquisition wins when a majority granted it within Redlock's validity, ttl − elapsed − drift;
otherwise it is undone on every instance that did not refuse, including those that did not
answer. A renewal keeps the lease while a majority confirm it within the same validity, and puts
the lock back on instances that lost it (a restart without persistence). A release goes to every
instance. Waiters poll with a short jittered backoff (Redlock's random retry delay): no single
instance can announce that a majority is free. The client never retries a command, and fewer
than a majority answering is ``BackendUnavailable``. As Redlock advises, keep ``op_timeout``
small next to the TTL: a frozen instance costs every step that long.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from typing import Any, ClassVar, NoReturn

from redis import exceptions as redis_errors
from redis import ConnectionPool as ConnectionPool
from redis import Redis as Redis
from redis.retry import Retry as Retry
from redis.backoff import NoBackoff

from tenure._sync.backends.base import ChangeFeed, LeaseStore
from tenure._sync.backends.redis import RedisFeed
from tenure._concurrency import read_reply, sleep
from tenure._config import BackendConfig
from tenure._core import redis_scripts, redlock
from tenure._core.guarantees import Guarantee
from tenure._core.holder import HolderInfo
from tenure._core.redis_scripts import key_prefix, milliseconds
from tenure._core.redlock import Tally, majority_holder, parse_seen, quorum, validity_left
from tenure._core.renewal import RENEW_FRACTION
from tenure._core.tokens import Owner
from tenure._exceptions import (
    BackendError,
    BackendProtocolError,
    BackendTimeout,
    BackendUnavailable,
    ConfigurationError,
)

SIGNAL_TTL_MS = 1  # the release script's wake-up list: no Redlock waiter reads it, so drop it
SCRIPTS = {
    "ACQUIRE": redlock.ACQUIRE,
    "RENEW": redlock.RENEW,
    "RELEASE": redis_scripts.RELEASE,
    "HOLDER": redlock.HOLDER,
}
SHAS = {name: hashlib.sha1(source.encode()).hexdigest() for name, source in SCRIPTS.items()}
# Per-instance failures: each is one missing vote, never the whole step's failure.
DRIVER_ERRORS = (redis_errors.RedisError, OSError)

Reply = Any  # one instance's reply, or the exception standing for its missing answer
MAX_IDLE = 16  # idle connections kept per instance


class RedlockStore(LeaseStore):
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
    """

    scheme: ClassVar[str] = "redlock"
    description: ClassVar[str] = (
        "N independent Redis, parallel majority vote, validity = ttl − elapsed − drift; fences best-effort"
    )
    guarantees: ClassVar[frozenset[Guarantee]] = frozenset(
        {Guarantee.CROSS_PROCESS, Guarantee.CROSS_HOST, Guarantee.SURVIVES_FAILOVER}
    )
    # Redlock's random retry delay: without a push from a majority, this pause is the wake-up.
    poll_interval: ClassVar[tuple[float, float]] = (0.005, 0.05)

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        self._instance_options = instance_options(config)
        self._names = [f"{o['host']}:{o['port']}" for o in self._instance_options]
        self._count = len(self._names)
        self._pools: list[ConnectionPool] = []
        # Idle connections per instance, taken and given back without the pool's bookkeeping,
        # which would otherwise cost more than a round trip on every step (N takes and returns).
        self._idle: list[list[Any]] = [[] for _ in range(self._count)]
        self._fences: dict[tuple[str, str], int] = {}  # (key, token) -> fence, while held here

    def connect(self) -> None:
        if self._pools:
            return
        self._pools = [ConnectionPool(**options) for options in self._instance_options]
        loads = [("SCRIPT", "LOAD", source) for source in SCRIPTS.values()]
        outcomes = self._fan_out(range(self._count), loads, self._deadline(time.monotonic()))
        replies = [_first_failure(outcome) for outcome in outcomes]
        if _failures(replies) > self._count - quorum(self._count):
            self.close()
            self._raise_unreachable("connecting", replies)

    def try_acquire(self, key: str, owner: Owner, ttl: float) -> int | None:
        started = time.monotonic()
        args = [key_prefix(key), owner.token, milliseconds(ttl), owner.label]
        replies = self._script("ACQUIRE", args, self._deadline(started, ttl))
        granted = [reply for reply in replies if _is_int(reply) and reply > 0]
        tally = Tally(len(granted), sum(_is_int(r) and r <= 0 for r in replies), _failures(replies))
        if tally.majority(self._count) and validity_left(ttl, time.monotonic() - started) > 0:
            fence = int(max(granted))
            self._fences[(key, owner.token)] = fence
            return fence
        # Lost the vote or ran out of validity: undo every vote that may be ours, including
        # those of instances that did not answer (the grant may have got there).
        undo = [i for i, reply in enumerate(replies) if not (_is_int(reply) and reply <= 0)]
        if undo:
            release = [key_prefix(key), owner.token, SIGNAL_TTL_MS]
            self._script("RELEASE", release, self._deadline(time.monotonic(), ttl), undo)
        if not tally.reachable(self._count):
            self._raise_unreachable("acquiring", replies)
        return None

    def renew(self, key: str, owner: Owner, ttl: float) -> bool:
        started = time.monotonic()
        fence = self._fences.get((key, owner.token), 0)  # every instance then reports the lease's fence
        args = [key_prefix(key), owner.token, milliseconds(ttl), fence]
        replies = self._script("RENEW", args, self._deadline(started, ttl))
        tally = Tally(replies.count(1), replies.count(0), _failures(replies))
        if tally.majority(self._count) and validity_left(ttl, time.monotonic() - started) > 0:
            self._restore(key, owner, ttl, [i for i, reply in enumerate(replies) if reply == 0])
            return True
        if not tally.reachable(self._count):
            self._raise_unreachable("renewing", replies)
        self._fences.pop((key, owner.token), None)
        return False

    def release(self, key: str, owner: Owner) -> bool:
        self._fences.pop((key, owner.token), None)
        replies = self._script("RELEASE", [key_prefix(key), owner.token, SIGNAL_TTL_MS])
        tally = Tally(replies.count(1), replies.count(0), _failures(replies))
        if not tally.reachable(self._count):
            self._raise_unreachable("releasing", replies)
        return tally.majority(self._count)

    def holder(self, key: str) -> HolderInfo | None:
        replies = self._script("HOLDER", [key_prefix(key)])
        if _failures(replies) > self._count - quorum(self._count):
            self._raise_unreachable("reading the holder", replies)
        try:
            views = [parse_seen(reply) for reply in replies if not isinstance(reply, Exception)]
        except (ValueError, TypeError) as exc:
            raise BackendProtocolError(f"unexpected reply from {self.url} (holder): {exc}") from exc
        return majority_holder(views, self._count)

    def wait_released(self, key: str, timeout: float) -> None:
        # No single instance can say that a majority is free: wait out Redlock's random retry
        # delay (the caller's jittered backoff), then the caller votes again.
        sleep(timeout)

    def announce(self, key: str) -> None:
        # To every instance at once: an observer listens to whichever answered it first.
        publish = ("PUBLISH", f"{key_prefix(key)}:changes", "")
        replies = self._fan_out(range(self._count), [publish], self._deadline(time.monotonic()))
        if all(isinstance(outcome, Exception) for outcome in replies):
            self._raise_unreachable("announcing a change", [_first_failure(r) for r in replies])

    def watch(self, key: str) -> ChangeFeed:
        # Elections announce their changes on every instance; listening to the first one that
        # answers hears them, and the observer looks again now and then anyway.
        error: Exception | None = None
        for pool in self._pools:
            client: Any = Redis(connection_pool=pool)
            feed = RedisFeed(client.pubsub(), self.config.common.op_timeout, self._mapped_error)
            try:
                feed.subscribe(f"{key_prefix(key)}:changes")
            except BackendUnavailable as exc:
                error = exc
                continue
            return feed
        raise BackendUnavailable(f"cannot subscribe to any instance of {self.url}") from error

    def _mapped_error(self, exc: BaseException, what: str) -> Exception:
        if isinstance(exc, redis_errors.TimeoutError | TimeoutError):
            return BackendTimeout(f"{self.url} did not answer within the timeout ({what})")
        return BackendUnavailable(f"cannot reach {self.url} ({what}): {exc}")

    def close(self) -> None:
        pools, self._pools = self._pools, []
        for idle in self._idle:
            while idle:
                idle.pop().disconnect()
        for pool in pools:
            pool.close()

    # -- internals -------------------------------------------------------------------------------

    def _restore(self, key: str, owner: Owner, ttl: float, missing: list[int]) -> None:
        """Put a lease confirmed by a majority back on instances that lost it (restarted empty).

        Only where the lock is free (SET NX), so a rival's vote is never overwritten; failures are
        ignored, the next renewal tries again.
        """
        fence = self._fences.get((key, owner.token))
        if not missing or fence is None:  # None: released meanwhile, nothing to restore
            return
        value = f"{owner.token}\n{fence}\n{owner.label}"
        command = ("SET", f"{key_prefix(key)}:lock", value, "NX", "PX", milliseconds(ttl))
        self._fan_out(missing, [command], self._deadline(time.monotonic(), ttl))

    def _script(
        self, name: str, args: list[Any], deadline: float | None = None, targets: Sequence[int] | None = None
    ) -> list[Reply]:
        """Run script ``name`` on ``targets`` (default: every instance) at once; one reply each.

        Instances outside ``targets`` get a placeholder failure, so indexes stay instance numbers.
        """
        targets = range(self._count) if targets is None else targets
        deadline = self._deadline(time.monotonic()) if deadline is None else deadline
        replies: list[Reply] = [BackendUnavailable("not asked")] * self._count
        outcomes = self._fan_out(targets, [("EVALSHA", SHAS[name], 0, *args)], deadline)
        for i, outcome in zip(targets, outcomes, strict=True):
            replies[i] = _first_failure(outcome)
        forgot = [i for i in targets if isinstance(replies[i], redis_errors.NoScriptError)]
        if forgot:  # restarted empty: EVAL sends the source, and caches it for next time
            outcomes = self._fan_out(forgot, [("EVAL", SCRIPTS[name], 0, *args)], deadline)
            for i, outcome in zip(forgot, outcomes, strict=True):
                replies[i] = _first_failure(outcome)
        return replies

    def _fan_out(
        self, targets: Sequence[int], commands: list[tuple[Any, ...]], deadline: float
    ) -> list[list[Reply] | Exception]:
        """Send ``commands`` to every target instance, then read every reply before ``deadline``.

        Returns, per target, its replies (an error reply is a ``ResponseError`` in the list) or
        the exception that cost its answer. All sends precede the first read, so the instances
        work in parallel whether the reads below are awaited or blocking.
        """
        if not self._pools:
            raise BackendUnavailable(f"the connections to {self.url} are closed")
        outcomes: list[list[Reply] | Exception | None] = [None] * len(targets)
        taken: list[Any] = [None] * len(targets)
        try:
            for slot, i in enumerate(targets):
                idle, pool = self._idle[i], self._pools[i]
                try:
                    taken[slot] = idle.pop() if idle else _new_connection(pool)
                    for command in commands:
                        taken[slot].send_command(*command)
                except DRIVER_ERRORS as exc:
                    outcomes[slot] = exc
            for slot, connection in enumerate(taken):
                if outcomes[slot] is None:
                    outcomes[slot] = self._read_all(connection, len(commands), deadline)
        finally:
            for slot, connection in enumerate(taken):
                if connection is None:
                    continue
                if not isinstance(outcomes[slot], list):
                    # Replies may still be on their way: they must not answer a later command.
                    # A disconnected connection reconnects when next used.
                    connection.disconnect()
                idle = self._idle[targets[slot]]
                if len(idle) < MAX_IDLE:
                    idle.append(connection)
                else:
                    connection.disconnect()
        return [outcome for outcome in outcomes if outcome is not None]  # all filled by now

    def _read_all(self, connection: Any, count: int, deadline: float) -> list[Reply] | Exception:
        replies: list[Reply] = []
        try:
            for _ in range(count):
                try:
                    wait = max(0.001, deadline - time.monotonic())
                    replies.append(read_reply(connection, wait))
                except redis_errors.ResponseError as exc:
                    replies.append(exc)  # an error reply; the connection is still in step
        except DRIVER_ERRORS as exc:
            return exc
        return replies

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

    def _raise_unreachable(self, what: str, replies: list[Reply]) -> NoReturn:
        """Raise the error for a step that fewer than a majority of instances answered."""
        named = zip(self._names, replies, strict=True)
        failures = [(name, reply) for name, reply in named if isinstance(reply, Exception)]
        detail = "; ".join(f"{name}: {exc}" for name, exc in failures)
        message = (
            f"only {self._count - len(failures)} of {self._count} Redis instances of {self.url} "
            f"answered ({what}); a majority ({quorum(self._count)}) is needed: {detail}"
        )
        errors = [exc for _, exc in failures]
        cls: type[BackendError] = BackendUnavailable
        if all(isinstance(exc, redis_errors.ResponseError) for exc in errors):
            cls = BackendProtocolError
        elif all(isinstance(exc, redis_errors.TimeoutError | TimeoutError) for exc in errors):
            cls = BackendTimeout
        raise cls(message) from (errors[0] if errors else None)


def instance_options(config: BackendConfig) -> list[dict[str, Any]]:
    """Return redis-py connection options for each instance of a ``redlock://`` URL (no I/O)."""
    url, common = config.url, config.common
    hosts = [(h.host or "127.0.0.1", h.port or 6379) for h in url.hosts]
    if len(hosts) < 3 or len(hosts) % 2 == 0:
        raise ConfigurationError(
            f"redlock:// needs an odd number of Redis servers, at least 3 (got {len(hosts)}): "
            f"{url}; for one server use redis://"
        )
    if len(set(hosts)) != len(hosts):
        raise ConfigurationError(f"redlock:// lists a server twice, which would count its vote twice: {url}")
    db_text = url.path.strip("/") or "0"
    if not db_text.isdigit():
        raise ConfigurationError(f"the database in {url} must be a number, e.g. redlock://h1,h2,h3/0")
    return [
        {
            "host": host,
            "port": port,
            "db": int(db_text),
            "username": url.username,
            "password": url.password,
            "socket_connect_timeout": common.connect_timeout,
            "socket_timeout": common.op_timeout,
            "retry": Retry(NoBackoff(), 0),  # never retry: a retried acquire could double-vote
            # Connecting waits for handshake replies one instance at a time, so send none unless
            # a password or database asks for it: RESP2 needs no HELLO, and no CLIENT SETINFO.
            "protocol": 2,
            "driver_info": None,
        }
        for host, port in hosts
    ]


def _first_failure(outcome: list[Reply] | Exception) -> Reply:
    """Return an instance's single reply, or what stands for its missing answer."""
    if isinstance(outcome, Exception):
        return outcome
    failed = [reply for reply in outcome if isinstance(reply, Exception)]
    return failed[0] if failed else outcome[-1]


def _failures(replies: list[Reply]) -> int:
    return sum(isinstance(reply, Exception) for reply in replies)


def _is_int(reply: Reply) -> bool:
    return isinstance(reply, int) and not isinstance(reply, bool)


def _new_connection(pool: Any) -> Any:
    """Return a new connection to the pool's instance; it connects when first used."""
    return pool.make_connection()  # Any: redis-py's async pool is not annotated
