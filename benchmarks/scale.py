"""The cost of holding many leases: ``python -m benchmarks.scale [--suite NAME] [--n 100,1000,10000]``.

For each backend (the suites' servers, with their packaged durability) and each N, a fresh
process opens one coordinator, takes N distinct names, holds them all for a few renewal periods
and releases them. It measures, and nothing here asserts a figure:

- the acquisition rate of distinct names, against acquire + release of one name in the same
  process, twice: with nothing else held (``ratio``), and again while the N names are held
  (``held ratio``). The first is what a user sees; the second compares in the same state of
  client and server, so it isolates what a name's being new costs (no connection or set-up per
  new name: about 1) from what holding N costs every step (e.g. PostgreSQL walks every lock of a
  session at the end of each transaction);
- the process's CPU while it only holds (the renewer, plus any driver threads), % of one core;
- the server connections the coordinator has open while holding N (its TCP sockets to the
  servers' ports);
- the renewer's calls to the store per renewal period and the leases each call renews (a
  batched backend sends one round trip per connection per call; the store's default renews one
  lease per round trip, which the table marks);
- memory: RSS growth per held lease.

The table goes to stdout; the figures, with the machine, to ``benchmarks/results/scale-<time>.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import tenure
from benchmarks.registry import get_suite
from benchmarks.report import machine_info, strict_json
from tenure._sync.backends.base import LeaseStore

RESULTS = Path(__file__).resolve().parent / "results"
SUITES = ("sqlite-local", "redis-single", "redlock5", "etcd3", "zookeeper3", "postgresql", "mysql")
SAME_NAME_CYCLES = 300  # acquire + release of one name, for the reference rate


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__.split("\n")[0])
    parser.add_argument("--suite", action="append", choices=SUITES, help="suite (repeatable; default all)")
    parser.add_argument("--n", default="100,1000,10000", help="numbers of held leases (comma-separated)")
    parser.add_argument("--ttl", type=float, default=10.0, help="lease ttl in seconds (10)")
    parser.add_argument("--periods", type=float, default=2.0, help="renewal periods (ttl/3) to hold for (2)")
    parser.add_argument("--json", type=Path, help="where to write the results")
    parser.add_argument("--child", nargs=2, metavar=("URL", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        args.counts = [int(part) for part in args.n.split(",")]
    except ValueError:
        parser.error("--n takes whole numbers separated by commas")
    if not args.counts or min(args.counts) <= 0 or args.ttl <= 0 or args.periods <= 0:
        parser.error("--n, --ttl and --periods must be > 0")
    return args


# -- measured in a fresh child process, one per (backend, N) -------------------------------------


def rss_bytes() -> int:
    """Return this process's resident memory."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def server_ports(url: str) -> set[int]:
    """Return the TCP ports of the servers a tenure URL names (none for a file)."""
    parts = urlsplit(url)
    ports = set()
    for host in parts.netloc.rpartition("@")[2].split(","):
        if ":" in host:
            ports.add(int(host.rpartition(":")[2]))
    return ports


def connections_to(ports: set[int]) -> int:
    """Count this process's established TCP connections to any of ``ports`` (from /proc)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as rows:
            next(rows)
            for row in rows:
                fields = row.split()
                remote_port = int(fields[2].rpartition(":")[2], 16)
                if fields[3] == "01" and fields[9] in inodes and remote_port in ports:
                    count += 1
    return count


class CountingStore:
    """Count the renewer's calls to ``renew_many`` and the leases they carry."""

    def __init__(self, store: Any) -> None:
        self.calls = 0
        self.renewals = 0
        self.batched = type(store).renew_many is not LeaseStore.renew_many
        real = store.renew_many

        def renew_many(renewals: Any) -> Any:
            self.calls += 1
            self.renewals += len(renewals)
            return real(renewals)

        store.renew_many = renew_many


def same_name_rate(lock: Any) -> float:
    """Return acquisitions of ``lock`` per second, released after each (the acquisitions timed)."""
    acquiring = 0.0  # the acquisitions only, as for the distinct names
    for _ in range(SAME_NAME_CYCLES):
        started = time.perf_counter()
        lease = lock.acquire(timeout=5)
        acquiring += time.perf_counter() - started
        lease.release()
    return SAME_NAME_CYCLES / acquiring


