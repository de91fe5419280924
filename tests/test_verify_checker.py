"""The history format and the checker of ``tenure verify``, on hand-made histories."""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from xml.etree import ElementTree

import pytest

from tenure import ConfigurationError
from tenure._core.guarantees import Guarantee
from tenure.cli.main import main
from tenure.verify.checker import Options, Verdict, check
from tenure.verify.history import Event, merge_histories, read_history, write_history
from tenure.verify.report import run_check
from tests import verify_broken

FENCING = frozenset({Guarantee.FENCING})
MS = 1_000_000


class Script:
    """Build a history step by step, times in milliseconds, the counters kept as a store keeps them."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.value = {"fenced": 0, "unfenced": 0}
        self.floor = -1

    def add(self, at: float, process: str, kind: str, **fields: object) -> Script:
        self.events.append(Event(process, int(at * MS), kind, **fields))  # type: ignore[arg-type]
        return self

    def acquire(self, at: float, process: str, fence: int | None, ttl: float = 1.0) -> Script:
        return self.add(at, process, "acquire", fence=fence, ttl=ttl)

    def write(self, at: float, process: str, fence: int, *, read: dict[str, int] | None = None) -> Script:
        """Write both stores: counter + 1, from ``read`` (default: the stores' current values)."""
        for store in ("fenced", "unfenced"):
            seen = self.value[store] if read is None else read[store]
            ok = store == "unfenced" or fence >= self.floor
            if ok:
                self.value[store] = seen + 1
                if store == "fenced":
                    self.floor = fence
            self.add(at, process, "write", fence=fence, ok=ok, store=store, detail=f"{seen}->{seen + 1}")
        return self

    def release(self, at: float, process: str, fence: int, ok: bool = True) -> Script:
        return self.add(at, process, "release", fence=fence, ok=ok)

    def lost(self, at: float, process: str, fence: int) -> Script:
        return self.add(at, process, "lost", fence=fence, detail="lease lost")

    def fault(self, at: float, detail: str, ok: bool = True) -> Script:
        return self.add(at, "nemesis", "fault", ok=ok, detail=detail)

    def rounds(self, start: float, count: int, processes: int = 3, fence: int = 1) -> Script:
        """Add ``count`` clean rounds (acquire, write, release) 10 ms apart, from ``start``."""
        for i in range(count):
            p, at = f"w{i % processes}", start + 10 * i
            self.acquire(at, p, fence + i).write(at + 3, p, fence + i).release(at + 6, p, fence + i)
        return self

    def check(self, declared: frozenset[Guarantee] = FENCING, **options: object) -> Verdict:
        return check(self.events, declared=declared, options=Options(**options))  # type: ignore[arg-type]


def kinds(verdict: Verdict) -> set[str]:
    return {f.kind for f in verdict.findings if f.violation}


def test_clean_history_holds() -> None:
    verdict = Script().rounds(0, 30).check()
    assert verdict.status == "ok" and verdict.exit_code == 0, verdict.reasons
    assert verdict.summary["acquisitions"] == 30
    assert verdict.summary["writes"] == {"fenced_accepted": 30, "unfenced_accepted": 30}
    assert verdict.summary["lost_updates"] == {"fenced": 0, "unfenced": 0}


def test_too_few_acquisitions_is_inconclusive() -> None:
    verdict = Script().rounds(0, 3).check()
    assert verdict.status == "inconclusive" and verdict.exit_code == 2
    assert "3 acquisitions" in verdict.reasons[0]


def test_nemesis_that_could_not_run_is_inconclusive() -> None:
    s = Script().rounds(0, 20).fault(5, "skew could not run: libfaketime is not installed", ok=False)
    verdict = s.check()
    assert verdict.status == "inconclusive"
    assert "skew" in verdict.reasons[0]


def test_overlapping_valid_holds() -> None:
    s = Script().rounds(0, 20)
    s.acquire(300, "w0", 100).acquire(350, "w1", 101)  # no fault: w0's lease still counts
    s.write(400, "w0", 100).release(410, "w0", 100).write(420, "w1", 101).release(430, "w1", 101)
    verdict = s.check()
    assert verdict.status == "violation" and verdict.exit_code == 1
    assert "overlap" in kinds(verdict)
    assert verdict.summary["overlaps"] == 1
    assert verdict.summary["overlap_seconds"] == pytest.approx(0.06)


def test_pause_cuts_the_validity_and_a_told_holder_is_excused() -> None:
    """A holder frozen between its check and its write writes stale, then is told: the race fencing is for."""
    s = Script().rounds(0, 20)
    s.acquire(300, "w0", 100).fault(310, "pause start w0")
    s.acquire(1400, "w1", 101).write(1410, "w1", 101)
    s.fault(2400, "pause end w0").write(2401, "w0", 100, read={"fenced": 20, "unfenced": 20})
    s.lost(2402, "w0", 100).release(2403, "w0", 100, ok=False).release(2500, "w1", 101)
    verdict = s.check()
    assert verdict.status == "ok", verdict.reasons
    summary = verdict.summary
    assert summary["overlaps"] == 0
    assert summary["writes"]["fenced_rejected"] == 1  # the stale fenced write was refused
    assert summary["lost_updates"] == {"fenced": 0, "unfenced": 1}  # the unfenced one was not
    assert summary["stale_writes"] == 2 and summary["stale_writes_excused"] == 2
    assert summary["superseded_holds"] == 1 and summary["told_before_write"] == 0
    assert summary["recovery_seconds"]["count"] == 1
    assert summary["recovery_seconds"]["max"] == pytest.approx(1.09)


def test_silent_stale_write_after_a_pause() -> None:
    """A lease that ignores its loss: released as if nothing happened."""
    s = Script().rounds(0, 20)
    s.acquire(300, "w0", 100).fault(310, "pause start w0")
    s.acquire(1400, "w1", 101).write(1410, "w1", 101).release(1420, "w1", 101)
    s.fault(2400, "pause end w0").write(2500, "w0", 100, read={"fenced": 20, "unfenced": 20})
    s.release(2510, "w0", 100)
    verdict = s.check()
    assert verdict.status == "violation"
    assert kinds(verdict) == {"silent-stale-write"}
    assert verdict.summary["silent_stale_writes"] == 2


def test_stale_write_without_fault_is_silent_even_if_told_later() -> None:
    """No renewal: the lease ran out while the holder worked, with nothing to excuse it."""
    s = Script().rounds(0, 20)
    s.acquire(300, "w0", 100).acquire(1400, "w1", 101)
    s.write(1500, "w0", 100).release(1510, "w0", 100, ok=False)
    s.write(1520, "w1", 101).release(1530, "w1", 101)
    verdict = s.check()
    assert {"overlap", "silent-stale-write"} <= kinds(verdict)


def test_told_before_write() -> None:
    s = Script().rounds(0, 20)
    s.acquire(300, "w0", 100).fault(310, "partition start w0").lost(1300, "w0", 100)
    s.acquire(1400, "w1", 101).write(1410, "w1", 101).release(1420, "w1", 101)
    s.fault(2000, "partition end w0").release(2001, "w0", 100, ok=False)
    verdict = s.check()
    assert verdict.status == "ok", verdict.reasons
    assert verdict.summary["superseded_holds"] == 1 and verdict.summary["told_before_write"] == 1


def test_fenced_store_out_of_fence_order() -> None:
    s = Script().rounds(0, 20)
    s.acquire(300, "w0", 100).write(310, "w0", 100).release(320, "w0", 100)
    s.add(330, "w1", "write", fence=99, ok=True, store="fenced", detail="21->22")  # a store that let it in
    verdict = s.check(declared=frozenset())
    assert "fence-order" in kinds(verdict)
    assert verdict.summary["fence_order_violations"] == 1


def test_fences_that_do_not_grow() -> None:
    s = Script().rounds(0, 20)
    s.acquire(300, "w0", 20).release(310, "w0", 20).acquire(320, "w1", None).release(330, "w1", None)
    assert kinds(s.check()) == {"fence-regression"}
    assert s.check().summary["fence_regressions"] == 2
    assert s.check(declared=frozenset()).status == "ok"  # measured, not promised


def test_lost_updates_in_each_store() -> None:
    s = Script().rounds(0, 20)
    for i, p in enumerate(("w0", "w1")):  # two holders at once, with one fence
        s.acquire(300 + i, p, 21)
    s.write(310, "w0", 21).write(311, "w1", 21, read={"fenced": 20, "unfenced": 20})
    s.release(320, "w0", 21).release(321, "w1", 21)
    verdict = s.check()
    assert verdict.summary["lost_updates"] == {"fenced": 1, "unfenced": 1}
    assert {"lost-update-fenced", "overlap", "fence-regression"} <= kinds(verdict)
    assert "lost-update-unfenced" not in kinds(verdict)  # measured: a lock alone does not protect it


def test_write_outside_a_hold() -> None:
    s = Script().rounds(0, 20).write(300, "w0", 50)
    assert kinds(s.check()) == {"unheld-write"}


def test_stuck_waiter() -> None:
    s = Script().rounds(0, 20)
    s.acquire(300, "w0", 100).release(310, "w0", 100)
    s.add(3500, "w1", "acquire", ok=False, ttl=1.0, detail="timeout")  # waited from 196 ms on a free lock
    verdict = s.check()
    assert kinds(verdict) == {"stuck-waiter"}
    assert verdict.summary["stuck_after_seconds"] == 3.0
    assert s.check(stuck_after=5.0).status == "ok"


def test_server_fault_excuses_unless_the_backend_survives_it() -> None:
    s = Script().rounds(0, 20)
    s.acquire(300, "w0", 100).fault(310, "server start server").fault(400, "server end server")
    s.acquire(500, "w1", 101).write(510, "w1", 101).release(520, "w1", 101)
    s.lost(600, "w0", 100).release(601, "w0", 100, ok=False)
    assert s.check().status == "ok"
    survives = frozenset({Guarantee.FENCING, Guarantee.SURVIVES_FAILOVER})
    assert kinds(s.check(declared=survives)) == {"overlap"}


def test_crash_ends_the_hold_and_recovery_is_measured() -> None:
    s = Script().rounds(0, 20)
    s.acquire(300, "w0", 100).fault(320, "crash start w0").fault(330, "crash end w0")
    s.acquire(1310, "w0.1", 101).write(1320, "w0.1", 101).release(1330, "w0.1", 101)
    verdict = s.check()
    assert verdict.status == "ok", verdict.reasons
    assert verdict.summary["faults"] == {"crash": 1}
    assert verdict.summary["recovery_seconds"]["max"] == pytest.approx(0.99)
    assert [f.kind for f in verdict.faults] == ["crash"]


def test_round_trip_and_validation(tmp_path: Path) -> None:
    events = Script().rounds(0, 3).fault(40, "pause start w1").events
    path = write_history(tmp_path / "h.jsonl", events)
    assert read_history(path) == events
    with path.open("a") as out:
        out.write('{"process": "w1", "time": 5')  # a worker killed mid-line
    assert read_history(path) == events
    bad = dict(json.loads(events[0].to_json()), fence="7")
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines[:2], json.dumps(bad), *lines[2:]]) + "\n")
    with pytest.raises(ConfigurationError, match=r"h.jsonl line 3: fence must be a whole number"):
        read_history(path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"type": "read"}, "type must be one of"),
        ({"time": 1.5}, "time must be a whole number"),
        ({"ok": 1}, "ok must be true or false"),
        ({"store": "fenced"}, "only a write names a store"),
        ({"type": "write", "store": "unfenced", "detail": "x"}, "value read and the value written"),
        ({"type": "write", "store": "fenced", "fence": None, "detail": "1->2"}, "carries a fence"),
        ({"type": "fault", "detail": "pause"}, "kind and phase"),
        ({"ttl": "1"}, "ttl must be a number"),
        ({"extra": 1}, "unexpected \\['extra'\\]"),
    ],
)
def test_bad_lines_are_named(tmp_path: Path, change: dict[str, object], message: str) -> None:
    line = {**json.loads(Event("w0", 1, "acquire", 1, True, None, 1.0, "").to_json()), **change}
    path = tmp_path / "bad.jsonl"
    path.write_text(Event("w0", 0, "release").to_json() + "\n" + json.dumps(line) + "\n")
    with pytest.raises(ConfigurationError, match=f"bad.jsonl line 2: .*{message}"):
        read_history(path)


