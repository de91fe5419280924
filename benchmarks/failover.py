"""Leader-election failover, side by side: ``python -m benchmarks.failover [--backend ...] [--ttl S]``.

For each contender, three candidate processes campaign on one election; each prints
``LEADER <time.monotonic()> <term>`` on its stdout the moment it leads (CLOCK_MONOTONIC is one
clock for every process of a Linux host, so the parent compares times across processes). The
parent measures, ``--rounds`` times each:

- kill -9 failover: the time from ``SIGKILL`` of the leader (taken just before the kill) to the
  next ``LEADER`` line's time; a replacement candidate then keeps three in the race;
- resign hand-over: the leader is told ``RESIGN`` on its stdin, takes ``time.monotonic()`` just
  before it resigns (``RESIGNED <t0>``), and the hand-over is the next leader's time minus t0.

``--lock plain``, ``--lock fair`` or ``--lock permit`` (the one permit of a semaphore of
limit 1) makes tenure's candidates hold that instead of leading an election (``LEADER`` then
means "holds the lock", its term the fence, and resigning is releasing): the crash recovery of
locks. The peers run as they do without it.

Contenders at the same TTL: tenure on every backend it has here, kazoo's ``Election``, tooz's
leader election (redis and zookeeper drivers) and ``etcdctl lock --ttl``. Servers are the real
binaries the test fixtures start (``tests/servers*.py``), one set per backend, stopped at the end.
The table goes to stdout, progress to stderr, every figure to ``benchmarks/results/failover-<time>.json``.

``python -m benchmarks.failover worker ...`` is a candidate process (internal).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import json
import os
import queue
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
CANDIDATES = 3
STARTUP_TIMEOUT = 60.0  # a candidate process connects and says READY within this
SETTLE = 0.3  # after a candidate is READY, time for its campaign to reach the backend
FAILOVER_SLACK = 0.100  # target: a new leader within ttl + 100 ms of a kill -9
HANDOVER_TARGET = 0.050  # target: resign() hands over within 50 ms
BACKENDS = ("sqlite", "redis", "redlock", "etcd", "zookeeper", "postgresql", "mysql")
Params = dict[str, str]
Record = dict[str, Any]


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- the candidate processes ---------------------------------------------------------------------


def emit(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def wait_for_resign() -> bool:
    """Block until the parent says RESIGN (True) or closes our stdin (False: leave at once)."""
    return any(line.strip() == "RESIGN" for line in sys.stdin)


def worker_tenure(args: argparse.Namespace) -> None:
    import tenure

    coord = tenure.Coordinator(args.url)
    try:
        if args.lock == "election":
            election = coord.election(args.name, value=f"candidate-{args.index}", ttl=args.ttl)
            coord.connect()
            emit("READY")
            leadership: Any = election.campaign()
            term, resign = leadership.term, leadership.resign
        else:  # a lock held as leadership is: the same lines, the fence as the term
            try:
                lock: Any
                if args.lock == "permit":  # the one permit of a semaphore: its crash recovery
                    lock = coord.semaphore(args.name, limit=1, ttl=args.ttl)
                else:
                    lock = coord.lock(args.name, ttl=args.ttl, fair=args.lock == "fair")
            except tenure.BackendIncapable:
                sys.exit(INCAPABLE)
            coord.connect()
            emit("READY")
            leadership = lock.acquire(timeout=None)
            term, resign = leadership.fence, leadership.release
        emit(f"LEADER {time.monotonic():.6f} {term}")
        leadership.on_lost(lambda _: emit(f"LOST {time.monotonic():.6f}"))
        threading.Thread(target=report_validity, args=(leadership,), daemon=True).start()
        if not wait_for_resign():
            return
        t0 = time.monotonic()
        resign()
        emit(f"RESIGNED {t0:.6f} {time.monotonic():.6f}")
    finally:
        coord.close()


VALID_POLL = 0.002  # how often a tenure leader looks at its validity
INCAPABLE = 3  # a tenure candidate's exit code when its backend cannot serve the lock asked for


def renewal_due(valid_until: float, ttl: float) -> float:
    """Return when tenure renews a lease whose validity ends at ``valid_until`` (its renewal.py)."""
    from tenure._core.renewal import RENEW_FRACTION, drift_margin

    started = valid_until - ttl + drift_margin(ttl)
    return started + ttl * RENEW_FRACTION


def report_validity(leadership: Any) -> None:
    """Print ``VALID <monotonic deadline>`` whenever a renewal moves the leadership's validity on.

    The parent compares the next leader's time with the killed leader's last deadline: how long
    after its lease ran out (by its own, conservative clock) the others noticed.
    """
    last = 0.0
    while not leadership.lost:
        deadline = time.monotonic() + leadership.remaining()
        if deadline > last + 0.005:
            last = deadline
            emit(f"VALID {deadline:.6f}")
        time.sleep(VALID_POLL)


def worker_kazoo(args: argparse.Namespace) -> None:
    from kazoo.client import KazooClient  # type: ignore[import-untyped]

    client = KazooClient(hosts=args.hosts, timeout=args.ttl)
    client.start(timeout=30)
    try:
        election = client.Election(f"/{args.name}", f"candidate-{args.index}")
        times: list[float] = []

        def lead() -> None:
            now = time.monotonic()
            node = getattr(election.lock, "node", None) or ""  # kazoo's lock node: name + sequence
            digits = "".join(ch for ch in str(node)[-10:] if ch.isdigit())
            emit(f"LEADER {now:.6f} {int(digits) if digits else 0}")
            if wait_for_resign():
                times.append(time.monotonic())  # run() deletes our node when lead() returns

        emit("READY")
        election.run(lead)
        if times:
            emit(f"RESIGNED {times[0]:.6f} {time.monotonic():.6f}")
    finally:
        client.stop()
        client.close()


def worker_tooz(args: argparse.Namespace) -> None:
    """Tooz's documented leader election: join a group, watch_elected_as_leader, run_watchers in a loop."""
    import tooz
    import tooz.coordination

    coord = tooz.coordination.get_coordinator(args.url, f"candidate-{args.index}-{os.getpid()}".encode())
    coord.start(start_heart=True)
    group = args.name.encode()
    with contextlib.suppress(tooz.coordination.GroupAlreadyExist):
        coord.create_group(group).get()
    coord.join_group(group).get()
    elected = threading.Event()

    def when_elected(event: Any) -> None:
        emit(f"LEADER {time.monotonic():.6f} 0")  # tooz gives a leader no term
        elected.set()

    coord.watch_elected_as_leader(group, when_elected)
    resign = threading.Event()
    closed = threading.Event()

    def read_stdin() -> None:
        (resign if wait_for_resign() else closed).set()

    threading.Thread(target=read_stdin, daemon=True).start()
    emit("READY")
    stopped = False
    try:
        while not closed.is_set():
            coord.run_watchers()
            if elected.is_set() and resign.is_set():
                t0 = time.monotonic()
                try:
                    coord.stand_down_group_leader(group)
                except tooz.NotImplemented:  # the redis driver: stop() releases the leader lock
                    coord.stop()
                    stopped = True
                emit(f"RESIGNED {t0:.6f} {time.monotonic():.6f}")
                return
            closed.wait(0.1)  # the loop of tooz's leader-election example
    finally:
        if not stopped:
            coord.stop()


