"""``tenure verify``'s nemeses against real servers: each strikes, is bounded, and is healed.

Each run lasts a few seconds (ttl 0.5 s). After every run no worker is left, none is frozen and
no proxy listens; a Ctrl-C in the middle of a fault heals it before the command exits.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tenure.verify.nemesis import libfaketime
from tenure.verify.proxy import Proxy, proxied_url
from tenure.verify.runner import Outcome, Runner, Settings
from tests.servers import RedisServer
from tests.verify_servers import SingleServer

TTL = 0.5
NS = 1_000_000_000


def run(url: str, nemeses: tuple[str, ...], tmp_path: Path, **options: Any) -> tuple[Runner, Outcome]:
    settings = Settings(
        url=url, nemeses=nemeses, duration=options.pop("duration", 4.0), workers=options.pop("workers", 3),
        ttl=TTL, seed=options.pop("seed", 7), report=tmp_path / "report", progress=False, **options,
    )  # fmt: skip
    runner = Runner(settings)
    return runner, runner.run()


def faults(outcome: Outcome, kind: str) -> list[dict[str, Any]]:
    return [e for e in outcome.events if e["type"] == "fault" and e["detail"].startswith(f"{kind} ")]


def bands(outcome: Outcome, kind: str) -> list[tuple[str, int, int]]:
    """Return ``(process, start, end)`` of every fault of ``kind``; every start must have its end."""
    found, open_at = [], {}
    for event in faults(outcome, kind):
        phase = event["detail"].split()[1]
        if phase == "start":
            open_at[event["process"]] = event["time"]
        else:
            found.append((event["process"], open_at.pop(event["process"]), event["time"]))
    assert not open_at, f"faults never healed: {open_at}"
    return found


def workload_processes(marker: str) -> list[tuple[int, str]]:
    """Return ``(pid, state)`` of every live process whose command line contains ``marker``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in cmdline and "tenure.verify.workload" in cmdline and state != "Z":
            found.append((int(entry), state))
    return found


def assert_nothing_left(runner: Runner) -> None:
    assert not workload_processes(str(runner.workdir)), "a worker outlived the run"
    for worker in runner.ended:
        assert worker.proc.returncode is not None
        if worker.proxy is not None:
            assert worker.proxy.ports == []  # closed: nothing listens for it any more


def test_proxy_blackholes_while_cut_and_delivers_once_healed(redis_server: RedisServer) -> None:
    proxy = Proxy("test")
    port = proxy.listen("127.0.0.1", redis_server.port)
    proxy.start()
    try:
        first = socket.create_connection(("127.0.0.1", port), timeout=2)
        first.sendall(b"PING\r\n")
        assert first.recv(64) == b"+PONG\r\n"
        proxy.cut()
        time.sleep(0.1)
        first.sendall(b"PING\r\n")
        first.settimeout(0.3)
        with pytest.raises(TimeoutError):
            first.recv(64)  # silent, not closed: a partition, not a reset
        second = socket.create_connection(("127.0.0.1", port), timeout=2)  # accepted, not forwarded
        second.sendall(b"PING\r\n")
        second.settimeout(0.3)
        with pytest.raises(TimeoutError):
            second.recv(64)
        proxy.heal()
        first.settimeout(2)
        second.settimeout(2)
        assert first.recv(64) == b"+PONG\r\n"  # what waited is delivered, as TCP would
        assert second.recv(64) == b"+PONG\r\n"
        first.close()
        second.close()
    finally:
        proxy.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1)


def test_proxied_url_puts_every_host_behind_the_proxy() -> None:
    proxy = Proxy("urls")
    try:
        url = proxied_url("etcd://10.0.0.1:2379,10.0.0.2/?namespace=x", proxy)
        assert url is not None
        assert url.startswith("etcd://127.0.0.1:") and url.endswith("/?namespace=x")
        assert url.count("127.0.0.1:") == 2 and "10.0.0" not in url
        secret = proxied_url("postgresql://me:p%40ss@db.example:5432/app?mode=table", proxy)
        assert secret is not None
        assert secret.startswith("postgresql://me:p%40ss@127.0.0.1:") and secret.endswith("/app?mode=table")
        assert proxied_url("redis://cache?namespace=a/b", proxy) is not None
        assert proxied_url("zookeeper://zk1,zk2:2182/chroot", proxy) is not None
        assert proxied_url("sqlite:///tmp/locks.db", proxy) is None
        assert proxied_url("postgresql:///app?host=/run/postgresql", proxy) is None
        assert len(proxy.ports) == 6
    finally:
        proxy.close()