def test_a_million_events_in_under_ten_seconds(tmp_path: Path) -> None:
    """Prints the time (the machine may be shared); asserts only that the verdict is right."""
    s = Script()
    for i in range(250_000):
        p, at = f"w{i % 5}", 2.0 * i
        s.acquire(at, p, i + 1).write(at + 0.5, p, i + 1).release(at + 1, p, i + 1)
        if i % 5000 == 4999:
            s.fault(at + 1.2, f"pause start w{i % 5}").fault(at + 1.4, f"pause end w{i % 5}")
    path = write_history(tmp_path / "big.jsonl", s.events[:1_000_000])
    started = time.perf_counter()
    events = read_history(path)
    read = time.perf_counter()
    verdict = check(events, declared=FENCING)
    done = time.perf_counter()
    total = done - started
    print(f"\n1,000,000 events: read {read - started:.2f} s, check {done - read:.2f} s, total {total:.2f} s")
    assert len(events) == 1_000_000
    assert verdict.status == "ok", verdict.reasons


# -- histories of deliberately broken locks, made by real worker processes ------------------------

BROKEN = Path(__file__).with_name("verify_broken.py")


def run_workers(
    tmp_path: Path, mode: str, *, ttl: float, work: float, seconds: float, pauses: int = 0, workers: int = 3
) -> list[Event]:
    """Run ``workers`` processes of ``verify_broken.py``, pausing the holder ``pauses`` times past its ttl."""
    db = tmp_path / "lock.db"
    verify_broken.create(db)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    nemesis = tmp_path / "history-nemesis.jsonl"
    try:
        for i in range(workers):
            name = f"w{i}"
            args = [
                str(db),
                str(tmp_path / f"history-{name}.jsonl"),
                name,
                mode,
                str(ttl),
                str(work),
                str(seconds),
            ]
            procs[name] = subprocess.Popen([sys.executable, str(BROKEN), *args])
        time.sleep(min(1.0, seconds / 4))  # let them start and take turns
        with nemesis.open("w") as out:
            for _ in range(pauses):
                for _ in range(200):  # wait up to 2 s for a holder
                    target = verify_broken.holder(db)
                    if target is not None:
                        break
                    time.sleep(0.01)
                if target is None:
                    continue
                os.kill(procs[target].pid, signal.SIGSTOP)
                out.write(
                    Event("nemesis", time.monotonic_ns(), "fault", detail=f"pause start {target}").to_json()
                    + "\n"
                )
                try:
                    time.sleep(3 * ttl)
                finally:
                    out.write(
                        Event("nemesis", time.monotonic_ns(), "fault", detail=f"pause end {target}").to_json()
                        + "\n"
                    )
                    os.kill(procs[target].pid, signal.SIGCONT)
                time.sleep(ttl)
        for proc in procs.values():
            assert proc.wait(timeout=seconds + 30) == 0
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)
                proc.kill()
                proc.wait()
    merged = merge_histories(sorted(tmp_path.glob("history-*.jsonl")), tmp_path / "history.jsonl")
    return read_history(merged)


