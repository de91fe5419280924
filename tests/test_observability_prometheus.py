"""serve_metrics: a real /metrics endpoint per process, scraped over HTTP, no series twice."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

# One service process: serves its metrics, takes the shared lock ``cycles`` times, holds one
# lease, then waits for its stdin to close. Prints its port, then "ready".
WORKER = """
import sys
import tenure
from tenure.observability import serve_metrics

port = int(sys.argv[3])
try:
    port = serve_metrics(port)
except tenure.ConfigurationError as exc:
    print("refused:", exc, flush=True)
    sys.exit(3)
print(port, flush=True)
with tenure.Coordinator(sys.argv[1]) as coord:
    for _ in range(int(sys.argv[2])):
        coord.lock("orders:42").acquire().release()
    with coord.lock(f"held-{port}").acquire(), tenure.Coordinator(sys.argv[1]) as rival:
        assert rival.lock(f"held-{port}").try_acquire() is None  # refused: into the histogram
        print("ready", flush=True)
        sys.stdin.read()
"""


class Worker:
    def __init__(self, url: str, cycles: int, port: int = 0) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WORKER, url, str(cycles), str(port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.first_line = self.proc.stdout.readline().strip()

    def ready(self) -> int:
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "ready", self.first_line
        return int(self.first_line)

    def stop(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            self.proc.wait(10)


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for worker in started:
        worker.stop()


def scrape(port: int) -> list[tuple[str, tuple[tuple[str, str], ...], float]]:
    """Return every sample of ``http://127.0.0.1:port/metrics``: name, labels, value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return [
        (sample.name, tuple(sorted(sample.labels.items())), sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def value(samples: list[tuple[str, tuple[tuple[str, str], ...], float]], name: str, **labels: str) -> float:
    return sum(v for n, ls, v in samples if n == name and labels.items() <= dict(ls).items())


def test_each_process_serves_its_own_series_once(tmp_path: Path, workers: list[Worker]) -> None:
    url = f"sqlite://{tmp_path}/locks.db"
    workers += [Worker(url, cycles=3), Worker(url, cycles=5)]
    ports = [worker.ready() for worker in workers]
    for port, cycles in zip(ports, (3, 5), strict=True):
        samples = scrape(port)
        repeated = [key for key, count in Counter((n, ls) for n, ls, _ in samples).items() if count > 1]
        assert repeated == [], "a series appears twice in one exposition"
        lock = {"tenure_backend": "sqlite", "tenure_primitive": "lock"}
        assert value(samples, "tenure_fence_issued_total", **lock) == cycles + 1  # its own, not the fleet's
        assert value(samples, "tenure_lock_holds", **lock) == 1
        assert value(samples, "tenure_lock_acquire_duration_seconds_count", tenure_outcome="busy") == 1
        busy = {"tenure_outcome": "busy", "le": "+Inf"}
        assert value(samples, "tenure_lock_acquire_duration_seconds_bucket", **busy) == 1
        assert all("tenure_name" not in dict(ls) for _, ls, _ in samples)


def test_a_second_process_on_a_taken_port_is_refused(tmp_path: Path, workers: list[Worker]) -> None:
    url = f"sqlite://{tmp_path}/locks.db"
    workers.append(Worker(url, cycles=1))
    port = workers[0].ready()
    workers.append(Worker(url, cycles=1, port=port))
    assert workers[1].proc.wait(10) == 3
    assert workers[1].first_line.startswith("refused:") and "a port of its own" in workers[1].first_line
