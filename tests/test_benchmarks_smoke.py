"""The benchmark runner works end to end. Figures are never asserted: only shapes and sanity."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # benchmarks/ is a top-level package of the repo, not installed
    sys.path.insert(0, str(ROOT))

from benchmarks.registry import Role, get_suite  # noqa: E402
from benchmarks.stats import Hold, jain_index, percentile, summarize_contended  # noqa: E402

SUITE = "sqlite-local"
PROCESSES = 3
# What a tenure contender may say instead of figures: its backend is not in this tenure yet.
TENURE_SKIPS = ("backend not available (ConfigurationError", "backend not capable (BackendIncapable")


def run_module(module: str, *argv: str, timeout: float = 600) -> str:
    """Run ``python -m module *argv`` from the repository root; it must succeed. Return stdout."""
    proc = subprocess.run(
        [sys.executable, "-m", module, *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def run_quick_suite(suite_name: str, out: Path, *extra: str) -> str:
    """Run one suite with ``--quick`` and ``PROCESSES`` workers, its JSON to ``out``; return stdout."""
    argv = ["--suite", suite_name, "--quick", "--processes", str(PROCESSES), "--json", str(out), *extra]
    return run_module("benchmarks.run", *argv)


def check_figures(record: dict[str, Any]) -> None:
    """A measured contender's figures are sane (their size is never asserted)."""
    unc = record["uncontended"]
    assert unc["cycles"] > 0 and 0 < unc["p50_us"] <= unc["p99_us"]
    con = record["contended"]
    assert con["errors"] == [] and con["overlaps"] == 0 and con["acquisitions"] > 0
    assert len(con["per_worker"]) == PROCESSES and sum(con["per_worker"]) == con["acquisitions"]
    assert 0 < con["fairness"] <= 1 and con["max_wait_ms"] >= 0


def check_declared_targets(suite: Any, result: dict[str, Any], measured: set[str]) -> None:
    """Every target declared for hold 0 is reported, computed where its contender ran."""
    declared = [t for t in suite.targets or () if t.hold_ms in (None, 0.0)]
    assert [(t["contender"], t["metric"]) for t in result["targets"]] == [
        (t.contender, t.metric) for t in declared
    ]
    for target in result["targets"]:
        if target["contender"] in measured:
            assert isinstance(target["met"], bool) and target["value"] > 0
        else:
            assert target["met"] is None and target["not_measured"].startswith(TENURE_SKIPS)


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
    stdout = run_quick_suite(SUITE, out)
    assert "tenure-sqlite" in stdout and "ratios" in stdout

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
        check_figures(record)
        assert record["uncontended"]["cycles_per_s"] > 0 and record["contended"]["handoffs_per_s"] > 0
        assert record["ratios"]["vs_baseline"]["uncontended_cycles_per_s"] > 0
        if contender.floor is not None:
            assert record["ratios"]["vs_floor"]["contended_handoffs_per_s"] > 0

    tenure_names = {c.name for c in suite.contenders if c.role is Role.TENURE}
    assert {t["contender"] for t in result["targets"]} == tenure_names
    assert all(isinstance(t["met"], bool) for t in result["targets"])


# -- server-backed suites ------------------------------------------------------------------------

REDIS_SUITES = ["redis-single", "redlock5"]


def test_tenure_handle_reports_a_missing_backend_as_unavailable() -> None:
    from benchmarks.registry import Unavailable
    from benchmarks.suites.common import TenureHandle

    with pytest.raises(Unavailable, match=r"^backend not available \(ConfigurationError: .*nosuchscheme"):
        TenureHandle("nosuchscheme://127.0.0.1:1", "name")


def test_targets_are_computed_and_never_guessed() -> None:
    from benchmarks.registry import Target
    from benchmarks.report import check_target

    records = {
        "t": {"skipped": None, "uncontended": {"p50_us": 110.0}, "contended": {"fairness": 0.995}},
        "floor": {"skipped": None, "uncontended": {"p50_us": 100.0}, "contended": None},
        "gone": {"skipped": "backend not available (ConfigurationError: ...)"},
    }
    ratio = check_target(Target("t", "uncontended.p50_us", 1.05, "floor"), records, 0.0)
    assert ratio is not None and ratio["value"] == pytest.approx(1.1) and ratio["met"] is False
    fair = check_target(Target("t", "contended.fairness", 0.99, at_most=False), records, 0.0)
    assert fair is not None and fair["met"] is True and fair["not_measured"] is None
    skipped = check_target(Target("gone", "uncontended.p50_us", 2.0, "floor"), records, 0.0)
    assert skipped is not None and skipped["met"] is None
    assert skipped["not_measured"].startswith("backend not available")
    no_reference = check_target(Target("t", "uncontended.p50_us", 2.0, "gone"), records, 0.0)
    assert no_reference is not None and no_reference["met"] is None
    assert check_target(Target("t", "contended.fairness", 0.99, hold_ms=0.0), records, 1.0) is None
    any_hold = check_target(Target("t", "contended.fairness", 0.99, at_most=False), records, None)
    assert any_hold is not None and any_hold["met"] is True


