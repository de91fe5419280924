# GENERATED from src/tenure/_async/backends/redis/store.py by scripts/unasync.py: do not edit; edit the source and re-run.
"""The single-server store: one Lua script per atomic step, waiters woken by a push (BLPOP).

Semaphores: one script takes a free slot, bumps the name's fence counter and checks the
recorded limit (``PERMIT``); a permit is then renewed and released as a lock on its slot, whose
release pushes onto the slot's signal list, so a waiter blocks on all of them with one BLPOP.

Idempotency keys: a run is the key's lock, begun, renewed and finished by the record scripts
(``records.py``); a hit is the one BEGIN_RUN call that finds the record.

Rate limits: one RATE_STEP call per decision (``ratelimit.py``), by the server's clock.

Small states (a shared breaker's record): WATCH, GET, TIME, then MULTI/SET/EXEC (``states.py``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, ClassVar

from redis import exceptions as redis_errors
from redis import Redis as Redis

from tenure._sync.backends.base import (
    ChangeFeed,
    LeaseStore,
    Permit,
    Recorded,
    Renewal,
    RenewOutcome,
    StateChange,
    T,
)
from tenure._sync.backends.redis import states
from tenure._sync.backends.redis.connection import DRIVER_ERRORS, RedisFeed, client_options, map_errors
from tenure._sync.backends.redis.ratelimit import RATE_SCRIPTS, rate_args, rate_reply, tats_key
from tenure._sync.backends.redis.records import RECORD_LIMIT, RECORD_SCRIPTS, RunLeases, WokenKeys
from tenure._sync.backends.redis.scripts import SCRIPTS, key_prefix, milliseconds, slot_parts
from tenure._concurrency import sleep
from tenure._config import BackendConfig
from tenure._core.expiry import HolderExpiries
from tenure._core.guarantees import Capability, Guarantee
from tenure._core.holder import HolderInfo
from tenure._core.ratelimit import Rate, RateStep
from tenure._core.semaphore import limit_mismatch, permit_key, permit_keys, slot_order
from tenure._core.tokens import Owner
from tenure._exceptions import BackendError, BackendProtocolError, BackendUnavailable

SIGNAL_TTL_MS = 60_000  # a wake-up nobody read is dropped after a minute
SERVER_TICK = 0.1  # Redis ends blocking timeouts on its ticks: 1/hz, hz 10 by default
LAST_STRETCH_POLL = 0.005  # seconds between pops in the last tick before a holder's expiry
RENEW_CHUNK = 1000  # leases per RENEW call: about a millisecond of the server's time
_SCRIPTS = SCRIPTS | RECORD_SCRIPTS | RATE_SCRIPTS


class RedisStore(LeaseStore):
    """Serve leases from one Redis server."""

    scheme: ClassVar[str] = "redis"
    description: ClassVar[str] = "Lua scripts, fence from the server's TIME after a data loss; BLPOP hand-off"
    guarantees: ClassVar[frozenset[Guarantee]] = frozenset(
        {
            Guarantee.FENCING,
            Guarantee.FIFO,
            Guarantee.SERVER_TIME,
            Guarantee.CROSS_PROCESS,
            Guarantee.CROSS_HOST,
        }
    )
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.QUEUEING, Capability.COUNTING, Capability.RECORDS, Capability.COUNTERS}
    )
    record_limit = RECORD_LIMIT  # records.py: a hit copies the record in a script that blocks the server
    # A release wakes a waiter at once; the pause bounds how long a missed push can cost.
    poll_interval: ClassVar[tuple[float, float]] = (0.05, 0.5)

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        self._client_options = client_options(config)
        self._client: Redis | None = None
        # Rate decisions with a deadline: clients whose every socket wait ends at it, by deadline.
        self._bounded: dict[float, Redis] = {}
        self._expiries = HolderExpiries()  # when the holders refused attempts saw run out
        self._runs = RunLeases()  # idempotency runs in progress: their counters expire (records.py)
        self._woken = WokenKeys()  # keys whose waiter a finished run woke: its hit wakes the next

    def connect(self) -> None:
        if self._client is not None:
            return
        client = Redis(**self._client_options)
        try:
            client.ping()
        except DRIVER_ERRORS as exc:
            client.close()
            raise self._mapped(exc, "connecting") from exc
        self._client = client

    def try_acquire(self, key: str, owner: Owner, ttl: float) -> int | None:
        args = [key_prefix(key), owner.token, milliseconds(ttl), owner.label]
        return self._fence_or_hint(key, self._run("ACQUIRE", args))

    def try_acquire_queued(
        self, key: str, owner: Owner, ttl: float, *, patience: float, will_wait: bool = True
    ) -> int | None:
        args = [key_prefix(key), owner.token, milliseconds(ttl), owner.label, milliseconds(patience)]
        return self._fence_or_hint(key, self._run("ACQUIRE_QUEUED", args))

    def renew_many(self, renewals: Sequence[Renewal]) -> list[RenewOutcome]:
        # A run's fence counter expires a grace after its lease, so runs renew theirs with it
        # (RENEW_RUNS); a lock's counter never expires, so RENEW touches its lease alone.
        is_run = [self._runs.holds(renewal) for renewal in renewals] if self._runs else []
        if not any(is_run):
            return self._renew_chunks("RENEW", renewals, (":lock",))
        runs = [renewal for renewal, run in zip(renewals, is_run, strict=True) if run]
        locks = [renewal for renewal, run in zip(renewals, is_run, strict=True) if not run]
        run_outcomes = iter(self._renew_chunks("RENEW_RUNS", runs, (":lock", ":fence")))
        lock_outcomes = iter(self._renew_chunks("RENEW", locks, (":lock",)))
        return [next(run_outcomes) if run else next(lock_outcomes) for run in is_run]

    def release(self, key: str, owner: Owner) -> bool:
        self._runs.ended(key, owner)  # a failed run ends by a release
        return bool(self._run("RELEASE", [key_prefix(key), owner.token, SIGNAL_TTL_MS]))

    def leave_queue(self, key: str, owner: Owner) -> None:
        self._run("LEAVE_QUEUE", [key_prefix(key), owner.token, SIGNAL_TTL_MS])

    def holder(self, key: str) -> HolderInfo | None:
        reply = self._run("HOLDER", [key_prefix(key)])
        if reply is None:
            return None
        label, fence, remaining_ms = reply
        remaining = None if int(remaining_ms) < 0 else int(remaining_ms) / 1000
        return HolderInfo(_text(label), int(fence), remaining)

    def wait_released(self, key: str, timeout: float) -> None:
        popped = self._wait_for_push(key, [f"{key_prefix(key)}:signal"], timeout)
        self._woken.woke(key, popped)  # a record's signal, not a release's: pass it on (records.py)

    def wait_turn(self, key: str, owner: Owner, timeout: float) -> int | None:
        popped = self._wait_for_push(key, [f"{key_prefix(key)}:wake:{owner.token}"], timeout)
        return None if popped is None else int(popped)

    def try_acquire_permit(self, key: str, limit: int, owner: Owner, ttl: float) -> Permit | None:
        head, tail = slot_parts(key)
        start = slot_order(limit)[0]  # the script tries the slots in this rotation
        args = [key_prefix(key), head, tail, owner.token, milliseconds(ttl), owner.label, limit, start]
        reply = self._run("PERMIT", args)
        try:
            slot, value = (int(part) for part in reply)
        except (TypeError, ValueError) as exc:
            raise BackendProtocolError(f"unexpected reply from {self.url} (permit): {reply!r}") from exc
        if slot >= 0:
            self._expiries.forget(_permits(key))
            return Permit(permit_key(key, slot), value)
        if slot == -2:
            raise limit_mismatch(key, limit, value)
        self._expiries.saw(_permits(key), value / 1000)  # all held: the first of them runs out then
        return None

    def wait_permit_released(self, key: str, limit: int, timeout: float) -> None:
        # Each slot's release pushes onto its own signal list; one BLPOP watches them all.
        signals = [f"{key_prefix(slot)}:signal" for slot in permit_keys(key, limit)]
        self._wait_for_push(_permits(key), signals, timeout)

    def permit_holders(self, key: str, limit: int) -> list[HolderInfo]:
        head, tail = slot_parts(key)
        reply = self._run("PERMIT_HOLDERS", [head, tail, limit])
        try:
            return [
                HolderInfo(_text(label), int(fence), None if int(ms) < 0 else int(ms) / 1000)
                for label, fence, ms in reply
            ]
        except (TypeError, ValueError) as exc:
            raise BackendProtocolError(f"unexpected reply from {self.url} (permit holders): {exc}") from exc

    def begin_run(self, key: str, owner: Owner, ttl: float) -> Recorded | int | None:
        woken = "1" if self._woken.take(key) else "0"
        args = [key_prefix(key), owner.token, milliseconds(ttl), owner.label, woken]
        reply = self._run("BEGIN_RUN", args)
        if isinstance(reply, bytes):  # a hit: the record's value, its time left not read
            self._expiries.forget(key)
            return self._recorded(key, reply, None)
        fence = self._fence_or_hint(key, reply)
        if fence is not None:
            self._runs.began(key, owner)
        return fence

    def finish_run(self, key: str, owner: Owner, record: bytes, ttl: float) -> bool:
        self._runs.ended(key, owner)
        args = [key_prefix(key), owner.token, record, milliseconds(ttl), SIGNAL_TTL_MS]
        return bool(self._run("FINISH_RUN", args))

    def read_record(self, key: str) -> Recorded | None:
        reply = self._run("READ_RECORD", [key_prefix(key)])
        if reply is None:
            return None
        try:
            value, remaining_ms = reply
            if int(remaining_ms) < 0:
                raise ValueError("the record has no expiry")
        except (TypeError, ValueError) as exc:
            raise BackendProtocolError(f"unexpected record of {key!r} from {self.url}: {exc}") from exc
        return self._recorded(key, value, int(remaining_ms) / 1000)

    def rate_step(
        self, key: str, rates: Sequence[Rate], cost: int, deadline: float | None = None
    ) -> RateStep:
        client = self._client if deadline is None else self._bounded_client(deadline)
        reply = self._run("RATE_STEP", rate_args(tuple(rates), cost), [tats_key(key)], client)
        try:
            return rate_reply(reply, len(rates))
        except ValueError as exc:  # the URL is only redacted when it must be shown
            raise BackendProtocolError(f"unexpected reply from {self.url} (rate step): {exc}") from exc

    def update_state(self, key: str, change: StateChange[T], ttl: float) -> T:
        if self._client is None:
            raise BackendUnavailable(f"the connection to {self.url} is closed")
        op_timeout = self.config.common.op_timeout
        return states.update_state(self._client, key, change, ttl, url=self.url, op_timeout=op_timeout)

    def announce(self, key: str) -> None:
        # Published by elections, not by the lock scripts: locks pay nothing for observers.
        if self._client is None:
            raise BackendUnavailable(f"the connection to {self.url} is closed")
        try:
            self._client.publish(f"{key_prefix(key)}:changes", b"")
        except DRIVER_ERRORS as exc:
            raise self._mapped(exc, "announcing a change") from exc

    def watch(self, key: str) -> ChangeFeed:
        # Elections announce their changes on the lock's channel (pub/sub).
        if self._client is None:
            raise BackendUnavailable(f"the connection to {self.url} is closed")
        client: Any = self._client  # the sync client's pubsub() is untyped
        feed = RedisFeed(client.pubsub(), self.config.common.op_timeout, self.url)
        feed.subscribe(f"{key_prefix(key)}:changes")
        return feed

    def close(self) -> None:
        client, self._client = self._client, None
        bounded, self._bounded = self._bounded, {}
        for each in [client, *bounded.values()]:
            if each is not None:
                each.close()

    # -- internals -------------------------------------------------------------------------------

    def _renew_chunks(
        self, script: str, renewals: Sequence[Renewal], suffixes: tuple[str, ...]
    ) -> list[RenewOutcome]:
        """Renew through ``script``, which takes each lease's keys ``<prefix><suffix>`` in KEYS."""
        # One script call per chunk: a call blocks the server while it runs, so keep each short.
        outcomes: list[RenewOutcome] = []
        for start in range(0, len(renewals), RENEW_CHUNK):
            chunk = renewals[start : start + RENEW_CHUNK]
            keys = [key_prefix(key) + suffix for key, _, _ in chunk for suffix in suffixes]
            args = [part for _, owner, ttl in chunk for part in (owner.token, milliseconds(ttl))]
            try:
                replies = self._run(script, args, keys)
                if not isinstance(replies, list) or len(replies) != len(chunk):
                    raise BackendProtocolError(f"unexpected reply from {self.url} (renew): {replies!r}")
                outcomes.extend(reply == 1 for reply in replies)
            except BackendError as exc:  # the whole call failed: every lease of this chunk with it
                outcomes.extend([exc] * len(chunk))
        return outcomes

    def _bounded_client(self, deadline: float) -> Redis | None:
        """Return the client whose connect and reply waits each end after ``deadline`` s.

        A deadline kept by the socket's own timeout costs no thread or timer per call (a sync
        decision would otherwise wait for a worker thread). A late reply closes its connection
        (redis-py), so it never answers a later call. Its connections are its own: the deadline
        must not cut the longer waits of locks. A decision that has to reconnect first may take
        the deadline to connect and the deadline again for the reply.
        """
        client = self._bounded.get(deadline)
        if client is None and self._client is not None:
            connect = min(deadline, self.config.common.connect_timeout)
            options = {**self._client_options, "socket_timeout": deadline, "socket_connect_timeout": connect}
            client = self._bounded[deadline] = Redis(**options)
        return client

    def _run(
        self, script: str, args: list[Any], keys: Sequence[str] = (), client: Redis | None = None
    ) -> Any:
        client = client or self._client
        if client is None or self._client is None:
            raise BackendUnavailable(f"the connection to {self.url} is closed")
        source, sha = _SCRIPTS[script]
        call = (len(keys), *keys, *args)
        try:  # the hot path: EVALSHA directly, no redis-py Script object in between
            try:
                return client.execute_command("EVALSHA", sha, *call)  # type: ignore[no-untyped-call]
            except redis_errors.NoScriptError:
                # A restarted server forgot it: EVAL sends the source and caches it again.
                return client.execute_command("EVAL", source, *call)  # type: ignore[no-untyped-call]
        except DRIVER_ERRORS as exc:
            raise self._mapped(exc, script.lower()) from exc

    def _wait_for_push(self, key: str, list_keys: list[str], timeout: float) -> bytes | str | None:
        """Pop one of ``list_keys`` when something is pushed, or when the holder's lease would expire.

        Redis ends a blocked command's timeout only at its next tick (``hz`` 10: up to 100 ms
        late), so no block may end within a tick of the holder's expiry: a wait that reaches it
        blocks until a tick before and polls the last stretch (a single list; several, as a
        semaphore's, are not polled: a push in that last tick is seen at the expiry).
        """
        # A blocked read must finish before the socket timeout (op_timeout) fires.
        timeout = min(timeout, self.config.common.op_timeout * 0.8)
        now = time.monotonic()
        wake_at = self._expiries.wake_at(key)
        if wake_at is None or wake_at - now >= timeout + SERVER_TICK:
            return self._blpop(list_keys, timeout)  # ends before the expiry, even a tick late
        if wake_at - now > SERVER_TICK:
            popped = self._blpop(list_keys, wake_at - now - SERVER_TICK)
            if popped is not None:
                return popped
        stop = min(wake_at, now + timeout)
        while True:
            popped = self._lpop(list_keys[0]) if len(list_keys) == 1 else None
            left = stop - time.monotonic()
            if popped is not None or left <= 0:
                return popped
            sleep(min(left, LAST_STRETCH_POLL) if len(list_keys) == 1 else left)

    def _lpop(self, list_key: str) -> bytes | str | None:
        if self._client is None:
            return None
        try:
            popped: bytes | str | None = self._client.lpop(list_key)  # type: ignore[assignment]
        except DRIVER_ERRORS as exc:
            raise self._mapped(exc, "waiting") from exc
        return popped

    def _blpop(self, list_keys: list[str], timeout: float) -> bytes | str | None:
        if timeout < 0.001 or self._client is None:
            return None
        try:
            reply = self._client.blpop(list_keys, timeout=round(timeout, 3))
        except DRIVER_ERRORS as exc:
            raise self._mapped(exc, "waiting") from exc
        return None if reply is None else reply[1]

    def _fence_or_hint(self, key: str, reply: Any) -> int | None:
        value = int(reply)
        if value > 0:
            self._expiries.forget(key)
            return value
        self._expiries.saw(key, -value / 1000)  # refused: the reply is the holder's PTTL, negated
        return None

    def _recorded(self, key: str, value: Any, remaining: float | None) -> Recorded:
        """Return the record in ``value``: its fence in digits, a newline, its bytes (records.py)."""
        try:
            fence, _, record = bytes(value).partition(b"\n")
            return Recorded(record, int(fence), remaining)
        except (TypeError, ValueError) as exc:
            raise BackendProtocolError(f"unexpected record of {key!r} from {self.url}: {exc}") from exc

    def _mapped(self, exc: BaseException, what: str) -> BackendError:
        return map_errors(exc, f"{self.url} ({what})")


def _permits(key: str) -> str:
    """Return the key under which the expiries of semaphore ``key``'s permits are noted.

    Apart from the semaphore key's own, which its fair line (a lock on that key) notes.
    """
    return key + "\x00permits"  # no key holds a NUL


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
