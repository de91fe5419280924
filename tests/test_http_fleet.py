"""Eight processes calling one failing server through tenure.http with a shared breaker.

With ``coord.circuit_breaker`` the fleet opens together: the server receives at most
``min_calls`` failing calls in all, plus one in flight per process, not ``min_calls`` per
process as with a breaker of each process's own (checked too, as the contrast).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.http_server import HttpServer, behaviour, running_server
from tests.http_workers import BREAKER, http_worker, run_fleet

PROCESSES = 8
CALLS = 60  # each; 480 offered in all


@pytest.fixture(scope="module")
def server() -> Iterator[HttpServer]:
    with running_server() as server:
        yield server


def fleet(mode: str, store_url: str, server: HttpServer, tmp_path: Path) -> tuple[int, list[dict[str, int]]]:
    """Run 8 workers in ``mode`` (alternating sync and async clients); return the server's hits."""
    server.set(default=behaviour(status=503))
    name = f"partner-{uuid.uuid4().hex[:8]}"
    logs = [tmp_path / f"{mode}-{i}.json" for i in range(PROCESSES)]
    procs = [
        http_worker(mode, ("sync", "async")[i % 2], store_url, server.url, str(CALLS), str(log), name)
        for i, log in enumerate(logs)
    ]
    reports = run_fleet(procs, logs, timeout=120)
    return server.hits(), reports


@pytest.mark.slow
def test_a_shared_breaker_opens_for_the_fleet_within_min_calls(
    server: HttpServer, redis_url: str, tmp_path: Path
) -> None:
    hits, reports = fleet("shared", redis_url, server, tmp_path)
    refused = sum(report["refused"] for report in reports)
    print(f"HTTP fleet, shared breaker: the server received {hits} of {PROCESSES * CALLS} calls")
    assert BREAKER["min_calls"] <= hits <= BREAKER["min_calls"] + PROCESSES
    assert refused == PROCESSES * CALLS - hits


@pytest.mark.slow
def test_breakers_of_their_own_let_each_process_learn_alone(
    server: HttpServer, memory_url: str, tmp_path: Path
) -> None:
    hits, _ = fleet("local", memory_url, server, tmp_path)
    print(f"HTTP fleet, a breaker per process: the server received {hits} of {PROCESSES * CALLS} calls")
    assert hits == PROCESSES * BREAKER["min_calls"]