# Run by ``etcdctl lock NAME -- python -I -S -c ETCDCTL_CHILD`` once etcdctl holds the lock: a
# bare interpreter (~15 ms to start here, part of etcdctl's figures), not this module. etcdctl
# gives its command no stdin, so the parent says RESIGN with SIGUSR1 to the PID printed here;
# etcdctl unlocks when the command exits. The child leaves when etcdctl is gone (killed).
ETCDCTL_CHILD = """
import os, signal, sys, time
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
parent = os.getppid()
now = time.monotonic()
sys.stdout.write("LEADER %.6f %s %d\\n" % (now, os.environ.get("ETCD_LOCK_REV", "0"), os.getpid()))
sys.stdout.flush()
while os.getppid() == parent:
    if signal.sigtimedwait({signal.SIGUSR1}, 0.2) is not None:
        sys.stdout.write("RESIGNED %.6f\\n" % time.monotonic())
        sys.stdout.flush()
        break
"""


WORKERS: dict[str, Callable[[argparse.Namespace], None]] = {
    "tenure": worker_tenure,
    "kazoo": worker_kazoo,
    "tooz": worker_tooz,
}


# -- contenders ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Spec:
    """One contender: which servers it needs and how its candidate process is started."""

    name: str
    backend: str  # which server set it runs on (BACKENDS)
    role: str  # "tenure" or "peer"
    summary: str
    argv: Callable[[Spec, Params, str, float, int], list[str]]


def _worker_argv(kind: str, **options: str) -> list[str]:
    argv = [sys.executable, "-m", "benchmarks.failover", "worker", kind]
    for key, value in options.items():
        argv += [f"--{key}", value]
    return argv


def _ttl_int(ttl: float) -> int:
    return max(1, round(ttl))


def tenure_argv(spec: Spec, params: Params, name: str, ttl: float, index: int) -> list[str]:
    url = params["tenure_url"].replace("{TTL}", f"{ttl:g}")
    lock = params.get("lock", "election")
    return _worker_argv("tenure", url=url, name=name, ttl=f"{ttl:g}", index=str(index), lock=lock)


