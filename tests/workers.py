"""Worker processes for the multi-process tests: ``python -m tests.workers ROLE ...``.

Tests start one with ``worker(ROLE, ...)`` and read what it says with ``read_line``.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from pathlib import Path

import tenure

ROOT = Path(__file__).resolve().parent.parent


def worker(*args: str, stdin: int | None = None) -> subprocess.Popen[str]:
    """Start ``python -m tests.workers *args`` with its output piped, from the repository root."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.workers", *args],
        cwd=ROOT,
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def read_line(proc: subprocess.Popen[str], prefix: str) -> str:
    """Return the worker's next line, which must start with ``prefix`` (else show its stderr)."""
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    assert line.startswith(prefix), (
        f"expected {prefix!r}, got {line!r}; stderr: {proc.stderr.read() if proc.stderr else ''}"
    )
    return line


def count(url: str, name: str, counter: Path, log: Path, rounds: int) -> int:
    """Increment a counter file ``rounds`` times under the lock, logging every hold."""
    holds = []
    with tenure.Coordinator(url) as coord:
        lock = coord.lock(name, ttl=5, timeout=60)
        for _ in range(rounds):
            with lock as lease:
                acquired = time.monotonic()
                value = int(counter.read_text() or "0")
                time.sleep(0.001)  # widen the read-modify-write window
                counter.write_text(str(value + 1))
                released = time.monotonic()
            holds.append({"fence": lease.fence, "acquired": acquired, "released": released})
    log.write_text(json.dumps(holds))
    return 0


def cycle(url: str, name: str, ttl: str, fair: str, seconds: str, log: Path) -> int:
    """Acquire, hold 10-50 ms, release, over and over for ``seconds``; log when each hold began.

    Faults of the server are expected: an error is logged and the loop goes on. Then say DONE
    and keep the coordinator (its sessions) open until stdin closes, so that the test can see
    whether an entry was left behind while its session still lives.
    """
    acquired: list[float] = []
    errors: list[tuple[float, str]] = []
    with tenure.Coordinator(url) as coord:
        lock = coord.lock(name, ttl=float(ttl), fair=fair == "fair")
        ends = time.monotonic() + float(seconds)
        while time.monotonic() < ends:
            try:
                with lock.acquire(timeout=max(0.1, min(5.0, ends - time.monotonic()))):
                    acquired.append(time.monotonic())
                    time.sleep(random.uniform(0.01, 0.05))
            except (tenure.BackendError, tenure.LockError) as exc:
                errors.append((time.monotonic(), f"{type(exc).__name__}: {exc}"))
                time.sleep(0.05)
        log.write_text(json.dumps({"acquired": acquired, "errors": errors}))
        print("DONE", flush=True)
        sys.stdin.read()
    return 0


