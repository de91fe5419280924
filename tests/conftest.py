"""Shared fixtures: one contract suite, parametrised over every backend.

A backend joins the suite by adding its name to ``BACKENDS`` and a fixture ``<name>_url`` that
returns a URL to a real, running instance (starting the server if it needs one).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tenure._core.guarantees import Guarantee
from tenure._registry import resolve
from tests.servers import RedisServer
from tests.servers_etcd import EtcdCluster
from tests.servers_zookeeper import ZooKeeperEnsemble

BACKENDS = ["memory", "sqlite", "redis", "redlock", "etcd", "zookeeper"]


@pytest.fixture
def memory_url() -> str:
    return f"memory://test-{uuid.uuid4().hex}"


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite://{tmp_path}/locks.db"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    # One server for the session; a namespace per test keeps tests apart.
    return f"{redis_server.url}?namespace=test-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def redlock_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[RedisServer]]:
    servers: list[RedisServer] = []
    try:
        for i in range(5):
            servers.append(RedisServer(tmp_path_factory.mktemp(f"redlock-{i}")).start())
        yield servers
    finally:
        for server in servers:
            server.stop()


def redlock_url_of(servers: list[RedisServer], **options: object) -> str:
    """Return a ``redlock://`` URL over ``servers`` with a fresh namespace and ``options``."""
    hosts = ",".join(f"127.0.0.1:{server.port}" for server in servers)
    query = "&".join([f"namespace=test-{uuid.uuid4().hex[:12]}", *(f"{k}={v}" for k, v in options.items())])
    return f"redlock://{hosts}/0?{query}"


@pytest.fixture
def redlock_url(redlock_servers: list[RedisServer]) -> str:
    # Five servers for the session; a namespace per test keeps tests apart.
    return redlock_url_of(redlock_servers)


@pytest.fixture(scope="session")
def etcd_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    cluster = EtcdCluster(tmp_path_factory.mktemp("etcd")).start()
    yield cluster
    cluster.stop()


@pytest.fixture
def etcd_url(etcd_cluster: EtcdCluster) -> str:
    # One three-node cluster for the session; a namespace per test keeps tests apart.
    return f"{etcd_cluster.url}?namespace=test-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def zookeeper_ensemble(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZooKeeperEnsemble]:
    ensemble = ZooKeeperEnsemble(tmp_path_factory.mktemp("zookeeper")).start()
    yield ensemble
    ensemble.stop()


@pytest.fixture
def zookeeper_url(zookeeper_ensemble: ZooKeeperEnsemble) -> str:
    # One three-node ensemble for the session; a chroot per test keeps tests apart.
    return zookeeper_ensemble.url(f"/test-{uuid.uuid4().hex[:12]}")


@pytest.fixture(params=BACKENDS)
def backend_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


def backends_with(guarantee: Guarantee) -> list[str]:
    """Return the backends that declare ``guarantee`` (to parametrise tests that need it)."""
    return [name for name in BACKENDS if guarantee in declared(name)]


def declared(name: str) -> frozenset[Guarantee]:
    """Return the guarantees backend ``name`` declares."""
    example = {"memory": "memory://", "sqlite": "sqlite:///unused.db"}.get(name, f"{name}://localhost")
    cls, _ = resolve(example, "_sync")
    guarantees: frozenset[Guarantee] = cls.guarantees  # type: ignore[attr-defined]
    return guarantees
