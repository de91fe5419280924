"""The oversell demo, run for real: worker processes, SIGSTOP, a SQLite shop and lock file."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tenure.demo.report import Progress
from tenure.demo.shop import Shop

SVG = "{http://www.w3.org/2000/svg}"


def run_demo(*args: str, timeout: float = 50) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "TENURE_URL"}  # the demo's own SQLite file
    return subprocess.run(
        [sys.executable, "-m", "tenure.demo", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def table_rows(stdout: str) -> dict[str, list[int]]:
    """Return the numbers of each table row, keyed by scenario letter."""
    rows = {}
    for line in stdout.splitlines():
        match = re.match(r"\((\w)\) [^|]*\|(.*)$", line)
        if match:
            rows[match[1]] = [int(cell) for cell in match[2].split("|")]
    return rows


@pytest.mark.slow
def test_demo_oversells_without_lock_and_never_with_lock_and_fencing(tmp_path: Path) -> None:
    proc = run_demo("--out", str(tmp_path), "--stock", "8", "--workers", "3", "--ttl", "0.5")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "orders accepted | stock left | units oversold | stale writes rejected" in proc.stdout

    rows = table_rows(proc.stdout)
    assert set(rows) == {"a", "b", "c"}, proc.stdout
    orders, left, oversold, rejected, lost = rows["a"]
    assert oversold > 0 and orders == 8 + oversold
    assert rows["b"][:3] == [8, 0, 0]
    orders, left, oversold, rejected, lost = rows["c"]
    assert (orders, left, oversold) == (8, 0, 0)
    assert rejected >= 1 and lost >= 1

    results = {r["scenario"]: r for r in json.loads((tmp_path / "results.json").read_text())}
    assert results["c"]["paused_write_rejected"] is True
    pause = results["c"]["pause"]
    assert pause["resumed"] - pause["stopped"] > 0.5  # frozen past the ttl

    svg_path = tmp_path / "timeline.svg"
    assert f"timeline: {svg_path}" in proc.stdout
    root = ET.parse(svg_path).getroot()
    assert root.tag == f"{SVG}svg"
    classes = [el.get("class") for el in root.iter()]
    assert classes.count("pause") == 1
    assert "hold" in classes and "window" in classes and "stale-hold" in classes
    assert "rejected" in classes and "lost" in classes
    groups = {g.get("id"): g for g in root.iter(f"{SVG}g") if g.get("class") == "scenario"}
    assert set(groups) == {"scenario-a", "scenario-b", "scenario-c"}
    assert all(el.get("class") != "hold" for el in groups["scenario-a"].iter())
    for key in ("scenario-b", "scenario-c"):
        fences = [int(el.get("data-fence", "0")) for el in groups[key].iter() if el.get("class") == "hold"]
        assert fences and len(set(fences)) == len(fences)  # every acquisition had its own fence
    pause = next(el for el in groups["scenario-c"].iter() if el.get("class") == "pause")
    assert "SIGSTOP" in (pause.findtext(f"{SVG}title") or "")


def test_memory_url_is_refused_in_one_line(tmp_path: Path) -> None:
    never = tmp_path / "never-created"
    proc = run_demo("--url", "memory://", "--out", str(never), timeout=20)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "memory://" in lines[0] and "process" in lines[0]
    assert not never.exists()


def test_unknown_scheme_and_bad_options_exit_2(tmp_path: Path) -> None:
    proc = run_demo("--url", "nosuch://x", "--out", str(tmp_path), timeout=20)
    assert proc.returncode == 2 and "nosuch" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_demo("--workers", "1", timeout=20)
    assert proc.returncode == 2 and "--workers" in proc.stderr


def test_shop_rejects_a_fence_lower_than_the_highest_seen(tmp_path: Path) -> None:
    shop = Shop(tmp_path / "shop.db")
    try:
        shop.create("x", 10)
        assert shop.write_stock_fenced("x", 9, worker=1, fence=5)
        assert shop.write_stock_fenced("x", 8, worker=1, fence=5)  # same holder, same lease
        assert not shop.write_stock_fenced("x", 9, worker=2, fence=4)  # stale
        assert shop.read_stock("x") == 8
        assert shop.tally("x") == (8, 2, 1, 5)
    finally:
        shop.close()


def test_progress_prints_whole_lines_when_not_a_terminal() -> None:
    out = io.StringIO()
    progress = Progress(out, tty=False)
    progress.update("first")
    progress.update("throttled")
    progress.note("something happened")
    progress.done("last")
    assert out.getvalue() == "first\n    something happened\nlast\n"