@pytest.mark.slow
@pytest.mark.parametrize("suite_name", REDIS_SUITES)
def test_quick_redis_suite_runs_every_contender_that_exists(tmp_path: Path, suite_name: str) -> None:
    out = tmp_path / "bench.json"
    pin = None
    extra: list[str] = []
    if suite_name == "redis-single" and hasattr(os, "sched_getaffinity"):
        pin = min(os.sched_getaffinity(0))  # one suite also runs pinned, with its server
        extra = ["--pin-cpu", str(pin)]
    stdout = run_quick_suite(suite_name, out, *extra)
    assert "ratios" in stdout and "target:" in stdout

    data = json.loads(out.read_text())
    assert data["config"]["pin_cpu"] == pin
    result = data["suites"][suite_name]
    suite = get_suite(suite_name)
    assert set(result["contenders"]) == {c.name for c in suite.contenders}
    assert result["environment"]["redis_url"].startswith("redis://127.0.0.1:")
    baseline_skipped = result["contenders"][result["baseline"]]["skipped"]
    measured = set()
    for contender in suite.contenders:
        record = result["contenders"][contender.name]
        if record["skipped"] is not None:
            # Only tenure may be missing (its backend not landed yet); peers and floors must run.
            assert contender.role is Role.TENURE, (contender.name, record["skipped"])
            assert record["skipped"].startswith(TENURE_SKIPS), record["skipped"]
            assert record["uncontended"] is None and record["contended"] is None
            continue
        measured.add(contender.name)
        check_figures(record)
        assert (record["ratios"]["vs_baseline"] is None) == bool(baseline_skipped)
    assert {c.name for c in suite.contenders if c.role is not Role.TENURE} <= measured
    check_declared_targets(suite, result, measured)


# -- cluster-backed suites: a 3-node etcd cluster, a 3-member ZooKeeper ensemble -----------------

CLUSTER_SUITES = ["etcd3", "zookeeper3"]
# Every peer is in the bench extra, so none may be missing.
PEER_SKIP = "(no peer may be skipped)"


@pytest.mark.slow
@pytest.mark.parametrize("suite_name", CLUSTER_SUITES)
def test_quick_cluster_suite_writes_sane_json(tmp_path: Path, suite_name: str) -> None:
    # scripts/test installs the servers; a machine without them fails here rather than skip.
    out = tmp_path / "bench.json"
    stdout = run_quick_suite(suite_name, out)
    assert "ratios" in stdout and "target:" in stdout

    data = json.loads(out.read_text())
    assert data["config"]["quick"] is True and data["config"]["pin_cpu"] is None
    result = data["suites"][suite_name]
    suite = get_suite(suite_name)
    assert result["baseline"] == suite.baseline
    assert set(result["contenders"]) == {c.name for c in suite.contenders}
    environment = result["environment"]
    assert len(environment["server_pids"].split(",")) == 3  # three nodes, all recorded for --pin-cpu
    assert environment["server"] and environment["leader"].startswith("127.0.0.1:")
    measured = set()
    for contender in suite.contenders:
        record = result["contenders"][contender.name]
        if record["skipped"] is not None:
            allowed = TENURE_SKIPS if contender.role is Role.TENURE else (PEER_SKIP,)
            assert contender.role is not Role.FLOOR and record["skipped"].startswith(allowed), record
            assert record["uncontended"] is None and record["contended"] is None
            continue
        measured.add(contender.name)
        check_figures(record)
        if contender.floor is not None:
            assert record["ratios"]["vs_floor"]["uncontended_p50_us"] > 0
    assert {c.name for c in suite.contenders if c.role is Role.FLOOR} <= measured
    check_declared_targets(suite, result, measured)


# -- leader-election failover (benchmarks/failover.py) -------------------------------------------


