"""Start real servers from installed binaries on free loopback ports, in temp dirs.

Used by the test fixtures and the benchmarks. Every server can be stopped, killed, paused
(SIGSTOP) and restarted on the same port, to inject faults.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, *, timeout: float = 10.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Wait until something accepts connections on 127.0.0.1:``port``.

    A ``proc`` that never listens is killed before the error is raised: no test leaves it behind.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server on port {port} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    if proc is not None:
        proc.kill()
        proc.wait()
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


class ServerProcess:
    """One server process that tests can stop, kill -9, freeze (SIGSTOP) and thaw."""

    proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """Terminate the process and wait for it (kill it if it will not go)."""
        if self.running:
            assert self.proc is not None
            self.resume()
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        """Kill -9 the process: no goodbye to its clients or peers."""
        if self.running:
            assert self.proc is not None
            self.resume()
            self.proc.kill()
            self.proc.wait()

    def pause(self) -> None:
        """Freeze the process (SIGSTOP): its sockets stay open but nothing answers.

        Returns once every thread has stopped: a loaded machine can delay the stop of a thread
        that is inside a system call, and a test must not race the server's last replies.
        """
        if self.running:
            assert self.proc is not None
            os.kill(self.proc.pid, signal.SIGSTOP)
            wait_stopped(self.proc.pid)

    def resume(self) -> None:
        """Thaw a frozen process."""
        if self.running:
            assert self.proc is not None
            os.kill(self.proc.pid, signal.SIGCONT)


class RedisServer(ServerProcess):
    """A redis-server without persistence: a restart loses every key, as in production caches."""

    def __init__(self, workdir: Path, *, port: int | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install -y redis-server)")
        self.binary = binary
        self.workdir = workdir
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.workdir),
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--protected-mode", "no",
            "--logfile", str(self.workdir / "redis.log"),
        ]  # fmt: skip
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, proc=self.proc)
        return self

    def restart(self) -> None:
        """Kill the server and start a fresh one on the same port (every key is lost)."""
        self.kill()
        self.start()


def wait_stopped(pid: int, timeout: float = 5.0) -> None:
    """Return once every thread of ``pid`` is stopped (state T), or after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            states = [
                (Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()[0])
                for tid in os.listdir(f"/proc/{pid}/task")
            ]
        except (FileNotFoundError, ProcessLookupError):
            continue  # a thread ended while we looked
        if all(state in ("T", "t") for state in states):
            return
        time.sleep(0.002)