def fault(detail: str) -> str:
    return Event("nemesis", time.monotonic_ns(), "fault", detail=detail).to_json() + "\n"


def test_correct_lock_under_pauses_holds(tmp_path: Path) -> None:
    """The control: a lock with fences, renewals and loss reports is not flagged."""
    events = run_workers(tmp_path, "correct", ttl=1.0, work=0.05, seconds=9, pauses=2)
    verdict = check(events, declared=FENCING)
    assert verdict.status == "ok", verdict.reasons
    assert verdict.summary["faults"] == {"pause": 2}
    assert verdict.summary["recovery_seconds"]["count"] == 2


def test_lock_without_fences_is_flagged(tmp_path: Path) -> None:
    events = run_workers(tmp_path, "nofence", ttl=1.0, work=0.02, seconds=2)
    verdict = check(events, declared=FENCING)
    assert verdict.status == "violation"
    assert "fence-regression" in kinds(verdict)
    assert check(events, declared=frozenset()).status == "ok"  # a backend that does not claim fences


def test_lock_without_renewal_is_flagged(tmp_path: Path) -> None:
    events = run_workers(tmp_path, "norenew", ttl=0.2, work=0.35, seconds=3)
    verdict = check(events, declared=FENCING)
    assert verdict.status == "violation"
    assert {"overlap", "silent-stale-write"} <= kinds(verdict), verdict.summary
    assert verdict.summary["lost_updates"]["unfenced"] > 0


