"""Start a real three-node etcd cluster from the installed binary, to test and inject faults.

Every node listens on free loopback ports (one for clients, one for peers) in its own temp dir
and can be killed, paused (SIGSTOP), resumed and restarted on the same ports with its data.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from tests.servers import ServerProcess, free_port, wait_for_port

START_ATTEMPTS = 3


class EtcdNode(ServerProcess):
    """One member of an ``EtcdCluster``."""

    def __init__(self, name: str, workdir: Path) -> None:
        self.name = name
        self.workdir = workdir
        self.client_port = free_port()
        self.peer_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    def start(self, binary: str, initial_cluster: str, state: str) -> None:
        args = [
            binary,
            "--name", self.name,
            "--data-dir", str(self.workdir / "data"),
            "--listen-client-urls", f"http://{self.endpoint}",
            "--advertise-client-urls", f"http://{self.endpoint}",
            "--listen-peer-urls", self.peer_url,
            "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", initial_cluster,
            "--initial-cluster-state", state,
            "--initial-cluster-token", "tenure-test",
            # Fast elections keep failover tests short; they also lower etcd's minimum lease TTL.
            "--heartbeat-interval", "50",
            "--election-timeout", "500",
            "--logger", "zap",
            "--log-outputs", str(self.workdir / "etcd.log"),
        ]  # fmt: skip
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


class EtcdCluster:
    """A three-node etcd cluster on loopback."""

    def __init__(self, workdir: Path, *, size: int = 3) -> None:
        binary = shutil.which("etcd") or ("/usr/bin/etcd" if Path("/usr/bin/etcd").exists() else None)
        if binary is None:
            raise RuntimeError("etcd is not installed (apt-get install -y etcd-server etcd-client)")
        self.binary = binary
        self.etcdctl = shutil.which("etcdctl") or "/usr/bin/etcdctl"
        self.workdir, self.size = workdir, size
        self._new_nodes(workdir)

    def _new_nodes(self, workdir: Path) -> None:
        self.nodes = [EtcdNode(f"n{i}", workdir / f"n{i}") for i in range(self.size)]
        self.initial_cluster = ",".join(f"{node.name}={node.peer_url}" for node in self.nodes)

    @property
    def endpoints(self) -> str:
        """Return ``h1:p1,h2:p2,...`` of every node."""
        return ",".join(node.endpoint for node in self.nodes)

    @property
    def url(self) -> str:
        return f"etcd://{self.endpoints}"

    def start(self) -> EtcdCluster:
        # A port that was free when picked can be taken before etcd binds it (other servers and
        # clients of the test run come and go): then the cluster starts afresh on new ports.
        for attempt in range(1, START_ATTEMPTS + 1):
            for node in self.nodes:
                node.start(self.binary, self.initial_cluster, "new")
            try:
                for node in self.nodes:
                    wait_for_port(node.client_port, proc=node.proc, timeout=20)
                break
            except RuntimeError:  # a node exited while starting
                self.stop()
                if attempt == START_ATTEMPTS:
                    raise
                self._new_nodes(self.workdir / f"attempt-{attempt + 1}")
        self.wait_healthy()
        return self

    def stop(self) -> None:
        """Terminate every node and wait for them."""
        for node in self.nodes:
            if node.running:
                assert node.proc is not None
                node.resume()
                node.proc.terminate()
        for node in self.nodes:
            if node.proc is not None:
                try:
                    node.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    node.kill()

    def restart(self, node: EtcdNode) -> None:
        """Start a killed node again on its ports, with its data (it rejoins the cluster)."""
        node.kill()
        node.start(self.binary, self.initial_cluster, "existing")
        wait_for_port(node.client_port, proc=node.proc, timeout=20)
        self.wait_healthy()

    def status(self) -> list[dict[str, object]]:
        """Return ``etcdctl endpoint status`` of every running, unpaused node."""
        live = ",".join(node.endpoint for node in self.nodes if node.running)
        out = subprocess.run(
            [self.etcdctl, "--endpoints", live, "--command-timeout=2s", "endpoint", "status", "-w", "json"],
            capture_output=True,
            env={**os.environ, "ETCDCTL_API": "3"},
            timeout=10,
        )
        try:
            rows: list[dict[str, object]] = json.loads(out.stdout or b"[]")
        except ValueError:
            return []
        return rows

    def leader(self) -> EtcdNode:
        """Return the node that is the raft leader now."""
        for row in self.status():
            status = row["Status"]
            assert isinstance(status, dict)
            header = status["header"]
            assert isinstance(header, dict)
            if status.get("leader") == header["member_id"]:
                port = str(row["Endpoint"]).rsplit(":", 1)[1]
                return next(node for node in self.nodes if str(node.client_port) == port)
        raise RuntimeError("the etcd cluster has no leader")

    def wait_healthy(self, timeout: float = 20.0) -> None:
        """Wait until every running node reports the same leader."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = self.status()
            leaders = {row["Status"].get("leader", 0) for row in rows if isinstance(row.get("Status"), dict)}  # type: ignore[attr-defined]
            running = sum(1 for node in self.nodes if node.running)
            if len(rows) == running and len(leaders) == 1 and 0 not in leaders:
                return
            time.sleep(0.1)
        raise TimeoutError(f"the etcd cluster did not become healthy within {timeout} s")
