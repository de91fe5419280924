"""The ``redis-single`` suite: locks over one redis-server on loopback.

tenure's ``redis://`` backend (unfair and ``fair=True``) against redis-py's own ``Lock``,
python-redis-lock and pottery's ``Redlock`` with one master, and the floor: the same redis-py
client sending ``SET key token NX PX ttl`` to acquire and a compare-and-delete script (EVALSHA)
to release. The server is started by the suite's environment, in the parent process, and
stopped at the end; the Redis handles here are shared with the ``redlock5`` suite.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.servers import RedisServer

from benchmarks.registry import BenchContext, Contender, Role, Suite, Target
from benchmarks.suites.common import TIMEOUT, TTL, TenureHandle

TTL_MS = int(TTL * 1000)

# KEYS[1]: the lock key; ARGV[1]: the owner token. Deletes the key only if that token holds it.
# Returns 1 when deleted, 0 when the key is absent or held by another token.
COMPARE_AND_DELETE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""

# Between two refused SET NX the floor's waiter retries at once: no sleep, so its hand-off gap is
# one round trip at most, the least any polling client can do (at the price of a busy server).
FLOOR_RETRY_SLEEP = 0.0


# Redis 7's own default, which Debian's redis.conf keeps (its save lines are comments): an RDB
# snapshot after 3600 s and 1 change, 300 s and 100, or 60 s and 10000; no append-only file.
PACKAGED_SAVE = "3600 1 300 100 60 10000"


@contextlib.contextmanager
def redis_servers(workdir: Path, count: int) -> Iterator[list[RedisServer]]:
    """Start ``count`` redis-servers (tests/servers.py) on free loopback ports; stop them all.

    The tests run them without persistence; here they snapshot as packaged (``PACKAGED_SAVE``).
    """
    servers: list[RedisServer] = []
    try:
        for index in range(count):
            server = RedisServer(workdir / f"redis-{index + 1}").start()
            servers.append(server)
            argv = ["redis-cli", "-p", str(server.port), "CONFIG", "SET", "save", PACKAGED_SAVE]
            subprocess.run(argv, capture_output=True, timeout=10, check=True)
        yield servers
    finally:
        for server in servers:
            server.stop()


def server_version(server: RedisServer) -> str:
    """Return the ``redis-server --version`` line, which the JSON records with the figures."""
    argv = [server.binary, "--version"]
    return subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False).stdout.strip()


def server_pids(servers: list[RedisServer]) -> str:
    return ",".join(str(server.proc.pid) for server in servers if server.proc is not None)


@contextlib.contextmanager
def one_server(workdir: Path) -> Iterator[dict[str, str]]:
    with redis_servers(workdir, 1) as (server,):
        yield {
            "tenure_url": server.url,
            "redis_url": server.url,  # the floor's and single-instance peers' server
            "redis_urls": server.url,  # every master, comma-separated (pottery's Redlock)
            "server": server_version(server),
            "server_pids": server_pids([server]),  # for --pin-cpu
        }


def _client(url: str) -> Any:
    import redis  # the redis extra: missing, every Redis contender is skipped

    return redis.Redis.from_url(url)


class RedisFloor:
    """The floor: ``SET key token NX PX ttl`` to acquire, compare-and-delete (EVALSHA) to release.

    One redis-py client and the script registered once. Each acquisition draws a fresh random
    token, as any correct lock must (redis-py's ``Lock`` does too): with one token for every
    hold, a late release of an old hold would free a newer one. A waiter retries SET NX with no
    pause (``FLOOR_RETRY_SLEEP``).
    """

    def __init__(self, ctx: BenchContext, name: str) -> None:
        self._client = _client(ctx.params["redis_url"])
        self._release = self._client.register_script(COMPARE_AND_DELETE)
        self._key = f"floor:{name}"
        self._token = ""

    def acquire(self) -> None:
        self._token = os.urandom(16).hex()
        deadline = time.monotonic() + TIMEOUT
        while not self._client.set(self._key, self._token, nx=True, px=TTL_MS):
            if time.monotonic() > deadline:
                raise TimeoutError(f"floor lock {self._key!r} not acquired within {TIMEOUT} s")
            if FLOOR_RETRY_SLEEP:
                time.sleep(FLOOR_RETRY_SLEEP)

    def release(self) -> None:
        if not self._release(keys=[self._key], args=[self._token]):
            raise RuntimeError(f"floor lock {self._key!r} was not held at release")

    def close(self) -> None:
        self._client.close()


class RedisPyLockHandle:
    """redis-py's ``Lock``: ``client.lock(name, timeout=ttl, blocking_timeout=...)``, defaults kept.

    A waiter sleeps 0.1 s (its default ``sleep``) between SET NX attempts.
    """

    def __init__(self, ctx: BenchContext, name: str) -> None:
        self._client = _client(ctx.params["redis_url"])
        self._lock = self._client.lock(f"redis-py:{name}", timeout=TTL, blocking_timeout=TIMEOUT)

    def acquire(self) -> None:
        if not self._lock.acquire():
            raise TimeoutError(f"redis-py lock not acquired within {TIMEOUT} s")

    def release(self) -> None:
        self._lock.release()

    def close(self) -> None:
        self._client.close()


class PythonRedisLockHandle:
    """python-redis-lock: ``redis_lock.Lock(client, name, expire=ttl)``, no auto-renewal.

    Its acquire reads the key first (GET, to refuse re-acquiring), then SET NX EX; a waiter
    blocks in BLPOP on a signal list that each release pushes one element to.
    """

    def __init__(self, ctx: BenchContext, name: str) -> None:
        # A bench peer (missing: ImportError, this contender is skipped); untyped, hence Any.
        redis_lock: Any = importlib.import_module("redis_lock")
        self._client = _client(ctx.params["redis_url"])
        self._lock = redis_lock.Lock(self._client, f"python-redis-lock:{name}", expire=int(TTL))

    def acquire(self) -> None:
        if not self._lock.acquire(blocking=True, timeout=int(TIMEOUT)):
            raise TimeoutError(f"python-redis-lock not acquired within {TIMEOUT} s")

    def release(self) -> None:
        self._lock.release()

    def close(self) -> None:
        self._client.close()


class PotteryHandle:
    """pottery's ``Redlock(key=name, masters={clients}, auto_release_time=ttl)``.

    Every acquire and release fans out through a new thread pool, even for one master; a waiter
    sleeps a random 0-0.2 s between attempts. Redis errors are raised, not logged and ignored.
    """

    def __init__(self, ctx: BenchContext, name: str) -> None:
        from pottery import Redlock  # a bench peer: missing, this contender is skipped

        self._clients = [_client(url) for url in ctx.params["redis_urls"].split(",")]
        self._lock = Redlock(
            key=f"pottery:{name}", masters=self._clients, auto_release_time=TTL, raise_on_redis_errors=True
        )

    def acquire(self) -> None:
        if not self._lock.acquire(timeout=TIMEOUT):
            raise TimeoutError(f"pottery Redlock not acquired within {TIMEOUT} s")

    def release(self) -> None:
        self._lock.release()

    def close(self) -> None:
        for client in self._clients:
            client.close()


def tenure_redis(ctx: BenchContext, name: str) -> TenureHandle:
    return TenureHandle(ctx.params["tenure_url"], name)


def tenure_redis_fair(ctx: BenchContext, name: str) -> TenureHandle:
    return TenureHandle(ctx.params["tenure_url"], f"fair-{name}", fair=True)


SUITE = Suite(
    name="redis-single",
    description="locks over one redis-server on loopback",
    baseline="redis-py",
    environment=one_server,
    contenders=(
        Contender(
            "tenure-redis",
            Role.TENURE,
            tenure_redis,
            floor="redis-floor",
            ttl=True,
            fence=True,
            summary="tenure.Coordinator('redis://…').lock(name, ttl=10).acquire() / lease.release()",
            notes="Lua scripts; a release wakes a waiter blocked in BLPOP",
        ),
        Contender(
            "tenure-redis-fair",
            Role.TENURE,
            tenure_redis_fair,
            floor="redis-floor",
            ttl=True,
            fence=True,
            summary="the same with lock(name, ttl=10, fair=True): waiters served in arrival order",
            notes="a release hands the lock to the oldest live waiter",
        ),
        Contender(
            "redis-py",
            Role.PEER,
            RedisPyLockHandle,
            floor="redis-floor",
            ttl=True,
            summary="redis.Redis.lock(name, timeout=10, blocking_timeout=10).acquire() / .release()",
            notes="SET NX PX, Lua release; waiters sleep 0.1 s between attempts (its default)",
        ),
        Contender(
            "python-redis-lock",
            Role.PEER,
            PythonRedisLockHandle,
            floor="redis-floor",
            ttl=True,
            summary="redis_lock.Lock(client, name, expire=10).acquire(timeout=10) / .release()",
            notes="GET + SET NX EX per acquire, Lua release + LPUSH signal; waiters BLPOP the signal",
        ),
        Contender(
            "pottery",
            Role.PEER,
            PotteryHandle,
            floor="redis-floor",
            ttl=True,
            summary="pottery.Redlock(key=name, masters={client}, auto_release_time=10)",
            notes="a thread pool per acquire/release; waiters sleep uniform(0, 0.2) s",
        ),
        Contender(
            "redis-floor",
            Role.FLOOR,
            RedisFloor,
            ttl=True,
            summary="raw redis-py: SET key token NX PX ttl / EVALSHA compare-and-delete",
            notes="waiters retry SET NX at once, no sleep",
        ),
    ),
    targets=(
        Target("tenure-redis", "uncontended.p50_us", 1.10, "redis-floor", label="uncontended"),
        Target("tenure-redis", "contended.gap_p50_us", 1.5, "redis-floor", label="hand-off"),
        Target("tenure-redis-fair", "contended.gap_p50_us", 1.5, "redis-floor", label="fair hand-off"),
        Target("tenure-redis-fair", "contended.fairness", 0.99, at_most=False, label="fairness"),
        Target("tenure-redis-fair", "contended.max_wait_ms", 10.0, hold_ms=0.0, label="max wait"),
    ),
)
