"""What observability costs: the uncontended lock cycle with and without OpenTelemetry, in one run.

``python -m benchmarks.observability [--url URL] [--rounds N] [--seconds S] [--baseline REV]``

Four variants of the same loop (``benchmarks.uncontended``: ``acquire()`` + ``release()`` of one
name on SQLite by default), each round in a fresh process, interleaved round by round:

- ``baseline``: tenure as of ``--baseline`` (the commit before the hooks), from ``git archive``;
- ``no-sdk``: this tenure, OpenTelemetry's API installed but no SDK set (target: <= 1.01);
- ``sdk-off``: the SDK set up as below, tenure told not to report (``observe(enabled=False)``):
  what the SDK's mere presence costs (its threads, its imports), for comparison;
- ``sdk``: this tenure with an SDK set as the global providers, exporting to no-op exporters
  (metrics collected every second, spans batched), no span current (target: <= 1.10);
- ``sdk-traced``: the same inside a recording span, so every acquire and release makes a span
  (shown, no target: what a traced request pays per lock).

Ratios are each variant's median (over rounds) of its per-round p50 and mean cycle time, over
the baseline's. Nothing is asserted; the JSON goes to ``benchmarks/results/observability-*.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.run import RESULTS
from benchmarks.stats import median
from benchmarks.uncontended import UncontendedConfig, measure_uncontended

ROOT = Path(__file__).resolve().parent.parent
BASELINE = "4ef62af~1"  # the commit before the hooks of issue 19
VARIANTS = ("baseline", "no-sdk", "sdk-off", "sdk", "sdk-traced")
TARGETS = {"no-sdk": 1.01, "sdk": 1.10}
INSTRUCTION_WARMUP = 200  # cycles of the shorter callgrind run, subtracted with the start-up


def sdk_set_up(traced: bool, interval_ms: int = 1000) -> Any:
    """Set an SDK as the global providers with no-op exporters; return a span to run under, or None."""
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import (
        MetricExporter,
        MetricExportResult,
        PeriodicExportingMetricReader,
    )
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class NoSpans(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    class NoMetrics(MetricExporter):
        def export(
            self, metrics_data: Any, timeout_millis: float = 10_000, **kwargs: Any
        ) -> MetricExportResult:
            return MetricExportResult.SUCCESS

        def force_flush(self, timeout_millis: float = 10_000) -> bool:
            return True

        def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
            return None

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(NoSpans()))
    trace.set_tracer_provider(tracer_provider)
    reader = PeriodicExportingMetricReader(NoMetrics(), export_interval_millis=interval_ms)
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    return trace.get_tracer("bench").start_as_current_span("request") if traced else None


def worker(variant: str, url: str, seconds: float) -> None:
    """Run one round of ``variant`` in this process; print its figures as one JSON line."""
    import contextlib

    import tenure

    if "TENURE_BENCH_CPU" in os.environ:  # --pin-cpu: one CPU, no migrations mid-round
        os.sched_setaffinity(0, {int(os.environ["TENURE_BENCH_CPU"])})
    from benchmarks.suites.common import TenureHandle

    parent = sdk_set_up(variant == "sdk-traced") if variant.startswith("sdk") else None
    if variant == "sdk-off":
        tenure.observe(enabled=False)
    config = UncontendedConfig(max_cycles=10**7, max_seconds=seconds)
    with parent or contextlib.nullcontext():
        handle = TenureHandle(url, f"bench-{variant}")
        try:
            cpu = time.process_time()  # every thread's: the metric reader's collections too
            result = measure_uncontended(handle, config)
            cpu = time.process_time() - cpu
        finally:
            handle.close()
    observed = getattr(handle._coordinator._context, "observer", None) is not None
    # CPU per cycle (warm-up included in both terms): steadier than wall time on a shared host.
    cpu_us = cpu / (result.cycles + config.warmup_cycles) * 1e6
    figures = {"p50_us": result.p50_us, "mean_us": result.mean_us, "cpu_us": cpu_us, "observed": observed}
    print(json.dumps(figures))


def count(variant: str, url: str, cycles: int) -> None:
    """Run ``cycles`` lock cycles of ``variant`` and nothing else: what callgrind counts."""
    import contextlib

    import tenure
    from benchmarks.suites.common import TenureHandle

    # No periodic collection: under callgrind a second is a few cycles, and would weigh on each.
    parent = sdk_set_up(variant == "sdk-traced", interval_ms=3_600_000) if variant.startswith("sdk") else None
    if variant == "sdk-off":
        tenure.observe(enabled=False)
    with parent or contextlib.nullcontext():
        handle = TenureHandle(url, f"count-{variant}")
        for _ in range(cycles):
            handle.acquire()
            handle.release()
        handle.close()


def instructions(variant: str, url: str, baseline_src: Path, cycles: int) -> float:
    """Return the instructions one cycle of ``variant`` executes (callgrind; two runs, subtracted).

    Counted, not timed: the figure does not move with the host's load, so a 1% difference shows.
    """
    counts = []
    for n in (INSTRUCTION_WARMUP, INSTRUCTION_WARMUP + cycles):
        command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable]
        command += ["-m", "benchmarks.observability", "count", variant, url, str(n)]
        env = {**environment(variant, baseline_src, None), "PYTHONHASHSEED": "0"}  # fewer moving parts
        done = subprocess.run(command, cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=900, check=True)  # fmt: skip
        counts.append(int(done.stderr.split("Collected : ")[1].split()[0]))
    return (counts[1] - counts[0]) / cycles


def environment(variant: str, baseline_src: Path, cpu: int | None) -> dict[str, str]:
    """Return a worker's environment: the baseline's source first on the path, the CPU to use."""
    env = dict(os.environ)
    if cpu is not None:
        env["TENURE_BENCH_CPU"] = str(cpu)
    if variant == "baseline":  # PYTHONPATH comes before the editable install's path
        env["PYTHONPATH"] = os.pathsep.join([str(baseline_src), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def export_baseline(rev: str, into: Path) -> Path:
    """Write tenure's ``src`` as of ``rev`` under ``into`` (git archive: the checkout is untouched)."""
    archive = into / "baseline.tar"
    with archive.open("wb") as out:
        subprocess.run(["git", "-C", str(ROOT), "archive", rev, "src"], stdout=out, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def one_round(variant: str, url: str, seconds: float, baseline_src: Path, cpu: int | None) -> dict[str, Any]:
    command = [sys.executable, "-m", "benchmarks.observability", "worker", variant, url, str(seconds)]
    env = environment(variant, baseline_src, cpu)
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=True)
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.observability", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--url", help="backend URL (default: a SQLite file in a temp dir)")
    parser.add_argument("--rounds", type=int, default=7, help="rounds per variant, interleaved (7)")
    parser.add_argument("--seconds", type=float, default=2.0, help="one round's loop in seconds (2)")
    parser.add_argument("--baseline", default=BASELINE, help=f"git revision without the hooks ({BASELINE})")
    parser.add_argument("--pin-cpu", type=int, metavar="CPU", help="run every round on this CPU")
    parser.add_argument(
        "--instructions",
        type=int,
        metavar="N",
        help="also count instructions per cycle under callgrind (valgrind), over N cycles (e.g. 1000)",
    )
    parser.add_argument("--quick", action="store_true", help="2 rounds of 0.3 s: the smoke test")
    parser.add_argument("--json", type=Path, help="where to write the figures")
    args = parser.parse_args(argv)
    rounds, seconds = (2, 0.3) if args.quick else (args.rounds, args.seconds)
    figures: dict[str, list[dict[str, Any]]] = {variant: [] for variant in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="tenure-bench-otel-") as tmp:
        baseline_src = export_baseline(args.baseline, Path(tmp))
        url = args.url or f"sqlite://{tmp}/locks.db"
        started = time.time()
        for number in range(rounds):
            for variant in VARIANTS:
                print(f"round {number + 1}/{rounds}: {variant}", file=sys.stderr)
                figures[variant].append(one_round(variant, url, seconds, baseline_src, args.pin_cpu))
    base_p50 = median([f["p50_us"] for f in figures["baseline"]])
    base_mean = median([f["mean_us"] for f in figures["baseline"]])
    base_cpu = median([f["cpu_us"] for f in figures["baseline"]])
    summary = {}
    print(f"uncontended lock cycle on {url.split('://')[0]}://, {rounds} rounds of {seconds:g} s per variant")
    print(
        f"{'variant':<12} {'p50 µs':>8} {'mean µs':>8} {'cpu µs':>8} {'÷ base p50':>10} {'÷ base mean':>11} "
        f"{'÷ base cpu':>10}  target"
    )
    for variant in VARIANTS:
        p50 = median([f["p50_us"] for f in figures[variant]])
        mean = median([f["mean_us"] for f in figures[variant]])
        target = TARGETS.get(variant)
        cpu = median([f["cpu_us"] for f in figures[variant]])
        ratios = {"p50_ratio": p50 / base_p50, "mean_ratio": mean / base_mean, "cpu_ratio": cpu / base_cpu}
        verdict = "" if target is None else f"<= {target:.2f}: "
        if target is not None:
            verdict += "met" if ratios["p50_ratio"] <= target else "MISSED"
        print(
            f"{variant:<12} {p50:>8.1f} {mean:>8.1f} {cpu:>8.1f} {ratios['p50_ratio']:>10.3f} "
            f"{ratios['mean_ratio']:>11.3f} {ratios['cpu_ratio']:>10.3f}  {verdict}"
        )
        summary[variant] = {"p50_us": p50, "mean_us": mean, "cpu_us": cpu, **ratios}
    if args.instructions:
        print(f"callgrind, {args.instructions} cycles per variant (no periodic collection)")
        print(f"{'variant':<12} {'instructions/cycle':>18} {'÷ base':>8}  target")
        with tempfile.TemporaryDirectory(prefix="tenure-bench-otel-") as tmp:
            baseline_src = export_baseline(args.baseline, Path(tmp))
            url = args.url or f"sqlite://{tmp}/locks.db"
            counted = {v: instructions(v, url, baseline_src, args.instructions) for v in VARIANTS}
        for variant, each in counted.items():
            ratio = each / counted["baseline"]
            target = TARGETS.get(variant)
            verdict = "" if target is None else f"<= {target:.2f}: {'met' if ratio <= target else 'MISSED'}"
            print(f"{variant:<12} {each:>18,.0f} {ratio:>8.4f}  {verdict}")
            summary[variant]["instructions"] = each
            summary[variant]["instructions_ratio"] = ratio
    observed = {variant: {f["observed"] for f in figures[variant]} for variant in VARIANTS[1:]}
    if observed != {"no-sdk": {False}, "sdk-off": {False}, "sdk": {True}, "sdk-traced": {True}}:
        print(f"warning: instrumentation not as intended: {observed}", file=sys.stderr)
        return 1
    path = args.json or RESULTS / f"observability-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "started": started,
        "url": url.split("://")[0],
        "rounds": rounds,
        "seconds": seconds,
        "baseline": args.baseline,
        "pinned_cpu": args.pin_cpu,
        "load_average": os.getloadavg(),
        "summary": summary,
        "runs": figures,
    }
    path.write_text(json.dumps(record, indent=1))
    print(f"figures: {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        worker(sys.argv[2], sys.argv[3], float(sys.argv[4]))
    elif len(sys.argv) > 1 and sys.argv[1] == "count":
        count(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        sys.exit(main())