def tenure_table_argv(spec: Spec, params: Params, name: str, ttl: float, index: int) -> list[str]:
    url = params["tenure_url"]
    table = url + ("&" if "?" in url else "?") + "mode=table"
    return tenure_argv(spec, {**params, "tenure_url": table}, name, ttl, index)


def kazoo_argv(spec: Spec, params: Params, name: str, ttl: float, index: int) -> list[str]:
    return _worker_argv("kazoo", hosts=params["zk_hosts"], name=name, ttl=f"{ttl:g}", index=str(index))


def tooz_redis_argv(spec: Spec, params: Params, name: str, ttl: float, index: int) -> list[str]:
    # lock_timeout: the leader lock's expiry (whole seconds); membership_timeout: the member's beat.
    t = _ttl_int(ttl)
    url = f"redis://{params['redis']}?lock_timeout={t}&membership_timeout={t}"
    return _worker_argv("tooz", url=url, name=name, ttl=f"{ttl:g}", index=str(index))


def tooz_zookeeper_argv(spec: Spec, params: Params, name: str, ttl: float, index: int) -> list[str]:
    # timeout: kazoo's session timeout (whole seconds in tooz).
    url = f"zookeeper://{params['zk_hosts']}?timeout={_ttl_int(ttl)}"
    return _worker_argv("tooz", url=url, name=name, ttl=f"{ttl:g}", index=str(index))


def etcdctl_argv(spec: Spec, params: Params, name: str, ttl: float, index: int) -> list[str]:
    child = [sys.executable, "-I", "-S", "-c", ETCDCTL_CHILD]
    return [params["etcdctl"], f"--endpoints={params['etcd_endpoint']}", "lock", f"--ttl={_ttl_int(ttl)}",
            name, "--", *child]  # fmt: skip


SPECS: tuple[Spec, ...] = (
    Spec("tenure-sqlite", "sqlite", "tenure", "Coordinator('sqlite:///…').election", tenure_argv),
    Spec("tenure-redis", "redis", "tenure", "Coordinator('redis://…').election", tenure_argv),
    Spec("tooz-redis", "redis", "peer", "tooz redis driver, lock_timeout=T", tooz_redis_argv),
    Spec("tenure-redlock", "redlock", "tenure", "Coordinator('redlock://5 servers').election", tenure_argv),
    Spec("tenure-etcd", "etcd", "tenure", "etcd://3 nodes?session_ttl=T", tenure_argv),
    Spec("etcdctl-lock", "etcd", "peer", "etcdctl lock --ttl=T NAME -- python …", etcdctl_argv),
    Spec("tenure-zookeeper", "zookeeper", "tenure", "zookeeper://…?session_timeout=T", tenure_argv),
    Spec("kazoo-election", "zookeeper", "peer", "Election(path, id).run(fn), timeout=T", kazoo_argv),
    Spec("tooz-zookeeper", "zookeeper", "peer", "tooz zookeeper driver, timeout=T", tooz_zookeeper_argv),
    Spec("tenure-postgresql", "postgresql", "tenure", "Coordinator('postgresql://…').election", tenure_argv),
    Spec("tenure-postgresql-table", "postgresql", "tenure", "postgresql://…?mode=table", tenure_table_argv),
    Spec("tenure-mysql", "mysql", "tenure", "Coordinator('mysql://…').election", tenure_argv),
    Spec("tenure-mysql-table", "mysql", "tenure", "mysql://…?mode=table", tenure_table_argv),
)  # fmt: skip


class Unavailable(Exception):
    """A server set or a contender cannot run here; the reason is reported as 'skipped'."""


# -- server sets (the test fixtures' classes) ----------------------------------------------------


def _probe_tenure(url: str, *, connect: bool = True) -> None:
    """Raise Unavailable unless tenure has a backend for ``url`` (and, if ``connect``, it answers)."""
    import tenure

    try:
        coord = tenure.Coordinator(url)
    except tenure.ConfigurationError as exc:
        raise Unavailable(f"backend not available ({type(exc).__name__}: {exc})") from exc
    try:
        if connect:
            coord.connect()
    except Exception as exc:
        raise Unavailable(f"backend does not answer ({type(exc).__name__}: {exc})") from exc
    finally:
        coord.close()


