"""The tenure command, run as a real subprocess against a SQLite file in a temporary directory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import tenure

CLI = [sys.executable, "-m", "tenure.cli.main"]
LEASE_LOST = 79

# Children are small Python programs, so the tests control exactly how they treat signals.
# Each writes its pid to argv[1] once it is ready (atomically, so a reader never sees half).
READY = """
import os, signal, sys, time
def ready():
    with open(sys.argv[1] + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.replace(sys.argv[1] + ".tmp", sys.argv[1])
"""
SLEEPER = READY + "ready()\ntime.sleep(60)\n"
SIGTERM_IGNORER = READY + "signal.signal(signal.SIGTERM, signal.SIG_IGN)\nready()\ntime.sleep(60)\n"
SIGNAL_RECORDER = (
    READY
    + """
def stop(signum, frame):
    with open(sys.argv[2], "w") as f:
        f.write(str(signum))
    sys.exit(0)
for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(s, stop)
ready()
time.sleep(60)
"""
)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "locks.db"


@pytest.fixture
def url(db: Path) -> str:
    return f"sqlite://{db}"


@pytest.fixture
def coordinator(url: str) -> Iterator[tenure.Coordinator]:
    with tenure.Coordinator(url) as coord:
        yield coord


@pytest.fixture
def spawn() -> Iterator[list[subprocess.Popen[str]]]:
    """Track started CLIs; each leads its own session, so teardown can kill it and its child."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGCONT)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def run(*args: str, url: str | None = None) -> subprocess.CompletedProcess[str]:
    prefix = [] if url is None else ["--url", url]
    return subprocess.run([*CLI, *prefix, *args], capture_output=True, text=True, timeout=30)


def start(spawned: list[subprocess.Popen[str]], url: str, *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [*CLI, "--url", url, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # no controlling terminal: every SIGINT is tenure's to pass on
    )
    spawned.append(proc)
    return proc


def wait_for_pid(path: Path, proc: subprocess.Popen[str], timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"tenure exited early: {proc.communicate()}"
        assert time.monotonic() < deadline, f"child never wrote {path}"
        time.sleep(0.01)
    return int(path.read_text())


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def assert_one_line_error(result: subprocess.CompletedProcess[str]) -> None:
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("tenure: error: "), result.stderr
    assert "Traceback" not in result.stderr


# -- tenure lock -------------------------------------------------------------------------------


def test_child_gets_fence_and_lock_name(url: str) -> None:
    script = "import os; print(os.environ['TENURE_LOCK'], os.environ['TENURE_FENCE'])"
    result = run("lock", "orders:42", "--", sys.executable, "-c", script, url=url)
    assert result.returncode == 0, result.stderr
    name, fence = result.stdout.split()
    assert name == "orders:42"
    with tenure.Coordinator(url) as coord, coord.lock("orders:42", ttl=5, timeout=1) as lease:
        assert lease.fence > int(fence)  # the child's was this name's fence just before


@pytest.mark.parametrize("code", [0, 3, 42])
def test_exit_code_of_the_child_is_passed_through(url: str, code: int) -> None:
    result = run("lock", "job", "--", "sh", "-c", f"exit {code}", url=url)
    assert result.returncode == code
    assert result.stderr == ""


def test_child_killed_by_a_signal_exits_128_plus_signum(url: str) -> None:
    result = run("lock", "job", "--", "sh", "-c", "kill -TERM $$", url=url)
    assert result.returncode == 128 + signal.SIGTERM


def test_fences_increase_across_runs(url: str) -> None:
    fences = []
    for _ in range(3):
        result = run("lock", "job", "--", "sh", "-c", "echo $TENURE_FENCE", url=url)
        assert result.returncode == 0, result.stderr
        fences.append(int(result.stdout))
    assert fences == sorted(set(fences)) and len(fences) == 3


def test_lock_is_released_when_the_child_exits(url: str, coordinator: tenure.Coordinator) -> None:
    assert run("lock", "job", "--", "true", url=url).returncode == 0
    lease = coordinator.try_lock("job", ttl=5)
    assert lease is not None
    lease.release()


def test_lock_held_elsewhere_with_timeout_zero_exits_75(
    url: str, coordinator: tenure.Coordinator, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    with coordinator.lock("job", ttl=30).acquire(timeout=0):
        started = time.monotonic()
        result = run("lock", "job", "--timeout", "0", "--", "touch", str(marker), url=url)
        assert time.monotonic() - started < 5
    assert result.returncode == 75
    assert_one_line_error(result)
    assert "held by someone else" in result.stderr
    assert not marker.exists()


def test_waiting_succeeds_once_the_holder_releases(
    url: str, coordinator: tenure.Coordinator, spawn: list[subprocess.Popen[str]]
) -> None:
    held = coordinator.lock("job", ttl=30).acquire(timeout=0)
    proc = start(spawn, url, "lock", "job", "--timeout", "20", "--", "sh", "-c", "echo $TENURE_FENCE")
    time.sleep(0.5)
    assert proc.poll() is None  # still waiting
    held.release()
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert int(out) > held.fence


def test_command_not_found_exits_127_and_releases(url: str, coordinator: tenure.Coordinator) -> None:
    result = run("lock", "job", "--", "no-such-command-tenure-test", url=url)
    assert result.returncode == 127
    assert_one_line_error(result)
    assert coordinator.inspect("job") is None


def steal(coordinator: tenure.Coordinator, proc: subprocess.Popen[str], name: str) -> tenure.Lease:
    """Pause the tenure process past its TTL, take the lock from it, then let it run again."""
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        return coordinator.lock(name, ttl=30).acquire(timeout=10)
    finally:
        os.kill(proc.pid, signal.SIGCONT)


def test_lost_lease_stops_the_child(
    url: str, coordinator: tenure.Coordinator, spawn: list[subprocess.Popen[str]], tmp_path: Path
) -> None:
    pid_file = tmp_path / "child.pid"
    args = ["lock", "job", "--ttl", "0.6", "--"]
    proc = start(spawn, url, *args, sys.executable, "-c", SLEEPER, str(pid_file))
    child = wait_for_pid(pid_file, proc)
    thief = steal(coordinator, proc, "job")
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == LEASE_LOST
    assert not alive(child)
    assert "lost" in err and "SIGTERM" in err and "Traceback" not in err
    info = coordinator.inspect("job")
    assert info is not None and info.fence == thief.fence  # the thief's hold was left alone
    thief.release()


def test_a_killed_tenure_takes_its_child_with_it(
    url: str, spawn: list[subprocess.Popen[str]], tmp_path: Path
) -> None:
    # kill -9 leaves tenure no time to stop the command, which would go on without the lock;
    # the kernel's parent-death signal ends it instead.
    pid_file = tmp_path / "child.pid"
    proc = start(spawn, url, "lock", "job", "--", sys.executable, "-c", SIGTERM_IGNORER, str(pid_file))
    child = wait_for_pid(pid_file, proc)
    try:
        proc.kill()
        proc.wait(5)
        deadline = time.monotonic() + 5
        while running(child) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not running(child), "the command outlived the tenure that supervised it"
    finally:
        if running(child):
            os.kill(child, signal.SIGKILL)


def running(pid: int) -> bool:
    """Return whether ``pid`` exists and is not a zombie waiting to be reaped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def test_child_ignoring_sigterm_is_killed_after_the_grace(
    url: str, coordinator: tenure.Coordinator, spawn: list[subprocess.Popen[str]], tmp_path: Path
) -> None:
    pid_file = tmp_path / "child.pid"
    args = ["lock", "job", "--ttl", "0.6", "--grace", "1", "--"]
    proc = start(spawn, url, *args, sys.executable, "-c", SIGTERM_IGNORER, str(pid_file))
    child = wait_for_pid(pid_file, proc)
    with steal(coordinator, proc, "job"):
        resumed = time.monotonic()
        proc.communicate(timeout=10)
        waited = time.monotonic() - resumed
    assert proc.returncode == LEASE_LOST
    assert not alive(child)
    assert 0.9 <= waited < 5


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_stop_signal_is_passed_on_and_the_lock_released(
    url: str,
    coordinator: tenure.Coordinator,
    spawn: list[subprocess.Popen[str]],
    tmp_path: Path,
    signum: signal.Signals,
) -> None:
    pid_file, got = tmp_path / "child.pid", tmp_path / "got"
    child_args = [sys.executable, "-c", SIGNAL_RECORDER, str(pid_file), str(got)]
    proc = start(spawn, url, "lock", "job", "--", *child_args)
    child = wait_for_pid(pid_file, proc)
    os.kill(proc.pid, signum)
    proc.communicate(timeout=10)
    assert proc.returncode == 128 + signum
    assert got.read_text() == str(int(signum))
    assert not alive(child)
    assert coordinator.inspect("job") is None


def test_stop_signal_while_waiting_gives_up_without_running(
    url: str, coordinator: tenure.Coordinator, spawn: list[subprocess.Popen[str]], tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    with coordinator.lock("job", ttl=30).acquire(timeout=0):
        proc = start(spawn, url, "lock", "job", "--timeout", "20", "--", "touch", str(marker))
        time.sleep(0.5)
        os.kill(proc.pid, signal.SIGTERM)
        proc.communicate(timeout=10)
    assert proc.returncode == 128 + signal.SIGTERM
    assert not marker.exists()


# -- tenure inspect ----------------------------------------------------------------------------


def test_inspect_shows_holder_and_fence_while_held(url: str, coordinator: tenure.Coordinator) -> None:
    with coordinator.lock("job", ttl=30).acquire(timeout=0) as lease:
        text = run("inspect", "job", url=url)
        data = json.loads(run("inspect", "job", "--json", url=url).stdout)
    assert text.returncode == 0, text.stderr
    assert f"pid {os.getpid()}" in text.stdout
    assert f"fence:     {lease.fence}" in text.stdout
    assert data["held"] is True and data["lock"] == "job"
    assert data["fence"] == lease.fence
    assert f"pid {os.getpid()}" in data["holder"]
    assert 0 < data["remaining"] <= 30


def test_inspect_says_free_otherwise(url: str) -> None:
    text = run("inspect", "job", url=url)
    assert (text.returncode, text.stdout) == (0, "free\n")
    data = json.loads(run("inspect", "job", "--json", url=url).stdout)
    free = {
        "held": False,
        "holder": None,
        "fence": None,
        "remaining": None,
        "permits": [],
        "readers": [],
        "writer": None,
        "leader": None,
    }
    assert data == {"lock": "job", "backend": url, **free}


def test_inspect_shows_the_leader_of_the_election(url: str, coordinator: tenure.Coordinator) -> None:
    with coordinator.election("job", value="node-1", ttl=30).campaign(timeout=0) as leadership:
        text = run("inspect", "job", url=url)
        data = json.loads(run("inspect", "job", "--json", url=url).stdout)
    assert text.returncode == 0, text.stderr
    assert text.stdout.splitlines() == [
        "election:  job",
        f"backend:   {url}",
        "leader:    node-1",
        f"term:      {leadership.term}",
    ]
    free_lock = {"held": False, "holder": None, "fence": None, "remaining": None}
    leader = {"value": "node-1", "term": leadership.term}
    nothing = {"permits": [], "readers": [], "writer": None}
    assert data == {"lock": "job", "backend": url, **free_lock, **nothing, "leader": leader}


def test_inspect_shows_lock_holder_and_leader_together(url: str, coordinator: tenure.Coordinator) -> None:
    election = coordinator.election("job", value="node-1", ttl=30)
    with (
        coordinator.lock("job", ttl=30).acquire(timeout=0) as lease,
        election.campaign(timeout=0) as leadership,
    ):
        text = run("inspect", "job", url=url).stdout.splitlines()
        data = json.loads(run("inspect", "job", "--json", url=url).stdout)
    assert text[:4] == ["lock:      job", f"backend:   {url}", text[2], f"fence:     {lease.fence}"]
    assert f"pid {os.getpid()}" in text[2] and text[4].startswith("remaining: ")
    assert text[5:] == ["leader:    node-1", f"term:      {leadership.term}"]
    assert data["held"] is True and data["fence"] == lease.fence
    assert data["leader"] == {"value": "node-1", "term": leadership.term}


def test_inspect_shows_the_permits_of_the_semaphore(url: str, coordinator: tenure.Coordinator) -> None:
    sem = coordinator.semaphore("job", limit=3, ttl=30)
    with sem.acquire(timeout=0) as first, sem.acquire(timeout=0) as second:
        text = run("inspect", "job", url=url).stdout.splitlines()
        data = json.loads(run("inspect", "job", "--json", url=url).stdout)
    assert text[:3] == ["semaphore: job", f"backend:   {url}", "permits:   2 held"]
    assert [line.split(", ")[1] for line in text[3:]] == [f"fence {first.fence}", f"fence {second.fence}"]
    assert data["held"] is False and data["leader"] is None
    assert [p["fence"] for p in data["permits"]] == [first.fence, second.fence]
    assert all(f"pid {os.getpid()}" in p["holder"] and 0 < p["remaining"] <= 30 for p in data["permits"])


def test_inspect_shows_the_readers_and_writer_of_the_rwlock(
    url: str, coordinator: tenure.Coordinator
) -> None:
    rw = coordinator.rwlock("job", ttl=30)
    with rw.read(timeout=0) as first, rw.read(timeout=0) as second:
        text = run("inspect", "job", url=url).stdout.splitlines()
        data = json.loads(run("inspect", "job", "--json", url=url).stdout)
    assert text[:3] == ["rwlock:    job", f"backend:   {url}", "readers:   2 held"]
    assert sorted(p["fence"] for p in data["readers"]) == [first.fence, second.fence]
    assert data["writer"] is None and data["permits"] == []
    with rw.write(timeout=0) as writer:
        text = run("inspect", "job", url=url).stdout.splitlines()
        data = json.loads(run("inspect", "job", "--json", url=url).stdout)
    assert text[2].startswith("writer: ") and f"fence {writer.fence}" in text[2]
    assert data["writer"]["fence"] == writer.fence and data["readers"] == []


def test_inspect_shows_an_idempotency_key_running_then_done(
    url: str, coordinator: tenure.Coordinator
) -> None:
    keys = coordinator.idempotency("payments", lease=30)
    seen: dict[str, object] = {}

    def charge() -> dict[str, int]:
        lease = tenure.Idempotency.current_lease()
        assert lease is not None
        seen["fence"] = lease.fence
        seen["text"] = run("inspect", "payments", "--key", "req-1", url=url).stdout.splitlines()
        seen["json"] = json.loads(run("inspect", "payments", "--key", "req-1", "--json", url=url).stdout)
        return {"charged": 5}

    keys.run("req-1", charge)
    fence, text, running = seen["fence"], seen["text"], seen["json"]
    assert isinstance(text, list) and isinstance(running, dict)
    assert text[:3] == ["key:       req-1", "space:     payments", f"backend:   {url}"]
    assert text[3].startswith("running:") and f"fence {fence}" in text[3] and f"pid {os.getpid()}" in text[3]
    assert running["state"] == "running" and running["done"] is None
    assert running["running"]["fence"] == fence and 0 < running["running"]["remaining"] <= 30
    done = json.loads(run("inspect", "payments", "--key", "req-1", "--json", url=url).stdout)
    assert done["state"] == "done" and done["running"] is None
    assert done["done"]["fence"] == fence and done["done"]["outcome"] == "result"
    assert 86000 < done["done"]["remaining"] <= 86400 and done["done"]["bytes"] > 0
    text = run("inspect", "payments", "--key", "req-1", url=url).stdout.splitlines()
    assert text[3].startswith("done:      result of ") and f"fence {fence}" in text[3]
    unused = run("inspect", "payments", "--key", "req-2", url=url)
    assert unused.stdout.splitlines()[3] == "state:     unused (never run, or its record expired)"
    bad = run("inspect", "payments", "--key", "x" * 256, url=url)
    assert bad.returncode == 2 and "idempotency key must be 1 to 255 characters" in bad.stderr


# -- tenure lock --limit -----------------------------------------------------------------------


def test_limit_lets_that_many_commands_run_at_once(url: str, tmp_path: Path) -> None:
    ready = [tmp_path / f"ready-{i}" for i in range(3)]
    holding = [*CLI, "--url", url, "lock", "gpu", "--limit", "2", "--timeout", "0", "--"]
    children = [
        subprocess.Popen(
            [*holding, sys.executable, "-c", SLEEPER, str(marker)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for marker in ready[:2]
    ]
    try:
        deadline = time.monotonic() + 20
        while not all(marker.exists() for marker in ready[:2]) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert all(marker.exists() for marker in ready[:2]), "two permits: both commands must run"
        third = run("lock", "gpu", "--limit", "2", "--timeout", "0", "--", "touch", str(ready[2]), url=url)
        assert third.returncode == 75 and "2 permits held" in third.stderr
        assert not ready[2].exists()
        env = run("lock", "gpu", "--limit", "3", "--", "true", url=url)
        assert env.returncode == 2 and "limit=2" in env.stderr  # the name is in use with 2
    finally:
        for child in children:
            child.send_signal(signal.SIGTERM)
            child.communicate(timeout=20)
    script = "import os; print(os.environ['TENURE_LOCK'], os.environ['TENURE_FENCE'])"
    result = run("lock", "gpu", "--limit", "2", "--", sys.executable, "-c", script, url=url)
    assert result.returncode == 0 and result.stdout.split()[0] == "gpu"


# -- bad input, help, version ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url_text", "args", "message"),
    [
        (None, ["lock", "", "--", "true"], "lock name must not be empty"),
        (None, ["inspect", ""], "lock name must not be empty"),
        (None, ["lock", "job", "--ttl", "0", "--", "true"], "ttl must be a positive"),
        (None, ["lock", "job", "--timeout", "-1", "--", "true"], "timeout must be >= 0"),
        (None, ["lock", "job", "--grace", "-1", "--", "true"], "grace must be"),
        (None, ["lock", "job", "--limit", "0", "--", "true"], "limit must be between 1 and 1024"),
        ("nope://x", ["lock", "job", "--", "true"], "unknown URL scheme 'nope'"),
        ("{db}?bogus=1", ["inspect", "job"], "unknown option 'bogus'"),
    ],
)
def test_bad_input_fails_fast_with_one_line(
    url: str, db: Path, url_text: str | None, args: list[str], message: str
) -> None:
    chosen = url if url_text is None else url_text.format(db=f"sqlite://{db}")
    result = run(*args, url=chosen)
    assert result.returncode == 2
    assert_one_line_error(result)
    assert message in result.stderr
    assert not db.exists()  # failed before any I/O


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([b"lock", b"\xff-job", b"--", b"true"], "lock name '\\udcff-job' is not valid text"),
        ([b"inspect", b"job\xfe"], "lock name 'job\\udcfe' is not valid text"),
        ([b"elect", b"job", b"--value", b"\xff", b"--", b"true"], "election value '\\udcff' is not valid"),
        ([b"lock", b"job", b"--ttl", b"0.001", b"--", b"true"], "ttl must be at least"),
        ([b"--url", b"", b"inspect", b"job"], "URL is empty"),
        ([b"lock", b"job", b"--ttl", b"\xff", b"--", b"true"], "invalid float value"),
    ],
)
def test_undecodable_argv_bytes_and_bad_values_give_one_line(
    url: str, db: Path, args: list[bytes], message: str
) -> None:
    # Bytes that are not UTF-8 reach Python as lone surrogates; they used to end in a traceback.
    argv: list[str | bytes] = [*CLI, *([] if b"--url" in args else ["--url", url]), *args]
    result = subprocess.run(argv, capture_output=True, timeout=30)
    stderr = result.stderr.decode("utf-8", "backslashreplace")
    assert result.returncode == 2, stderr
    assert "Traceback" not in stderr and message in stderr
    assert len(stderr.splitlines()) == 1 and stderr.startswith("tenure: error: "), stderr
    assert not db.exists()  # failed before any I/O


def test_an_unexpected_error_is_one_line_too(url: str, tmp_path: Path) -> None:
    # A sitecustomize that breaks a library call tenure makes: a bug's stand-in, in a real process.
    (tmp_path / "sitecustomize.py").write_text(
        "import tenure._core.keys as keys\n"
        "def broken(*args, **kwargs):\n"
        "    raise RuntimeError('injected bug')\n"
        "keys.validate_name = broken\n"
        "import tenure._sync.coordinator as coordinator\n"
        "coordinator.validate_name = broken\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    result = subprocess.run(
        [*CLI, "--url", url, "inspect", "job"], capture_output=True, text=True, env=env, timeout=30
    )
    assert result.returncode == 1
    assert_one_line_error(result)
    assert "unexpected RuntimeError: injected bug" in result.stderr
    verbose = subprocess.run(
        [*CLI, "--verbose", "--url", url, "inspect", "job"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert verbose.returncode == 1 and "Traceback" in verbose.stderr, "--verbose shows where"


@pytest.mark.parametrize("args", [["lock", "job"], ["lock", "job", "--"]])
def test_missing_command_is_a_usage_error(url: str, db: Path, args: list[str]) -> None:
    result = run(*args, url=url)
    assert result.returncode == 2
    assert "missing CMD" in result.stderr and "Traceback" not in result.stderr
    assert not db.exists()


def test_unreachable_backend_exits_69(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    result = run("inspect", "job", url=f"sqlite://{tmp_path / 'a-file' / 'locks.db'}")
    assert result.returncode == 69
    assert_one_line_error(result)


@pytest.mark.parametrize("args", [["--help"], ["lock", "--help"], ["elect", "--help"], ["inspect", "--help"]])
def test_help_lists_exit_codes(args: list[str]) -> None:
    result = run(*args)
    assert result.returncode == 0
    assert "exit codes:" in result.stdout
    for code in ("75", str(LEASE_LOST), "69", "128+N"):
        assert code in result.stdout


def test_version() -> None:
    result = run("--version")
    assert (result.returncode, result.stdout.strip()) == (0, f"tenure {tenure.__version__}")


# -- tenure demo: only the wiring; tests/test_demo.py covers the demo itself ------------------


def test_demo_help_comes_from_the_demo() -> None:
    result = run("demo", "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: tenure demo")
    assert "--url" in result.stdout


@pytest.mark.parametrize("args", [["--url", "nope://x", "demo"], ["demo", "--url", "nope://x"]])
def test_demo_gets_the_url_given_before_or_after_the_command(tmp_path: Path, args: list[str]) -> None:
    result = run(*args, "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "unknown URL scheme 'nope'" in result.stderr and "Traceback" not in result.stderr
