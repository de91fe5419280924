"""Semaphores across real processes: the limit under load, and holders paused or killed."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

import tenure
from tenure._core.guarantees import Capability, Guarantee
from tests.conftest import BACKENDS, declared, declared_capabilities
from tests.workers import fenced_write, read_line, worker

SHARED = [
    name
    for name in BACKENDS
    if Capability.COUNTING in declared_capabilities(name)
    and declared(name) & {Guarantee.CROSS_PROCESS, Guarantee.CROSS_HOST}
]

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("backend", SHARED)]


@pytest.fixture
def url(backend: str, request: pytest.FixtureRequest) -> str:
    value: str = request.getfixturevalue(f"{backend}_url")
    return value


def most_held_at_once(holds: list[dict[str, float]]) -> int:
    """Return the most holds whose intervals overlap at one instant."""
    events = sorted([(h["acquired"], 1) for h in holds] + [(h["released"], -1) for h in holds])
    held = most = 0
    for _, change in events:  # at equal times a release (-1) sorts first: touching is not overlapping
        held += change
        most = max(most, held)
    return most


@pytest.mark.parametrize("fair", ["plain", "fair"])
def test_eight_processes_never_exceed_the_limit(url: str, backend: str, fair: str, tmp_path: Path) -> None:
    if fair == "fair" and Capability.QUEUEING not in declared_capabilities(backend):
        with pytest.raises(tenure.BackendIncapable):
            tenure.Coordinator(url).semaphore("slots", limit=3, fair=True)
        return
    logs = [tmp_path / f"holds-{i}.json" for i in range(8)]
    procs = [worker("permits", url, "slots", "3", fair, "15", str(log)) for log in logs]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    holds = [h for log in logs for h in json.loads(log.read_text())]
    assert len(holds) == 8 * 15
    assert most_held_at_once(holds) <= 3, "more than limit permits were held at once"
    assert most_held_at_once(holds) >= 2, "the permits were never shared: the semaphore acted as a lock"
    fences = [h["fence"] for h in holds]
    assert len(set(fences)) == len(fences), "a fence was handed out twice"
    if Guarantee.FENCING in declared(backend):
        # A hold that began after another ended got a larger fence: fences grow per name.
        ordered = sorted(holds, key=lambda h: h["acquired"])
        for i, earlier in enumerate(ordered):
            later = [h for h in ordered[i + 1 :] if h["acquired"] > earlier["released"]]
            assert all(h["fence"] > earlier["fence"] for h in later)


def test_a_paused_holder_is_told_and_its_fenced_write_rejected(url: str, tmp_path: Path) -> None:
    register = tmp_path / "register.db"
    holder = worker("hold-permit", url, "paused", "0.5", str(register))
    try:
        first_fence = int(read_line(holder, "HELD").split()[1])
        os.kill(holder.pid, signal.SIGSTOP)  # a GC pause, a VM migration, a ^Z
        time.sleep(1.0)  # past the ttl: the server lets the permit expire
        with tenure.Coordinator(url) as coord:
            permit = coord.semaphore("paused", limit=1, ttl=5).acquire(timeout=3)
            assert permit.fence > first_fence
            assert fenced_write(register, "fresh", permit.fence)
            os.kill(holder.pid, signal.SIGCONT)
            assert read_line(holder, "LOST") == f"LOST {first_fence} write-accepted=False"
            permit.check()
            permit.release()
        assert holder.wait(timeout=10) == 0
    finally:
        os.kill(holder.pid, signal.SIGCONT) if holder.poll() is None else None
        holder.kill()
        holder.wait()


def test_a_killed_holder_frees_its_permit_after_its_ttl(url: str, tmp_path: Path) -> None:
    holder = worker("hold-permit", url, "crashed", "0.5", str(tmp_path / "register.db"))
    try:
        first_fence = int(read_line(holder, "HELD").split()[1])
        holder.kill()  # kill -9: no release, no goodbye
        holder.wait()
        with tenure.Coordinator(url) as coord:
            started = time.monotonic()
            permit = coord.semaphore("crashed", limit=1, ttl=5).acquire(timeout=3)
            recovered = time.monotonic() - started
            assert permit.fence != first_fence
            assert recovered < 1.5, f"took {recovered:.2f} s to recover a 0.5 s permit"
            permit.release()
    finally:
        holder.kill()
        holder.wait()