def test_failover_summary_and_table() -> None:
    from benchmarks.failover import SPECS, render, summarize

    spec = next(s for s in SPECS if s.name == "tenure-sqlite")
    record = summarize(spec, 2.0, [1.9, 2.05, 2.2], [0.004, 0.06])
    assert record["failover_median_ms"] == pytest.approx(2050.0)
    assert record["failover_minus_ttl_max_ms"] == pytest.approx(200.0)
    assert record["failover_ratio_ttl"] == pytest.approx(1.025)
    assert record["failover_target_met"] is False and record["handover_target_met"] is False
    table = render({"tenure-sqlite": record}, {"tenure-mysql": "no server"}, 2.0)
    assert "MISSED" in table and "skipped: tenure-mysql: no server" in table


@pytest.mark.slow
def test_failover_benchmark_writes_sane_json(tmp_path: Path) -> None:
    out = tmp_path / "failover.json"
    contenders = ["tenure-sqlite", "tooz-redis"]  # tenure, and one peer on a real redis-server
    argv = ["--backend", "sqlite,redis", "--only", ",".join(contenders), "--rounds", "1", "--ttl", "1"]
    stdout = run_module("benchmarks.failover", *argv, "--json", str(out))
    assert "tenure-sqlite" in stdout and "tooz-redis" in stdout

    data = json.loads(out.read_text())
    assert data["ttl_s"] == 1 and data["rounds"] == 1 and data["skipped"] == {}
    assert set(data["contenders"]) == set(contenders)
    for name, record in data["contenders"].items():
        assert "error" not in record, (name, record["error"])
        assert len(record["failover_ms"]) == 1 and len(record["handover_ms"]) == 1
        # A kill -9 is noticed only when the lease or lock expires; a resign hands over at once.
        assert 0 < record["failover_median_ms"] <= record["failover_max_ms"]
        assert 0 < record["handover_median_ms"] <= record["handover_max_ms"]
        assert isinstance(record["failover_target_met"], bool)
        assert isinstance(record["handover_target_met"], bool)
    tenure = data["contenders"]["tenure-sqlite"]
    assert len(tenure["terms"]) == 3 and tenure["terms_increasing"] is True  # first, after kill, after resign
    # The killed leader's last validity gives how late the others noticed, unless a renewal was due.
    assert len(tenure["past_validity_ms"]) + tenure["renewals_in_flight"] == 1
    assert data["contenders"]["tooz-redis"]["terms_increasing"] is None  # tooz has no terms


# -- single-server SQL suites (a PostgreSQL or MariaDB server started by the suite) -------------

SQL_SUITES = ["postgresql", "mysql"]


@pytest.mark.slow
@pytest.mark.parametrize("suite_name", SQL_SUITES)
def test_quick_sql_suite_writes_sane_json(tmp_path: Path, suite_name: str) -> None:
    out = tmp_path / "bench.json"
    stdout = run_quick_suite(suite_name, out)
    assert "ratios" in stdout and "target:" in stdout
    result = json.loads(out.read_text())["suites"][suite_name]
    suite = get_suite(suite_name)
    assert set(result["contenders"]) == {c.name for c in suite.contenders}
    assert result["environment"]["server"] and result["environment"]["server_pids"]
    for contender in suite.contenders:
        record = result["contenders"][contender.name]
        # Every peer is in the bench extra and the backend exists: nothing may be skipped.
        assert record["skipped"] is None, (contender.name, record["skipped"])
        check_figures(record)
        if contender.floor is not None:
            assert record["ratios"]["vs_floor"]["uncontended_p50_us"] > 0
    assert all(isinstance(t["met"], bool) for t in result["targets"])


# -- semaphores and read-write locks (benchmarks/permits.py) -------------------------------------


def test_permit_overlap_and_held_time() -> None:
    from benchmarks.permits import held_share, most_overlapping

    intervals = [(0.0, 2.0), (1.0, 3.0), (2.0, 4.0), (1.5, 2.5)]
    # Half-open: (0, 2) has ended when (2, 4) starts, so at most 3 are open at once.
    assert most_overlapping(intervals, limit=3) == (3, 0)
    assert most_overlapping(intervals, limit=2) == (3, 2)  # at 1.5, and at 2 again
    assert held_share(intervals, start=1.0, end=3.0) == pytest.approx(1.0 + 2.0 + 1.0 + 1.0)


