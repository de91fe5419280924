"""A short ``tenure verify`` run per backend: on every backend that declares FENCING, the lock
holds what it declares under pauses and crashes (the checker says "ok"), and the command line
writes its report and exits 0.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tenure._core.guarantees import Guarantee
from tenure.verify.checker import check
from tenure.verify.history import read_history
from tenure.verify.runner import Runner, Settings
from tests.conftest import backends_with, declared

# One host, several processes: memory:// lives in one process and cannot take part.
FENCED = [name for name in backends_with(Guarantee.FENCING) if Guarantee.CROSS_PROCESS in declared(name)]


@pytest.mark.parametrize("backend", FENCED)
def test_a_short_run_under_pauses_and_crashes_holds_every_declared_guarantee(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url: str = request.getfixturevalue(f"{backend}_url")
    settings = Settings(
        url=url, nemeses=("pause", "crash"), duration=5.0, workers=3, ttl=0.5, seed=11,
        report=tmp_path / "report", progress=False,
    )  # fmt: skip
    outcome = Runner(settings).run()
    verdict = check(read_history(outcome.history), declared=declared(backend))
    summary = verdict.summary
    print(
        backend, json.dumps({k: summary[k] for k in ("acquisitions", "overlaps", "lost_updates", "faults")})
    )
    assert outcome.problems == []
    assert verdict.status == "ok", verdict.reasons
    assert summary["faults"].get("pause", 0) + summary["faults"].get("crash", 0) >= 2
    assert summary["overlaps"] == 0
    assert summary["lost_updates"]["fenced"] == 0
    assert summary["fence_order_violations"] == 0


def test_the_command_runs_checks_and_reports(sqlite_url: str, tmp_path: Path) -> None:
    report = tmp_path / "report"
    base = [sys.executable, "-m", "tenure.cli.main", "--url", sqlite_url, "verify"]
    options = ["--duration", "3", "--ttl", "0.5", "--workers", "3", "--seed", "5", "--report", str(report)]
    done = subprocess.run(base + options, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "--seed 5" in done.stderr  # the seed is printed, so that the schedule can be replayed
    for name in ("history.jsonl", "summary.json", "timeline.svg"):
        assert (report / name).stat().st_size > 0
    summary = json.loads((report / "summary.json").read_text())
    assert summary["status"] == "ok"
    # The recorded history checks the same way on its own, as one from another library would.
    again = subprocess.run(
        [*base, "--check", str(report / "history.jsonl"), "--report", str(tmp_path / "again")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert again.returncode == 0, again.stdout + again.stderr


def test_bad_options_fail_before_anything_starts(tmp_path: Path) -> None:
    base = [sys.executable, "-m", "tenure.cli.main", "--url", f"sqlite://{tmp_path}/x.db", "verify"]
    for bad in (["--nemesis", "pause,flood"], ["--workers", "0"], ["--ttl", "0"], ["--nemesis", "partition"]):
        done = subprocess.run(
            [*base, *bad, "--report", str(tmp_path / "r")],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 2 and "tenure: error:" in done.stderr, bad
    assert not (tmp_path / "r").exists()
