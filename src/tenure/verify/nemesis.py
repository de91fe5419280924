"""The faults ``tenure verify`` injects, one at a time, on a schedule drawn from the seed.

Each fault is bounded (it lasts one to three TTLs, and the run's end stops the schedule) and is
healed when it ends, when the run ends and on Ctrl-C: ``heal()`` is idempotent and the runner
calls it in a ``finally``. A fault is recorded as ``fault`` events of the process it strikes
(``server`` for a server): ``"<kind> start <target> (how)"`` then ``"<kind> end <target>"``
(a crash is a moment: it has no end); a fault that cannot run
here is one event with ``ok`` false, ``"<kind> could not run: <why>"`` (the run is then
inconclusive).

- ``pause``: SIGSTOP a holder for 1.5-2.5 TTLs, then SIGCONT.
- ``crash``: SIGKILL a holder and start a replacement worker.
- ``server``: kill -9 one server node (or the only one) and restart it after up to a TTL.
- ``partition``: cut a holder off every server through its proxy for 1.5-2.5 TTLs.
- ``skew``: start an extra worker whose clock runs slow or fast (libfaketime) for a while.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from tenure._exceptions import ConfigurationError
from tenure.verify.proxy import Proxy
from tenure.verify.stores import store_lock

NEMESES = ("pause", "crash", "server", "partition", "skew")
HOLDER_PATIENCE = 2.0  # seconds to wait for a holder to strike before striking any worker
STORE_LOCK_PATIENCE = 1.0  # seconds to wait for the stores' lock before freezing a worker
SKEW_RATES = (0.3, 3.0)  # how fast a skewed worker's clock runs: slow (the dangerous one), fast
SERVER_COMMAND_TIMEOUT = 120.0
MAX_FAULTS = 500


def parse_nemeses(text: str) -> tuple[str, ...]:
    """Return the nemeses named in ``"pause,crash"`` (empty text: none); bad names are refused."""
    names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [name for name in names if name not in NEMESES]
    if unknown:
        raise ConfigurationError(f"unknown nemesis {unknown[0]!r}: choose from {', '.join(NEMESES)}")
    return names


def libfaketime() -> str | None:
    """Return the path of the multithreaded libfaketime if it is installed, else None."""
    for folder in ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib", "/usr/local/lib"):
        path = Path(folder) / "faketime" / "libfaketimeMT.so.1"
        if path.exists():
            return str(path)
    return None


class Crew(Protocol):
    """What the nemesis needs from the runner: its workers, and a place to record faults."""

    def holders(self) -> list[str]:
        """Return the workers that hold the lock now (by their histories)."""

    def workers(self) -> list[str]:
        """Return the workers that run now."""

    def pid(self, name: str) -> int | None:
        """Return the process id of worker ``name`` if it runs."""

    def kill(self, name: str) -> None:
        """SIGKILL worker ``name`` and reap it."""

    def replace(self, name: str) -> str:
        """Start a worker in place of ``name``; return the new worker's name."""

    def proxy(self, name: str) -> Proxy | None:
        """Return the proxy between worker ``name`` and the servers, if it has one."""

    def start_skewed(self, rate: float) -> str:
        """Start an extra worker whose clock runs at ``rate``; return its name."""

    def stop(self, name: str) -> None:
        """Ask worker ``name`` to finish its hold and exit."""

    def fault(self, process: str, detail: str, *, ok: bool = True, at: int | None = None) -> None:
        """Record a ``fault`` event that strikes ``process`` (stamped now unless ``at`` says)."""


class Servers(Protocol):
    """Servers the nemesis may kill: ones tenure started, or the user's command (``--servers``)."""

    def kill(self, rng: random.Random) -> str:
        """Kill -9 one node (or the only one); return which."""

    def restart(self) -> None:
        """Start the killed node again; return once it serves."""


class CommandServers:
    """The user's own command that kills and restarts a server (``--servers CMD``), run by a shell."""

    def __init__(self, command: str) -> None:
        if not command.strip():
            raise ConfigurationError("--servers needs a command that kills and restarts a server")
        self.command = command

    def kill(self, rng: random.Random) -> str:
        """Run the command, bounded in time; return what it did."""
        done = subprocess.run(
            ["/bin/sh", "-c", self.command], capture_output=True, timeout=SERVER_COMMAND_TIMEOUT, check=False
        )
        return f"server (--servers command, exit {done.returncode})"

    def restart(self) -> None:
        """Nothing: the command restarted the server itself."""


@dataclass(slots=True)
class Fault:
    """The fault under way: what it is, whom it strikes, when it ends and how to undo it."""

    kind: str
    target: str
    ends_at: float
    heal: Callable[[], None]
    healed_at_once: bool = True  # the end is stamped before healing; a server's once it serves


