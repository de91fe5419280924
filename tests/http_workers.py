"""Worker processes calling the test HTTP server: ``python -m tests.http_workers MODE ...``.

    python -m tests.http_workers MODE COLOUR STORE_URL SERVER_URL CALLS LOG

One worker makes CALLS calls (GET /x, one after another) through a client protected as MODE says:

- ``shared``: tenure.http with ``coord.circuit_breaker`` on STORE_URL (every process one state);
- ``local``: tenure.http with ``tenure.circuit_breaker`` (a breaker per process);
- ``pybreaker``: plain httpx through a pybreaker ``CircuitBreaker`` per process;
- ``none``: plain httpx.

COLOUR is "sync" or "async" (only tenure's modes have an async client). Each says ``READY`` once
set up, waits for a line on stdin (so that all start together), and writes JSON to LOG:
{"answered": calls the server answered, "refused": calls a breaker refused, "seconds": ...}.
The server's own hit counter is what the tests compare; these counts are for the report.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

import tenure
import tenure.http
from tenure._exceptions import CircuitOpen

ROOT = Path(__file__).resolve().parent.parent
BREAKER: dict[str, Any] = {"min_calls": 20, "failure_rate": 0.5, "reset_after": 30.0}
SHARED: dict[str, Any] = {**BREAKER, "sync_interval": 0.5}


def http_worker(*args: str) -> subprocess.Popen[str]:
    """Start ``python -m tests.http_workers *args`` with its stdin and output piped."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.http_workers", *args],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_fleet(procs: list[subprocess.Popen[str]], logs: list[Path], timeout: float) -> list[dict[str, Any]]:
    """Wait for every worker's READY, start them together, and return their reports."""
    try:
        for proc in procs:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if line.strip() != "READY":
                raise RuntimeError(f"a worker did not start: {line!r} {proc.stderr and proc.stderr.read()}")
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        for proc in procs:
            _, err = proc.communicate(timeout=timeout)
            assert proc.returncode == 0, err
        return [json.loads(log.read_text()) for log in logs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def ready_and_wait() -> None:
    print("READY", flush=True)
    sys.stdin.readline()


def sync_calls(mode: str, store_url: str, server_url: str, calls: int, name: str) -> dict[str, int]:
    counts = {"answered": 0, "refused": 0}
    refusals: tuple[type[BaseException], ...] = (CircuitOpen,)
    with tenure.Coordinator(store_url) as coord:
        client: httpx.Client
        if mode in ("shared", "local"):
            breaker: Any = tenure.circuit_breaker(name, **BREAKER)
            if mode == "shared":
                breaker = coord.circuit_breaker(name, **SHARED)
            client = tenure.http.Client(base_url=server_url, timeout=5, breaker=breaker)
        else:
            client = httpx.Client(base_url=server_url, timeout=5)
        call: Callable[[str], httpx.Response] = client.get
        if mode == "pybreaker":
            import pybreaker

            # pybreaker opens after fail_max failures in a row, counted in this process alone.
            guard = pybreaker.CircuitBreaker(
                fail_max=int(BREAKER["min_calls"]), reset_timeout=30, throw_new_error_on_trip=False
            )
            refusals = (pybreaker.CircuitBreakerError,)

            def checked(path: str) -> httpx.Response:
                response = client.get(path)
                response.raise_for_status()  # a 5xx is a failure for pybreaker too
                return response

            def guarded(path: str) -> httpx.Response:
                response: httpx.Response = guard.call(checked, path)
                return response

            call = guarded

        with client:
            ready_and_wait()
            for _ in range(calls):
                try:
                    call("/x")
                except refusals:
                    counts["refused"] += 1
                    continue
                except httpx.HTTPStatusError:
                    pass
                counts["answered"] += 1
    return counts


async def async_calls(mode: str, store_url: str, server_url: str, calls: int, name: str) -> dict[str, int]:
    counts = {"answered": 0, "refused": 0}
    async with tenure.AsyncCoordinator(store_url) as coord:
        breaker: Any
        if mode == "shared":
            breaker = coord.circuit_breaker(name, **SHARED)
        elif mode == "local":
            breaker = tenure.circuit_breaker(name, **BREAKER)
        else:
            raise SystemExit(f"no async client for mode {mode!r}")
        async with tenure.http.AsyncClient(base_url=server_url, timeout=5, breaker=breaker) as client:
            ready_and_wait()
            for _ in range(calls):
                try:
                    await client.get("/x")
                    counts["answered"] += 1
                except CircuitOpen:
                    counts["refused"] += 1
    return counts


def main() -> None:
    mode, colour, store_url, server_url, calls, log = sys.argv[1:7]
    name = sys.argv[7] if len(sys.argv) > 7 else "partner"
    started = time.monotonic()
    if colour == "async":
        counts = asyncio.run(async_calls(mode, store_url, server_url, int(calls), name))
    else:
        counts = sync_calls(mode, store_url, server_url, int(calls), name)
    Path(log).write_text(json.dumps({**counts, "seconds": time.monotonic() - started}))


if __name__ == "__main__":
    main()