def test_lease_that_ignores_loss_is_flagged(tmp_path: Path) -> None:
    events = run_workers(tmp_path, "ignoreloss", ttl=0.3, work=0.1, seconds=6, pauses=3)
    verdict = check(events, declared=FENCING)
    assert verdict.status == "violation"
    assert "silent-stale-write" in kinds(verdict), verdict.summary
    assert "overlap" not in kinds(verdict)  # a paused holder's lease is not counted as valid


def test_check_command_reports(tmp_path: Path) -> None:
    """``tenure verify --check``: the table on stdout, summary.json and timeline.svg, the exit code."""
    s = Script().rounds(0, 20)
    s.acquire(300, "w0", 100).fault(310, "pause start w0")
    s.acquire(1400, "w1", 101).write(1410, "w1", 101).release(1420, "w1", 101)
    s.fault(2400, "pause end w0").write(2500, "w0", 100, read={"fenced": 20, "unfenced": 20})
    s.release(2510, "w0", 100)
    history = write_history(tmp_path / "history.jsonl", s.events)
    out = io.StringIO()
    args = argparse.Namespace(check=history, url=None, report=tmp_path / "report")
    assert run_check(args, out) == 1
    text = out.getvalue()
    assert "tenure verify: VIOLATION (exit 1)" in text
    assert re.search(r"silent stale writes +2 +VIOLATED", text), text
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["status"] == "violation" and summary["silent_stale_writes"] == 2
    assert summary["findings"][0]["kind"] == "silent-stale-write"
    svg = ElementTree.parse(tmp_path / "report" / "timeline.svg").getroot()
    classes = [e.get("class") for e in svg.iter()]
    assert classes.count("hold") == 22 and classes.count("silent-stale-write") == 2
    assert classes.count("fault") >= 1 and "stale-hold" in classes
    sqlite_url = f"sqlite:///{tmp_path / 'lock.db'}"
    clean = write_history(tmp_path / "clean.jsonl", Script().rounds(0, 20).events)
    args = argparse.Namespace(check=clean, url=sqlite_url, report=tmp_path / "report2")
    assert run_check(args, io.StringIO()) == 0
    with pytest.raises(ConfigurationError, match="unknown URL scheme"):
        run_check(argparse.Namespace(check=clean, url="nope://x", report=tmp_path), io.StringIO())


def test_tenure_verify_check_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    history = write_history(tmp_path / "history.jsonl", Script().rounds(0, 20).events)
    assert main(["verify", "--check", str(history)]) == 0
    assert "tenure verify: HELD (exit 0)" in capsys.readouterr().out
    assert (tmp_path / "summary.json").exists() and (tmp_path / "timeline.svg").exists()
    few = write_history(tmp_path / "few.jsonl", Script().rounds(0, 3).events)
    assert main(["verify", "--check", str(few), "--report", str(tmp_path / "r")]) == 2
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["status"] == "inconclusive"
    (tmp_path / "bad.jsonl").write_text('{"process": "w0"}\n')
    assert main(["verify", "--check", str(tmp_path / "bad.jsonl")]) == 2
    assert "bad.jsonl line 1: keys missing" in capsys.readouterr().err
