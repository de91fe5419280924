"""``tenure inspect --watch`` in a real terminal (tmux): the screen shows a handover within 200 ms."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tenure.cli.main import main

HANDOVER_LIMIT = 0.2  # seconds from the holder's release to the new holder on screen

# One contender: "lock" or "elect" NAME on URL. Holds until a line comes on stdin, then prints
# the monotonic time and lets go; a second contender waits for it and prints what it got.
CONTENDER = """
import sys, time
import tenure
url, kind, name, value = sys.argv[1:5]
with tenure.Coordinator(url) as coord:
    if kind == "lock":
        held = coord.lock(name, ttl=10, timeout=20).acquire()
        number = held.fence
    else:
        held = coord.election(name, value=value, ttl=10).campaign(timeout=20)
        number = held.term
    print("got", number, flush=True)
    if sys.stdin.readline():
        print("letting go", time.monotonic(), flush=True)
        held.release() if kind == "lock" else held.resign()
    sys.stdin.read()
"""


class Terminal:
    """A tmux server of its own, 160 x 20, running one command."""

    def __init__(self, command: list[str]) -> None:
        self.socket = f"tenure-test-{uuid.uuid4().hex[:8]}"
        subprocess.run(
            ["tmux", "-L", self.socket, "new-session", "-d", "-x", "160", "-y", "20", *command], check=True
        )

    def screen(self) -> str:
        command = ["tmux", "-L", self.socket, "capture-pane", "-p"]
        done = subprocess.run(command, capture_output=True, text=True)
        return done.stdout

    def row(self, name: str) -> list[str] | None:
        """Return the cells of ``name``'s row as the screen shows it now, or None."""
        for line in self.screen().splitlines():
            cells = [cell.strip() for cell in line.split("│")]
            if len(cells) > 7 and cells[1] == name:
                return cells[1:8]
        return None

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)


class Contender:
    def __init__(self, url: str, kind: str, name: str, value: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CONTENDER, url, kind, name, value],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def line(self) -> list[str]:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().split()

    def say(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text)
        self.proc.stdin.flush()

    def stop(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            self.proc.wait(10)


@pytest.fixture
def started() -> Iterator[list[Terminal | Contender]]:
    things: list[Terminal | Contender] = []
    yield things
    for thing in things:
        thing.stop() if isinstance(thing, Contender) else thing.close()


def wait_for_row(terminal: Terminal, name: str, column: int, text: str, seconds: float) -> float:
    """Poll the screen every 5 ms until ``name``'s cell ``column`` shows ``text``; return when."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        row = terminal.row(name)
        if row is not None and row[column] == text:
            return time.monotonic()
        time.sleep(0.005)
    raise AssertionError(f"{name}: {text!r} not shown in column {column}:\n{terminal.screen()}")


@pytest.mark.parametrize("backend, kind", [("sqlite", "lock"), ("redis", "elect")])
def test_the_screen_shows_a_handover_within_200_ms(
    backend: str, kind: str, request: pytest.FixtureRequest, started: list[Terminal | Contender]
) -> None:
    url = request.getfixturevalue(f"{backend}_url")
    tool = str(Path(sys.executable).with_name("tenure"))
    command = ["env", f"TENURE_URL={url}", "COLUMNS=160", tool, "inspect", "--watch", "handover", "other"]
    terminal = Terminal(command)
    started.append(terminal)
    first = Contender(url, kind, "handover", "node-a")
    started.append(first)
    number = int(first.line()[1])
    column = 2 if kind == "lock" else 5  # the fence, or the term
    wait_for_row(terminal, "handover", column, str(number), seconds=10)
    second = Contender(url, kind, "handover", "node-b")
    started.append(second)
    time.sleep(0.5)  # the second contender waits for the first
    first.say("go\n")
    released_at = float(first.line()[2])
    successor = int(second.line()[1])
    assert successor > number
    shown_at = wait_for_row(terminal, "handover", column, str(successor), seconds=5)
    print(f"{backend} {kind}: the handover shown {1000 * (shown_at - released_at):.0f} ms after release")
    if kind == "elect":
        assert terminal.row("handover")[4] == "node-b"  # type: ignore[index]
    assert shown_at - released_at <= HANDOVER_LIMIT, f"shown {shown_at - released_at:.3f} s after release"
    assert terminal.row("other") is not None and terminal.row("other")[1] == "free"  # type: ignore[index]


def test_bad_input_is_refused_before_connecting(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--url", "memory://", "inspect", "--watch", "a", "--interval", "0"]) == 2
    assert "--interval must be > 0" in capsys.readouterr().err
    assert main(["--url", "memory://", "inspect", "a", "b"]) == 2
    assert "several need --watch" in capsys.readouterr().err
    assert main(["--url", "memory://", "inspect", "--watch", "a", ""]) == 2
