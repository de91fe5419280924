"""The raw floors of one rate-limit decision in ``benchmarks.ratelimit``: the least a backend does.

On Redis an ``EVALSHA`` of a trivial script through redis-py built with tenure's own client
options (sync and ``redis.asyncio``); on the SQL suites one autocommit upsert of a key's row
through tenure's driver, the least a durable admit costs. Each is a ``SyncHandle`` (or, async,
has ``decide()``/``close()`` coroutines); ``SyncHandle``, the sync deciders' base, is here too.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from typing import Any

from benchmarks.registry import BenchContext
from benchmarks.suites.common import TIMEOUT

# The floor's script: trivial, one key and the three arguments of tenure's one-rate step.
TRIVIAL_SCRIPT = "return 1"


class SyncHandle:
    """What every sync decider shares: ``acquire()`` is one decision, ``release()`` nothing.

    ``warm()`` makes the decider's round trip without taking anything from its key (a look):
    connections, scripts and imports are ready before a timed window opens. ``unavailable``
    counts decisions a deadline made instead of the store (tenure only).
    """

    unavailable = 0

    def decide(self) -> bool:
        raise NotImplementedError

    def warm(self) -> None:
        """Nothing to look at (the floors): ``decide()`` warms them."""
        self.decide()

    def close(self) -> None:
        raise NotImplementedError

    def acquire(self) -> None:
        self.decide()

    def release(self) -> None:
        """Nothing: a cycle is one decision."""


def _tenure_redis_options(url: str, colour: str) -> dict[str, Any]:
    """Return the redis-py options tenure's ``colour`` backend builds its client with for ``url``."""
    import importlib

    from tenure._registry import resolve

    _, config = resolve(url, colour)  # type: ignore[arg-type]
    connection = importlib.import_module(f"tenure.{colour}.backends.redis.connection")
    options: dict[str, Any] = connection.client_options(config)
    return options


def _floor_args(key: str) -> tuple[Any, ...]:
    # The shape of tenure's one-rate call: one key, the cost, an interval and a capacity.
    return (1, f"{{bench:{key}}}:tats", "1", repr(0.006), repr(1.0))


class RedisEvalshaFloor(SyncHandle):
    """``EVALSHA`` of a trivial script, with tenure's client options (redis-py, no retries).

    With ``rate_step=True`` the script is tenure's own ``RATE_STEP`` with its arguments (one rate
    that admits every call): the same round trip and server work as tenure's decision, without
    tenure's Python around it. Not a floor to meet, a way to tell where a gap comes from.
    """

    def __init__(self, url: str, key: str, *, rate_step: bool = False) -> None:
        import redis

        self._client = redis.Redis(**_tenure_redis_options(url, "_sync"))
        if rate_step:
            from tenure._core.ratelimit import parse_rates
            from tenure._sync.backends.redis.ratelimit import RATE_STEP, rate_args, tats_key

            script = RATE_STEP
            args = rate_args(parse_rates("1000000/s", 1_000_000), 1)
            self._args: tuple[Any, ...] = (1, tats_key(f"bench:raw:{key}"), *args)
        else:
            script, self._args = TRIVIAL_SCRIPT, _floor_args(key)
        self._sha = self._client.script_load(script)

    def decide(self) -> bool:
        reply = self._client.execute_command("EVALSHA", self._sha, *self._args)  # type: ignore[no-untyped-call]
        return bool(reply == 1 or (isinstance(reply, list) and reply[0] == 1))

    def close(self) -> None:
        self._client.close()


class AsyncRedisEvalshaFloor:
    """The same with ``redis.asyncio``, as tenure's async backend."""

    def __init__(self, url: str, key: str) -> None:
        import redis.asyncio

        self._client = redis.asyncio.Redis(**_tenure_redis_options(url, "_async"))
        self._sha: str | None = None
        self._args = _floor_args(key)

    async def decide(self) -> bool:
        if self._sha is None:
            self._sha = await self._client.script_load(TRIVIAL_SCRIPT)
        reply = await self._client.execute_command("EVALSHA", self._sha, *self._args)  # type: ignore[no-untyped-call]
        return bool(reply == 1)

    async def close(self) -> None:
        await self._client.aclose()


class SQLWriteFloor(SyncHandle):
    """One autocommit upsert of a key's row (a short text), the least a durable admit costs."""

    def __init__(self, execute: Callable[[], Any], close: Callable[[], None]) -> None:
        self._execute, self._close = execute, close

    def decide(self) -> bool:
        self._execute()
        return True

    def close(self) -> None:
        self._close()


def _tats() -> str:
    return repr(1.7e9 + int.from_bytes(os.urandom(3), "big") / 1e3)  # a TAT's text, as tenure stores


def sqlite_write(ctx: BenchContext, key: str) -> SQLWriteFloor:
    """``INSERT … ON CONFLICT DO UPDATE`` in autocommit, WAL and synchronous=NORMAL as tenure's file."""
    db = sqlite3.connect(ctx.path("tenure.db"), timeout=TIMEOUT, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(
        "CREATE TABLE IF NOT EXISTS bench_rate_write (k TEXT PRIMARY KEY, v TEXT NOT NULL) WITHOUT ROWID"
    )
    sql = "INSERT INTO bench_rate_write VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v"
    return SQLWriteFloor(lambda: db.execute(sql, (key, _tats())), db.close)


def postgresql_write(ctx: BenchContext, key: str) -> SQLWriteFloor:
    """``INSERT … ON CONFLICT DO UPDATE`` (prepared), psycopg 3 in autocommit: one commit."""
    import psycopg

    conn = psycopg.connect(ctx.params["pg_url"], autocommit=True)
    conn.execute("CREATE TABLE IF NOT EXISTS bench_rate_write (k text PRIMARY KEY, v text NOT NULL)")
    sql = "INSERT INTO bench_rate_write VALUES (%s, %s) ON CONFLICT (k) DO UPDATE SET v = excluded.v"
    return SQLWriteFloor(lambda: conn.execute(sql, (key, _tats()), prepare=True), conn.close)


def mysql_write(ctx: BenchContext, key: str) -> SQLWriteFloor:
    """``INSERT … ON DUPLICATE KEY UPDATE`` with PyMySQL (tenure's driver) in autocommit, InnoDB."""
    from benchmarks.suites.mysql import _connect

    conn = _connect(ctx)
    with conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE IF NOT EXISTS bench_rate_write "
            "(k VARCHAR(191) PRIMARY KEY, v VARCHAR(64) NOT NULL) ENGINE=InnoDB"
        )
    sql = "INSERT INTO bench_rate_write VALUES (%s, %s) ON DUPLICATE KEY UPDATE v = VALUES(v)"

    def write() -> None:
        with conn.cursor() as cur:
            cur.execute(sql, (key, _tats()))

    return SQLWriteFloor(write, conn.close)
