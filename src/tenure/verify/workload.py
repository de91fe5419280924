"""One worker of ``tenure verify``, run as its own process: ``python -m tenure.verify.workload PLAN NAME``.

It loops until told to stop: acquire the lock, read both shared counters, work a random short
time, check the lease, wait a random short time more (the request to the resource in flight:
the window in which a stale holder writes), write back both counters + 1 (the fenced one with
the lease's fence), release. Every step is appended to its own JSON Lines history, in the format
of ``docs/verify.md``, stamped with the one monotonic clock of the host.
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import random
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO

import tenure
from tenure.verify.stores import Stores

CLOCK_GETTIME = {"x86_64": 228, "aarch64": 113}  # the clock_gettime syscall number
CLOCK_MONOTONIC = 1
UNFINISHED = "killed while releasing: the outcome is unknown"  # a release the runner records


@dataclass(frozen=True, slots=True)
class Plan:
    """What every worker needs, written once to ``plan.json`` by the runner."""

    url: str  # a worker behind a proxy gets its own URL, given on its command line
    lock_name: str
    ttl: float
    workdir: str  # the stores, the histories, the stop files
    work: float  # the longest "work" step in seconds; the write gap is up to half of it
    acquire_timeout: float
    max_run: float  # seconds a worker may run in all, so a lost runner never leaves it behind
    seed: int

    def save(self, path: Path) -> None:
        """Write the plan as JSON."""
        path.write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path: Path) -> Plan:
        """Read a plan written by ``save``."""
        return cls(**json.loads(path.read_text()))


def history_file(workdir: Path, name: str) -> Path:
    """Return the JSON Lines history of the process ``name``."""
    return workdir / f"history-{name}.jsonl"


def stop_file(workdir: Path, name: str) -> Path:
    """Return the file whose existence asks worker ``name`` to finish its hold and exit."""
    return workdir / f"stop-{name}"


def ready_file(workdir: Path, name: str) -> Path:
    """Return the file worker ``name`` creates once it has connected and is about to start."""
    return workdir / f"ready-{name}"


def release_note(workdir: Path, name: str) -> Path:
    """Return the note of a release worker ``name`` has sent and not yet recorded."""
    return workdir / f"releasing-{name}.json"


def record_unfinished_releases(workdir: Path) -> int:
    """Record every release whose worker died before recording it; return how many.

    Call it once every worker has ended. A release is stamped when it is sent and recorded when
    it returns: a worker killed in between (a release slowed by a server fault, then a crash)
    would leave its hold looking valid until the kill, an overlap with every later holder. Its
    outcome is unknown, so it is recorded as a release that did not complete (``ok`` false, as
    when the server cannot be reached).
    """
    recorded = 0
    for note in sorted(workdir.glob("releasing-*.json")):
        name = note.name.removeprefix("releasing-").removesuffix(".json")
        try:
            data = json.loads(note.read_text())
            at, fence = int(data["time"]), data["fence"]
        except (ValueError, KeyError, TypeError):
            note.unlink()  # cut short by the kill: written before the release was sent, so none was
            continue
        path = history_file(workdir, name)
        data = path.read_bytes() if path.exists() else b""
        if not _has_release(data, at):
            with path.open("ab") as file:
                file.truncate(data.rfind(b"\n") + 1)  # a line the kill cut short: garbage
                event = _event(name, "release", at, fence, ok=False, detail=UNFINISHED)
                file.write(json.dumps(event).encode() + b"\n")
            recorded += 1
        note.unlink()
    return recorded


def _has_release(history: bytes, at: int) -> bool:
    """Return whether the JSON Lines ``history`` holds a release stamped ``at``."""
    for line in history.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("type") == "release" and event.get("time") == at:
            return True
    return False


def _event(
    process: str,
    kind: str,
    time_ns: int,
    fence: int | None,
    *,
    ok: bool = True,
    store: str | None = None,
    ttl: float | None = None,
    detail: str = "",
) -> dict[str, object]:
    """Return one event as a JSON-ready dict, its keys in the format's order."""
    return {
        "process": process,
        "time": time_ns,
        "type": kind,
        "fence": fence,
        "ok": ok,
        "store": store,
        "ttl": None if ttl is None else round(ttl, 6),
        "detail": detail,
    }


def real_clock() -> Callable[[], int]:
    """Return the host's monotonic clock in ns, unfaked.

    Under libfaketime (the skew nemesis) ``time.monotonic_ns`` runs fast or slow; the raw system
    call is not intercepted, so a skewed worker's events stay on the same clock as everyone's.
    """
    number = CLOCK_GETTIME.get(platform.machine())
    if "FAKETIME" not in os.environ or number is None:
        return time.monotonic_ns
    libc = ctypes.CDLL(None, use_errno=True)
    stamp = (ctypes.c_long * 2)()

    def clock() -> int:
        if libc.syscall(number, CLOCK_MONOTONIC, ctypes.byref(stamp)) != 0:
            raise OSError(ctypes.get_errno(), "clock_gettime failed")
        return int(stamp[0]) * 1_000_000_000 + int(stamp[1])

    return clock


class History:
    """Append events, one JSON object a line, flushed at once: the worker may be killed any time."""

    def __init__(self, path: Path, process: str, clock: Callable[[], int]) -> None:
        self.process = process
        self.clock = clock
        self._file: IO[str] = path.open("a", buffering=1, encoding="utf-8")
        self._lock = threading.Lock()

    def emit(
        self,
        kind: str,
        *,
        ok: bool = True,
        fence: int | None = None,
        store: str | None = None,
        ttl: float | None = None,
        detail: str = "",
        at: int | None = None,
        process: str | None = None,
    ) -> None:
        """Append one event, stamped now unless ``at`` says when it happened."""
        with self._lock:
            stamp = self.clock() if at is None else at
            event = _event(
                process or self.process, kind, stamp, fence, ok=ok, store=store, ttl=ttl, detail=detail
            )
            self._file.write(json.dumps(event) + "\n")

    def close(self) -> None:
        """Close the file."""
        self._file.close()