class Nemesis:
    """Strike one fault at a time between quiet spells, within the run's time; heal on request."""

    def __init__(
        self,
        kinds: Sequence[str],
        *,
        crew: Crew,
        ttl: float,
        seed: int,
        workdir: Path,
        servers: Servers | None = None,
    ) -> None:
        self.kinds = list(kinds)
        self.crew = crew
        self.ttl = ttl
        self.rng = random.Random(seed)
        self.workdir = workdir
        self.servers = servers
        self.active: Fault | None = None
        self.count = 0
        self.next_at = 0.0
        self.stop_at = 0.0
        self._cycle: list[str] = []
        self._waiting_since: float | None = None

    def begin(self, now: float, end: float) -> None:
        """Start the schedule: the first fault after a warm-up, the last one well before ``end``."""
        self.next_at = now + max(0.5, 1.5 * self.ttl)
        self.stop_at = end - max(1.0, 3.5 * self.ttl)  # time to strike, heal and recover
        if "skew" in self.kinds and libfaketime() is None:
            self.kinds.remove("skew")
            self.crew.fault("nemesis", "skew could not run: libfaketime is not installed", ok=False)

    def step(self, now: float) -> None:
        """End the fault that is due, or strike the next one when its time has come."""
        if self.active is not None:
            if now >= self.active.ends_at:
                self._end()
            return
        if not self.kinds or now < self.next_at or now >= self.stop_at or self.count >= MAX_FAULTS:
            return
        if not self._cycle:
            self._cycle = self.rng.sample(self.kinds, len(self.kinds))  # every kind once per round
        kind = self._cycle[0]
        if self._strike(kind, now):
            self._cycle.pop(0)
            self._waiting_since = None
            self.count += 1

    def heal(self) -> None:
        """End the fault under way at once, if any (idempotent; safe on the way out)."""
        if self.active is not None:
            self._end()

    def _end(self) -> None:
        fault, self.active = self.active, None
        if fault is None:
            return
        # A thawed or reconnected worker acts at once: the end goes first, so that its next
        # event is not stamped inside the band.
        ended = time.monotonic_ns() if fault.healed_at_once else None
        try:
            fault.heal()
        finally:
            if fault.kind != "crash":  # a crash is a moment, recorded by its start
                self.crew.fault(fault.target, f"{fault.kind} end {fault.target}", at=ended)
            self.next_at = time.monotonic() + self.rng.uniform(1.5, 3.0) * self.ttl

    def _span(self) -> float:
        return self.rng.uniform(1.5, 2.5) * self.ttl

    def _victim(self, now: float, able: Callable[[str], bool] = lambda _: True) -> str | None:
        """Return a holder to strike; after ``HOLDER_PATIENCE`` without one, any running worker."""
        holders = [name for name in self.crew.holders() if able(name)]
        if holders:
            return self.rng.choice(holders)
        if self._waiting_since is None:
            self._waiting_since = now
        if now - self._waiting_since < HOLDER_PATIENCE:
            return None
        others = [name for name in self.crew.workers() if able(name)]
        return self.rng.choice(others) if others else None

    def _strike(self, kind: str, now: float) -> bool:
        """Start a fault of ``kind``; return False to try again at the next step."""
        if kind == "pause":
            return self._pause(now)
        if kind == "crash":
            victim = self._victim(now)
            if victim is None:
                return False
            killed_at = time.monotonic_ns()  # its hold ends here: the others may acquire at once
            self.crew.kill(victim)
            replacement = self.crew.replace(victim)
            self.crew.fault(
                victim, f"crash start {victim} (SIGKILL; replaced by {replacement})", at=killed_at
            )
            self.active = Fault("crash", victim, now, lambda: None)  # over: the next step ends it
            return True
        if kind == "server":
            return self._server()
        if kind == "partition":
            return self._partition(now)
        return self._skew(now)

    def _pause(self, now: float) -> bool:
        victim = self._victim(now)
        pid = None if victim is None else self.crew.pid(victim)
        if victim is None or pid is None:
            return False
        # Freeze it only while it does not hold the stores' lock, or every worker would wait on it.
        with store_lock(self.workdir, timeout=STORE_LOCK_PATIENCE) as held:
            if not held:
                return False
            # The cure is in place before the fault: an interrupt between them still heals it.
            self.active = Fault("pause", victim, time.monotonic() + self._span(), lambda: _cont(pid))
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
                wait_stopped(pid)
        self.crew.fault(victim, f"pause start {victim} (SIGSTOP)")
        return True

    def _server(self) -> bool:
        if self.servers is None:
            self.kinds.remove("server")
            why = "tenure did not start the servers (see --servers)"
            self.crew.fault("nemesis", f"server could not run: {why}", ok=False)
            return False
        down_for = self.rng.uniform(0.0, 1.0) * self.ttl
        self.active = Fault("server", "server", time.monotonic() + down_for, self.servers.restart, False)
        killed_at = time.monotonic_ns()
        node = self.servers.kill(self.rng)
        self.crew.fault("server", f"server start server (kill -9 {node})", at=killed_at)
        self.active.ends_at = time.monotonic() + down_for
        return True

    def _partition(self, now: float) -> bool:
        victim = self._victim(now, lambda name: self.crew.proxy(name) is not None)
        proxy = None if victim is None else self.crew.proxy(victim)
        if victim is None or proxy is None:
            return False
        self.active = Fault("partition", victim, time.monotonic() + self._span(), proxy.heal)
        proxy.cut()
        self.crew.fault(victim, f"partition start {victim} (proxy cut)")
        return True

    def _skew(self, now: float) -> bool:
        rate = self.rng.choice(SKEW_RATES)
        name = self.crew.start_skewed(rate)
        self.crew.fault(name, f"skew start {name} (clock x{rate:g})")
        self.active = Fault("skew", name, now + max(2.0, 4 * self.ttl), lambda: self.crew.stop(name))
        return True


def _cont(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGCONT)


def wait_stopped(pid: int, timeout: float = 2.0) -> None:
    """Return once every thread of ``pid`` is stopped, or after ``timeout`` seconds (Linux /proc)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
            stats = [Path(f"/proc/{pid}/task/{tid}/stat").read_text() for tid in tasks]
        except (FileNotFoundError, ProcessLookupError):
            return  # gone, or not Linux: nothing to wait for
        if all(stat.rsplit(")", 1)[1].split()[0] in ("T", "t") for stat in stats):
            return
        time.sleep(0.002)
