"""Semaphores, read-write locks and sequences across real processes, under load and faults."""

from __future__ import annotations

import json
import os
import signal
import subprocess
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
        # A permit asked for after another was granted got a larger fence: fences grow per name.
        for earlier in holds:
            later = [h for h in holds if h["asked"] > earlier["acquired"]]
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


def test_writers_exclude_everyone_across_processes(url: str, tmp_path: Path) -> None:
    logs = [tmp_path / f"holds-{i}.json" for i in range(6)]
    procs = [worker("read-write", url, "catalog", "20", str(log)) for log in logs]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    holds = [h for log in logs for h in json.loads(log.read_text())]
    writes = [h for h in holds if h["kind"] == "write"]
    assert writes, "no process wrote: the test proved nothing"
    for write in writes:
        overlapping = [
            h
            for h in holds
            if h is not write and h["acquired"] < write["released"] and write["acquired"] < h["released"]
        ]
        assert not overlapping, "a write lease overlapped another lease"
    reads = [h for h in holds if h["kind"] == "read"]
    assert most_held_at_once(reads) >= 2, "readers never shared the lock"


def test_turns_follow_tickets_across_processes_and_a_dead_ticket_is_skipped(url: str) -> None:
    takers = []
    try:
        for _ in range(4):  # one at a time, so the tickets' order is the processes' order
            taker = worker("take-turn", url, "account:42", "1", stdin=subprocess.PIPE)
            takers.append((int(read_line(taker, "TICKET").split()[1]), taker))
        tickets = [ticket for ticket, _ in takers]
        assert tickets == sorted(set(tickets))
        dead = takers.pop(1)[1]  # the second ticket's holder dies before its turn
        dead.kill()
        dead.wait()
        for _, taker in reversed(takers):  # told to go in reverse: the tickets still decide
            assert taker.stdin is not None
            taker.stdin.write("go\n")
            taker.stdin.flush()
        turns = [read_line(taker, "TURN").split() for _, taker in takers]
        started = {int(ticket): float(when) for _, ticket, when in turns}
        assert sorted(started, key=started.__getitem__) == [ticket for ticket, _ in takers]
        for _, taker in takers:
            assert taker.wait(timeout=30) == 0
    finally:
        for _, taker in takers:
            taker.kill()
            taker.wait()
