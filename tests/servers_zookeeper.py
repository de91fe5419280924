"""Start a real three-node ZooKeeper ensemble from Debian's ``zookeeper`` package.

Each node is a ``QuorumPeerMain`` JVM run directly (not through zkServer.sh) so the tests own
the process: they can kill it, freeze it (SIGSTOP) and restart it on the same ports with the
same data directory. Nodes listen on free loopback ports in a temp dir.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from tests.servers import ServerProcess, free_port

ZOOKEEPER_JAR = Path("/usr/share/java/zookeeper.jar")  # its manifest names the other jars
LOGGER_JAR = Path("/usr/share/java/slf4j-simple.jar")  # node logs go to the node's log file
TICK_MS = 200  # short ticks: elections and session expiry are fast enough for tests


def four_letter_word(port: int, word: str, timeout: float = 0.5) -> str:
    """Send a ZooKeeper four-letter command to 127.0.0.1:``port``; return the reply, or ''."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(word.encode())
            chunks = []
            while chunk := sock.recv(4096):
                chunks.append(chunk)
            return b"".join(chunks).decode(errors="replace")
    except OSError:
        return ""


class ZooKeeperNode(ServerProcess):
    """One member of the ensemble: its id, ports, data dir and JVM process."""

    def __init__(self, myid: int, workdir: Path) -> None:
        self.myid = myid
        self.workdir = workdir
        self.client_port = free_port()
        self.peer_port = free_port()
        self.election_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.wanted = False  # started and not killed or stopped on purpose

    def write_config(self, peers: list[ZooKeeperNode]) -> None:
        data = self.workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        (data / "myid").write_text(f"{self.myid}\n")
        lines = [
            f"tickTime={TICK_MS}",
            "initLimit=10",
            "syncLimit=5",
            f"dataDir={data}",
            f"clientPort={self.client_port}",
            "clientPortAddress=127.0.0.1",
            "minSessionTimeout=400",
            "maxSessionTimeout=60000",
            "4lw.commands.whitelist=srvr,stat,ruok,mntr,wchp",
            "admin.enableServer=false",
            "preAllocSize=1024",
            "autopurge.purgeInterval=0",
            *(f"server.{p.myid}=127.0.0.1:{p.peer_port}:{p.election_port}" for p in peers),
        ]
        (self.workdir / "zoo.cfg").write_text("\n".join(lines) + "\n")

    def start(self) -> None:
        classpath = os.pathsep.join(str(jar) for jar in (ZOOKEEPER_JAR, LOGGER_JAR) if jar.exists())
        args = [
            shutil.which("java") or "java",
            "-Xmx128m", "-Xss512k", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
            "-Dzookeeper.jmx.log4j.disable=true",
            "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
            "-cp", classpath,
            "org.apache.zookeeper.server.quorum.QuorumPeerMain",
            str(self.workdir / "zoo.cfg"),
        ]  # fmt: skip
        self.wanted = True
        log = (self.workdir / "node.log").open("ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def mode(self) -> str | None:
        """Return 'leader', 'follower' or None when the node does not serve."""
        for line in four_letter_word(self.client_port, "srvr").splitlines():
            if line.startswith("Mode:"):
                return line.split(":", 1)[1].strip()
        return None

    def kill(self) -> None:
        """Kill -9 the node, and keep it down."""
        self.wanted = False
        super().kill()

    def stop(self) -> None:
        """Terminate the node, and keep it down."""
        self.wanted = False
        super().stop()


class ZooKeeperEnsemble:
    """Three ZooKeeper nodes forming one quorum on loopback ports."""

    def __init__(self, workdir: Path, size: int = 3) -> None:
        if not ZOOKEEPER_JAR.exists() or shutil.which("java") is None:
            raise RuntimeError("ZooKeeper is not installed (apt-get install -y zookeeper)")
        self.nodes = [ZooKeeperNode(i + 1, workdir / f"node-{i + 1}") for i in range(size)]
        for node in self.nodes:
            node.write_config(self.nodes)

    @property
    def hosts(self) -> str:
        """Return the connect string, e.g. ``127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3``."""
        return ",".join(f"127.0.0.1:{node.client_port}" for node in self.nodes)

    def url(self, chroot: str = "", **options: object) -> str:
        """Return a ``zookeeper://`` URL over every node, with ``options``."""
        query = "&".join(f"{k}={v}" for k, v in options.items())
        return f"zookeeper://{self.hosts}{chroot}" + (f"?{query}" if query else "")

    def start(self, timeout: float = 60.0) -> ZooKeeperEnsemble:
        for node in self.nodes:
            node.start()
        self.wait_for_quorum(timeout)
        return self

    def wait_for_quorum(self, timeout: float = 30.0) -> None:
        """Wait until a leader serves and every running, unfrozen node has joined it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for node in self.nodes:
                if node.wanted and not node.running:
                    raise RuntimeError(f"zookeeper node {node.myid} exited; see {node.workdir}/node.log")
            modes = [node.mode() for node in self.nodes if node.running]
            if "leader" in modes and all(mode in ("leader", "follower") for mode in modes):
                return
            time.sleep(0.1)
        raise TimeoutError(f"no ZooKeeper quorum after {timeout} s")

    def leader(self) -> ZooKeeperNode:
        """Return the node that leads now."""
        for node in self.nodes:
            if node.running and node.mode() == "leader":
                return node
        raise RuntimeError("no node leads")

    def restart(self, node: ZooKeeperNode) -> None:
        """Start a killed node again with its data and wait until it rejoins."""
        node.kill()
        node.start()
        self.wait_for_quorum()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
