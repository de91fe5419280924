# GENERATED from src/tenure/_async/backends/redlock/instances.py by scripts/unasync.py: do not edit; edit the source and re-run.
"""Connections to the N Redis instances of a ``redlock://`` URL: one step sent to all at once.

A step's commands go out on one connection per instance before any reply is read, then the
replies are read against one deadline, so N instances cost one round trip and frozen instances
cost one deadline together. A failure is one instance's missing vote, never the step's failure:
it is returned in place of that instance's reply.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, NoReturn

from redis import exceptions as redis_errors
from redis import ConnectionPool as ConnectionPool

from tenure._sync.backends.redis.connection import DRIVER_ERRORS, base_options, database, map_errors
from tenure._sync.backends.redlock.quorum import quorum
from tenure._sync.backends.redlock.scripts import SCRIPTS, SHAS
from tenure._concurrency import read_reply
from tenure._config import BackendConfig
from tenure._exceptions import BackendError, BackendUnavailable, ConfigurationError

Reply = Any  # one instance's reply, or the exception standing for its missing answer
MAX_IDLE = 16  # idle connections kept per instance


class RedlockInstances:
    """Send commands to several Redis instances at once and collect one outcome per instance."""

    def __init__(self, config: BackendConfig) -> None:
        self.url = config.url.redacted
        self._options = instance_options(config)
        self.names = [f"{o['host']}:{o['port']}" for o in self._options]
        self.count = len(self.names)
        self.pools: list[ConnectionPool] = []
        # Idle connections per instance, taken and given back without the pool's bookkeeping,
        # which would otherwise cost more than a round trip on every step (N takes and returns).
        self._idle: list[list[Any]] = [[] for _ in range(self.count)]

    def connect(self, deadline: float) -> None:
        """Open the pools and load the scripts; raise unless a majority of instances answered."""
        if self.pools:
            return
        self.pools = [ConnectionPool(**options) for options in self._options]
        loads = [("SCRIPT", "LOAD", source) for source in SCRIPTS.values()]
        outcomes = self.fan_out(range(self.count), loads, deadline)
        replies = [_first_failure(outcome) for outcome in outcomes]
        if failures(replies) > self.count - quorum(self.count):
            self.close()
            self.raise_unreachable("connecting", replies)

    def script(
        self,
        name: str,
        args: list[Any],
        deadline: float,
        targets: Sequence[int] | None = None,
        keys: Sequence[str] = (),
    ) -> list[Reply]:
        """Run script ``name`` on ``targets`` (default: every instance) at once; one reply each.

        Instances outside ``targets`` get a placeholder failure, so indexes stay instance numbers.
        """
        targets = range(self.count) if targets is None else targets
        replies: list[Reply] = [BackendUnavailable("not asked")] * self.count
        call = (len(keys), *keys, *args)
        outcomes = self.fan_out(targets, [("EVALSHA", SHAS[name], *call)], deadline)
        for i, outcome in zip(targets, outcomes, strict=True):
            replies[i] = _first_failure(outcome)
        forgot = [i for i in targets if isinstance(replies[i], redis_errors.NoScriptError)]
        if forgot:  # restarted empty: EVAL sends the source, and caches it for next time
            outcomes = self.fan_out(forgot, [("EVAL", SCRIPTS[name], *call)], deadline)
            for i, outcome in zip(forgot, outcomes, strict=True):
                replies[i] = _first_failure(outcome)
        return replies

    def command(self, targets: Sequence[int], command: tuple[Any, ...], deadline: float) -> list[Reply]:
        """Send one command to ``targets`` at once; return each target's reply or failure."""
        return [_first_failure(outcome) for outcome in self.fan_out(targets, [command], deadline)]

    def fan_out(
        self, targets: Sequence[int], commands: list[tuple[Any, ...]], deadline: float
    ) -> list[list[Reply] | Exception]:
        """Send ``commands`` to every target instance, then read every reply before ``deadline``.

        Returns, per target, its replies (an error reply is a ``ResponseError`` in the list) or
        the exception that cost its answer. All sends precede the first read, so the instances
        work in parallel whether the reads below are awaited or blocking.
        """
        return self.fan_out_each(targets, [commands] * len(targets), deadline)

    def fan_out_each(
        self, targets: Sequence[int], commands: Sequence[list[tuple[Any, ...]]], deadline: float
    ) -> list[list[Reply] | Exception]:
        """Send each target its own ``commands`` (a pipeline), at once, as ``fan_out`` does."""
        if not self.pools:
            raise BackendUnavailable(f"the connections to {self.url} are closed")
        outcomes: list[list[Reply] | Exception | None] = [None] * len(targets)
        taken: list[Any] = [None] * len(targets)
        try:
            packed: dict[int, Any] = {}  # commands shared by several instances are encoded once
            for slot, i in enumerate(targets):
                idle, pool = self._idle[i], self.pools[i]
                try:
                    connection = taken[slot] = idle.pop() if idle else _new_connection(pool)
                    pipeline = commands[slot]
                    if id(pipeline) not in packed:
                        packed[id(pipeline)] = connection.pack_commands(pipeline)
                    connection.send_packed_command(packed[id(pipeline)])  # one write
                except DRIVER_ERRORS as exc:
                    outcomes[slot] = exc
            for slot, connection in enumerate(taken):
                if outcomes[slot] is None:
                    outcomes[slot] = _read_all(connection, len(commands[slot]), deadline)
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

    def raise_unreachable(self, what: str, replies: list[Reply]) -> NoReturn:
        """Raise the error for a step that fewer than a majority of instances answered."""
        raise self.unreachable(what, replies)

    def unreachable(self, what: str, replies: list[Reply]) -> BackendError:
        """Return the error for a step that fewer than a majority of instances answered."""
        named = zip(self.names, replies, strict=True)
        failed = [(name, reply) for name, reply in named if isinstance(reply, Exception)]
        detail = "; ".join(f"{name}: {exc}" for name, exc in failed)
        message = (
            f"only {self.count - len(failed)} of {self.count} Redis instances of {self.url} "
            f"answered ({what}); a majority ({quorum(self.count)}) is needed: {detail}"
        )
        errors = [exc for _, exc in failed]
        # The instances' errors, mapped: one kind for all of them is the step's; else unreachable.
        kinds = {type(map_errors(exc, self.url)) for exc in errors}
        cls: type[BackendError] = kinds.pop() if len(kinds) == 1 else BackendUnavailable
        error = cls(message)
        error.__cause__ = errors[0] if errors else None
        return error

    def close(self) -> None:
        """Close every connection; idempotent."""
        pools, self.pools = self.pools, []
        for idle in self._idle:
            while idle:
                idle.pop().disconnect()
        for pool in pools:
            pool.close()


