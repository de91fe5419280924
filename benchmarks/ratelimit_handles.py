"""The deciders of ``benchmarks.ratelimit``: tenure, the raw floors, ``limits`` and ``pyrate-limiter``.

A decider makes one rate-limit decision per ``decide()`` (True: admitted) and frees its
connections on ``close()``; ``acquire()`` is ``decide()`` and ``release()`` does nothing, so the
uncontended loop of ``benchmarks/uncontended.py`` times one decision per cycle. An async decider
(``AsyncDecider``) is built and used inside a running event loop. Every decider is built from a
``BenchContext`` (the suite's servers), a key and a ``Limit``; worker processes find them by name
in ``SYNC`` and ``ASYNC``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import tenure
from benchmarks.ratelimit_floors import (
    TRIVIAL_SCRIPT,
    AsyncRedisEvalshaFloor,
    RedisEvalshaFloor,
    SyncHandle,
    mysql_write,
    postgresql_write,
    sqlite_write,
)
from benchmarks.registry import BenchContext, Unavailable

NO_COUNTERS = "no Counters capability"


@dataclass(frozen=True)
class Limit:
    """``permits`` per ``period`` seconds; ``burst`` for the token buckets (GCRA), else unused."""

    permits: int
    period: float
    burst: int

    @property
    def rate(self) -> str:
        return f"{self.permits}/{self.period:g}s"

    def budget(self, kind: str, elapsed: float) -> int:
        """Return the most a correct limiter of ``kind`` admits within ``elapsed`` seconds.

        A window (``kind`` "window") admits ``permits`` per window (a run shorter than the period:
        ``permits``); a token bucket ("bucket") admits its burst plus the rate over the span.
        """
        if kind == "bucket":
            return self.burst + math.floor(elapsed * self.permits / self.period)
        return self.permits * max(1, math.ceil(elapsed / self.period))


class Decider(Protocol):
    def decide(self) -> bool: ...

    def close(self) -> None: ...


class AsyncDecider(Protocol):
    async def decide(self) -> bool: ...

    async def close(self) -> None: ...


# -- tenure ----------------------------------------------------------------------------------------


def _check_counters(capabilities: frozenset[tenure.Capability], url: str) -> None:
    if tenure.Capability.COUNTERS not in capabilities:
        declared = ", ".join(sorted(c.value for c in capabilities)) or "none"
        raise Unavailable(f"{NO_COUNTERS}: {url.split(':', 1)[0]}:// declares {declared}")


class TenureDecider(SyncHandle):
    """``coord.rate_limiter(name, rate=, burst=, deadline=).try_acquire(key=)`` (sync)."""

    def __init__(self, url: str, key: str, limit: Limit, *, deadline: float | None = 0.05) -> None:
        try:
            self._coordinator = tenure.Coordinator(url)
        except tenure.ConfigurationError as exc:
            raise Unavailable(f"backend not available ({type(exc).__name__}: {exc})") from exc
        try:
            _check_counters(self._coordinator.capabilities, url)
            self._limiter = self._coordinator.rate_limiter(
                "bench", rate=limit.rate, burst=limit.burst, deadline=deadline, on_unavailable="deny"
            )
        except BaseException:
            self._coordinator.close()
            raise
        self._key = key

    def decide(self) -> bool:
        # try_acquire(key=) is decide(key=).allowed: the same call, which also says who decided.
        state = self._limiter.decide(key=self._key)
        self.unavailable += state.unavailable
        return state.allowed

    def warm(self) -> None:
        self._limiter.peek(key=self._key)

    def close(self) -> None:
        self._coordinator.close()


class AsyncTenureDecider:
    """The same with ``tenure.AsyncCoordinator`` (built inside the running loop)."""

    def __init__(self, url: str, key: str, limit: Limit, *, deadline: float | None = 0.05) -> None:
        try:
            self._coordinator = tenure.AsyncCoordinator(url)
        except tenure.ConfigurationError as exc:
            raise Unavailable(f"backend not available ({type(exc).__name__}: {exc})") from exc
        _check_counters(self._coordinator.capabilities, url)
        self._limiter = self._coordinator.rate_limiter(
            "bench", rate=limit.rate, burst=limit.burst, deadline=deadline, on_unavailable="deny"
        )
        self._key = key

    async def decide(self) -> bool:
        return await self._limiter.try_acquire(key=self._key)

    async def close(self) -> None:
        await self._coordinator.aclose()


# -- the peers -------------------------------------------------------------------------------------


class LimitsDecider(SyncHandle):
    """``limits``: ``<Strategy>(RedisStorage(url)).hit(RateLimitItemPerSecond(n, period), key)``."""

    def __init__(self, url: str, key: str, limit: Limit, strategy: str) -> None:
        from limits import RateLimitItemPerSecond, strategies
        from limits.storage import RedisStorage

        self._storage = RedisStorage(url)
        self._limiter = getattr(strategies, strategy)(self._storage)
        self._item = RateLimitItemPerSecond(limit.permits, int(limit.period))
        self._key = key

    def decide(self) -> bool:
        return bool(self._limiter.hit(self._item, self._key))

    def warm(self) -> None:
        self._limiter.test(self._item, self._key)

    def close(self) -> None:
        self._storage.storage.close()


class PyrateDecider(SyncHandle):
    """``pyrate-limiter``: ``Limiter(bucket).try_acquire(key, blocking=False)`` on the suite's Redis.

    ``bucket`` is ``RedisBucket`` (a sorted-set log per key, its Lua script) or ``StateBucket``
    with ``GCRA()`` over ``RedisStateStore`` (one hash per key): both by the client's clock.
    """

    def __init__(self, url: str, key: str, limit: Limit, *, gcra: bool) -> None:
        import redis
        from pyrate_limiter import GCRA, Limiter, Rate, RedisBucket, RedisStateStore, StateBucket

        self._client = redis.Redis.from_url(url)
        rates = [Rate(limit.permits, int(limit.period * 1000), burst=limit.burst if gcra else None)]
        bucket: Any
        if gcra:
            bucket = StateBucket(
                rates, algorithm=GCRA(), store=RedisStateStore(self._client, f"pyrate-gcra:{key}")
            )
        else:
            bucket = RedisBucket.init(rates, self._client, f"pyrate:{key}")
        self._bucket = bucket
        self._limiter = Limiter(bucket)
        self._key = key

    def decide(self) -> bool:
        return bool(self._limiter.try_acquire(self._key, blocking=False))

    def warm(self) -> None:
        self._bucket.count()

    def close(self) -> None:
        self._limiter.close()
        self._client.close()


# -- by name ---------------------------------------------------------------------------------------

SyncFactory = Callable[[BenchContext, str, Limit], SyncHandle]
AsyncFactory = Callable[[BenchContext, str, Limit], AsyncDecider]


def tenure_url(ctx: BenchContext) -> str:
    if ctx.suite == "sqlite-local":
        return f"sqlite:///{ctx.path('tenure.db')}"  # the file the suite's tenure contenders use
    return ctx.params["tenure_url"]


@dataclass(frozen=True)
class Peer:
    """A decider by name: its role, how it is built, what it is, and which budget it keeps."""

    role: str  # "tenure", "peer", "floor"
    summary: str
    sync: SyncFactory | None = None
    make_async: AsyncFactory | None = None
    budget: str = "bucket"  # "bucket" (burst + rate × time) or "window" (permits per period)


def _limits(strategy: str) -> SyncFactory:
    return lambda ctx, key, limit: LimitsDecider(ctx.params["redis_url"], key, limit, strategy)


DECIDERS: dict[str, Peer] = {
    "tenure": Peer(
        "tenure",
        "rate_limiter(name, rate=, burst=).try_acquire(key=) (defaults: deadline 0.05 s)",
        sync=lambda ctx, key, limit: TenureDecider(tenure_url(ctx), key, limit),
    ),
    "tenure-no-deadline": Peer(
        "tenure",
        "the same with deadline=None (the call on the caller's thread, op_timeout bounds it)",
        sync=lambda ctx, key, limit: TenureDecider(tenure_url(ctx), key, limit, deadline=None),
    ),
    "tenure-async": Peer(
        "tenure",
        "AsyncCoordinator: await rate_limiter(...).try_acquire(key=) (deadline 0.05 s)",
        make_async=lambda ctx, key, limit: AsyncTenureDecider(tenure_url(ctx), key, limit),
    ),
    "tenure-async-no-deadline": Peer(
        "tenure",
        "the same with deadline=None (no asyncio.timeout around the call)",
        make_async=lambda ctx, key, limit: AsyncTenureDecider(tenure_url(ctx), key, limit, deadline=None),
    ),
    "redis-evalsha": Peer(
        "floor",
        f"EVALSHA of {TRIVIAL_SCRIPT!r} (1 key, 3 args), redis-py with tenure's client options",
        sync=lambda ctx, key, limit: RedisEvalshaFloor(ctx.params["redis_url"], key),
    ),
    "redis-evalsha-rate-step": Peer(
        "floor",
        "EVALSHA of tenure's own RATE_STEP script and arguments, the same client: tenure minus its Python",
        sync=lambda ctx, key, limit: RedisEvalshaFloor(ctx.params["redis_url"], key, rate_step=True),
    ),
    "redis-evalsha-async": Peer(
        "floor",
        "the same with redis.asyncio",
        make_async=lambda ctx, key, limit: AsyncRedisEvalshaFloor(ctx.params["redis_url"], key),
    ),
    "sqlite-write": Peer(
        "floor", (sqlite_write.__doc__ or "").strip(), sync=lambda c, k, _: sqlite_write(c, k)
    ),
    "postgresql-write": Peer(
        "floor", (postgresql_write.__doc__ or "").strip(), sync=lambda c, k, _: postgresql_write(c, k)
    ),
    "mysql-write": Peer("floor", (mysql_write.__doc__ or "").strip(), sync=lambda c, k, _: mysql_write(c, k)),
    "limits-moving": Peer(
        "peer",
        "limits MovingWindowRateLimiter, RedisStorage",
        sync=_limits("MovingWindowRateLimiter"),
        budget="window",
    ),
    "limits-fixed": Peer(
        "peer",
        "limits FixedWindowRateLimiter, RedisStorage",
        sync=_limits("FixedWindowRateLimiter"),
        budget="window",
    ),
    "limits-sliding": Peer(
        "peer",
        "limits SlidingWindowCounterRateLimiter, RedisStorage (an approximation)",
        sync=_limits("SlidingWindowCounterRateLimiter"),
        budget="window",
    ),
    "pyrate-bucket": Peer(
        "peer",
        "pyrate-limiter Limiter(RedisBucket) (a sorted-set log, client clock)",
        sync=lambda ctx, key, limit: PyrateDecider(ctx.params["redis_url"], key, limit, gcra=False),
        budget="window",
    ),
    "pyrate-gcra": Peer(
        "peer",
        "pyrate-limiter Limiter(StateBucket(GCRA(), RedisStateStore)) (client clock)",
        sync=lambda ctx, key, limit: PyrateDecider(ctx.params["redis_url"], key, limit, gcra=True),
    ),
}


def build_sync(name: str, ctx: BenchContext, key: str, limit: Limit) -> SyncHandle:
    factory = DECIDERS[name].sync
    if factory is None:
        raise TypeError(f"{name} is an async decider")
    return factory(ctx, key, limit)


async def build_async(name: str, ctx: BenchContext, key: str, limit: Limit) -> AsyncDecider:
    factory = DECIDERS[name].make_async
    if factory is None:
        raise TypeError(f"{name} is a sync decider")
    return factory(ctx, key, limit)
