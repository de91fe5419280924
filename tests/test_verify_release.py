"""A worker killed while its release is in flight still has the release in its history.

Seen on etcd under a server fault: a release sent just after a node was killed took seconds to
return; meanwhile the lease, no longer renewed, ran out and others acquired; then the crash
nemesis (which strikes a holder, and such a worker still looks like one) killed the worker
before it recorded the release, and the checker counted its lease as surely valid until the
kill: 11 to 17 "overlaps" with holders that acquired after the holder had let go. Here the same
happens for real on Redis: the worker's release is held up by cutting its proxy.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import tenure
from tenure._core.guarantees import Guarantee
from tenure.verify.checker import check
from tenure.verify.history import Event, read_history
from tenure.verify.proxy import Proxy, proxied_url
from tenure.verify.stores import create_stores
from tenure.verify.workload import (
    UNFINISHED,
    History,
    Plan,
    history_file,
    record_unfinished_releases,
    release_note,
)

# The worker process: acquire, record it as the workload does, wait for the test to cut it off,
# then release through the workload's own code (which the cut holds up).
WORKER = """
import sys, time
from pathlib import Path
import tenure
from tenure.verify.workload import Hold, Plan, Worker
plan = Plan.load(Path(sys.argv[1]))
worker = Worker(plan, "w1", sys.argv[2])
with tenure.Coordinator(sys.argv[2]) as coord:
    lease = coord.lock(plan.lock_name, ttl=plan.ttl).acquire(timeout=5)
    worker.history.emit("acquire", fence=lease.fence, ttl=lease.ttl)
    (Path(plan.workdir) / "acquired").touch()
    while not (Path(plan.workdir) / "cut").exists():
        time.sleep(0.005)
    worker._release(Hold(worker.history, lease))
"""

DECLARED = frozenset({Guarantee.FENCING})


def _wait_for(path: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} did not appear"
        time.sleep(0.005)


def test_a_release_cut_short_by_a_crash_ends_the_hold_when_it_was_sent(
    redis_url: str, tmp_path: Path
) -> None:
    workdir = tmp_path / "run"
    create_stores(workdir)
    plan = Plan(redis_url, f"verify-release-{os.getpid()}", 0.5, str(workdir), 0.05, 5.0, 60.0, 1)
    plan.save(workdir / "plan.json")
    proxy = Proxy("w1").start()
    try:
        url = proxied_url(redis_url, proxy)
        assert url is not None
        command = [sys.executable, "-c", WORKER, str(workdir / "plan.json"), url]
        proc = subprocess.Popen(command, start_new_session=True)
        try:
            _wait_for(workdir / "acquired")
            proxy.cut()  # the release is sent into silence, and waits for its timeout
            (workdir / "cut").touch()
            _wait_for(release_note(workdir, "w1"))
            # Its lease, no longer renewed, runs out; another process acquires.
            with tenure.Coordinator(redis_url) as coord:
                lease = coord.lock(plan.lock_name, ttl=plan.ttl).acquire(timeout=10)
                taken_at = time.monotonic_ns()
                lease.release()
            assert proc.poll() is None, "the release was not held up"
            killed_at = time.monotonic_ns()
            os.kill(proc.pid, signal.SIGKILL)  # the crash nemesis
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    finally:
        proxy.close()
    note = json.loads(release_note(workdir, "w1").read_text())
    assert note["time"] < taken_at < killed_at
    others = History(history_file(workdir, "others"), "w2", time.monotonic_ns)
    others.emit("acquire", fence=lease.fence, ttl=plan.ttl, at=taken_at)
    others.emit("release", fence=lease.fence, at=taken_at + 1_000)
    others.emit("fault", detail="crash start w1 (SIGKILL; replaced by w1.1)", at=killed_at, process="w1")
    others.close()

    def verdict_now() -> tuple[str, int, list[Event]]:
        events = read_history(history_file(workdir, "w1")) + read_history(history_file(workdir, "others"))
        verdict = check(events, declared=DECLARED)
        return verdict.status, verdict.summary["overlaps"], events

    # Without the note, the dead worker's hold lasts until the crash: a false overlap.
    status, overlaps, _ = verdict_now()
    assert (status, overlaps) == ("violation", 1)

    assert record_unfinished_releases(workdir) == 1
    assert not release_note(workdir, "w1").exists()
    status, overlaps, events = verdict_now()
    released = [e for e in events if e.process == "w1" and e.type == "release"]
    assert [(e.time, e.fence, e.ok, e.detail) for e in released] == [
        (note["time"], note["fence"], False, UNFINISHED)
    ]
    assert overlaps == 0
    assert status == "inconclusive"  # two acquisitions are too few to judge; nothing is wrong
    assert record_unfinished_releases(workdir) == 0  # recorded once


def test_a_release_the_worker_recorded_is_not_recorded_again(tmp_path: Path) -> None:
    # Killed after recording its release but before removing its note: nothing to add.
    history = History(history_file(tmp_path, "w3"), "w3", time.monotonic_ns)
    history.emit("acquire", fence=7, ttl=1.0, at=1_000)
    history.emit("release", fence=7, at=2_000)
    history.close()
    release_note(tmp_path, "w3").write_text(json.dumps({"time": 2_000, "fence": 7}))
    # Killed while writing the note (before sending the release): nothing was sent.
    release_note(tmp_path, "w4").write_text('{"time": 3')
    assert record_unfinished_releases(tmp_path) == 0
    assert [e.type for e in read_history(history_file(tmp_path, "w3"))] == ["acquire", "release"]
    assert not history_file(tmp_path, "w4").exists()
    assert list(tmp_path.glob("releasing-*")) == []


def test_a_line_cut_short_by_the_kill_does_not_swallow_the_release(tmp_path: Path) -> None:
    path = history_file(tmp_path, "w5")
    path.write_text(
        json.dumps({"process": "w5", "time": 1_000, "type": "acquire", "fence": 9, "ok": True,
                    "store": None, "ttl": 1.0, "detail": ""}) + "\n"
        + '{"process": "w5", "time": 2_500, "type": "wri'
    )  # fmt: skip
    release_note(tmp_path, "w5").write_text(json.dumps({"time": 2_000, "fence": 9}))
    assert record_unfinished_releases(tmp_path) == 1
    events = read_history(path)
    assert [(e.type, e.time, e.ok) for e in events] == [("acquire", 1_000, True), ("release", 2_000, False)]
