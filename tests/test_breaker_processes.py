"""The shared circuit breaker and its seam across real processes (issue 17).

Every backend that shares state between processes and has the Counters capability. Workers are
``tests/breaker_workers.py``, half async and half sync; each prints nothing but READY, and the
tests print what they measured with a ``BREAKER`` prefix (``pytest -s`` shows it).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

import tenure
from tenure._core.guarantees import Capability, Guarantee
from tests.breaker_workers import FLEET, breaker_worker
from tests.conftest import backends_able, declared
from tests.servers import RedisServer
from tests.workers import read_line

SHARED = [
    name
    for name in backends_able(Capability.COUNTERS)
    if declared(name) & {Guarantee.CROSS_PROCESS, Guarantee.CROSS_HOST}
]
COLOURS = ["async", "sync"]

pytestmark = pytest.mark.slow


@pytest.fixture
def url(backend: str, request: pytest.FixtureRequest) -> str:
    value: str = request.getfixturevalue(f"{backend}_url")
    return value


def run_all(procs: list[subprocess.Popen[str]], logs: list[Path], timeout: float) -> list[dict[str, Any]]:
    """Release the workers together, wait for them (killing any left at the end); return their logs."""
    try:
        for proc in procs:
            read_line(proc, "READY")
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        reports = []
        for proc, log in zip(procs, logs, strict=True):
            _, err = proc.communicate(timeout=timeout)
            assert proc.returncode == 0, err
            reports.append(json.loads(log.read_text()))
        return reports
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.mark.parametrize("backend", SHARED)
def test_eight_processes_updating_one_state_lose_nothing(url: str, backend: str, tmp_path: Path) -> None:
    rounds, key = 40, f"test-state:{uuid.uuid4().hex}"
    logs = [tmp_path / f"inc-{i}.json" for i in range(8)]
    procs = [
        breaker_worker("increment", COLOURS[i % 2], url, key, str(rounds), str(log))
        for i, log in enumerate(logs)
    ]
    started = time.monotonic()
    reports = run_all(procs, logs, timeout=120)
    seen = sorted(count for report in reports for count in report["seen"])
    print(f"BREAKER increments {backend}: 8 x {rounds} in {time.monotonic() - started:.2f} s")
    assert seen == list(range(1, 8 * rounds + 1))  # each saw the one before it: none lost or repeated


@pytest.mark.parametrize("backend", SHARED)
def test_a_fleet_opens_together_and_recovers_through_the_trials(
    url: str, backend: str, tmp_path: Path
) -> None:
    """8 processes fail every call, a 9th only succeeds; the shared breaker opens for all.

    Bounds: the fleet makes at most min_calls failures, plus one in flight per failing process;
    the watcher, which saw no failure, is refused within 1 s of the opening; half-open admits
    exactly ``trials`` trial calls across the 9 processes, which close it.
    """
    name, failing = f"partner-{uuid.uuid4().hex[:8]}", 8
    logs = [tmp_path / f"fleet-{i}.json" for i in range(failing + 1)]
    procs = [
        breaker_worker("fleet", COLOURS[i % 2], url, name, "1" if i < failing else "0", str(log))
        for i, log in enumerate(logs)
    ]
    reports = run_all(procs, logs, timeout=90)
    fleet, watcher = reports[:failing], reports[failing]
    failures = sum(report["failures"] for report in fleet)
    opened = min(report["opened_seen"] for report in fleet)
    seen_by_watcher = watcher["opened_seen"] - opened
    trials = sum(report["trials"] for report in reports)
    print(
        f"BREAKER fleet {backend}: {failures} failures before open (min_calls {FLEET['min_calls']}), "
        f"watcher saw it after {seen_by_watcher:.3f} s ({watcher['successes']} successes), "
        f"{trials} trials, refused {sum(r['refused'] for r in reports)}"
    )
    assert FLEET["min_calls"] <= failures <= FLEET["min_calls"] + failing
    assert watcher["failures"] == 0 and 0 <= seen_by_watcher <= 1.0
    assert trials == FLEET["trials"]
    assert all(report["closed_seen"] is not None for report in reports)


def test_a_store_that_does_not_answer_stalls_no_call_past_the_deadline(tmp_path: Path) -> None:
    """A frozen Redis (SIGSTOP): every step gives up at the deadline and runs on the local record."""
    server = RedisServer(tmp_path).start()
    try:
        options = {"min_calls": 5, "failure_rate": 0.5, "sync_interval": 0.05, "deadline": 0.1}
        with tenure.Coordinator(server.url) as sync_coord:
            sync_breaker = sync_coord.circuit_breaker("partner", **options)
            sync_breaker.admit().succeeded()  # connected
            server.pause()
            took = []
            for _ in range(10):
                started = time.monotonic()
                try:
                    sync_breaker.admit().failed()
                except tenure.CircuitOpen:
                    break
                finally:
                    took.append(time.monotonic() - started)
            # Opened on its own record: 1 success and 4 failures reach the 50 % of 5 calls.
            assert len(took) == 5 and sync_breaker.state is tenure.BreakerState.OPEN
            server.resume()
        print(f"BREAKER store frozen, sync: the slowest admit+failed took {max(took):.3f} s")
        assert max(took) < 2 * 0.1 + 0.1  # at most a sync and a failure, each cut at the deadline

        async def async_run() -> list[float]:
            async with tenure.AsyncCoordinator(server.url) as coord:
                breaker = coord.circuit_breaker("partner-async", **options)
                await (await breaker.admit()).succeeded()
                server.pause()
                took = []
                for _ in range(10):
                    started = time.monotonic()
                    try:
                        await (await breaker.admit()).failed()
                    except tenure.CircuitOpen:
                        break
                    finally:
                        took.append(time.monotonic() - started)
                assert len(took) == 5 and breaker.state is tenure.BreakerState.OPEN
                server.resume()
                return took

        took = asyncio.run(async_run())
        print(f"BREAKER store frozen, async: the slowest admit+failed took {max(took):.3f} s")
        assert max(took) < 2 * 0.1 + 0.1
    finally:
        server.resume()
        server.stop()