@contextlib.contextmanager
def servers(backend: str, workdir: Path) -> Iterator[Params]:
    """Start the servers a backend needs (in the parent); yield their addresses; stop them."""
    if backend == "sqlite":
        yield {"tenure_url": f"sqlite:///{workdir / 'failover.db'}", "server": "none (a file)"}
    elif backend in ("redis", "redlock"):
        from tests.servers import RedisServer

        count = 1 if backend == "redis" else 5
        started: list[RedisServer] = []
        try:
            for i in range(count):
                started.append(RedisServer(workdir / f"{backend}-{i}").start())
            addrs = [f"127.0.0.1:{s.port}" for s in started]
            url = started[0].url if backend == "redis" else "redlock://" + ",".join(addrs)
            yield {"tenure_url": url, "redis": addrs[0], "server": f"{count} redis-server"}
        finally:
            for s in started:
                s.stop()
    elif backend == "etcd":
        from tests.servers_etcd import EtcdCluster

        cluster = EtcdCluster(workdir / "etcd")
        try:
            cluster.start()
            yield {
                "tenure_url": cluster.url + "?session_ttl={TTL}",
                "etcd_endpoint": cluster.nodes[0].endpoint,
                "etcdctl": cluster.etcdctl,
                "server": "3-node etcd cluster",
            }
        finally:
            cluster.stop()
    elif backend == "zookeeper":
        from tests.servers_zookeeper import ZooKeeperEnsemble

        ensemble = ZooKeeperEnsemble(workdir / "zookeeper")
        try:
            ensemble.start()
            # Every client talks to the first member, as in the zookeeper3 suite (kazoo shuffles
            # a multi-host string, so figures would jump between leader and follower).
            first = f"127.0.0.1:{ensemble.nodes[0].client_port}"
            yield {
                "tenure_url": f"zookeeper://{first}/tenure-failover?session_timeout={{TTL}}",
                "zk_hosts": first,
                "server": "3-member ZooKeeper ensemble",
            }
        finally:
            ensemble.stop()
    elif backend == "postgresql":
        _probe_tenure("postgresql://postgres@127.0.0.1:1/postgres", connect=False)  # a backend?
        try:
            from tests.servers_postgres import PostgresServer
        except ImportError as exc:
            raise Unavailable(f"no PostgreSQL fixture ({exc})") from exc
        server = PostgresServer(workdir / "postgresql")
        try:
            server.start()
            _probe_tenure(server.url)
            yield {"tenure_url": server.url, "server": "postgresql"}
        finally:
            server.stop()
    elif backend == "mysql":
        _probe_tenure("mysql://root@127.0.0.1:1/mysql", connect=False)
        try:
            module = importlib.import_module("tests.servers_mysql")
        except ImportError as exc:
            raise Unavailable(f"no MySQL fixture ({exc})") from exc
        cls = getattr(module, "MySQLServer", None) or getattr(module, "MariaDBServer", None)
        if cls is None:
            raise Unavailable("tests/servers_mysql.py has no MySQLServer or MariaDBServer")
        mysql: Any = cls(workdir / "mysql")
        try:
            mysql.start()
            _probe_tenure(mysql.url)
            yield {"tenure_url": mysql.url, "server": "mysql"}
        finally:
            mysql.stop()
    else:
        raise ValueError(backend)


# -- the parent: candidates and rounds -----------------------------------------------------------


@dataclasses.dataclass
class Candidate:
    index: int
    proc: subprocess.Popen[str]
    ready: bool = False
    valid_until: float | None = None  # tenure: the leadership's last reported validity deadline
    extra_pids: list[int] = dataclasses.field(default_factory=list)  # etcdctl's child

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def resign(self) -> None:
        """Tell the leader to resign: RESIGN on its stdin, or SIGUSR1 to etcdctl's child."""
        if self.extra_pids:
            os.kill(self.extra_pids[-1], signal.SIGUSR1)
            return
        assert self.proc.stdin is not None
        with contextlib.suppress(OSError):
            self.proc.stdin.write("RESIGN\n")
            self.proc.stdin.flush()

    def kill(self) -> None:
        """SIGKILL this candidate (and etcdctl's child), by PID: no goodbye to the backend."""
        for pid in [self.proc.pid, *self.extra_pids]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@dataclasses.dataclass(frozen=True)
class Event:
    candidate: Candidate
    kind: str  # READY, LEADER, RESIGNED, LOST, VALID, EXIT
    fields: tuple[str, ...]


class RoundFailed(Exception):
    pass


