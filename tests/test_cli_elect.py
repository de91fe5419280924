"""``tenure elect`` as real subprocesses, on SQLite and on a real Redis server.

Each candidate's CMD is a small Python program that records its term in its own directory, so
the tests see which candidate ran CMD, with which term, and whether it was stopped.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import tenure

CLI = [sys.executable, "-m", "tenure.cli.main"]
TTL = 1.0

# CMD: writes "<pid> <election> <value>" to <dir>/<term>.run once ready (atomically), records a
# stop signal in <dir>/<term>.stopped, and otherwise sleeps.
LEADER_CMD = """
import os, signal, sys, time
out, term = sys.argv[1], os.environ["TENURE_TERM"]
def stop(signum, frame):
    with open(os.path.join(out, term + ".stopped"), "w") as f:
        f.write(str(signum))
    sys.exit(0)
for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(s, stop)
with open(os.path.join(out, term + ".tmp"), "w") as f:
    f.write(" ".join([str(os.getpid()), os.environ["TENURE_ELECTION"], os.environ["TENURE_LEADER_VALUE"]]))
os.replace(os.path.join(out, term + ".tmp"), os.path.join(out, term + ".run"))
time.sleep(60)
"""


@pytest.fixture(params=["sqlite", "redis"])
def url(request: pytest.FixtureRequest) -> str:
    chosen: str = request.getfixturevalue(f"{request.param}_url")
    return chosen


@pytest.fixture
def coordinator(url: str) -> Iterator[tenure.Coordinator]:
    with tenure.Coordinator(url) as coord:
        yield coord


@dataclass
class Candidate:
    """A ``tenure elect`` process and the directory where its CMD records its runs."""

    proc: subprocess.Popen[str]
    out: Path
    value: str

    def runs(self) -> dict[int, int]:
        """Return the pid of CMD by term, for every run of CMD so far."""
        return {int(p.stem): int(p.read_text().split()[0]) for p in self.out.glob("*.run")}

    def stopped(self, term: int, signum: int = signal.SIGTERM) -> bool:
        """Return whether the run of CMD with ``term`` was stopped by ``signum``."""
        path = self.out / f"{term}.stopped"
        return path.exists() and path.read_text() == str(int(signum))

    def running(self) -> dict[int, int]:
        """Return the pid of CMD by term, for the runs of CMD whose process is still alive."""
        return {term: pid for term, pid in self.runs().items() if alive(pid)}


class Spawned:
    """Every process a test started, ended by PID at teardown if the test left it running."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.candidates: list[Candidate] = []

    def elect(self, url: str, value: str, *args: str) -> Candidate:
        out = self.tmp_path / value
        out.mkdir()
        proc = subprocess.Popen(
            [*CLI, "--url", url, "elect", "job", "--value", value, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # no controlling terminal: every SIGINT is tenure's to pass on
        )
        candidate = Candidate(proc, out, value)
        self.candidates.append(candidate)
        return candidate

    def end_all(self) -> None:
        for candidate in self.candidates:
            if candidate.proc.poll() is None:
                os.kill(candidate.proc.pid, signal.SIGCONT)
                os.kill(candidate.proc.pid, signal.SIGKILL)
                candidate.proc.wait(5)
            # A CMD outlives a killed tenure; end ours, recognised by their directory.
            for pid in candidate.runs().values():
                if alive(pid) and str(candidate.out) in Path(f"/proc/{pid}/cmdline").read_text():
                    os.kill(pid, signal.SIGKILL)
            candidate.proc.communicate(timeout=5)


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawned]:
    spawned = Spawned(tmp_path)
    yield spawned
    spawned.end_all()


def leader_cmd(candidate_dir: str) -> list[str]:
    return [sys.executable, "-c", LEADER_CMD, candidate_dir]


def start(spawn: Spawned, url: str, value: str, *args: str) -> Candidate:
    """Start a candidate that runs LEADER_CMD while it leads."""
    return spawn.elect(url, value, *args, "--", *leader_cmd(str(spawn.tmp_path / value)))


