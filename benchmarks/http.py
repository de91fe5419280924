"""tenure.http side by side (issue 17): ``python -m benchmarks.http``.

- **overhead**: per-request p50 on a healthy local server (uvicorn in its own process, as
  tests/http_server.py runs it), plain httpx against tenure's fully protected client (one
  deadline, retry with its budget, an in-process breaker, a bulkhead, a fallback; and the same
  with ``coord.circuit_breaker`` on Redis, which makes no round trip while closed), sync and
  async, runs interleaved (the order alternates), the median of the runs' p50s and the ratio.
  Issue 17's target: <= 1.05x plain httpx. (A rate limiter is left out: a decision is a store
  round trip by nature, measured by benchmarks/ratelimit.)
- **outage**: 8 processes each make N calls to a server failing every call (503): how many the
  server receives with tenure's shared breaker (Redis), a tenure breaker per process, pybreaker
  per process (fail_max = min_calls), and no breaker; ratios to the shared breaker.

Tables to stdout, every figure to ``benchmarks/results/http-<time>.json``. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from tests.http_server import HttpServer, behaviour, running_server
from tests.http_workers import BREAKER, SHARED, http_worker, run_fleet
from tests.servers import RedisServer

import tenure
import tenure.http

RESULTS = Path(__file__).resolve().parent / "results"
PROCESSES = 8


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="bench-http-redis-") as folder:
        server = RedisServer(Path(folder)).start()
        try:
            yield server.url
        finally:
            server.stop()


def protections(breaker: Any = None) -> dict[str, Any]:
    """Everything but a rate limiter: what a protected call goes through when all is well."""
    breaker = tenure.circuit_breaker("bench") if breaker is None else breaker
    return {
        "timeout": 5.0,
        "retry": tenure.retry(attempts=3, backoff=0.05),
        "breaker": breaker,
        "bulkhead": tenure.bulkhead(limit=50, timeout=0.1),
        "fallback": httpx.Response(503, text="fallback"),
    }


def p50_us(samples: list[float]) -> float:
    return statistics.median(samples) * 1e6


def sync_run(get: Callable[[str], Any], requests: int) -> float:
    samples = []
    for _ in range(requests):
        started = time.perf_counter()
        get("/x")
        samples.append(time.perf_counter() - started)
    return p50_us(samples)


async def async_run(get: Callable[[str], Any], requests: int) -> float:
    samples = []
    for _ in range(requests):
        started = time.perf_counter()
        await get("/x")
        samples.append(time.perf_counter() - started)
    return p50_us(samples)


def overhead(server: HttpServer, store_url: str, repeat: int, requests: int) -> dict[str, Any]:
    server.set(default=behaviour())
    figures: dict[str, Any] = {}
    with tenure.Coordinator(store_url) as coord:
        shared = coord.circuit_breaker(f"bench-{uuid.uuid4().hex[:8]}", **SHARED)
        clients: dict[str, httpx.Client] = {
            "httpx": httpx.Client(base_url=server.url, timeout=5),
            "tenure": tenure.http.Client(base_url=server.url, **protections()),
            "tenure+shared": tenure.http.Client(base_url=server.url, **protections(shared)),
        }
        runs: dict[str, list[float]] = {name: [] for name in clients}
        for client in clients.values():
            sync_run(client.get, 200)  # warm: connections made, code paths loaded
        for round_ in range(repeat):
            order = list(clients) if round_ % 2 == 0 else list(reversed(clients))
            for name in order:
                runs[name].append(sync_run(clients[name].get, requests))
        for client in clients.values():
            client.close()
    figures["sync"] = summarise(runs)
    figures["async"] = asyncio.run(async_overhead(server, store_url, repeat, requests))
    return figures


async def async_overhead(server: HttpServer, store_url: str, repeat: int, requests: int) -> dict[str, Any]:
    async with tenure.AsyncCoordinator(store_url) as coord:
        shared = coord.circuit_breaker(f"bench-{uuid.uuid4().hex[:8]}", **SHARED)
        clients: dict[str, httpx.AsyncClient] = {
            "httpx": httpx.AsyncClient(base_url=server.url, timeout=5),
            "tenure": tenure.http.AsyncClient(base_url=server.url, **protections()),
            "tenure+shared": tenure.http.AsyncClient(base_url=server.url, **protections(shared)),
        }
        runs: dict[str, list[float]] = {name: [] for name in clients}
        for client in clients.values():
            await async_run(client.get, 200)
        for round_ in range(repeat):
            order = list(clients) if round_ % 2 == 0 else list(reversed(clients))
            for name in order:
                runs[name].append(await async_run(clients[name].get, requests))
        for client in clients.values():
            await client.aclose()
    return summarise(runs)


def summarise(runs: dict[str, list[float]]) -> dict[str, Any]:
    base = statistics.median(runs["httpx"])
    return {
        name: {
            "p50_us": statistics.median(p50s),
            "runs_p50_us": p50s,
            "ratio": statistics.median(p50s) / base,
            # the ratio run by run (same round, neighbouring runs): how much of it is noise
            "run_ratios": [p / b for p, b in zip(p50s, runs["httpx"], strict=True)],
        }
        for name, p50s in runs.items()
    }


def outage(server: HttpServer, store_url: str, calls: int) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-http-") as folder:
        for mode in ("shared", "local", "pybreaker", "none"):
            server.set(default=behaviour(status=503))
            logs = [Path(folder) / f"{mode}-{i}.json" for i in range(PROCESSES)]
            name = f"outage-{uuid.uuid4().hex[:8]}"
            url = store_url if mode == "shared" else "memory://"
            procs = [http_worker(mode, "sync", url, server.url, str(calls), str(log), name) for log in logs]
            started = time.monotonic()
            reports = run_fleet(procs, logs, timeout=300)
            figures[mode] = {
                "offered": PROCESSES * calls,
                "received": server.hits(),
                "refused": sum(report["refused"] for report in reports),
                "seconds": time.monotonic() - started,
            }
    for mode in figures:
        figures[mode]["ratio_to_shared"] = figures[mode]["received"] / max(1, figures["shared"]["received"])
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="interleaved runs per client")
    parser.add_argument("--requests", type=int, default=2000, help="requests per run")
    parser.add_argument("--calls", type=int, default=200, help="calls per process during the outage")
    args = parser.parse_args(argv)
    with running_server() as server, redis_server() as store_url:
        print("overhead ...", file=sys.stderr)
        figures = {"overhead": overhead(server, store_url, args.repeat, args.requests)}
        print("outage ...", file=sys.stderr)
        figures["outage"] = outage(server, store_url, args.calls)
    figures["settings"] = {**vars(args), "breaker": BREAKER, "processes": PROCESSES}
    report(figures)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"http-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(figures, indent=2))
    print(f"\nfigures: {out}")
    return 0


def report(figures: dict[str, Any]) -> None:
    for colour in ("sync", "async"):
        print(f"\nper-request p50 on a healthy local server, {colour} (median of interleaved runs)")
        for name, row in figures["overhead"][colour].items():
            spread = ", ".join(f"{r:.3f}" for r in row["run_ratios"])
            print(f"  {name:14} {row['p50_us']:8.1f} us   {row['ratio']:.3f}x   (run by run: {spread})")
    print(f"\noutage: {PROCESSES} processes, calls the failing server received")
    for mode, row in figures["outage"].items():
        print(
            f"  {mode:10} {row['received']:6} of {row['offered']}   refused {row['refused']:5}   "
            f"{row['ratio_to_shared']:.1f}x the shared breaker's"
        )


if __name__ == "__main__":
    sys.exit(main())
