"""Rate limits across real processes (issue 16): a burst at once, a sustained load, skewed clocks.

Every backend that keeps rate limits (``Capability.COUNTERS``) and is shared between processes
(memory is one process, so it is not). Workers are ``tests/ratelimit_workers.py``; half of them
use the async API, half the sync one. Each prints what it measured with a ``RATELIMIT`` prefix
(``pytest -s`` shows it).
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tenure._core.guarantees import Capability, Guarantee
from tests.conftest import backends_able, declared
from tests.ratelimit_workers import rate_worker
from tests.workers import read_line

SHARED = [
    name
    for name in backends_able(Capability.COUNTERS)
    if declared(name) & {Guarantee.CROSS_PROCESS, Guarantee.CROSS_HOST}
]
# A skewed client matters where the clock is a server's, shared by hosts whose clocks differ.
SERVER_CLOCK = [name for name in SHARED if {Guarantee.SERVER_TIME, Guarantee.CROSS_HOST} <= declared(name)]
# One host's clock (SQLite): every process reads it, so a skew is only possible by libfaketime.
HOST_CLOCK = [name for name in SHARED if name not in SERVER_CLOCK]
SECONDS = float(os.environ.get("TENURE_RATELIMIT_SECONDS", "10"))  # CI runs the full 10 s
COLOURS = ["async", "sync"]

pytestmark = pytest.mark.slow


@pytest.fixture
def url(backend: str, request: pytest.FixtureRequest) -> str:
    value: str = request.getfixturevalue(f"{backend}_url")
    return value


def release(procs: list[subprocess.Popen[str]], seconds: float = 0.0) -> None:
    """Wait until every worker is connected and ready, then let them all go at once.

    The go line says when a timed run ends, by the host's monotonic clock (every process's).
    """
    for proc in procs:
        read_line(proc, "READY")
    go = f"go {time.monotonic() + seconds:.6f}\n"
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(go)
        proc.stdin.flush()


def finish(procs: list[subprocess.Popen[str]], logs: list[Path], timeout: float) -> list[dict[str, Any]]:
    """Wait for the workers (kill any still running when time is up); return their logs.

    Each log gets the worker's stderr as "warnings" (the limiter logs an outage there).
    """
    reports = []
    try:
        for proc, log in zip(procs, logs, strict=True):
            _, err = proc.communicate(timeout=timeout)
            assert proc.returncode == 0, err
            reports.append({**json.loads(log.read_text()), "warnings": err.splitlines()})
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return reports


@pytest.mark.parametrize("backend", SHARED)
def test_two_thousand_requests_from_eight_processes_admit_exactly_the_budget(
    url: str, backend: str, tmp_path: Path
) -> None:
    """8 processes x 250 decisions at once on one key, a bucket of 100 refilled once a minute."""
    logs = [tmp_path / f"burst-{i}.json" for i in range(8)]
    procs = [
        rate_worker("burst", url, "api", COLOURS[i % 2], "1/min", "100", "250", str(log))
        for i, log in enumerate(logs)
    ]
    release(procs)
    reports = finish(procs, logs, timeout=120)
    errors = {error for report in reports for error in report["errors"]}
    warnings = {line for report in reports for line in report["warnings"]}
    assert not errors, f"{sorted(errors)[:4]}; the workers' warnings: {sorted(warnings)[:4]}"
    admitted = sum(int(report["admitted"]) for report in reports)
    refused = sum(int(report["refused"]) for report in reports)
    unavailable = sum(int(report["unavailable"]) for report in reports)
    took = max(float(r["ended"]) for r in reports) - min(float(r["started"]) for r in reports)
    print(
        f"RATELIMIT burst {backend}: admitted {admitted} refused {refused} unavailable {unavailable} "
        f"in {took:.2f} s"
    )
    assert took < 60, "a permit came back during the run: the budget is no longer 100"
    assert admitted == 100
    assert refused + unavailable == 1900
    # Each decision must be the store's: with on_unavailable="allow" every one of these would
    # have been let through (the workers' stderr has the limiter's warning of the outage).
    assert unavailable == 0, f"{unavailable} decisions were not made by the store: {sorted(warnings)[:4]}"


@pytest.mark.parametrize("backend", SHARED)
def test_a_sustained_load_is_admitted_at_the_rate(url: str, backend: str, tmp_path: Path) -> None:
    """8 processes offer more than 500/s for SECONDS; the limiter admits rate x time + burst.

    The bound: GCRA never admits more than ``burst + rate x (s1 - s0)`` permits decided between
    store times s0 and s1 (each admission moves the key's TAT one interval on, and it may not
    run more than the bucket ahead of the store's clock). The servers run on this host, whose
    wall clock they read, so s0 >= the first request's send time and s1 <= the last admitted
    reply's receipt time, both by ``time.time()``: ``T`` is that span and ``admitted <= rate
    x T + burst`` must hold strictly.

    The other way, GCRA wastes permits only while a bucket is full; a refusal shows the bucket
    held less than one permit, so for burst / rate less one interval after it the bucket cannot
    be full. Refusals that close together (the machine offered the load) mean ``admitted >= rate
    x T``; we check 99% of it, less the permits of the time no refusal covered (measured and
    reported: a machine too busy to offer the load).
    """
    rate, burst, offer = 500, 50, 150  # 4 pacing processes offer 600/s, 4 more wait for permits
    logs = [tmp_path / f"sustain-{i}.json" for i in range(8)]
    modes = ["try", "acquire"] * 4
    colours = ["async", "async", "sync", "sync"] * 2  # each mode in each colour
    procs = [
        rate_worker("sustain", url, "api", colour, mode, f"{rate}/s", str(burst), str(offer), str(log))
        for mode, colour, log in zip(modes, colours, logs, strict=True)
    ]
    release(procs, SECONDS)
    reports = finish(procs, logs, timeout=SECONDS + 120)
    errors = {error for report in reports for error in report["errors"]}
    warnings = {line for report in reports for line in report["warnings"]}
    assert not errors, f"{sorted(errors)[:4]}; the workers' warnings: {sorted(warnings)[:4]}"
    unavailable = sum(int(report["unavailable"]) for report in reports)
    assert unavailable == 0, f"{unavailable} decisions were not made by the store: {sorted(warnings)[:4]}"
    admitted = sum(int(report["admitted"]) for report in reports)
    offered = sum(int(report["offered"]) for report in reports)
    paced = sum(int(report["offered"]) for report, mode in zip(reports, modes, strict=True) if mode == "try")
    first = min(float(r["first_sent"]) for r in reports)
    span = max(float(r["last_admitted"]) for r in reports) - first
    bound = rate * span + burst
    print(
        f"RATELIMIT sustain {backend}: admitted {admitted} in T={span:.3f} s, bound rate*T+burst={bound:.1f} "
        f"({admitted / bound:.4f} of it); offered {offered} ({offered / span:.0f}/s, paced "
        f"try_acquire {paced / span:.0f}/s)"
    )
    assert span >= SECONDS * 0.9, "the processes stopped early"
    assert admitted <= bound
    refusals = [tuple(pair) for r in reports for pair in r["refusals"]]
    uncovered = span - covered(refusals, first, first + span, burst / rate - 1 / rate)
    floor = 0.99 * rate * (span - uncovered)
    print(f"RATELIMIT sustain {backend}: floor {floor:.1f} ({uncovered:.3f} s not covered by a refusal)")
    assert admitted >= floor, f"admitted {admitted} < {floor:.1f}: permits were wasted"


def covered(refusals: list[tuple[float, float]], start: float, end: float, window: float) -> float:
    """Return how much of [start, end] is surely within ``window`` after some refusal.

    A refusal sent at ``s`` and answered at ``a`` was decided by the store at some moment in
    [s, a]; every moment in [a, s + window) is surely within ``window`` after it.
    """
    spans = sorted((max(a, start), min(s + window, end)) for s, a in refusals)
    total, reached = 0.0, start
    for begins, ends in spans:
        if ends > max(begins, reached):
            total += ends - max(begins, reached)
            reached = ends
    return total


LIBFAKETIME = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))


def skewed(offset: str) -> dict[str, str]:
    """The environment of a process whose wall clock is ``offset`` off ("+1h", "-1h")."""
    assert LIBFAKETIME, "libfaketime is missing: apt-get install -y faketime"
    # Only the wall clock: a host's monotonic clock is its own and never compared across hosts.
    return {"LD_PRELOAD": LIBFAKETIME[0], "FAKETIME": offset, "DONT_FAKE_MONOTONIC": "1"}


class Client:
    """A ``decide`` worker: one decision per call, and the test's clock when its answer came."""

    def __init__(self, url: str, colour: str, offset: str, rate: str, burst: int) -> None:
        env = skewed(offset) if offset else None
        self.offset = offset
        self.proc = rate_worker("decide", url, "api", colour, rate, str(burst), env=env)
        # Its clock as it sees it: the skew is in effect, or the test proves nothing.
        self.skew = float(read_line(self.proc, "READY").split()[1]) - time.time()

    def ask(self, verb: str, key: str) -> tuple[dict[str, float], float]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{verb} {key}\n")
        self.proc.stdin.flush()
        state = json.loads(read_line(self.proc, "STATE").split(" ", 1)[1])
        return state, time.time()

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def clients(url: str, colour: str, rate: str, burst: int) -> list[Client]:
    """An unskewed client (the other colour), one an hour ahead and one an hour behind."""
    other = "sync" if colour == "async" else "async"
    started: list[Client] = []
    try:
        for offset, kind in (("", other), ("+1h", colour), ("-1h", colour)):
            started.append(Client(url, kind, offset, rate, burst))
    except BaseException:
        for client in started:
            client.close()
        raise
    expected = [0.0, 3600.0, -3600.0]
    assert [abs(c.skew - e) < 5.0 for c, e in zip(started, expected, strict=True)] == [True] * 3, [
        c.skew for c in started
    ]
    return started


@pytest.mark.parametrize("colour", COLOURS)
@pytest.mark.parametrize("backend", SERVER_CLOCK)
def test_skewed_client_clocks_change_nothing(url: str, backend: str, colour: str) -> None:
    """Clients an hour ahead and behind share one budget exactly, and agree on retry_after.

    A limiter that read the client's clock would let the client an hour ahead find every
    bucket full and the one behind find it empty for an hour.
    """
    group = clients(url, colour, "1/min", 30)
    try:
        decided = [group[i % 3].ask("try", "k") for i in range(45)]
        assert [state["allowed"] for state, _ in decided] == [True] * 30 + [False] * 15
        assert not any(state["unavailable"] for state, _ in decided)
        # The refused cost is due at one moment: retry_after + when it was said agree.
        due = [state["retry_after"] + said for state, said in decided[30:]]
        looked = [client.ask("peek", "k") for client in group]
        assert [state["remaining"] for state, _ in looked] == [0, 0, 0]
        full = [state["reset_after"] + said for state, said in looked]
        print(
            f"RATELIMIT skew {backend} ({colour} skewed): skews {[round(c.skew) for c in group]} s; "
            f"due spread {max(due) - min(due):.4f} s, full spread {max(full) - min(full):.4f} s"
        )
        assert max(due) - min(due) < 0.25
        assert max(full) - min(full) < 0.25
        assert 58 < decided[30][0]["retry_after"] <= 60
    finally:
        for client in group:
            client.close()


@pytest.mark.parametrize("backend", HOST_CLOCK)
def test_a_skewed_process_on_a_host_clock_backend_decides_by_its_own_clock(url: str, backend: str) -> None:
    """Documents SQLite: the clock is the host's, read by each process (one host, one clock).

    libfaketime gives one process a clock no process on a real host can have; then that
    process decides by it: an hour ahead it finds the exhausted bucket full, and the permits it
    takes are due an hour ahead for everyone else.
    """
    unskewed, ahead, behind = group = clients(url, "async", "1/min", 30)
    try:
        assert all(unskewed.ask("try", "k")[0]["allowed"] for _ in range(30))
        refused, _ = unskewed.ask("try", "k")
        assert not refused["allowed"] and 58 < refused["retry_after"] <= 60
        taken, _ = ahead.ask("try", "k")
        later, _ = behind.ask("try", "k")
        after, _ = unskewed.ask("try", "k")
        print(
            f"RATELIMIT skew {backend} (host clock): the client 1 h ahead admitted={taken['allowed']}; "
            f"then retry_after: behind {later['retry_after']:.0f} s, unskewed {after['retry_after']:.0f} s"
        )
        assert taken["allowed"]
        assert not later["allowed"] and later["retry_after"] > 3600 + 1800
        assert not after["allowed"] and after["retry_after"] > 1800
    finally:
        for client in group:
            client.close()
