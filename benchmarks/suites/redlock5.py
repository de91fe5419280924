"""The ``redlock5`` suite: Redlock over five independent redis-servers on loopback.

tenure's ``redlock://`` backend against pottery's ``Redlock`` with five masters, and two floors:
the Redlock algorithm written by hand over raw redis-py connections (``SET NX PX`` written to all
five servers before any reply is read, majority, validity check, compare-and-delete on all), and
the single-Redis floor of the ``redis-single`` suite on the first server, the reference the
issue's Redlock target is set against. The five servers are started by the suite's environment.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.registry import BenchContext, Contender, Role, Suite, Target
from benchmarks.suites.common import TIMEOUT, TTL, TenureHandle
from benchmarks.suites.redis_single import (
    COMPARE_AND_DELETE,
    FLOOR_RETRY_SLEEP,
    TTL_MS,
    PotteryHandle,
    RedisFloor,
    redis_servers,
    server_pids,
    server_version,
)

INSTANCES = 5
# Redlock's validity margin for clock drift: 1% of the TTL plus 2 ms (the algorithm's own figure).
DRIFT = TTL * 0.01 + 0.002


@contextlib.contextmanager
def five_servers(workdir: Path) -> Iterator[dict[str, str]]:
    with redis_servers(workdir, INSTANCES) as servers:
        yield {
            "tenure_url": "redlock://" + ",".join(f"127.0.0.1:{s.port}" for s in servers),
            "redis_url": servers[0].url,  # the single-Redis floor runs on the first instance
            "redis_urls": ",".join(s.url for s in servers),
            "server": server_version(servers[0]),
            "server_pids": server_pids(servers),  # for --pin-cpu
        }


class RedlockFloor:
    """Redlock by hand: one raw connection per server, requests written to all before reading.

    Acquire: ``SET key token NX PX ttl`` on every server; held when a majority said OK and the
    validity (ttl - elapsed - drift) is still positive, else the partial votes are given back
    (compare-and-delete on every server) and the waiter retries at once, like the single floor.
    Release: compare-and-delete (EVALSHA) on every server, all replies read.
    """

    def __init__(self, ctx: BenchContext, name: str) -> None:
        import redis  # the redis extra: missing, this contender is skipped

        self._connections: list[Any] = []
        for url in ctx.params["redis_urls"].split(","):
            address = url.removeprefix("redis://").split("/")[0]
            host, port = address.rsplit(":", 1)
            connection = redis.Connection(host=host, port=int(port))  # type: ignore[no-untyped-call]
            connection.connect()  # type: ignore[no-untyped-call]
            self._connections.append(connection)
        self._sha = self._fan_out("SCRIPT", "LOAD", COMPARE_AND_DELETE)[0]
        self._quorum = len(self._connections) // 2 + 1
        self._key = f"redlock-floor:{name}"
        self._token = os.urandom(16).hex()

    def _fan_out(self, *command: Any) -> list[Any]:
        """Send ``command`` to every server, then read every reply: one round trip in all."""
        for connection in self._connections:
            connection.send_command(*command)
        return [connection.read_response() for connection in self._connections]

    def acquire(self) -> None:
        deadline = time.monotonic() + TIMEOUT
        while True:
            started = time.monotonic()
            replies = self._fan_out("SET", self._key, self._token, "NX", "PX", TTL_MS)
            votes = sum(reply is not None for reply in replies)
            if votes >= self._quorum and TTL - (time.monotonic() - started) - DRIFT > 0:
                return
            if votes:
                self._fan_out("EVALSHA", self._sha, 1, self._key, self._token)
            if time.monotonic() > deadline:
                raise TimeoutError(f"redlock floor {self._key!r} not acquired within {TIMEOUT} s")
            if FLOOR_RETRY_SLEEP:
                time.sleep(FLOOR_RETRY_SLEEP)

    def release(self) -> None:
        released = sum(self._fan_out("EVALSHA", self._sha, 1, self._key, self._token))
        if released < self._quorum:
            raise RuntimeError(f"redlock floor {self._key!r} held on {released} servers at release")

    def close(self) -> None:
        for connection in self._connections:
            connection.disconnect()


def tenure_redlock(ctx: BenchContext, name: str) -> TenureHandle:
    return TenureHandle(ctx.params["tenure_url"], name)


SUITE = Suite(
    name="redlock5",
    description=f"Redlock over {INSTANCES} independent redis-servers on loopback",
    baseline="redis-floor",
    environment=five_servers,
    contenders=(
        Contender(
            "tenure-redlock",
            Role.TENURE,
            tenure_redlock,
            floor="redlock-floor",
            ttl=True,
            summary="tenure.Coordinator('redlock://h:p,…×5').lock(name, ttl=10).acquire() / .release()",
            notes="fences are best-effort on Redlock",
        ),
        Contender(
            "pottery",
            Role.PEER,
            PotteryHandle,
            floor="redlock-floor",
            ttl=True,
            summary=f"pottery.Redlock(key=name, masters={{{INSTANCES} clients}}, auto_release_time=10)",
            notes="a thread pool per acquire/release; waiters sleep uniform(0, 0.2) s",
        ),
        Contender(
            "redlock-floor",
            Role.FLOOR,
            RedlockFloor,
            ttl=True,
            summary=f"raw redis-py connections: SET NX PX on all {INSTANCES}, majority, CAS-delete on all",
            notes="requests written to every server before any reply is read; waiters retry at once",
        ),
        Contender(
            "redis-floor",
            Role.FLOOR,
            RedisFloor,
            ttl=True,
            summary="the single-Redis floor (SET NX PX / EVALSHA compare-and-delete) on server 1",
            notes="the reference of the Redlock target",
        ),
    ),
    targets=(Target("tenure-redlock", "uncontended.p50_us", 2.0, "redis-floor", label="uncontended"),),
)
