"""Run ``tenure verify``: start the workers, inject faults on the seed's schedule, collect the history.

The runner never takes the lock itself. It starts the worker processes (each in a session of its
own, so a Ctrl-C at the terminal reaches only the runner), follows their histories to know who
holds the lock, lets the nemesis strike, and at the end heals every fault, stops the workers,
merges every history into one ``history.jsonl`` sorted by time. Everything is bounded: the run's
length, the workers' own ``max_run``, every wait on the way out. ``run()`` heals on Ctrl-C and
SIGTERM as on a normal end, then raises ``KeyboardInterrupt``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import tenure
from tenure._exceptions import ConfigurationError
from tenure._registry import resolve
from tenure.demo.report import Progress
from tenure.verify.nemesis import Nemesis, Servers, libfaketime
from tenure.verify.proxy import Proxy, proxiable, proxied_url
from tenure.verify.stores import create_stores
from tenure.verify.workload import (
    History,
    Plan,
    history_file,
    ready_file,
    record_unfinished_releases,
    stop_file,
)

START_TIMEOUT = 30.0  # seconds for the first workers to import tenure and connect
STOP_PATIENCE = 3.0  # seconds the workers get to finish their hold once asked to stop
TICK = 0.02  # seconds between two looks at the histories


@dataclass(frozen=True, slots=True)
class Settings:
    """The options of one verify run (``tenure verify``'s flags)."""

    url: str
    nemeses: tuple[str, ...] = ("pause", "crash")
    duration: float = 30.0
    workers: int = 5
    ttl: float = 1.0
    seed: int = 0
    report: Path = Path("tenure-verify")
    servers: Servers | None = None
    progress: bool = True

    def validate(self) -> None:
        """Raise ``ConfigurationError`` for bad options, before any I/O."""
        if not 0 < self.duration <= 24 * 3600:
            raise ConfigurationError(f"--duration must be between 0 and 86400 seconds, not {self.duration:g}")
        if not 1 <= self.workers <= 64:
            raise ConfigurationError(f"--workers must be between 1 and 64, not {self.workers}")
        if not 0.05 <= self.ttl <= 600:
            raise ConfigurationError(f"--ttl must be between 0.05 and 600 seconds, not {self.ttl:g}")
        resolve(self.url, "_sync")  # an unknown scheme or option
        if "server" in self.nemeses and self.servers is None:
            raise ConfigurationError(
                "the server nemesis kills and restarts a server: give --servers CMD, a command that "
                "does it for your deployment (tenure only kills servers it started itself)"
            )
        if "partition" in self.nemeses and not proxiable(self.url):
            raise ConfigurationError(
                f"the partition nemesis needs a backend reached over TCP, not {self.url.split('://')[0]}://"
            )


@dataclass(slots=True)
class Worker:
    """One worker process the runner started."""

    name: str
    proc: subprocess.Popen[bytes]
    log: IO[bytes]
    proxy: Proxy | None = None
    expected_end: bool = False  # killed by the nemesis or asked to stop: its exit is no problem


@dataclass(slots=True)
class Outcome:
    """What a run left: the merged history's path, its events and what went wrong on the way."""

    history: Path
    events: list[dict[str, Any]]
    problems: list[str] = field(default_factory=list)
    faults: int = 0


class Runner:
    """Start, follow, strike, heal, stop and collect (the ``Crew`` the nemesis works with)."""

    def __init__(self, settings: Settings) -> None:
        settings.validate()
        self.settings = settings
        self.workdir = settings.report.resolve() / "run"
        self.plan = Plan(
            url=settings.url,
            lock_name=f"tenure-verify:{uuid.uuid4().hex[:12]}",
            ttl=settings.ttl,
            workdir=str(self.workdir),
            work=settings.ttl / 8,
            acquire_timeout=max(5.0, 10 * settings.ttl),
            max_run=settings.duration + 60.0,
            seed=settings.seed,
        )
        self.running: dict[str, Worker] = {}
        self.ended: list[Worker] = []
        self.holding: set[str] = set()
        self.acquisitions = 0
        self.problems: list[str] = []
        self._offsets: dict[str, int] = {}
        self._spawned = 0
        self._last_fault = ""
        self.nemesis_log: History | None = None

    # -- the Crew protocol ---------------------------------------------------------------------

    def holders(self) -> list[str]:
        return sorted(name for name in self.holding if name in self.running)

    def workers(self) -> list[str]:
        return sorted(self.running)

    def pid(self, name: str) -> int | None:
        worker = self.running.get(name)
        return None if worker is None else worker.proc.pid

    def kill(self, name: str) -> None:
        worker = self.running.pop(name)
        worker.expected_end = True
        worker.proc.kill()
        worker.proc.wait(timeout=10)
        self.ended.append(worker)
        self.holding.discard(name)

    def replace(self, name: str) -> str:
        base, _, generation = name.partition(".")
        new = f"{base}.{int(generation or 0) + 1}"
        self._spawn(new)
        return new

    def proxy(self, name: str) -> Proxy | None:
        worker = self.running.get(name)
        return None if worker is None else worker.proxy

    def start_skewed(self, rate: float) -> str:
        library = libfaketime()
        assert library is not None  # the nemesis checked
        self._spawned += 1
        name = f"skew{self._spawned}"
        self._spawn(name, env={"LD_PRELOAD": library, "FAKETIME": f"+0 x{rate:g}"})
        return name

    def stop(self, name: str) -> None:
        stop_file(self.workdir, name).touch()
        if name in self.running:
            self.running[name].expected_end = True

    def fault(self, process: str, detail: str, *, ok: bool = True, at: int | None = None) -> None:
        assert self.nemesis_log is not None
        self.nemesis_log.emit("fault", ok=ok, detail=detail, process=process, at=at)
        self._last_fault = detail

    # -- the run ---------------------------------------------------------------------------------

    def run(self) -> Outcome:
        """Run the workload under the nemeses for the run's duration; return the merged history."""
        settings = self.settings
        self.workdir.mkdir(parents=True, exist_ok=True)
        for old in self.workdir.iterdir():  # an earlier run's files would mix into this history
            old.unlink()
        create_stores(self.workdir)
        self.plan.save(self.workdir / "plan.json")
        self.nemesis_log = History(history_file(self.workdir, "nemesis"), "nemesis", time.monotonic_ns)
        nemesis = Nemesis(
            settings.nemeses,
            crew=self,
            ttl=settings.ttl,
            seed=settings.seed,
            workdir=self.workdir,
            servers=settings.servers,
        )
        progress = Progress(sys.stderr) if settings.progress else None
        try:
            with _interruptible():
                for n in range(settings.workers):
                    self._spawn(f"w{n}")
                self._wait_ready()
                start = time.monotonic()
                end = start + settings.duration
                nemesis.begin(start, end)
                while (now := time.monotonic()) < end:
                    self._follow()
                    nemesis.step(now)
                    if progress is not None:
                        progress.update(self._status(now - start, nemesis.count))
                    time.sleep(TICK)
        finally:
            with _uninterruptible():
                self._shut_down(nemesis)
        if progress is not None:
            progress.done(self._status(settings.duration, nemesis.count))
        outcome = self._collect()
        outcome.faults = nemesis.count
        return outcome

    def _spawn(self, name: str, env: dict[str, str] | None = None) -> None:
        proxy = None
        url = self.settings.url
        if "partition" in self.settings.nemeses:
            proxy = Proxy(name)
            url = proxied_url(url, proxy) or url
            proxy.start()
        log = (self.workdir / f"worker-{name}.log").open("wb")
        command = [sys.executable, "-m", "tenure.verify.workload", str(self.workdir / "plan.json"), name, url]
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**_child_env(), **(env or {})},
            start_new_session=True,  # a Ctrl-C at the terminal is the runner's to handle
        )
        self.running[name] = Worker(name, proc, log, proxy)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while not all(ready_file(self.workdir, name).exists() for name in self.running):
            for worker in self.running.values():
                if worker.proc.poll() is not None:
                    log = self.workdir / f"worker-{worker.name}.log"
                    tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
                    raise tenure.BackendUnavailable(
                        f"worker {worker.name} exited with {worker.proc.returncode} "
                        f"before it started: {tail[0]}"
                    )
            if time.monotonic() > deadline:
                raise tenure.BackendUnavailable(f"the workers were not ready after {START_TIMEOUT:g} s")
            time.sleep(TICK)

    def _follow(self) -> None:
        """Read what the workers appended since the last look; note who holds and who died."""
        for name in list(self.running):
            for event in self._new_events(name):
                if event["type"] == "acquire" and event["ok"]:
                    self.holding.add(name)
                    self.acquisitions += 1
                elif event["type"] in ("release", "lost"):
                    self.holding.discard(name)
            worker = self.running[name]
            if worker.proc.poll() is not None:
                del self.running[name]
                self.ended.append(worker)
                self.holding.discard(name)
                if not worker.expected_end:
                    self.problems.append(
                        f"worker {name} exited with {worker.proc.returncode}; "
                        f"see {self.workdir}/worker-{name}.log"
                    )

    def _new_events(self, name: str) -> Iterator[dict[str, Any]]:
        path = history_file(self.workdir, name)
        offset = self._offsets.get(name, 0)
        try:
            with path.open("rb") as file:
                file.seek(offset)
                chunk = file.read()
        except FileNotFoundError:
            return
        complete = chunk[: chunk.rfind(b"\n") + 1]  # a line still being written waits
        self._offsets[name] = offset + len(complete)
        for line in complete.splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                yield json.loads(line)

    def _status(self, elapsed: float, faults: int) -> str:
        width = 20
        done = min(width, int(width * elapsed / self.settings.duration))
        bar = "#" * done + "." * (width - done)
        last = f" (last: {self._last_fault})" if self._last_fault else ""
        return (
            f"verify [{bar}] {elapsed:4.1f}/{self.settings.duration:g} s  "
            f"{self.acquisitions} acquisitions  {faults} faults{last}"
        )

    def _shut_down(self, nemesis: Nemesis) -> None:
        """Heal the fault under way, stop every worker (bounded), close every proxy."""
        try:
            nemesis.heal()
        except Exception as exc:  # the rest must still happen: no worker or proxy left behind
            self.problems.append(f"healing the last fault failed: {type(exc).__name__}: {exc}")
        for name in list(self.running):
            self.stop(name)
            _cont(self.running[name].proc)  # a frozen process cannot finish anything
        deadline = time.monotonic() + STOP_PATIENCE
        while self.running and time.monotonic() < deadline:
            self._follow()
            time.sleep(TICK)
        for worker in list(self.running.values()):  # stuck in a long wait: end it
            _cont(worker.proc)
            worker.proc.terminate()
        for worker in list(self.running.values()):
            try:
                worker.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                worker.proc.kill()
                worker.proc.wait()
        self._follow()
        for worker in self.ended + list(self.running.values()):
            worker.log.close()
            if worker.proxy is not None:
                worker.proxy.close()
        if self.nemesis_log is not None:
            self.nemesis_log.close()

    def _collect(self) -> Outcome:
        """Merge every process's history into ``history.jsonl``, sorted by time."""
        record_unfinished_releases(self.workdir)  # the workers have ended: none is still sending one
        events: list[dict[str, Any]] = []
        for path in sorted(self.workdir.glob("history-*.jsonl")):
            for line in path.read_text(encoding="utf-8").splitlines():
                with contextlib.suppress(json.JSONDecodeError):  # a line cut short by SIGKILL
                    events.append(json.loads(line))
        events.sort(key=lambda event: int(event["time"]))
        merged = self.settings.report.resolve() / "history.jsonl"
        with merged.open("w", encoding="utf-8") as file:
            for event in events:
                file.write(json.dumps(event) + "\n")
        return Outcome(merged, events, list(self.problems))


def _cont(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGCONT)


def _child_env() -> dict[str, str]:
    """Return a worker's environment: ours, plus the folder this tenure was imported from."""
    env = dict(os.environ)
    root = str(Path(tenure.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


@contextlib.contextmanager
def _interruptible() -> Iterator[None]:
    """Turn SIGTERM into ``KeyboardInterrupt`` as Ctrl-C is, so that both end in the healing path."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach only the main thread: nothing to install
        return
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _uninterruptible() -> Iterator[None]:
    """Hold off Ctrl-C and SIGTERM while healing: a second Ctrl-C must not leave a fault behind."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