def instance_options(config: BackendConfig) -> list[dict[str, Any]]:
    """Return redis-py connection options for each instance of a ``redlock://`` URL (no I/O)."""
    url = config.url
    hosts = [(h.host or "127.0.0.1", h.port or 6379) for h in url.hosts]
    if len(hosts) < 3 or len(hosts) % 2 == 0:
        raise ConfigurationError(
            f"redlock:// needs an odd number of Redis servers, at least 3 (got {len(hosts)}): "
            f"{url}; for one server use redis://"
        )
    if len(set(hosts)) != len(hosts):
        raise ConfigurationError(f"redlock:// lists a server twice, which would count its vote twice: {url}")
    db = database(config)
    return [
        {
            **base_options(config),
            "host": host,
            "port": port,
            "db": db,
            # Connecting waits for handshake replies one instance at a time, so send none unless
            # a password or database asks for it: RESP2 needs no HELLO, and no CLIENT SETINFO.
            "protocol": 2,
            "driver_info": None,
        }
        for host, port in hosts
    ]


def failures(replies: list[Reply]) -> int:
    """Return how many instances did not answer."""
    return sum(isinstance(reply, Exception) for reply in replies)


def _read_all(connection: Any, count: int, deadline: float) -> list[Reply] | Exception:
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


def _first_failure(outcome: list[Reply] | Exception) -> Reply:
    """Return an instance's single reply, or what stands for its missing answer."""
    if isinstance(outcome, Exception):
        return outcome
    failed = [reply for reply in outcome if isinstance(reply, Exception)]
    return failed[0] if failed else outcome[-1]


def _new_connection(pool: Any) -> Any:
    """Return a new connection to the pool's instance; it connects when first used."""
    return pool.make_connection()  # Any: redis-py's async pool is not annotated