def measure(url: str, count: int, ttl: float, periods: float) -> dict[str, Any]:
    """Hold ``count`` distinct names on ``url``; return the figures (run in a child process)."""
    ports = server_ports(url)
    with tenure.Coordinator(url) as coord:
        counting = CountingStore(coord._store)  # tenure's own seam, to count round trips
        one = coord.lock("same-name", ttl=ttl)
        one.acquire().release()  # connect, warm up
        same_rate = same_name_rate(one)
        gc.collect()
        rss_before = rss_bytes()
        started = time.perf_counter()
        leases = [coord.lock(f"held-{i}", ttl=ttl).acquire(timeout=5) for i in range(count)]
        distinct_rate = count / (time.perf_counter() - started)
        gc.collect()
        rss_per_lease = (rss_bytes() - rss_before) / count
        # The same name again, at once (before the first renewals, due ttl/3 after the first of
        # the N), in the state the last distinct names were taken in.
        same_held_rate = same_name_rate(one)
        connections = connections_to(ports) if ports else 0
        # Hold: let the first renewals (due ttl/3 after each acquisition) pass, then measure.
        time.sleep(ttl / 3)
        calls, renewals = counting.calls, counting.renewals
        cpu, wall = time.process_time(), time.perf_counter()
        time.sleep(periods * ttl / 3)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        calls, renewals = counting.calls - calls, counting.renewals - renewals
        lost = sum(1 for lease in leases if lease.lost)
        for lease in leases:
            lease.release()
    return {
        "n": count,
        "ttl": ttl,
        "same_name_per_s": same_rate,
        "distinct_per_s": distinct_rate,
        "distinct_vs_same": distinct_rate / same_rate,
        "same_name_held_per_s": same_held_rate,
        "distinct_vs_same_held": distinct_rate / same_held_rate,
        "hold_cpu_pct": 100 * cpu / wall,
        "connections": connections,
        "renew_calls_per_period": calls / periods,
        "renewals_per_period": renewals / periods,
        "batched": counting.batched,
        "round_trips_per_period": (calls if counting.batched else renewals) / periods,
        "rss_bytes_per_lease": rss_per_lease,
        "lost": lost,
    }


# -- the parent: servers, one child per (backend, N), the table ----------------------------------


@contextlib.contextmanager
def backend_url(suite_name: str, workdir: Path) -> Iterator[tuple[str, str]]:
    """Start the suite's servers; yield the tenure URL and a description of the server."""
    suite = get_suite(suite_name)
    with suite.environment(workdir) as params:
        url = params.get("tenure_url") or f"sqlite:///{workdir / 'scale.db'}"
        yield url, params.get("server", "a local file")


def run_child(url: str, count: int, args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, "-m", "benchmarks.scale", "--child", url, str(count)]
    command += ["--ttl", str(args.ttl), "--periods", str(args.periods)]
    limit = 120 + count * 0.05 + args.ttl * (args.periods + 1)  # bounded: a hung child is killed
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=limit, check=False)
    except subprocess.TimeoutExpired:
        return {"n": count, "error": f"no result within {limit:.0f} s"}
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"n": count, "error": last[:200]}
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def render(rows: list[tuple[str, dict[str, Any]]]) -> str:
    header = (
        f"{'backend':<13} {'N':>6} | {'distinct/s':>10} {'same/s':>8} {'ratio':>5} {'same@N/s':>8} "
        f"{'held ratio':>10} | {'CPU %':>6} "
        f"{'conns':>5} | {'calls/period':>12} {'round trips':>11} | {'RSS B/lease':>11} {'lost':>4}"
    )
    lines = [header, "-" * len(header)]
    for backend, row in rows:
        if "error" in row:
            lines.append(f"{backend:<13} {row['n']:>6} | ERROR: {row['error']}")
            continue
        trips = f"{row['round_trips_per_period']:.0f}" + ("" if row["batched"] else " (1/lease)")
        lines.append(
            f"{backend:<13} {row['n']:>6} | {row['distinct_per_s']:>10.0f} {row['same_name_per_s']:>8.0f} "
            f"{row['distinct_vs_same']:>5.2f} {row['same_name_held_per_s']:>8.0f} "
            f"{row['distinct_vs_same_held']:>10.2f} | {row['hold_cpu_pct']:>6.2f} {row['connections']:>5} | "
            f"{row['renew_calls_per_period']:>12.1f} {trips:>11} | {row['rss_bytes_per_lease']:>11.0f} "
            f"{row['lost']:>4}"
        )
    lines += [
        "",
        "distinct/s: acquisitions of new names while holding the earlier ones; same/s: acquisitions",
        "of one name, released after each, with nothing else held; ratio: distinct / same. same@N/s:",
        "the same name again while the N are held; held ratio: distinct / same@N (the cost of a name",
        "being new, apart from the cost of holding N). CPU %: the process while it only holds (one",
        "core = 100). conns: its TCP connections to the servers. calls/period: renewer calls to the",
        "store per ttl/3; round trips: one per call and connection when batched, else one per lease.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        url, count = args.child
        print(json.dumps(measure(url, int(count), args.ttl, args.periods)))
        return 0
    rows: list[tuple[str, dict[str, Any]]] = []
    servers: dict[str, str] = {}
    for suite_name in args.suite or SUITES:
        with (
            tempfile.TemporaryDirectory(prefix=f"tenure-scale-{suite_name}-") as tmp,
            backend_url(suite_name, Path(tmp)) as (url, server),
        ):
            servers[suite_name] = server
            for count in args.counts:
                print(f"scale: {suite_name} N={count}", file=sys.stderr, flush=True)
                rows.append((suite_name, run_child(url, count, args)))
    print(f"holding N leases in one process, ttl {args.ttl:g} s\n")
    print(render(rows))
    RESULTS.mkdir(exist_ok=True)
    path = args.json or RESULTS / f"scale-{time.strftime('%Y%m%d-%H%M%S')}.json"
    record = {"machine": machine_info(Path(tempfile.gettempdir())), "ttl": args.ttl, "servers": servers}
    record["rows"] = [{"backend": backend, **row} for backend, row in rows]
    path.write_text(json.dumps(strict_json(record), indent=1))
    print(f"\nfigures: {path}", file=sys.stderr)
    return 1 if any("error" in row or row.get("lost") for _, row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
