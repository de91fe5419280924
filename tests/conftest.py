"""Shared fixtures: one contract suite, parametrised over every backend.

A backend joins the suite by adding its name to ``BACKENDS`` and a fixture ``<name>_url`` that
returns a URL to a real, running instance (starting the server if it needs one).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tenure._core.guarantees import Capability, Guarantee
from tenure._registry import resolve
from tests.servers import RedisServer
from tests.servers_etcd import EtcdCluster
from tests.servers_zookeeper import ZooKeeperEnsemble

if TYPE_CHECKING:  # imported lazily: a run that skips them does not need their binaries
    from tests.servers_mysql import MariaDBServer
    from tests.servers_postgres import PostgresServer

BACKENDS = [
    "memory",
    "sqlite",
    "redis",
    "redlock",
    "etcd",
    "zookeeper",
    "postgresql",
    "postgresql_table",
    "mysql",
    "mysql_table",
]
# A backend name whose URL is not ``<name>://``: the same scheme in another mode.
EXAMPLE_URLS = {
    "memory": "memory://",
    "sqlite": "sqlite:///unused.db",
    "postgresql_table": "postgresql://localhost?mode=table",
    "mysql_table": "mysql://localhost?mode=table",
}


def backend_module(name: str) -> str:
    """Return the backend whose own test module covers ``name`` (``postgresql_table`` -> ``postgresql``)."""
    return name.removesuffix("_table")


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


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    from tests.servers_postgres import PostgresServer

    server = PostgresServer(tmp_path_factory.mktemp("postgres")).start()
    yield server
    server.stop()


@pytest.fixture
def postgresql_url(postgres_server: PostgresServer) -> str:
    # One server for the session; a namespace per test keeps tests apart.
    return f"{postgres_server.url}?namespace=test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def postgresql_table_url(postgres_server: PostgresServer) -> str:
    return f"{postgres_server.url}?mode=table&namespace=test-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def mariadb_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDBServer]:
    from tests.servers_mysql import MariaDBServer

    server = MariaDBServer(tmp_path_factory.mktemp("mariadb")).start()
    yield server
    server.stop()


@pytest.fixture
def mysql_url(mariadb_server: MariaDBServer) -> str:
    return f"{mariadb_server.url}?namespace=test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def mysql_table_url(mariadb_server: MariaDBServer) -> str:
    return f"{mariadb_server.url}?mode=table&namespace=test-{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=BACKENDS)
def backend_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


def backends_able(capability: Capability) -> list[str]:
    """Return the backends that declare ``capability`` (to parametrise tests that need it)."""
    return [name for name in BACKENDS if capability in declared_capabilities(name)]


def backends_with(guarantee: Guarantee) -> list[str]:
    """Return the backends that declare ``guarantee`` (to parametrise tests that need it)."""
    return [name for name in BACKENDS if guarantee in declared(name)]


def declared_capabilities(name: str) -> frozenset[Capability]:
    """Return the capabilities backend ``name`` declares."""
    example = EXAMPLE_URLS.get(name, f"{name}://localhost")
    cls, _ = resolve(example, "_sync")
    capabilities: frozenset[Capability] = cls.capabilities  # type: ignore[attr-defined]
    return capabilities


def declared(name: str) -> frozenset[Guarantee]:
    """Return the guarantees backend ``name`` declares."""
    example = EXAMPLE_URLS.get(name, f"{name}://localhost")
    cls, _ = resolve(example, "_sync")
    guarantees: frozenset[Guarantee] = cls.guarantees  # type: ignore[attr-defined]
    return guarantees


@pytest.fixture(params=backends_able(Capability.COUNTERS))
def counters_url(request: pytest.FixtureRequest) -> str:
    """A backend that keeps rate limits (the others are refused: a contract test says so)."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


@pytest.fixture(params=backends_able(Capability.RECORDS))
def records_url(request: pytest.FixtureRequest) -> str:
    """A backend that keeps idempotency records (the others are refused: a contract test says so)."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url