class Race:
    """Three candidate processes of one contender; events from their stdout on one queue."""

    def __init__(self, spec: Spec, params: Params, ttl: float, log: IO[str]) -> None:
        self.spec = spec
        self.params = params
        self.ttl = ttl
        self.log = log
        self.name = f"failover-{spec.name}-{uuid.uuid4().hex[:8]}"
        self.events: queue.Queue[Event] = queue.Queue()
        self.candidates: list[Candidate] = []
        self.leader: Candidate | None = None
        self.terms: list[int] = []
        self.lost = 0
        self.renewals_in_flight = 0
        self._next_index = 0

    def spawn(self) -> Candidate:
        argv = self.spec.argv(self.spec, self.params, self.name, self.ttl, self._next_index)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        env["ETCDCTL_API"] = "3"
        proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            bufsize=1,
        )
        candidate = Candidate(self._next_index, proc)
        self._next_index += 1
        self.candidates.append(candidate)
        threading.Thread(target=self._read, args=(candidate,), daemon=True).start()
        return candidate

    def _read(self, candidate: Candidate) -> None:
        assert candidate.proc.stdout is not None
        for line in candidate.proc.stdout:
            parts = line.split()
            if parts and parts[0] in ("READY", "LEADER", "RESIGNED", "LOST", "VALID"):
                self.events.put(Event(candidate, parts[0], tuple(parts[1:])))
        self.events.put(Event(candidate, "EXIT", ()))

    def next_event(self, deadline: float, what: str) -> Event:
        left = deadline - time.monotonic()
        try:
            event = self.events.get(timeout=max(0.0, left))
        except queue.Empty:
            raise RoundFailed(f"timed out waiting for {what}") from None
        return self._take(event)

    def drain(self) -> None:
        """Take in every event already there (a LEADER line now would be a second leader)."""
        while True:
            try:
                event = self._take(self.events.get_nowait())
            except queue.Empty:
                return
            if event.kind == "LEADER":
                self._new_leader(event)

    def _take(self, event: Event) -> Event:
        if event.kind == "READY":
            event.candidate.ready = True
        elif event.kind == "LEADER":
            if len(event.fields) > 2:  # etcdctl's child: its PID, to kill with etcdctl
                event.candidate.extra_pids.append(int(event.fields[2]))
            self.terms.append(int(event.fields[1]))
        elif event.kind == "LOST":
            self.lost += 1
        elif event.kind == "VALID":
            event.candidate.valid_until = float(event.fields[0])
        return event

    def wait_ready(self, candidate: Candidate) -> None:
        """Wait until ``candidate`` campaigns (etcdctl: until its key is in the line)."""
        deadline = time.monotonic() + STARTUP_TIMEOUT
        if self.spec.name == "etcdctl-lock":
            self._wait_etcd_keys(deadline)
            candidate.ready = True
        while not candidate.ready:
            event = self.next_event(deadline, f"candidate {candidate.index} to start")
            if event.kind == "LEADER":
                self._new_leader(event)
            elif event.kind == "EXIT" and event.candidate is candidate:
                code = candidate.proc.wait()
                if code == INCAPABLE:
                    raise RoundFailed("n/a: the backend cannot serve this kind of lock (BackendIncapable)")
                raise RoundFailed(f"candidate {candidate.index} exited with {code}")
        time.sleep(SETTLE)

    def _wait_etcd_keys(self, deadline: float) -> None:
        """etcdctl prints nothing before it holds: count the lock's keys until every candidate has one."""
        want = sum(1 for c in self.candidates if c.alive)
        while time.monotonic() < deadline:
            done = subprocess.run(
                [self.params["etcdctl"], f"--endpoints={self.params['etcd_endpoint']}", "get", "--prefix",
                 "--keys-only", "--command-timeout=2s", self.name + "/"],
                capture_output=True, text=True, timeout=10, env={**os.environ, "ETCDCTL_API": "3"},
            )  # fmt: skip
            if len([line for line in done.stdout.splitlines() if line.strip()]) >= want:
                return
            time.sleep(0.05)
        raise RoundFailed("etcdctl candidates did not queue in time")

    def _new_leader(self, event: Event) -> None:
        if self.leader is not None and self.leader.alive and self.leader is not event.candidate:
            raise RoundFailed(f"two leaders: {self.leader.index} and {event.candidate.index}")
        self.leader = event.candidate

    def start(self) -> None:
        for _ in range(CANDIDATES):
            self.spawn()
        for candidate in list(self.candidates):
            self.wait_ready(candidate)
        deadline = time.monotonic() + 3 * self.ttl + 10
        while self.leader is None:
            event = self.next_event(deadline, "a first leader")
            if event.kind == "LEADER":
                self._new_leader(event)

    def replace(self, gone: Candidate) -> None:
        """Reap a candidate that left (killed or resigned) and start another in its place."""
        try:
            gone.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            gone.kill()
            gone.proc.wait(timeout=10)
        self.candidates.remove(gone)
        self.wait_ready(self.spawn())

    def kill_round(self) -> tuple[float, float | None]:
        """Return the failover (next leader's time - t0) and how long past the killed lease's end."""
        leader = self.leader
        assert leader is not None
        self.drain()  # take in the leader's latest VALID line
        t0 = time.monotonic()
        leader.kill()
        deadline = t0 + 3 * self.ttl + 10
        while True:
            event = self.next_event(deadline, "a leader after kill -9")
            if event.kind == "LEADER" and event.candidate is not leader:
                break
        self.leader = event.candidate
        t_next = float(event.fields[0])
        past = None if leader.valid_until is None else t_next - leader.valid_until
        if leader.valid_until is not None and t0 >= renewal_due(leader.valid_until, self.ttl) - VALID_POLL:
            # A renewal was due: the server may have extended the lease past the last deadline we
            # heard of. The figure would count a whole renewal period too many: left out.
            self.renewals_in_flight += 1
            past = None
        self.replace(leader)
        return t_next - t0, past

    def resign_round(self) -> tuple[float, float | None]:
        """Return the hand-over (next leader's time - t0) and how long resign() took, if known."""
        leader = self.leader
        assert leader is not None
        leader.resign()
        deadline = time.monotonic() + 3 * self.ttl + 10
        t0: float | None = None
        call: float | None = None
        t_next: float | None = None
        nxt: Candidate | None = None
        while t0 is None or t_next is None:
            event = self.next_event(deadline, "the resign and the next leader")
            if event.kind == "RESIGNED" and event.candidate is leader:
                t0 = float(event.fields[0])
                call = float(event.fields[1]) - t0 if len(event.fields) > 1 else None
            elif event.kind == "LEADER" and event.candidate is not leader:
                t_next, nxt = float(event.fields[0]), event.candidate
            elif event.kind == "EXIT" and event.candidate is leader and t0 is None:
                raise RoundFailed(f"the leader exited without resigning ({leader.proc.wait()})")
        if t_next < t0:
            raise RoundFailed(f"two leaders: {nxt and nxt.index} led before {leader.index} resigned")
        self.leader = nxt
        self.replace(leader)
        return t_next - t0, call

    def close(self) -> None:
        """Close every candidate's stdin (they leave), then SIGKILL by PID any that stays."""
        for candidate in self.candidates:
            if candidate.proc.stdin is not None:
                with contextlib.suppress(OSError):
                    candidate.proc.stdin.close()
            if self.spec.name == "etcdctl-lock":  # etcdctl reads no stdin; its child then leaves
                candidate.kill()
        deadline = time.monotonic() + 5
        for candidate in self.candidates:
            with contextlib.suppress(subprocess.TimeoutExpired):
                candidate.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            candidate.kill()  # etcdctl's child too, whose parent may be gone
            with contextlib.suppress(subprocess.TimeoutExpired):
                candidate.proc.wait(timeout=5)