@pytest.mark.slow
def test_quick_permits_run_writes_sane_json(tmp_path: Path) -> None:
    out = tmp_path / "permits.json"
    stdout = run_module("benchmarks.permits", "--suite", SUITE, "--quick", "--json", str(out))
    assert "tenure-permit" in stdout and "ratios of p50" in stdout and "target:" in stdout

    data = json.loads(out.read_text())
    assert data["schema"] == "tenure-benchmarks-permits/1" and data["quick"] is True
    result = data["suites"][SUITE]
    limit = result["config"]["contended"]["limit"]
    processes = result["config"]["contended"]["processes"]
    for name, record in result["uncontended"].items():
        assert record["skipped"] is None and record["error"] is None, (name, record)
        assert 0 < record["p50_us"]["min"] <= record["p50_us"]["median"] <= record["p50_us"]["max"]
    ratios = {(r["numerator"], r["denominator"]): r for r in result["ratios"]}
    floor_ratio = ratios[("tenure-permit", "sqlite-floor")]
    assert floor_ratio["p50_ratio"] > 0 and isinstance(floor_ratio["met"], bool)
    assert ratios[("tenure-permit", "tenure-sqlite")]["p50_ratio"] > 0
    assert set(result["contended"]) == {"host-semaphore", "tenure-permit", "tenure-permit-fair"}
    for name, record in result["contended"].items():
        assert record["skipped"] is None and record["errors"] == [], (name, record)
        # A semaphore never lets more than its limit hold at once; the figures' sizes are free.
        assert record["over_limit"] == 0 and 1 <= record["max_held"] <= limit
        # Held (acquired to releasing) never passes the limit; up to the release's return may,
        # by the time a release takes after the next holder was let in.
        assert (
            0 < record["utilisation_held"] <= 1 and record["utilisation_held"] <= record["utilisation"] <= 1.1
        )
        assert len(record["per_worker"]) == processes and sum(record["per_worker"]) == record["acquisitions"]
        assert 0 < record["fairness"] <= 1 and record["max_wait_ms"] >= record["wait_p50_ms"] >= 0
    assert all(isinstance(t["met"], bool) for t in result["targets"])


# -- idempotency keys (benchmarks/idempotency.py) ------------------------------------------------


def test_idempotency_duplicates_summary_counts_executions_per_key() -> None:
    from benchmarks.idempotency_duplicates import DuplicateConfig, summarize

    config = DuplicateConfig(processes=2, threads=2, keys=3)
    timings = {"late": [0.001, 0.002], "took": [0.004, 0.010]}
    reports = [
        {
            "executions": {"dup-0": 1, "dup-1": 1},
            "seen": {"dup-0": ["a"], "dup-1": ["a"]},
            "outcomes": {"result": 4, "AlreadyRunning": 2},
            "examples": {"AlreadyRunning": "in progress"},
            **timings,
        },
        {
            "executions": {"dup-1": 1},
            "seen": {"dup-0": ["a"], "dup-1": ["b"]},
            "outcomes": {"result": 6},
            "examples": {},
            **timings,
        },
    ]
    record = summarize(config, reports, [])
    assert record["calls"] == record["calls_expected"] == 12
    assert record["executions"] == 3 and record["executions_histogram"] == {"0": 1, "1": 1, "2": 1}
    assert (record["keys_run_once"], record["keys_run_more_than_once"], record["keys_never_run"]) == (1, 1, 1)
    assert record["exactly_once"] is False and record["keys_with_several_results"] == 1
    assert record["outcomes"] == {"result": 10, "AlreadyRunning": 2}
    assert record["call_ms"]["max"] == pytest.approx(10.0)


def run_quick_idempotency(suite_name: str, out: Path) -> tuple[str, dict[str, Any]]:
    stdout = run_module("benchmarks.idempotency", "--suite", suite_name, "--quick", "--json", str(out))
    assert "ratios of p50" in stdout and "duplicates:" in stdout
    data = json.loads(out.read_text())
    assert data["schema"] == "tenure-benchmarks-idempotency/1" and data["quick"] is True
    return stdout, data["suites"][suite_name]


def check_per_call(record: dict[str, Any]) -> None:
    assert record["skipped"] is None and record["error"] is None, record
    assert 0 < record["p50_us"]["min"] <= record["p50_us"]["median"] <= record["p50_us"]["max"]


def check_duplicates(record: dict[str, Any], config: dict[str, Any]) -> None:
    assert record["skipped"] is None and record["errors"] == [], record
    callers = config["processes"] * config["threads"]
    assert record["calls"] == record["calls_expected"] == callers * config["keys"]
    assert sum(record["outcomes"].values()) == record["calls"]
    keys = record["keys_run_once"] + record["keys_run_more_than_once"] + record["keys_never_run"]
    assert keys == config["keys"] and record["executions"] >= config["keys"] - record["keys_never_run"]