def run(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "--url", url, *args], capture_output=True, text=True, timeout=30)


def alive(pid: int) -> bool:
    """Return whether ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_until(what: str, predicate: object, timeout: float) -> float:
    """Wait until ``predicate()`` is true, at most ``timeout`` seconds; return the seconds waited."""
    assert callable(predicate)
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, f"{what}: not within {timeout} s"
        time.sleep(0.02)
    return time.monotonic() - started


def inspect_leader(url: str) -> object:
    result = run("inspect", "job", "--json", url=url)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["leader"]


def stop(candidate: Candidate, signum: int = signal.SIGTERM) -> str:
    """Signal a candidate, check that it stopped CMD and exited 128+signum; return its stderr."""
    os.kill(candidate.proc.pid, signum)
    _, err = candidate.proc.communicate(timeout=10)
    assert candidate.proc.returncode == 128 + signum, err
    assert candidate.running() == {}
    return err


def test_cmd_gets_term_name_and_value_and_its_exit_code_is_passed_through(url: str) -> None:
    script = "echo $TENURE_TERM $TENURE_ELECTION $TENURE_LEADER_VALUE; exit 3"
    result = run("elect", "job", "--value", "node-1", "--", "sh", "-c", script, url=url)
    assert result.returncode == 3, result.stderr
    term, name, value = result.stdout.split()
    assert (int(term) > 0, name, value) == (True, "job", "node-1")
    assert "campaigning" in result.stderr and f"leader of election 'job' with term {term}" in result.stderr
    assert "Traceback" not in result.stderr
    assert inspect_leader(url) is None  # it resigned when CMD exited


def test_one_leader_at_a_time_and_the_standby_takes_over_after_kill_9(url: str, spawn: Spawned) -> None:
    a = start(spawn, url, "a", "--ttl", str(TTL))
    b = start(spawn, url, "b", "--ttl", str(TTL))
    wait_until("a leader runs CMD", lambda: a.runs() or b.runs(), timeout=15)
    # Past a few renewals, exactly one candidate runs CMD, always the same one, once.
    deadline = time.monotonic() + 2 * TTL
    while time.monotonic() < deadline:
        running = [c for c in (a, b) if c.running()]
        assert len(running) == 1 and len(running[0].runs()) == 1, (a.runs(), b.runs())
        time.sleep(0.05)
    leader, standby = (a, b) if a.runs() else (b, a)
    assert standby.runs() == {} and standby.proc.poll() is None
    [(term, pid)] = leader.runs().items()
    assert inspect_leader(url) == {"value": leader.value, "term": term}

    # kill -9 the leader's tenure; its CMD outlives it, so end that too (a crashed host).
    os.kill(leader.proc.pid, signal.SIGKILL)
    os.kill(pid, signal.SIGKILL)
    wait_until("the standby takes over", standby.runs, timeout=TTL + 2)  # timed from the kill
    leader.proc.wait(5)
    [(new_term, _)] = standby.runs().items()
    assert new_term > term
    assert inspect_leader(url) == {"value": standby.value, "term": new_term}

    err = stop(standby)
    assert standby.stopped(new_term)  # the SIGTERM was passed on to CMD
    assert f"with term {new_term}" in err and "Traceback" not in err
    assert inspect_leader(url) is None  # it resigned


def test_lost_leadership_stops_cmd_and_campaigns_again(
    url: str, coordinator: tenure.Coordinator, spawn: Spawned
) -> None:
    a = start(spawn, url, "a", "--ttl", "0.6", "--grace", "2")
    wait_until("the only candidate leads", a.runs, timeout=15)
    [(first, first_pid)] = a.runs().items()
    # Pause the leader past its TTL, take the leadership from it, then let it run again.
    os.kill(a.proc.pid, signal.SIGSTOP)
    try:
        thief = coordinator.election("job", value="thief", ttl=30).campaign(timeout=10)
    finally:
        os.kill(a.proc.pid, signal.SIGCONT)
    with thief:
        wait_until("CMD is stopped", lambda: a.stopped(first), timeout=5)
        wait_until("CMD exits", lambda: not alive(first_pid), timeout=5)
        assert a.proc.poll() is None  # back on standby, not gone
        time.sleep(0.5)
        assert a.running() == {}  # and not running CMD while the thief leads
        assert inspect_leader(url) == {"value": "thief", "term": thief.term}
    # The thief resigned: the candidate leads again, with a newer term, and runs CMD anew.
    wait_until("the candidate leads again", lambda: len(a.runs()) == 2, timeout=10)
    second = max(a.runs())
    assert second > thief.term > first
    assert inspect_leader(url) == {"value": "a", "term": second}
    err = stop(a)
    for line in (f"with term {first}", f"leadership of term {first} was lost", "campaigning again"):
        assert line in err
    assert f"with term {second}" in err and "Traceback" not in err


# -- SQLite only: what does not depend on the backend ------------------------------------------


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "locks.db"


@pytest.fixture
def sqlite(db: Path) -> str:
    return f"sqlite://{db}"


def test_not_leader_within_timeout_exits_75_without_running(sqlite: str, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    with tenure.Coordinator(sqlite) as coord, coord.election("job", ttl=30).campaign(timeout=0):
        started = time.monotonic()
        result = run("elect", "job", "--timeout", "0.3", "--", "touch", str(marker), url=sqlite)
        assert time.monotonic() - started < 10
    assert result.returncode == 75
    assert result.stderr.splitlines()[-1].startswith("tenure: error: election 'job'")
    assert "not leader after 0.3 s" in result.stderr and "Traceback" not in result.stderr
    assert not marker.exists()


def test_stop_signal_while_campaigning_gives_up_without_running(sqlite: str, spawn: Spawned) -> None:
    with tenure.Coordinator(sqlite) as coord, coord.election("job", ttl=30).campaign(timeout=0):
        standby = start(spawn, sqlite, "a")
        time.sleep(0.5)
        assert standby.proc.poll() is None  # still campaigning
        os.kill(standby.proc.pid, signal.SIGTERM)
        _, err = standby.proc.communicate(timeout=10)
    assert standby.proc.returncode == 128 + signal.SIGTERM, err
    assert standby.runs() == {}


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGHUP], ids=["SIGINT", "SIGHUP"])
def test_stop_signal_is_passed_on_and_the_leader_resigns(sqlite: str, spawn: Spawned, signum: int) -> None:
    leader = start(spawn, sqlite, "a")
    wait_until("the only candidate leads", leader.runs, timeout=15)
    [term] = leader.runs()
    err = stop(leader, signum)
    assert leader.stopped(term, signum), err
    assert inspect_leader(sqlite) is None


def test_command_not_found_exits_127_and_resigns(sqlite: str) -> None:
    result = run("elect", "job", "--", "no-such-command-tenure-test", url=sqlite)
    assert result.returncode == 127
    assert "cannot run 'no-such-command-tenure-test'" in result.stderr
    assert inspect_leader(sqlite) is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["elect", "", "--", "true"], "election name must not be empty"),
        (["elect", "job", "--ttl", "0", "--", "true"], "ttl must be a positive"),
        (["elect", "job", "--timeout", "-1", "--", "true"], "timeout must be >= 0"),
        (["elect", "job", "--grace", "-1", "--", "true"], "grace must be"),
        (["elect", "job", "--value", "", "--", "true"], "election value must not be empty"),
    ],
)
def test_bad_input_exits_2_before_any_io(sqlite: str, db: Path, args: list[str], message: str) -> None:
    result = run(*args, url=sqlite)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("tenure: error: ") and len(result.stderr.splitlines()) == 1
    assert message in result.stderr
    assert not db.exists()  # failed before any I/O


@pytest.mark.parametrize("args", [["elect", "job"], ["elect", "job", "--"]])
def test_missing_command_is_a_usage_error(sqlite: str, db: Path, args: list[str]) -> None:
    result = run(*args, url=sqlite)
    assert result.returncode == 2
    assert "missing CMD" in result.stderr and "tenure elect NAME --" in result.stderr
    assert "Traceback" not in result.stderr
    assert not db.exists()