def _ms(values: list[float]) -> list[float]:
    return [round(v * 1e3, 3) for v in values]


def summarize(spec: Spec, ttl: float, failovers: list[float], handovers: list[float]) -> Record:
    record: Record = {"role": spec.role, "backend": spec.backend, "summary": spec.summary, "ttl_s": ttl}
    record["failover_ms"] = _ms(failovers)
    record["handover_ms"] = _ms(handovers)
    if failovers:
        med, top = statistics.median(failovers), max(failovers)
        record.update(
            failover_median_ms=round(med * 1e3, 3),
            failover_max_ms=round(top * 1e3, 3),
            failover_ratio_ttl=round(med / ttl, 4),
            failover_minus_ttl_median_ms=round((med - ttl) * 1e3, 3),
            failover_minus_ttl_max_ms=round((top - ttl) * 1e3, 3),
            failover_target_met=top <= ttl + FAILOVER_SLACK,
        )
    if handovers:
        record.update(
            handover_median_ms=round(statistics.median(handovers) * 1e3, 3),
            handover_max_ms=round(max(handovers) * 1e3, 3),
            handover_target_met=max(handovers) <= HANDOVER_TARGET,
        )
    return record


def measure(spec: Spec, params: Params, ttl: float, rounds: int, workdir: Path, rng: random.Random) -> Record:
    failovers: list[float] = []
    handovers: list[float] = []
    resign_calls: list[float] = []
    past_validity: list[float] = []
    with (workdir / f"{spec.name}.log").open("a") as log:
        race = Race(spec, params, ttl, log)
        error: str | None = None
        try:
            race.start()
            for i in range(rounds):
                # The kill lands at a random point of the leader's renewal cycle.
                time.sleep(rng.uniform(0, ttl / 2))
                failover, past = race.kill_round()
                failovers.append(failover)
                if past is not None:
                    past_validity.append(past)
                time.sleep(rng.uniform(0, ttl / 4))
                handover, call = race.resign_round()
                handovers.append(handover)
                if call is not None:
                    resign_calls.append(call)
                progress(
                    f"  {spec.name} round {i + 1}/{rounds}: kill -9 -> {failovers[-1] * 1e3:.1f} ms, "
                    f"resign -> {handover * 1e3:.1f} ms"
                )
        except RoundFailed as exc:
            error = str(exc)
            progress(f"  {spec.name}: FAILED ({exc}); see {workdir / (spec.name + '.log')}")
        finally:
            race.close()
    record = summarize(spec, ttl, failovers, handovers)
    record["resign_call_ms"] = _ms(resign_calls)
    # tenure only: next leader's time - the killed leader's last validity deadline (its own clock)
    record["past_validity_ms"] = _ms(past_validity)
    record["renewals_in_flight"] = race.renewals_in_flight  # kills that fell on a renewal: no figure
    if past_validity:
        from tenure._core.renewal import drift_margin

        top = max(past_validity)
        record["past_validity_median_ms"] = round(statistics.median(past_validity) * 1e3, 3)
        record["past_validity_max_ms"] = round(top * 1e3, 3)
        # A kill right after a renewal was sent leaves the lease ttl - drift margin to run: the
        # worst failover is about that plus the slowest noticing seen.
        worst = ttl - drift_margin(ttl) + top
        record["worst_estimate_minus_ttl_ms"] = round((worst - ttl) * 1e3, 3)
        record["worst_estimate_target_met"] = worst <= ttl + FAILOVER_SLACK
    record["terms"] = race.terms
    record["terms_increasing"] = (
        all(a < b for a, b in zip(race.terms, race.terms[1:], strict=False)) if any(race.terms) else None
    )  # None: no terms (tooz)
    record["lost_leaderships"] = race.lost  # LOST lines: a live leader that lost its lease
    record["server"] = params.get("server")
    if error is not None:
        record["error"] = error
    return record


