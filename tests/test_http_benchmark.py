"""benchmarks/http runs end to end on tiny settings and writes its figures (nothing measured here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from benchmarks import http as bench


@pytest.mark.slow
def test_the_http_benchmark_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(bench, "RESULTS", tmp_path)
    assert bench.main(["--repeat", "2", "--requests", "20", "--calls", "25"]) == 0
    (written,) = tmp_path.glob("http-*.json")
    figures = json.loads(written.read_text())
    assert set(figures["overhead"]["sync"]) == {"httpx", "tenure", "tenure+shared"}
    outage = figures["outage"]
    assert outage["none"]["received"] == outage["none"]["offered"] == 8 * 25
    assert outage["shared"]["received"] < outage["pybreaker"]["received"] == 8 * 20
    assert "outage: 8 processes" in capsys.readouterr().out
