"""The servers the tests started, handed to ``tenure verify``'s server nemesis (kill -9, restart).

Each wraps a server or cluster of tests/servers*.py in the nemesis' ``Servers`` protocol: kill
one node (chosen by the nemesis' seeded random), then start it again on the same ports with
its data. Used by tests/test_verify_*.py and scripts/verify_table.py.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.servers import RedisServer
    from tests.servers_etcd import EtcdCluster
    from tests.servers_zookeeper import ZooKeeperEnsemble


class SingleServer:
    """One server process (Redis, PostgreSQL, MariaDB): kill -9 it, start it again."""

    def __init__(self, server: Any, name: str) -> None:
        self.server = server
        self.name = name

    def kill(self, rng: random.Random) -> str:
        self.server.kill()
        return self.name

    def restart(self) -> None:
        if not self.server.running:
            self.server.start()


class RedisNodes:
    """Independent Redis servers (Redlock): kill -9 one of them, start it again (empty)."""

    def __init__(self, servers: list[RedisServer]) -> None:
        self.servers = servers
        self.down: RedisServer | None = None

    def kill(self, rng: random.Random) -> str:
        self.down = rng.choice(self.servers)
        self.down.kill()
        return f"redis on port {self.down.port}"

    def restart(self) -> None:
        if self.down is not None and not self.down.running:
            self.down.start()
        self.down = None


class EtcdNodes:
    """A three-node etcd cluster: kill -9 one node, restart it with its data (it rejoins)."""

    def __init__(self, cluster: EtcdCluster) -> None:
        self.cluster = cluster
        self.down: Any = None

    def kill(self, rng: random.Random) -> str:
        self.down = rng.choice(self.cluster.nodes)
        self.down.kill()
        return f"etcd node {self.down.name}"

    def restart(self) -> None:
        if self.down is not None:
            self.cluster.restart(self.down)
        self.down = None


class ZooKeeperNodes:
    """A three-node ZooKeeper ensemble: kill -9 one node, restart it with its data (it rejoins)."""

    def __init__(self, ensemble: ZooKeeperEnsemble) -> None:
        self.ensemble = ensemble
        self.down: Any = None

    def kill(self, rng: random.Random) -> str:
        self.down = rng.choice(self.ensemble.nodes)
        self.down.kill()
        return f"zookeeper node {self.down.myid}"

    def restart(self) -> None:
        if self.down is not None:
            self.ensemble.restart(self.down)
        self.down = None