def test_pause_freezes_a_holder_past_its_ttl_then_thaws_it(redis_url: str, tmp_path: Path) -> None:
    runner, outcome = run(redis_url, ("pause",), tmp_path)
    pauses = bands(outcome, "pause")
    assert pauses, "no pause struck"
    for process, start, end in pauses:
        assert 1.5 * TTL <= (end - start) / NS <= 2.5 * TTL + 0.5
        after = [e for e in outcome.events if e["process"] == process and e["time"] > end]
        assert after, f"{process} did nothing once thawed"
    assert_nothing_left(runner)
    assert outcome.problems == []


def test_crash_kills_a_holder_and_starts_a_replacement(postgresql_url: str, tmp_path: Path) -> None:
    runner, outcome = run(postgresql_url, ("crash",), tmp_path)
    crashes = faults(outcome, "crash")
    assert crashes
    for crash in crashes:
        victim = crash["process"]
        assert not [e for e in outcome.events if e["process"] == victim and e["time"] > crash["time"]]
        replacement = crash["detail"].split("replaced by ")[1].rstrip(")")
        assert any(e["process"] == replacement and e["type"] == "acquire" for e in outcome.events)
        assert any(
            e["type"] == "acquire" and e["ok"] and e["time"] > crash["time"] for e in outcome.events
        ), "nobody acquired after the crash"
    assert_nothing_left(runner)
    assert outcome.problems == []


def test_server_is_killed_and_restarted(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis").start()  # its own: killing it must disturb no other test
    try:
        servers = SingleServer(server, "redis")
        runner, outcome = run(server.url, ("server",), tmp_path, servers=servers, duration=5.0)
        outages = bands(outcome, "server")
        assert outages and all(process == "server" for process, _, _ in outages)
        assert server.running
        last_end = outages[-1][2]
        assert any(e["type"] == "acquire" and e["ok"] and e["time"] > last_end for e in outcome.events)
        assert_nothing_left(runner)
    finally:
        server.stop()


def test_partition_cuts_a_holder_off_the_server(redis_url: str, tmp_path: Path) -> None:
    runner, outcome = run(redis_url, ("partition",), tmp_path)
    cuts = bands(outcome, "partition")
    assert cuts
    for process, start, _ in cuts:
        # Cut off past its ttl, the holder learns of the loss by itself, or was not holding.
        own = [e for e in outcome.events if e["process"] == process and e["type"] != "fault"]
        held = [e for e in own if e["time"] < start]
        if held and held[-1]["type"] in ("acquire", "write") and held[-1]["ok"]:
            told = [e for e in outcome.events if e["process"] == process and e["type"] in ("lost", "release")]
            assert any(e["time"] > start for e in told)
    assert_nothing_left(runner)
    assert outcome.problems == []


def test_skew_runs_a_worker_on_a_fast_or_slow_clock(sqlite_url: str, tmp_path: Path) -> None:
    assert libfaketime() is not None, "libfaketime is installed by scripts/install_servers.sh"
    runner, outcome = run(sqlite_url, ("skew",), tmp_path, duration=5.0)
    skews = bands(outcome, "skew")
    assert skews
    for process, start, end in skews:
        own = [e["time"] for e in outcome.events if e["process"] == process and e["type"] != "fault"]
        assert own, f"the skewed worker {process} did nothing"
        # Stamped by the real clock: inside its band (plus the hold it finishes once told to stop).
        assert start <= min(own) and max(own) <= end + 3 * NS
    assert_nothing_left(runner)


def test_ctrl_c_in_the_middle_heals_every_fault(redis_url: str, tmp_path: Path) -> None:
    report = tmp_path / "report"
    command = [
        sys.executable, "-m", "tenure.cli.main", "--url", redis_url, "verify", "--nemesis", "pause,partition",
        "--duration", "60", "--ttl", "1", "--workers", "3", "--seed", "3", "--report", str(report),
    ]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    nemesis_log = report / "run" / "history-nemesis.jsonl"
    struck: dict[str, Any] | None = None
    try:
        deadline = time.monotonic() + 30
        while struck is None and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
            lines = nemesis_log.read_text().splitlines() if nemesis_log.exists() else []
            events = [json.loads(line) for line in lines if line.endswith("}")]
            if events and " start " in events[-1]["detail"]:
                struck = events[-1]
        assert struck is not None, "no fault struck within 30 s"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signal.SIGINT, err
    lines = nemesis_log.read_text().splitlines()
    assert json.loads(lines[-1])["detail"].split()[:2] == [struck["detail"].split()[0], "end"]
    assert not workload_processes(str(report)), "a worker (frozen or not) outlived the Ctrl-C"