# -- the report ----------------------------------------------------------------------------------


def _fmt(record: Record, key: str, spec: str = ".0f") -> str:
    value = record.get(key)
    return "-" if value is None else format(value, spec)


def _met(record: Record, key: str) -> str:
    value = record.get(key)
    return "-" if value is None else ("met" if value else "MISSED")


def render(results: dict[str, Record], skipped: dict[str, str], ttl: float, lock: str = "election") -> str:
    w = max([len("contender"), *(len(n) for n in results)])
    what = "leader failover" if lock == "election" else f"lock failover (tenure: {lock} locks)"
    lines = [
        f"{what} at ttl {ttl:g} s, {CANDIDATES} candidates (targets on the max over the rounds: "
        f"kill -9 <= ttl + {FAILOVER_SLACK * 1e3:.0f} ms, resign <= {HANDOVER_TARGET * 1e3:.0f} ms)",
        "",
        f"{'':<{w}} {'':<10} {'':>4} | {'kill -9 (ms)':^34} | {'tenure (ms)':^11} | {'resign (ms)':^13} | "
        f"{'targets':^24}",
        f"{'contender':<{w}} {'backend':<10} {'ttl':>4} | {'med':>6} {'max':>6} {'/ttl':>5} {'-ttl med':>8} "
        f"{'max':>5} | {'past':>4} {'worst':>6} | {'med':>6} {'max':>6} | {'failover':>8} {'worst':>6} "
        f"{'resign':>8}",
    ]
    lines.append("-" * len(lines[-1]))
    for name, r in results.items():
        kill = [
            f"{_fmt(r, 'failover_median_ms'):>6}",
            f"{_fmt(r, 'failover_max_ms'):>6}",
            f"{_fmt(r, 'failover_ratio_ttl', '.2f'):>5}",
            f"{_fmt(r, 'failover_minus_ttl_median_ms', '+.0f'):>8}",
            f"{_fmt(r, 'failover_minus_ttl_max_ms', '+.0f'):>5}",
        ]
        own = [
            f"{_fmt(r, 'past_validity_max_ms', '.0f'):>4}",
            f"{_fmt(r, 'worst_estimate_minus_ttl_ms', '+.0f'):>6}",
        ]
        resign = [f"{_fmt(r, 'handover_median_ms', '.1f'):>6}", f"{_fmt(r, 'handover_max_ms', '.1f'):>6}"]
        met = [
            f"{_met(r, 'failover_target_met'):>8}",
            f"{_met(r, 'worst_estimate_target_met'):>6}",
            f"{_met(r, 'handover_target_met'):>8}",
        ]
        row = f"{name:<{w}} {r['backend']:<10} {r['ttl_s']:>4g} | " + " | ".join(
            " ".join(cells) for cells in (kill, own, resign, met)
        )
        lines.append(row + (f"  ERROR: {r['error']}" if "error" in r else ""))
    lines += [
        "",
        "kill -9: SIGKILL of the leader -> the next leader's LEADER time; -ttl: that minus the TTL",
        "(negative when the kill fell after a renewal, so the lease had less than a TTL to run).",
        "tenure only: past = the slowest next leader after the killed leader's last validity deadline",
        "(its own clock); worst = the estimated worst failover minus the TTL (a kill right after a",
        "renewal): past - the drift margin.",
        "The targets are tenure's; shown for the peers for comparison.",
    ]
    for name, reason in skipped.items():
        lines.append(f"skipped: {name}: {reason}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.failover", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--backend",
        default=",".join(BACKENDS),
        help=f"comma-separated server sets to run (default: all of {','.join(BACKENDS)})",
    )
    parser.add_argument("--only", help="comma-separated contenders (default: every one of the backends)")
    parser.add_argument(
        "--ttl", type=float, default=2.0, help="the TTL / session timeout of every contender (2)"
    )
    parser.add_argument("--rounds", type=int, default=5, help="kill -9 and resign rounds per contender (5)")
    parser.add_argument(
        "--lock",
        choices=("election", "plain", "fair", "permit"),
        default="election",
        help="what tenure's candidates hold: an election's leadership (default), a plain or fair lock, "
        "or the one permit of a semaphore (limit=1)",
    )
    parser.add_argument("--seed", type=int, default=6, help="seed of the random pauses before kills")
    parser.add_argument("--workdir", type=Path, help="where servers and logs live (default: a temp dir)")
    parser.add_argument("--json", type=Path, help="where to write the results")
    parser.add_argument("--list", action="store_true", help="list the contenders, then exit")
    args = parser.parse_args(argv)
    args.backends = [b.strip() for b in args.backend.split(",") if b.strip()]
    for backend in args.backends:
        if backend not in BACKENDS:
            parser.error(f"unknown backend {backend!r} (choose from {', '.join(BACKENDS)})")
    args.only_set = {c.strip() for c in args.only.split(",")} if args.only else None
    if args.only_set is not None:
        unknown = args.only_set - {s.name for s in SPECS}
        if unknown:
            parser.error(f"unknown contenders: {', '.join(sorted(unknown))}")
    if args.ttl < 1:
        parser.error("--ttl must be >= 1 (etcd and tooz count whole seconds)")
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        for spec in SPECS:
            print(f"{spec.name:<24} {spec.backend:<10} {spec.role:<6} {spec.summary}")
        return 0
    from benchmarks.report import machine_info, strict_json

    chosen = [
        s for s in SPECS if s.backend in args.backends and (args.only_set is None or s.name in args.only_set)
    ]
    rng = random.Random(args.seed)
    results: dict[str, Record] = {}
    skipped: dict[str, str] = {}
    stamp = time.strftime("%Y%m%dT%H%M%S")
    with contextlib.ExitStack() as stack:
        if args.workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tenure-failover-")))
        else:
            workdir = args.workdir
            workdir.mkdir(parents=True, exist_ok=True)
        machine = machine_info(workdir)
        for backend in dict.fromkeys(s.backend for s in chosen):
            specs = [s for s in chosen if s.backend == backend]
            progress(f"{backend}: starting servers")
            try:
                with servers(backend, workdir) as server_params:
                    params = {**server_params, "lock": args.lock}
                    for spec in specs:
                        if spec.name == "etcdctl-lock" and not shutil.which(params["etcdctl"]):
                            skipped[spec.name] = "etcdctl not installed"
                            continue
                        progress(f"{spec.name}: {args.rounds} rounds at ttl {args.ttl:g} s")
                        results[spec.name] = measure(spec, params, args.ttl, args.rounds, workdir, rng)
            except (Unavailable, RuntimeError, TimeoutError, OSError) as exc:
                for spec in specs:
                    if spec.name not in results:
                        skipped[spec.name] = f"{type(exc).__name__}: {exc}"
                progress(f"{backend}: skipped ({exc})")
    print(render(results, skipped, args.ttl, args.lock))
    out = args.json or RESULTS / f"failover-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "benchmark": "failover",
        "held": args.lock,
        "ttl_s": args.ttl,
        "rounds": args.rounds,
        "candidates": CANDIDATES,
        "targets": {
            "failover_max_ms": f"ttl + {FAILOVER_SLACK * 1e3:g}",
            "handover_max_ms": HANDOVER_TARGET * 1e3,
        },
        "started": stamp,
        "machine": machine,
        "contenders": results,
        "skipped": skipped,
    }
    out.write_text(json.dumps(strict_json(document), indent=2) + "\n")
    progress(f"wrote {out}")
    return 1 if any("error" in r for r in results.values()) else 0


def worker_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.failover worker")
    parser.add_argument("kind", choices=sorted(WORKERS))
    parser.add_argument("--url", default="")
    parser.add_argument("--hosts", default="")
    parser.add_argument("--name", required=True)
    parser.add_argument("--ttl", type=float, required=True)
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--lock", choices=("election", "plain", "fair", "permit"), default="election")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # the parent went away: leave quietly
    WORKERS[args.kind](args)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        sys.exit(worker_main(sys.argv[2:]))
    sys.exit(main())
