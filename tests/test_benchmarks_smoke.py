"""The benchmark runner works end to end. Figures are never asserted: only shapes and sanity."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # benchmarks/ is a top-level package of the repo, not installed
    sys.path.insert(0, str(ROOT))

from benchmarks.registry import Role, get_suite  # noqa: E402
from benchmarks.stats import Hold, jain_index, percentile, summarize_contended  # noqa: E402

SUITE = "sqlite-local"
PROCESSES = 3


def test_jain_index_bounds() -> None:
    assert jain_index([7, 7, 7, 7]) == pytest.approx(1.0)
    assert jain_index([12, 0, 0]) == pytest.approx(1 / 3)
    assert jain_index([0, 0]) == 0.0


def test_percentile_interpolates() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == pytest.approx(2.5)
    assert percentile([5.0], 99) == 5.0
    assert math.isnan(percentile([], 50))


def test_summary_merges_workers_by_acquisition_time() -> None:
    holds = [
        Hold(0, wait_started=0.0, acquired=1.0, releasing=1.5, released=1.6),
        Hold(1, wait_started=0.5, acquired=2.0, releasing=2.5, released=2.6),
        Hold(1, wait_started=2.6, acquired=2.7, releasing=2.8, released=2.9),
        Hold(0, wait_started=9.0, acquired=11.0, releasing=11.1, released=11.2),  # after the window
    ]
    summary = summarize_contended(holds, workers=2, start=0.0, duration=10.0)
    assert summary.acquisitions == 3
    assert summary.per_worker == (1, 2)
    assert summary.gap_p50_us == pytest.approx(0.35e6)  # gaps 0.5 s and 0.2 s
    assert summary.switch_gap_p50_us == pytest.approx(0.5e6)
    assert summary.switches == pytest.approx(0.5)
    assert summary.overlaps == 0
    assert summary.max_wait_ms == pytest.approx(2000.0)  # the late hold's wait still counts
    gave_up = summarize_contended(holds, workers=2, start=0.0, duration=10.0, failed_waits=[5.0])
    assert gave_up.max_wait_ms == pytest.approx(5000.0)  # an attempt that timed out waited longest


def test_summary_counts_overlapping_holds() -> None:
    holds = [Hold(0, 0.0, 1.0, 3.0, 3.1), Hold(1, 0.0, 2.0, 4.0, 4.1)]
    assert summarize_contended(holds, workers=2, start=0.0, duration=10.0).overlaps == 1


@pytest.mark.slow
def test_quick_run_writes_sane_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.run",
            "--suite",
            SUITE,
            "--quick",
            "--processes",
            str(PROCESSES),
            "--json",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "tenure-sqlite" in proc.stdout and "ratios" in proc.stdout

    data = json.loads(out.read_text())
    assert data["schema"] == "tenure-benchmarks/1"
    assert data["machine"]["nproc"] >= 1 and data["machine"]["python"]
    assert data["config"]["quick"] is True
    result = data["suites"][SUITE]
    suite = get_suite(SUITE)
    assert result["baseline"] == suite.baseline
    assert set(result["contenders"]) == {c.name for c in suite.contenders}

    for contender in suite.contenders:
        record = result["contenders"][contender.name]
        assert record["skipped"] is None, record["skipped"]
        unc = record["uncontended"]
        assert unc["cycles"] > 0 and unc["cycles_per_s"] > 0
        assert 0 < unc["p50_us"] <= unc["p99_us"]
        con = record["contended"]
        assert con["errors"] == [] and con["overlaps"] == 0
        assert con["acquisitions"] > 0 and con["handoffs_per_s"] > 0
        assert len(con["per_worker"]) == PROCESSES and sum(con["per_worker"]) == con["acquisitions"]
        assert 0 < con["fairness"] <= 1
        assert con["max_wait_ms"] >= 0
        assert record["ratios"]["vs_baseline"]["uncontended_cycles_per_s"] > 0
        if contender.floor is not None:
            assert record["ratios"]["vs_floor"]["contended_handoffs_per_s"] > 0

    tenure_names = {c.name for c in suite.contenders if c.role is Role.TENURE}
    assert {t["contender"] for t in result["targets"]} == tenure_names
    assert all(isinstance(t["met"], bool) for t in result["targets"])
