#!/usr/bin/env python3
"""Measure every backend with a short ``tenure verify`` and print the measured guarantee table.

    python scripts/verify_table.py                      20 s per backend, pause + crash + server
    python scripts/verify_table.py --backends redis,etcd --duration 10
    python scripts/verify_table.py --json results.json  also write every run's summary
    python scripts/verify_table.py --readme             also put the table in README.md

Each backend gets the servers the tests use (tests/servers*.py: real processes on free loopback
ports), a run of the same workload as ``tenure verify`` under pause and crash faults, plus the
server fault (kill -9 a node, restart it) wherever there is a server, and the checker's verdict
against what the backend declares. The table (Markdown, on stdout) shows what was measured
beside the declarations. Exit 1 if any run contradicts a declaration (a violation), 2 if a run
was inconclusive, 0 otherwise: CI runs this and fails on a contradiction.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]  # tenure from this checkout, and the test servers

from tenure._core.guarantees import Guarantee  # noqa: E402
from tenure.verify.checker import check  # noqa: E402
from tenure.verify.history import read_history  # noqa: E402
from tenure.verify.nemesis import Servers  # noqa: E402
from tenure.verify.report import declared_by  # noqa: E402
from tenure.verify.runner import Runner, Settings  # noqa: E402

BACKENDS = (
    "sqlite",
    "redis",
    "redlock",
    "etcd",
    "zookeeper",
    "postgresql",
    "postgresql_table",
    "mysql",
    "mysql_table",
)
"""Every backend that processes can share (memory:// lives in one process)."""

HEAD = (
    "| backend | declares FENCING | acquisitions | faults | overlaps | fenced lost updates "
    "| unfenced lost updates | told before write | recovery p50 / max (s) | verdict |"
)


@contextlib.contextmanager
def deployment(backend: str, workdir: Path) -> Iterator[tuple[str, Servers | None]]:
    """Start what ``backend`` needs; yield its URL and the servers the nemesis may kill."""
    from tests.verify_servers import EtcdNodes, RedisNodes, SingleServer, ZooKeeperNodes

    namespace = f"verify-{uuid.uuid4().hex[:8]}"
    if backend == "sqlite":
        yield f"sqlite://{workdir}/locks.db", None
        return
    if backend in ("redis", "redlock"):
        from tests.servers import RedisServer

        count = 1 if backend == "redis" else 5
        servers = [RedisServer(workdir / f"redis-{n}") for n in range(count)]
        try:
            for server in servers:
                server.start()
            if backend == "redis":
                yield f"{servers[0].url}?namespace={namespace}", SingleServer(servers[0], "redis")
            else:
                hosts = ",".join(f"127.0.0.1:{server.port}" for server in servers)
                yield f"redlock://{hosts}/0?namespace={namespace}", RedisNodes(servers)
        finally:
            for server in servers:
                server.stop()
        return
    if backend == "etcd":
        from tests.servers_etcd import EtcdCluster

        cluster = EtcdCluster(workdir / "etcd")
        try:
            cluster.start()
            yield f"{cluster.url}?namespace={namespace}", EtcdNodes(cluster)
        finally:
            cluster.stop()
        return
    if backend == "zookeeper":
        from tests.servers_zookeeper import ZooKeeperEnsemble

        ensemble = ZooKeeperEnsemble(workdir / "zookeeper")
        try:
            ensemble.start()
            yield ensemble.url(f"/{namespace}"), ZooKeeperNodes(ensemble)
        finally:
            ensemble.stop()
        return
    mode = "&mode=table" if backend.endswith("_table") else ""
    if backend.startswith("postgresql"):
        from tests.servers_postgres import PostgresServer

        postgres = PostgresServer(workdir / "postgres")
        try:
            postgres.start()
            yield f"{postgres.url}?namespace={namespace}{mode}", SingleServer(postgres, "postgresql")
        finally:
            postgres.stop()
        return
    from tests.servers_mysql import MariaDBServer

    mariadb = MariaDBServer(workdir / "mariadb")
    try:
        mariadb.start()
        yield f"{mariadb.url}?namespace={namespace}{mode}", SingleServer(mariadb, "mariadb")
    finally:
        mariadb.stop()


def measure(backend: str, args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    """Run one short verify on ``backend``; return the checker's summary (with the run's own figures)."""
    workdir = scratch / backend
    workdir.mkdir()
    started = time.monotonic()
    with deployment(backend, workdir) as (url, servers):
        nemeses = ("pause", "crash") + (("server",) if servers is not None else ())
        settings = Settings(
            url=url, nemeses=nemeses, duration=args.duration, workers=args.workers, ttl=args.ttl,
            seed=args.seed, report=workdir / "report", servers=servers, progress=args.progress,
        )  # fmt: skip
        outcome = Runner(settings).run()
        declared = declared_by(url)
    verdict = check(read_history(outcome.history), declared=declared)
    summary = dict(verdict.summary)
    if outcome.problems and summary["status"] == "ok":
        summary["status"] = "inconclusive"
        summary["reasons"] = [*summary["reasons"], *outcome.problems]
    summary.update(backend=backend, nemeses=list(nemeses), wall_seconds=round(time.monotonic() - started, 1))
    return summary


def row(summary: dict[str, Any]) -> str:
    """Return one Markdown row of the measured table."""
    recovery = summary["recovery_seconds"]
    p50, worst = recovery["p50"], recovery["max"]
    lost = summary["lost_updates"]
    faults = ", ".join(f"{kind} {count}" for kind, count in sorted(summary["faults"].items())) or "none"
    cells = [
        summary["backend"],
        "yes" if Guarantee.FENCING.name in summary["declared"] else "no",
        str(summary["acquisitions"]),
        faults,
        str(summary["overlaps"]),
        str(lost["fenced"]),
        str(lost["unfenced"]),
        f"{summary['told_before_write']}/{summary['superseded_holds']}",
        "-" if p50 is None else f"{p50:.2f} / {worst:.2f}",
        summary["status"],
    ]
    return "| " + " | ".join(cells) + " |"


README = ROOT / "README.md"
BEGIN = "<!-- verify-table:begin (generated by scripts/verify_table.py --readme) -->"
END = "<!-- verify-table:end -->"


def write_readme(table: str) -> None:
    """Put ``table`` between README.md's markers (a measurement: CI checks verdicts, not figures)."""
    text = README.read_text()
    before, found, rest = text.partition(BEGIN)
    _, found_end, after = rest.partition(END)
    if not found or not found_end:
        raise SystemExit(f"README.md lacks the markers {BEGIN!r} ... {END!r}")
    README.write_text(f"{before}{BEGIN}\n{table}\n{END}{after}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated (default: all)")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per backend (default: 20)")
    parser.add_argument("--workers", type=int, default=5, help="worker processes (default: 5)")
    parser.add_argument("--ttl", type=float, default=1.0, help="the lease's ttl in seconds (default: 1)")
    parser.add_argument("--seed", type=int, default=18, help="the fault schedule's seed (default: 18)")
    parser.add_argument("--json", type=Path, default=None, help="write every run's summary to this file")
    parser.add_argument("--progress", action="store_true", help="show each run's progress line on stderr")
    parser.add_argument("--readme", action="store_true", help="also write the table into README.md")
    args = parser.parse_args()
    backends = [name.strip() for name in args.backends.split(",") if name.strip()]
    unknown = sorted(set(backends) - set(BACKENDS))
    if unknown:
        parser.error(f"unknown backend(s) {', '.join(unknown)}; choose from {', '.join(BACKENDS)}")
    started = time.monotonic()
    summaries = []
    with tempfile.TemporaryDirectory(prefix="tenure-verify-table-") as scratch:
        for backend in backends:
            summary = measure(backend, args, Path(scratch))
            summaries.append(summary)
            print(
                f"{backend}: {summary['status']} in {summary['wall_seconds']} s", file=sys.stderr, flush=True
            )
            for reason in summary["reasons"][:5]:
                print(f"  {reason}", file=sys.stderr)
    table = "\n".join([HEAD, "|---" * HEAD.count(" | ") + "|---|", *(row(summary) for summary in summaries)])
    table += (
        f"\n\nMeasured by `python scripts/verify_table.py` on {time.strftime('%Y-%m-%d')}: "
        f"{args.duration:g} s per backend, {args.workers} workers, ttl {args.ttl:g} s, seed {args.seed}; "
        "faults: pause and crash, plus server (kill -9 a node, restart it) where there is a server."
    )
    print(table)
    print(f"Total {time.monotonic() - started:.0f} s.", file=sys.stderr)
    if args.readme:
        write_readme(table)
    if args.json is not None:
        args.json.write_text(json.dumps(summaries, indent=1) + "\n")
    statuses = {summary["status"] for summary in summaries}
    return 1 if "violation" in statuses else 2 if "inconclusive" in statuses else 0


if __name__ == "__main__":
    sys.exit(main())