def hold_and_check(url: str, name: str, ttl: str) -> int:
    """Hold the lock and check it every 20 ms; say LOST when told the lease is gone."""
    called = []
    with tenure.Coordinator(url) as coord:
        lease = coord.lock(name, ttl=float(ttl)).acquire(timeout=5)
        lease.on_lost(called.append)
        print(f"HELD {lease.fence}", flush=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                lease.check()
            except tenure.LockLost:
                # The renewer may be running the callbacks right now, on its own thread.
                waited = time.monotonic() + 2
                while not called and time.monotonic() < waited:
                    time.sleep(0.01)
                print(f"LOST {lease.fence} callback={bool(called)}", flush=True)
                try:
                    lease.release()
                except tenure.LockLost:
                    print("RELEASE-REFUSED", flush=True)
                return 0
            time.sleep(0.02)
    return 1


def hold_forever(url: str, name: str, ttl: str) -> int:
    """Hold the lock until killed."""
    with tenure.Coordinator(url) as coord, coord.lock(name, ttl=float(ttl)) as lease:
        print(f"HELD {lease.fence}", flush=True)
        time.sleep(60)
    return 1


def hold_and_report(url: str, name: str, ttl: str, fair: str) -> int:
    """Hold the lock until killed; say ``VALID <monotonic deadline>`` each time a renewal moves it."""
    with tenure.Coordinator(url) as coord:
        lease = coord.lock(name, ttl=float(ttl), fair=fair == "fair").acquire(timeout=5)
        print(f"HELD {lease.fence}", flush=True)
        last = 0.0
        ends = time.monotonic() + 60
        while time.monotonic() < ends and not lease.lost:
            deadline = time.monotonic() + lease.remaining()
            if deadline > last + 0.005:
                last = deadline
                print(f"VALID {deadline:.6f}", flush=True)
            time.sleep(0.002)
    return 1


def lead_and_check(url: str, name: str, ttl: str, register: Path) -> int:
    """Lead, write with our term, and check every 20 ms; once deposed, try a late fenced write."""
    called = []
    with tenure.Coordinator(url) as coord:
        leadership = coord.election(name, value="paused-leader", ttl=float(ttl)).campaign(timeout=5)
        leadership.on_lost(called.append)
        assert fenced_write(register, "from the first leader", leadership.term)
        print(f"LEADER {leadership.term}", flush=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                leadership.check()
            except tenure.LeadershipLost:
                waited = time.monotonic() + 2  # the renewer may be running the callbacks now
                while not called and time.monotonic() < waited:
                    time.sleep(0.01)
                accepted = fenced_write(register, "late from the deposed leader", leadership.term)
                print(f"DEPOSED {leadership.term} callback={bool(called)} late-write={accepted}", flush=True)
                return 0
            time.sleep(0.02)
    return 1


def lead_forever(url: str, name: str, ttl: str) -> int:
    """Lead until killed."""
    with tenure.Coordinator(url) as coord, coord.election(name, ttl=float(ttl)).campaign() as leadership:
        print(f"LEADER {leadership.term}", flush=True)
        time.sleep(60)
    return 1


def permits(url: str, name: str, limit: str, fair: str, rounds: str, log: Path) -> int:
    """Take a permit, hold it 1-20 ms, release, ``rounds`` times; log each hold's interval."""
    holds = []
    with tenure.Coordinator(url) as coord:
        sem = coord.semaphore(name, limit=int(limit), ttl=5, timeout=60, fair=fair == "fair")
        for _ in range(int(rounds)):
            asked = time.monotonic()
            with sem as permit:
                acquired = time.monotonic()
                time.sleep(random.uniform(0.001, 0.02))
                released = time.monotonic()
            holds.append({"fence": permit.fence, "asked": asked, "acquired": acquired, "released": released})
    log.write_text(json.dumps(holds))
    return 0


def hold_permit(url: str, name: str, ttl: str, register: Path) -> int:
    """Hold a permit of a one-permit semaphore and check it every 20 ms; on loss, try a fenced write."""
    with tenure.Coordinator(url) as coord:
        permit = coord.semaphore(name, limit=1, ttl=float(ttl)).acquire(timeout=5)
        print(f"HELD {permit.fence}", flush=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if permit.lost:
                accepted = fenced_write(register, "stale", permit.fence)
                print(f"LOST {permit.fence} write-accepted={accepted}", flush=True)
                return 0
            time.sleep(0.02)
    return 1


def read_write(url: str, name: str, rounds: str, log: Path) -> int:
    """Read (3 in 4) or write (1 in 4) under the read-write lock, ``rounds`` times; log each hold."""
    holds = []
    with tenure.Coordinator(url) as coord:
        rw = coord.rwlock(name, ttl=5, timeout=60)
        for _ in range(int(rounds)):
            kind = "write" if random.random() < 0.25 else "read"
            with rw.write() if kind == "write" else rw.read() as lease:
                acquired = time.monotonic()
                time.sleep(random.uniform(0.001, 0.01))
                released = time.monotonic()
            holds.append({"kind": kind, "fence": lease.fence, "acquired": acquired, "released": released})
    log.write_text(json.dumps(holds))
    return 0


def take_turn(url: str, name: str, ttl: str) -> int:
    """Take a ticket, say it, wait for a line on stdin, then take the turn and say when."""
    with tenure.Coordinator(url) as coord:
        turns = coord.sequence(name, ttl=float(ttl), timeout=30)
        ticket = turns.ticket()
        print(f"TICKET {ticket}", flush=True)
        sys.stdin.readline()
        with turns.turn(ticket):
            print(f"TURN {ticket} {time.monotonic():.6f}", flush=True)
            time.sleep(0.02)
    return 0


def duplicates(url: str, space: str, rounds: str, threads: str, start: str, log: Path, ran: Path) -> int:
    """Call one idempotency key per round from ``threads`` threads at once, ``rounds`` times.

    Every process's round ``i`` starts at ``start`` + 10 ms * i on the host's monotonic clock,
    so the duplicates of one key come from every process together. Each run appends a line to
    ``ran``; each call's result goes to ``log``.
    """
    import os
    import threading

    seen: list[tuple[int, str]] = []
    failures: list[str] = []
    with tenure.Coordinator(url) as coord:
        keys = coord.idempotency(space, lease=5, timeout=30)

        def execute(round_: int) -> str:
            me = f"{os.getpid()}-{threading.get_ident()}"
            with open(ran, "a") as executions:  # one short O_APPEND write per run: never interleaved
                executions.write(f"{round_} {me}\n")
            return me

        def call_all() -> None:
            for round_ in range(int(rounds)):
                time.sleep(max(0.0, float(start) + 0.01 * round_ - time.monotonic()))
                try:
                    seen.append((round_, keys.run(f"round-{round_}", execute, round_)))
                except Exception as exc:
                    failures.append(f"round {round_}: {type(exc).__name__}: {exc}")

        callers = [threading.Thread(target=call_all) for _ in range(int(threads))]
        for caller in callers:
            caller.start()
        for caller in callers:
            caller.join()
    log.write_text(json.dumps({"seen": seen, "failures": failures}))
    return 0


def run_once(url: str, space: str, key: str, lease: str) -> int:
    """Run ``key`` with a function that says RUNNING <fence> and waits for a line on stdin.

    Then say RESULT <value> if the run's result was recorded, or LOST if it was refused.
    """
    with tenure.Coordinator(url) as coord:
        keys = coord.idempotency(space, lease=float(lease), timeout=10)

        def work() -> str:
            lease_ = tenure.Idempotency.current_lease()
            assert lease_ is not None
            print("RUNNING", lease_.fence, flush=True)
            sys.stdin.readline()
            return "first"

        try:
            print("RESULT", keys.run(key, work), flush=True)
        except tenure.LockLost:
            print("LOST", flush=True)
    return 0


def fenced_write(register: Path, value: str, term: int) -> bool:
    """Write ``value`` to a SQLite register that rejects terms lower than the highest it has seen."""
    import sqlite3

    with sqlite3.connect(register, timeout=10) as db:
        db.execute("CREATE TABLE IF NOT EXISTS register (id INTEGER PRIMARY KEY, value TEXT, term INTEGER)")
        db.execute("INSERT OR IGNORE INTO register VALUES (1, NULL, 0)")
        cursor = db.execute(
            "UPDATE register SET value = ?, term = ? WHERE id = 1 AND term <= ?", (value, term, term)
        )
        return cursor.rowcount == 1


if __name__ == "__main__":
    role, *args = sys.argv[1:]
    if role == "count":
        sys.exit(count(args[0], args[1], Path(args[2]), Path(args[3]), int(args[4])))
    if role == "cycle":
        sys.exit(cycle(*args[:5], Path(args[5])))
    if role == "hold-and-check":
        sys.exit(hold_and_check(*args))
    if role == "hold-and-report":
        sys.exit(hold_and_report(*args))
    if role == "hold-forever":
        sys.exit(hold_forever(*args))
    if role == "permits":
        sys.exit(permits(*args[:5], Path(args[5])))
    if role == "hold-permit":
        sys.exit(hold_permit(*args[:3], Path(args[3])))
    if role == "read-write":
        sys.exit(read_write(*args[:3], Path(args[3])))
    if role == "take-turn":
        sys.exit(take_turn(*args))
    if role == "duplicates":
        sys.exit(duplicates(*args[:5], Path(args[5]), Path(args[6])))
    if role == "run-once":
        sys.exit(run_once(*args))
    if role == "lead-and-check":
        sys.exit(lead_and_check(args[0], args[1], args[2], Path(args[3])))
    if role == "lead-forever":
        sys.exit(lead_forever(*args))
    sys.exit(f"unknown role {role}")