@pytest.mark.slow
def test_quick_idempotency_run_writes_sane_json(tmp_path: Path) -> None:
    stdout, result = run_quick_idempotency(SUITE, tmp_path / "idempotency.json")
    assert "tenure-replay" in stdout and "target:" in stdout
    for name in ("tenure-replay", "tenure-first", "raw-get"):
        check_per_call(result["per_call"][name])
    assert result["stored_bytes"]["tenure"] == result["stored_bytes"]["raw-get"]  # the same size read
    ratios = {(r["numerator"], r["denominator"]): r for r in result["ratios"]}
    for numerator in ("tenure-replay", "tenure-first"):
        ratio = ratios[(numerator, "raw-get")]
        assert ratio["p50_ratio"] > 0 and isinstance(ratio["met"], bool)
    tenure = result["duplicates"]["tenure"]
    check_duplicates(tenure, result["config"]["duplicates"])
    # Each key ran once, and every duplicate got that run's result back.
    assert tenure["exactly_once"] is True and tenure["outcomes"] == {"result": tenure["calls"]}
    assert tenure["keys_with_several_results"] == 0
    assert [t["met"] for t in result["targets"]][-1] is True


@pytest.mark.slow
def test_quick_idempotency_redis_runs_powertools_beside_tenure(tmp_path: Path) -> None:
    stdout, result = run_quick_idempotency("redis-single", tmp_path / "idempotency.json")
    assert "powertools-replay" in stdout
    for name in ("raw-get", "powertools-replay", "powertools-first"):
        check_per_call(result["per_call"][name])
    config = result["config"]["duplicates"]
    powertools = result["duplicates"]["powertools"]
    check_duplicates(powertools, config)  # its figures are reported as they come, never asserted
    for name in ("tenure-replay", "tenure-first"):
        record = result["per_call"][name]
        if record["skipped"] is not None:  # the Redis store may not keep records yet
            assert record["skipped"].startswith("no Records capability"), record["skipped"]
            assert result["duplicates"]["tenure"]["skipped"].startswith("no Records capability")
            continue
        check_per_call(record)
    if result["duplicates"]["tenure"]["skipped"] is None:
        assert result["duplicates"]["tenure"]["exactly_once"] is True


def test_rate_limit_budgets() -> None:
    from benchmarks.ratelimit_handles import Limit

    limit = Limit(permits=600, period=60.0, burst=100)
    assert limit.rate == "600/60s"
    assert limit.budget("bucket", 0.0) == 100 and limit.budget("bucket", 2.05) == 120  # burst + rate × span
    assert limit.budget("window", 59.0) == 600 and limit.budget("window", 61.0) == 1200  # per window begun


@pytest.mark.slow
def test_quick_ratelimit_redis_runs_tenure_beside_limits_and_pyrate(tmp_path: Path) -> None:
    out = tmp_path / "ratelimit.json"
    stdout = run_module("benchmarks.ratelimit", "--suite", "redis-single", "--quick", "--json", str(out))
    assert "ratios of p50" in stdout and "throughput:" in stdout and "accuracy:" in stdout
    data = json.loads(out.read_text())
    assert data["schema"] == "tenure-benchmarks-ratelimit/1" and data["quick"] is True
    result = data["suites"]["redis-single"]
    for name in ("redis-evalsha", "redis-evalsha-async"):
        check_per_call(result["per_decision"][name])
    counters = result["per_decision"]["tenure"]["skipped"] is None
    for name in ("tenure", "tenure-no-deadline", "tenure-async", "tenure-async-no-deadline"):
        record = result["per_decision"][name]
        if counters:
            check_per_call(record)
        else:  # the Redis store may not keep rate limits yet
            assert record["skipped"].startswith("no Counters capability"), record["skipped"]
    target = next(r for r in result["ratios"] if r["numerator"] == "tenure")
    assert target["target_at_most"] == 1.1 and (target["p50_ratio"] > 0) == counters
    limit = result["config"]["load"]["limit"]
    for regime in ("admitting", "refusing"):
        for name, record in result["throughput"][regime]["2"].items():
            if name.startswith("tenure") and not counters:
                continue
            assert record["skipped"] is None and record["errors"] == [], (name, record)
            assert [run["decisions"] > 0 for run in record["runs"]] == [True]
    for name, record in result["accuracy"].items():
        if name.startswith("tenure") and not counters:
            continue
        assert record["offered"] == 2 * limit["permits"] and record["decisions"] <= record["offered"]
        assert 0 < record["admitted"] <= record["decisions"]
        if name.startswith("tenure"):  # the exit code says so too: tenure never admits over its budget
            assert record["over_admitted"] <= 0
