"""Run one scenario: start the worker processes together, watch them, freeze one if asked, tally.

The orchestrator never takes the lock itself; it only starts the buyers, reads the shop for the
progress line and, in the paused scenario, sends SIGSTOP to the holder that offered itself and
SIGCONT once the lease has expired and a newer holder has sold.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import tenure
from tenure.demo.events import (
    CLAIM_INFO,
    GO,
    RESUME,
    History,
    Mode,
    Pause,
    WorkerPlan,
    event_file,
    log_file,
    read_events,
    ready_file,
    touch,
)
from tenure.demo.report import Progress
from tenure.demo.shop import Shop

START_TIMEOUT = 30.0  # seconds for every worker process to import tenure and report ready
PAUSE_PATIENCE = 5.0  # seconds past the TTL to wait for a newer holder before resuming anyway


@dataclass(frozen=True, slots=True)
class Scenario:
    """One way of running the sale."""

    key: str
    title: str
    mode: Mode
    pause: bool = False


SCENARIOS = (
    Scenario("a", "no lock", "none"),
    Scenario("b", "lock", "lock"),
    Scenario("c", "lock + fencing, holder paused", "fenced", pause=True),
)


@dataclass(frozen=True, slots=True)
class Settings:
    """The options of one demo run."""

    url: str
    out: Path
    run_id: str
    stock: int
    workers: int
    ttl: float
    think: float
    max_run: float


@dataclass(slots=True)
class Outcome:
    """What one scenario did: the shop's tally, the workers' history and anything that went wrong."""

    scenario: Scenario
    stock: int
    ttl: float
    orders: int = 0
    stock_left: int = 0
    rejected: int = 0
    duration: float = 0.0
    history: History = field(default_factory=History)
    pause: Pause | None = None
    paused_write_rejected: bool = False
    problems: list[str] = field(default_factory=list)

    @property
    def oversold(self) -> int:
        """Return how many more units were sold than there were."""
        return max(0, self.orders - self.stock)

    @property
    def exact(self) -> bool:
        """Return whether every unit sold exactly once: nothing oversold, nothing lost."""
        return self.oversold == 0 and self.orders + self.stock_left == self.stock


class Pauser:
    """Freeze the holder that offers itself, then thaw it once a newer holder has sold."""

    def __init__(self, workdir: Path, procs: list[subprocess.Popen[bytes]], ttl: float) -> None:
        self.workdir = workdir
        self.procs = procs
        self.ttl = ttl
        self.worker = -1
        self.fence = 0
        self.stopped: float | None = None
        self.resumed: float | None = None
        self.newer_sold = False

    def step(self, max_fence: int, progress: Progress) -> None:
        """Advance: stop the volunteer as soon as it offers, resume it when the time is right."""
        now = time.monotonic()
        if self.stopped is None:
            info = self.workdir / CLAIM_INFO
            if info.exists():
                claim = json.loads(info.read_text())
                self.worker, self.fence = int(claim["worker"]), int(claim["fence"])
                os.kill(self.procs[self.worker].pid, signal.SIGSTOP)
                self.stopped = time.monotonic()
                progress.note(
                    f"SIGSTOP worker {self.worker}: it holds fence {self.fence}, checked its lease "
                    f"and is about to write; ttl is {self.ttl:g} s"
                )
        elif self.resumed is None:
            self.newer_sold = max_fence > self.fence
            paused_for = now - self.stopped
            # A quarter ttl more than needed, so that the picture shows the pause outlasting the ttl.
            if (paused_for >= 1.25 * self.ttl and self.newer_sold) or paused_for >= self.ttl + PAUSE_PATIENCE:
                self.resume()
                progress.note(
                    f"SIGCONT worker {self.worker} after {paused_for:.2f} s; "
                    f"the shop has seen fence {max_fence} meanwhile"
                )

    def resume(self) -> None:
        """Let the frozen worker go on (also on the way out, whatever happened)."""
        if self.stopped is not None and self.resumed is None:
            touch(self.workdir / RESUME)
            os.kill(self.procs[self.worker].pid, signal.SIGCONT)
            self.resumed = time.monotonic()


def run_scenario(scenario: Scenario, settings: Settings, progress: Progress) -> Outcome:
    """Run ``scenario`` with fresh stock and fresh worker processes; return what happened."""
    ttl = settings.ttl if scenario.pause else max(5.0, settings.ttl)  # no pause: no need to be short
    outcome = Outcome(scenario, settings.stock, ttl)
    workdir = settings.out / f"scenario-{scenario.key}"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    sku = f"flash-sale-{scenario.key}"
    shop = Shop(settings.out / "shop.db")
    shop.create(sku, settings.stock)
    plan = WorkerPlan(
        mode=scenario.mode,
        url=settings.url,
        lock_name=f"tenure-demo:{settings.run_id}:{sku}",
        ttl=ttl,
        shop_path=str(settings.out / "shop.db"),
        sku=sku,
        stock=settings.stock,
        workdir=str(workdir),
        think=settings.think,
        acquire_timeout=max(10.0, 4 * ttl),
        max_run=settings.max_run,
        pause_after=settings.stock // 4 if scenario.pause else None,
    )
    plan.save(workdir / "plan.json")
    logs: list[IO[bytes]] = []
    procs: list[subprocess.Popen[bytes]] = []
    pauser = Pauser(workdir, procs, ttl) if scenario.pause else None
    t0 = time.monotonic()
    stragglers = 0
    try:
        for worker in range(settings.workers):
            logs.append(log_file(workdir, worker).open("wb"))
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "tenure.demo.worker", str(workdir / "plan.json"), str(worker)],
                    stdin=subprocess.DEVNULL,
                    stdout=logs[-1],
                    stderr=subprocess.STDOUT,
                    env=_child_env(),
                )
            )
        if not _wait_ready(workdir, procs, outcome):
            return outcome  # the finally clause stops those that did start
        t0 = time.monotonic()
        touch(workdir / GO)  # everyone starts buying at the same moment
        deadline = t0 + settings.max_run + 5.0
        while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
            left, orders, rejected, max_fence = shop.tally(sku)
            if pauser is not None:
                pauser.step(max_fence, progress)
            progress.update(_progress_text(outcome, orders, left, rejected, time.monotonic() - t0))
            time.sleep(0.02)
    finally:
        if pauser is not None:
            pauser.resume()
        stragglers = _stop_all(procs)
        for log in logs:
            log.close()
    if stragglers:
        outcome.problems.append(f"{stragglers} worker(s) still ran after {settings.max_run:g} s; killed")
    outcome.duration = time.monotonic() - t0
    outcome.stock_left, outcome.orders, outcome.rejected, _ = shop.tally(sku)
    shop.close()
    _collect(outcome, workdir, procs, t0, pauser)
    progress.done(
        _progress_text(outcome, outcome.orders, outcome.stock_left, outcome.rejected, outcome.duration)
    )
    return outcome


def _progress_text(outcome: Outcome, orders: int, left: int, rejected: int, elapsed: float) -> str:
    text = f"({outcome.scenario.key}) {outcome.scenario.title}: {orders} orders accepted, {left} left"
    if outcome.scenario.mode == "fenced":
        text += f", {rejected} stale write{'s' * (rejected != 1)} rejected"
    return text + f"  [{elapsed:.1f} s]"


def _child_env() -> dict[str, str]:
    """Return the environment of a worker: ours, plus the folder this tenure was imported from."""
    env = dict(os.environ)
    root = str(Path(tenure.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


def _wait_ready(workdir: Path, procs: list[subprocess.Popen[bytes]], outcome: Outcome) -> bool:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if all(ready_file(workdir, n).exists() for n in range(len(procs))):
            return True
        for n, proc in enumerate(procs):
            if proc.poll() is not None:
                outcome.problems.append(
                    f"worker {n} exited with code {proc.returncode} before it started; "
                    f"see {log_file(workdir, n)}"
                )
                return False
        time.sleep(0.01)
    outcome.problems.append(f"the workers were not ready after {START_TIMEOUT:g} s")
    return False


def _stop_all(procs: list[subprocess.Popen[bytes]]) -> int:
    """Stop whatever still runs (workers that overran, or all on Ctrl-C); return how many did."""
    running = [p for p in procs if p.poll() is None]
    for proc in running:
        proc.send_signal(signal.SIGCONT)  # a frozen process cannot act on SIGTERM
        proc.terminate()
    for proc in running:
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return len(running)


def _collect(
    outcome: Outcome, workdir: Path, procs: list[subprocess.Popen[bytes]], t0: float, pauser: Pauser | None
) -> None:
    """Read the workers' histories and exit codes into ``outcome``."""
    for n, proc in enumerate(procs):
        outcome.history.add_worker(n, read_events(event_file(workdir, n)), t0)
        if proc.returncode not in (0, None, -signal.SIGTERM):
            outcome.problems.append(f"worker {n} exited with {proc.returncode}; see {log_file(workdir, n)}")
    outcome.problems.extend(outcome.history.errors)
    if pauser is None:
        return
    if pauser.stopped is None or pauser.resumed is None:
        outcome.problems.append("no holder offered itself to be paused, so nothing stale was ever written")
        return
    outcome.pause = Pause(pauser.worker, pauser.fence, pauser.stopped - t0, pauser.resumed - t0)
    if not pauser.newer_sold:
        outcome.problems.append(
            f"no other worker sold while worker {pauser.worker} was paused "
            f"{pauser.resumed - pauser.stopped:.1f} s (ttl {outcome.ttl:g} s)"
        )
    outcome.paused_write_rejected = any(
        m.kind == "rejected" and m.worker == pauser.worker and m.fence == pauser.fence
        for m in outcome.history.marks
    )
