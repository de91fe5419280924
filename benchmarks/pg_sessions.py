"""PostgreSQL advisory mode at scale: connections, renewer CPU, memory and acquisition rates.

Starts its own server (``--max-connections``), then for each N holds N distinct locks from one
coordinator (ttl ``--ttl``) and prints: server sessions the coordinator uses, process CPU over
``--cycles`` renewal periods minus the same idle period before the locks were taken (the
renewer's cost), RSS growth per held lease, and the rate of acquire+release of one name vs of
distinct names (a new name each time), and of holding distinct names (acquire without release).

    PYTHONPATH=src python -m benchmarks.pg_sessions --n 100 1000 10000
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import resource
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
from tests.servers_postgres import PostgresServer

import tenure


def rss_kb() -> int:
    """Return this process's resident set size in KB (from /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def sessions(server: PostgresServer) -> int:
    with psycopg.connect(server.url, autocommit=True) as conn:
        query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'tenure'"
        row = conn.execute(query).fetchone()
    assert row is not None
    return int(row[0])


def rate(coord: tenure.Coordinator, names: list[str], *, release: bool) -> float:
    """Return acquisitions per second over ``names`` (each one acquired, and released if asked)."""
    started = time.perf_counter()
    for name in names:
        lease = coord.lock(name).try_acquire()
        assert lease is not None, name
        if release:
            lease.release()
    return len(names) / (time.perf_counter() - started)


def run(server: PostgresServer, n: int, ttl: float, cycles: int) -> None:
    url = f"{server.url}?namespace=bench-{uuid.uuid4().hex[:8]}"
    with tenure.Coordinator(url) as coord:
        rate(coord, ["warm"] * 200, release=True)
        window = cycles * ttl / 3
        cpu0, wall0 = time.process_time(), time.monotonic()
        time.sleep(window)
        idle = (time.process_time() - cpu0) / (time.monotonic() - wall0)
        before = rss_kb()
        started = time.perf_counter()
        leases = [coord.lock(f"held-{i}", ttl=ttl).acquire(timeout=10) for i in range(n)]
        held_rate = n / (time.perf_counter() - started)
        grown = rss_kb() - before
        used = sessions(server)
        cpu0, wall0 = time.process_time(), time.monotonic()
        time.sleep(window)
        busy = (time.process_time() - cpu0) / (time.monotonic() - wall0)
        lost = sum(lease.lost for lease in leases)
        for lease in leases:
            with contextlib.suppress(tenure.LockLost):
                lease.release()
        count = min(n, 2000)
        same = rate(coord, ["one"] * count, release=True)
        distinct = rate(coord, [f"d-{uuid.uuid4().hex}" for _ in range(count)], release=True)
    print(
        f"N={n:>6} ttl={ttl:g}s sessions={used:>5} renewer_cpu={100 * (busy - idle):6.2f}% of a core"
        f" rss/lease={1024 * grown / n:7.0f} B lost={lost} hold_rate={held_rate:7.0f}/s"
        f" same={same:7.0f}/s distinct={distinct:7.0f}/s ratio={distinct / same:4.2f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--ttl", type=float, default=10.0)
    parser.add_argument("--cycles", type=int, default=3, help="renewal periods (ttl/3) measured")
    parser.add_argument("--max-connections", type=int, default=100)
    parser.add_argument("--max-locks", type=int, default=64, help="max_locks_per_transaction")
    args = parser.parse_args()
    logging.getLogger("tenure").setLevel(logging.CRITICAL)  # each lost lease would log a line
    server = PostgresServer(
        Path(tempfile.mkdtemp()), max_connections=args.max_connections, max_locks=args.max_locks
    ).start()
    try:
        for n in args.n:
            run(server, n, args.ttl, args.cycles)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