class Hold:
    """One lease's life in the history: ``lost`` is written once, when the holder learns it.

    The holder learns it from ``check()`` or ``release()``, in the thread that writes, so the
    history shows what the code that writes knew when it wrote (a renewer that noticed the loss
    a moment earlier told nobody who could stop the write).
    """

    def __init__(self, history: History, lease: tenure.Lease) -> None:
        self.history = history
        self.lease = lease
        self._told = False

    def lost(self, detail: str, at: int | None = None) -> None:
        """Record that the holder learnt it lost the lease (once per hold)."""
        if not self._told:
            self._told = True
            self.history.emit("lost", fence=self.lease.fence, detail=detail, at=at)


class Worker:
    """Acquire, read, work, check, write, release: until stopped or out of time."""

    def __init__(self, plan: Plan, name: str, url: str) -> None:
        self.plan = plan
        self.name = name
        self.url = url
        self.workdir = Path(plan.workdir)
        clock = real_clock()
        self.history = History(history_file(self.workdir, name), name, clock)
        self.stores = Stores(self.workdir, clock)
        self.random = random.Random(f"{plan.seed}:{name}")
        self.deadline = time.monotonic() + plan.max_run

    def run(self) -> None:
        """Connect, say ready, then loop over holds."""
        with tenure.Coordinator(self.url) as coord:
            lock = coord.lock(self.plan.lock_name, ttl=self.plan.ttl)
            ready_file(self.workdir, self.name).touch()
            while not self._should_stop():
                self._one_round(lock)
                # Step back a moment so that the lock changes hands instead of staying with us.
                time.sleep(self.random.uniform(0.2, 1.0) * self.plan.work)

    def _should_stop(self) -> bool:
        return time.monotonic() >= self.deadline or stop_file(self.workdir, self.name).exists()

    def _one_round(self, lock: tenure.Lock) -> None:
        ttl = self.plan.ttl
        try:
            lease = lock.acquire(timeout=self.plan.acquire_timeout)
        except tenure.AcquireTimeout as exc:
            self.history.emit("acquire", ok=False, ttl=ttl, detail=f"timeout: {exc}")
            return
        except tenure.BackendError as exc:
            self.history.emit("acquire", ok=False, ttl=ttl, detail=f"unavailable: {exc}")
            time.sleep(min(0.2, ttl / 4))  # the server is down or cut off: do not spin
            return
        self.history.emit("acquire", fence=lease.fence, ttl=lease.ttl)
        hold = Hold(self.history, lease)
        try:
            self._work_under(lease)
        except tenure.LockLost as exc:
            hold.lost(str(exc))
        self._release(hold)

    def _work_under(self, lease: tenure.Lease) -> None:
        fenced, unfenced = self.stores.read(lease.fence)
        time.sleep(self.random.uniform(0.0, self.plan.work))
        lease.check()  # a careful holder checks before it writes...
        # ...and its write then takes a while to reach the resource (frozen here, it goes stale).
        time.sleep(self.random.uniform(0.0, self.plan.work / 2))
        belief = lease.remaining() or None  # seconds it believes it still holds (None: none)
        accepted, at = self.stores.write_fenced(fenced + 1, lease.fence)
        self.history.emit(
            "write", ok=accepted, fence=lease.fence, store="fenced", ttl=belief,
            detail=f"{fenced}->{fenced + 1}", at=at,
        )  # fmt: skip
        belief = lease.remaining() or None
        at = self.stores.write_unfenced(unfenced + 1)
        detail = f"{unfenced}->{unfenced + 1}"
        self.history.emit("write", fence=lease.fence, store="unfenced", ttl=belief, detail=detail, at=at)

    def _release(self, hold: Hold) -> None:
        lease = hold.lease
        # The hold ends when the release is sent: a waiter may acquire before release() returns.
        at = self.history.clock()
        # The release may take a while (a server fault): killed before it returns, this process
        # records nothing, so it leaves a note from which the runner records the release.
        note = release_note(self.workdir, self.name)
        note.write_text(json.dumps({"time": at, "fence": lease.fence}))
        try:
            lease.release()
        except tenure.LockLost as exc:
            hold.lost(str(exc), at=at)
            self.history.emit("release", ok=False, fence=lease.fence, detail="it had been lost", at=at)
        except tenure.BackendError as exc:
            self.history.emit("release", ok=False, fence=lease.fence, detail=f"unavailable: {exc}", at=at)
        else:
            self.history.emit("release", fence=lease.fence, at=at)
        note.unlink()  # not on an unexpected error: the worker then dies, and the runner records it

    def close(self) -> None:
        """Close the history."""
        self.history.close()


def main(argv: list[str]) -> int:
    """Run worker ``argv[2]`` of the plan in ``argv[1]`` (on URL ``argv[3]`` if given)."""
    if len(argv) not in (3, 4):
        print("usage: python -m tenure.verify.workload PLAN.json NAME [URL]", file=sys.stderr)
        return 2
    plan = Plan.load(Path(argv[1]))
    worker = Worker(plan, argv[2], argv[3] if len(argv) == 4 else plan.url)
    try:
        worker.run()
    except Exception:
        traceback.print_exc()  # into the worker's log; the runner reports the exit code
        return 1
    finally:
        worker.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
