"""Idempotency keys across real processes: duplicates at once, a killed runner, a paused one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

import tenure
from tenure._core.guarantees import Capability, Guarantee
from tests.conftest import BACKENDS, declared, declared_capabilities
from tests.workers import read_line, worker

SHARED = [
    name
    for name in BACKENDS
    if Capability.RECORDS in declared_capabilities(name)
    and declared(name) & {Guarantee.CROSS_PROCESS, Guarantee.CROSS_HOST}
]
ROUNDS = int(os.environ.get("TENURE_IDEMPOTENCY_ROUNDS", "1000"))

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("backend", SHARED)]


@pytest.fixture
def url(backend: str, request: pytest.FixtureRequest) -> str:
    value: str = request.getfixturevalue(f"{backend}_url")
    return value


def test_fifty_duplicates_from_eight_processes_run_once(url: str, tmp_path: Path) -> None:
    """Per round, 50 callers of one new key in 8 processes: one run, one result for all."""
    ran = tmp_path / "ran.txt"
    ran.touch()
    logs = [tmp_path / f"seen-{i}.json" for i in range(8)]
    start = time.monotonic() + 3.0  # every process is up and connected by then
    threads = [7, 7, 6, 6, 6, 6, 6, 6]  # 50 callers
    procs = [
        worker("duplicates", url, "orders", str(ROUNDS), str(n), str(start), str(log), str(ran))
        for n, log in zip(threads, logs, strict=True)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
    reports = [json.loads(log.read_text()) for log in logs]
    failures = [failure for report in reports for failure in report["failures"]]
    assert not failures, failures[:5]
    runs = [line.split() for line in ran.read_text().splitlines()]
    per_round = Counter(int(round_) for round_, _ in runs)
    assert set(per_round) == set(range(ROUNDS)), "some key never ran"
    assert max(per_round.values()) == 1, f"a key ran more than once: {per_round.most_common(3)}"
    runner = {int(round_): who for round_, who in runs}
    seen = [(round_, result) for report in reports for round_, result in report["seen"]]
    assert len(seen) == 50 * ROUNDS
    assert all(result == runner[round_] for round_, result in seen), "a caller got another result"


def test_a_killed_runner_is_replaced_after_its_lease(url: str) -> None:
    runner = worker("run-once", url, "payments", "req-1", "0.5", stdin=subprocess.PIPE)
    try:
        first = int(read_line(runner, "RUNNING").split()[1])
        runner.kill()  # kill -9 in the middle of the run
        killed = time.monotonic()
        runner.wait()
        reran: list[float] = []
        with tenure.Coordinator(url) as coord:
            keys = coord.idempotency("payments", lease=5)

            def again() -> str:
                lease = tenure.Idempotency.current_lease()
                assert lease is not None and lease.fence > first
                reran.append(time.monotonic())
                return "second"

            assert keys.run("req-1", again, timeout=5) == "second"
            assert keys.run("req-1", again) == "second"
        assert len(reran) == 1
        assert reran[0] - killed < 0.5 + 1.0, f"the rerun began {reran[0] - killed:.2f} s after the kill"
    finally:
        runner.kill()
        runner.wait()


def test_a_paused_runner_cannot_record_over_the_run_that_replaced_it(url: str) -> None:
    runner = worker("run-once", url, "payments", "req-1", "0.5", stdin=subprocess.PIPE)
    try:
        first = int(read_line(runner, "RUNNING").split()[1])
        os.kill(runner.pid, signal.SIGSTOP)  # a GC pause, a VM migration, a ^Z: past its lease
        time.sleep(1.0)
        with tenure.Coordinator(url) as coord:
            keys = coord.idempotency("payments", lease=5)
            assert keys.run("req-1", lambda: "second", timeout=5) == "second"
            os.kill(runner.pid, signal.SIGCONT)
            assert runner.stdin is not None
            runner.stdin.write("go\n")
            runner.stdin.flush()
            assert read_line(runner, "LOST") == "LOST"
            state = keys.state("req-1")
            assert state.done is not None and state.done.fence > first
            assert keys.run("req-1", lambda: "third") == "second"
        assert runner.wait(timeout=10) == 0
    finally:
        if runner.poll() is None:
            os.kill(runner.pid, signal.SIGCONT)
        runner.kill()
        runner.wait()
