"""Several real processes contending for one lock, and holders paused or killed past their TTL."""

from __future__ import annotations

import itertools
import json
import os
import signal
import time
from pathlib import Path

import pytest

import tenure
from tenure._core.guarantees import Guarantee
from tests.conftest import backends_with
from tests.workers import read_line, worker

CROSS_PROCESS = sorted(set(backends_with(Guarantee.CROSS_PROCESS)) | set(backends_with(Guarantee.CROSS_HOST)))

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("backend", CROSS_PROCESS)]


@pytest.fixture
def url(backend: str, request: pytest.FixtureRequest) -> str:
    value: str = request.getfixturevalue(f"{backend}_url")
    return value


def test_no_increment_is_lost_and_fences_follow_hold_order(url: str, tmp_path: Path) -> None:
    counter = tmp_path / "counter"
    counter.write_text("0")
    processes, rounds = 4, 25
    logs = [tmp_path / f"holds-{i}.json" for i in range(processes)]
    procs = [worker("count", url, "counter", str(counter), str(log), str(rounds)) for log in logs]
    for proc in procs:
        _, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, err
    assert int(counter.read_text()) == processes * rounds, "an increment was lost: two holders overlapped"
    holds = sorted((h for log in logs for h in json.loads(log.read_text())), key=lambda h: h["acquired"])
    fences = [h["fence"] for h in holds]
    assert fences == sorted(fences) and len(set(fences)) == len(fences), "fences must rise in hold order"
    for before, after in itertools.pairwise(holds):
        assert after["acquired"] >= before["released"], "two holds overlapped in time"


def test_a_paused_holder_is_told_and_the_next_fence_is_larger(url: str) -> None:
    holder = worker("hold-and-check", url, "paused", "0.5")
    try:
        first_fence = int(read_line(holder, "HELD").split()[1])
        os.kill(holder.pid, signal.SIGSTOP)  # a GC pause, a VM migration, a ^Z
        time.sleep(1.0)  # past the TTL: the server lets the lease expire
        with tenure.Coordinator(url) as coord:
            lease = coord.lock("paused", ttl=5).acquire(timeout=2)
            assert lease.fence > first_fence
            os.kill(holder.pid, signal.SIGCONT)
            lost = read_line(holder, "LOST")
            assert lost == f"LOST {first_fence} callback=True"
            assert read_line(holder, "RELEASE-REFUSED")
            lease.check()  # the stale holder's release did not free ours
            lease.release()
        assert holder.wait(timeout=10) == 0
    finally:
        os.kill(holder.pid, signal.SIGCONT) if holder.poll() is None else None
        holder.kill()
        holder.wait()


def test_a_killed_holder_frees_the_lock_after_its_ttl(url: str) -> None:
    holder = worker("hold-forever", url, "crashed", "0.5")
    try:
        first_fence = int(read_line(holder, "HELD").split()[1])
        holder.kill()  # kill -9: no release, no goodbye
        holder.wait()
        with tenure.Coordinator(url) as coord:
            started = time.monotonic()
            lease = coord.lock("crashed", ttl=5).acquire(timeout=3)
            recovered = time.monotonic() - started
            assert lease.fence > first_fence
            assert recovered < 1.5, f"took {recovered:.2f} s to recover a 0.5 s lease"
            lease.release()
    finally:
        holder.kill()
        holder.wait()
