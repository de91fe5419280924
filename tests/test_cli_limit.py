"""``tenure limit`` as a real subprocess, against a SQLite file in a temporary directory.

The rates are slow ("1/hour" and the like) wherever a test needs a bucket to stay empty while
it runs; the test that waits for a permit takes one first in-process and lets the command wait
for the next.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import tenure

CLI = [sys.executable, "-m", "tenure.cli.main"]
TEMPFAIL = 75


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "limits.db"


@pytest.fixture
def url(db: Path) -> str:
    return f"sqlite://{db}"


def run(*args: str, url: str | None = None) -> subprocess.CompletedProcess[str]:
    prefix = [] if url is None else ["--url", url]
    return subprocess.run([*CLI, *prefix, *args], capture_output=True, text=True, timeout=60)


def touch(path: Path) -> list[str]:
    """A CMD that creates ``path``: the proof that it ran."""
    return [sys.executable, "-c", "import sys; open(sys.argv[1], 'w').close()", str(path)]


def assert_one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("tenure: error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_with_a_permit_the_command_runs(url: str) -> None:
    script = "import os; print(os.environ['TENURE_LIMIT'])"
    result = run("limit", "partner-api", "--rate", "1/hour", "--", sys.executable, "-c", script, url=url)
    assert (result.returncode, result.stdout.strip(), result.stderr) == (0, "partner-api", "")


@pytest.mark.parametrize("code", [3, 42])
def test_the_commands_exit_code_is_passed_through(url: str, code: int) -> None:
    result = run("limit", "job", "--rate", "10/s", "--", "sh", "-c", f"exit {code}", url=url)
    assert result.returncode == code and result.stderr == ""


def test_no_permit_within_the_timeout_exits_75_at_once(url: str, tmp_path: Path) -> None:
    assert run("limit", "job", "--rate", "1/hour", "--", "true", url=url).returncode == 0
    started = time.monotonic()
    result = run(
        "limit", "job", "--rate", "1/hour", "--timeout", "20", "--", *touch(tmp_path / "ran"), url=url
    )
    elapsed = time.monotonic() - started
    assert result.returncode == TEMPFAIL
    assert elapsed < 10, "the next permit is an hour away: no use waiting 20 s to fail"
    assert not (tmp_path / "ran").exists()
    line = assert_one_line_error(result)
    retry_after = re.search(r"retry after ([0-9.]+) s", line)
    assert retry_after is not None, line
    assert 3500 < float(retry_after.group(1)) <= 3600
    assert "'job'" in line and "20 s" in line


def test_the_command_waits_for_the_next_permit(url: str, tmp_path: Path) -> None:
    with tenure.Coordinator(url) as coord:
        assert coord.rate_limiter("job", rate="1/3s").try_acquire()  # the next is due in 3 s
    started = time.monotonic()
    result = run("limit", "job", "--rate", "1/3s", "--timeout", "10", "--", *touch(tmp_path / "ran"), url=url)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "ran").exists()
    assert 2.0 <= elapsed < 9, f"waited {elapsed:.2f} s for a permit due in under 3 s"


def test_keys_and_costs_have_budgets_of_their_own(url: str) -> None:
    def limit(*options: str) -> int:
        budget = ["--rate", "3/hour", "--burst", "3", "--timeout", "0"]
        return run("limit", "api", *budget, *options, "--", "true", url=url).returncode

    assert [limit("--key", "alice", "--cost", "2"), limit("--key", "alice", "--cost", "2")] == [0, TEMPFAIL]
    assert limit("--key", "alice") == 0, "one permit was left"
    assert [limit("--key", "bob", "--cost", "3"), limit("--key", "bob")] == [0, TEMPFAIL]
    assert limit() == 0, "no key: NAME's own budget"


def test_a_stop_signal_while_waiting_gives_up_without_running(url: str, db: Path, tmp_path: Path) -> None:
    with tenure.Coordinator(url) as coord:
        assert coord.rate_limiter("job", rate="1/hour").try_acquire()
    ran = tmp_path / "ran"
    waiting = ["limit", "job", "--rate", "1/hour", "--timeout", "7200", "--", *touch(ran)]
    proc = subprocess.Popen(
        [*CLI, "--url", url, *waiting],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        wait_until_it_opens(proc, db)  # connected, so waiting for the permit: signals are caught
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert not ran.exists()


def wait_until_it_opens(proc: subprocess.Popen[str], path: Path, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    fds = Path(f"/proc/{proc.pid}/fd")
    while True:
        assert proc.poll() is None, f"tenure exited early: {proc.communicate()}"
        assert time.monotonic() < deadline, f"tenure did not open {path} within {timeout} s"
        try:
            if any(os.readlink(fd) == str(path) for fd in fds.iterdir()):
                return
        except FileNotFoundError:  # a descriptor closed while we looked
            pass
        time.sleep(0.02)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--rate", "ten/s"], "cannot read the rate"),
        (["--rate", "0/s"], "at least 1 permit"),
        (["--rate", "10/s", "--burst", "0"], "burst must be"),
        (["--rate", "10/s", "--cost", "0"], "cost must be"),
        (["--rate", "10/s", "--burst", "2", "--cost", "3"], "can never be admitted"),
        (["--rate", "10/s", "--timeout", "-1"], "timeout must be >= 0"),
        (["--rate", "10/s", "--key", "k" * 600], "rate limit key is 600 bytes long"),
    ],
)
def test_bad_input_is_a_usage_error_before_any_io(
    url: str, db: Path, tmp_path: Path, options: list[str], message: str
) -> None:
    result = run("limit", "job", *options, "--", *touch(tmp_path / "ran"), url=url)
    assert result.returncode == 2
    assert message in assert_one_line_error(result)
    assert not db.exists(), "failed before any I/O"
    assert not (tmp_path / "ran").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["limit", "job", "--", "true"], "the following arguments are required: --rate"),
        (["limit", "job", "--rate", "1/s"], "missing CMD"),
        (["limit", "job", "--rate", "1/s", "--"], "missing CMD"),
    ],
)
def test_missing_rate_or_command_is_a_usage_error(url: str, db: Path, args: list[str], message: str) -> None:
    result = run(*args, url=url)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert not db.exists()


def test_an_unreachable_backend_exits_69_without_running(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    url = f"sqlite://{tmp_path / 'a-file' / 'limits.db'}"
    result = run("limit", "job", "--rate", "1/s", "--", *touch(tmp_path / "ran"), url=url)
    assert result.returncode == 69
    assert "cannot be reached" in assert_one_line_error(result)
    assert not (tmp_path / "ran").exists()


def test_a_command_not_found_exits_127(url: str) -> None:
    result = run("limit", "job", "--rate", "1/s", "--", "no-such-command-tenure", url=url)
    assert result.returncode == 127 and "no-such-command-tenure" in result.stderr


def test_help_names_the_command_and_its_exit_codes() -> None:
    overview, own = run("--help").stdout, run("limit", "--help").stdout
    assert "limit" in overview and "tenure limit partner --rate 10/s" in overview
    assert "usage: tenure [--url URL] limit NAME --rate R" in own
    assert "exit codes:" in own and "limit: no permit due within --timeout" in own
    assert "retry after" in own
