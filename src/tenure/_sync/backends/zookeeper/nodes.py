# GENERATED from src/tenure/_async/backends/zookeeper/nodes.py by scripts/unasync.py: do not edit; edit the source and re-run.
"""Sans-I/O parts of the ``zookeeper://`` backend: URL location, node names and node data."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from tenure._config import BackendConfig
from tenure._exceptions import ConfigurationError

DEFAULT_PORT = 2181


@dataclass(slots=True)
class LineNode:
    """Our node in one lock's line (its directory), as this client last saw it."""

    name: str  # "<token>-<sequence>"
    fence: int  # czxid
    session: int  # the session that owns it (ephemeralOwner)
    ttl: float
    label: str
    in_line: bool = True  # False once our node was found gone (its session expired)
    predecessor: str | None = None  # the child just before ours, when we last looked
    # False if a create of ours lost its reply: another child of ours may exist, so releasing
    # must list the line; True when ``name`` is known to be our only child.
    exact: bool = True
    held: bool = False  # our node was first when we last returned its fence
    # When the holder just before ours runs out of TTL unless renewed (local monotonic time),
    # so that waiting for our turn ends then rather than at the holder's session expiry.
    holder_ends: float | None = None
    path: str = ""  # its full path, once a renewal needed it


def check_ttl_fits(ttl: float, session_timeout: float, url: str) -> None:
    """Raise ``ConfigurationError`` if a lease of ``ttl`` could outlive its session's timeout.

    A partitioned holder counts its validity from its last renewal; the ensemble may end its
    session, and give the lock away, ``session_timeout`` after it last heard from it.
    """
    if ttl > session_timeout:
        raise ConfigurationError(
            f"ttl={ttl:g} is longer than the ZooKeeper session timeout ({session_timeout:g} s) of {url}: "
            "the session could end before the lease; lower the ttl or raise session_timeout="
        )


def parse_location(config: BackendConfig) -> tuple[str, str]:
    """Return kazoo's host string and our chroot for a ``zookeeper://`` URL (no I/O)."""
    url = config.url
    if not url.hosts or any(not host.host for host in url.hosts):
        example = "zookeeper://h1:2181,h2:2181/chroot"
        raise ConfigurationError(f"zookeeper:// needs at least one host, e.g. {example} ({url})")
    hosts = ",".join(f"{host.host}:{host.port or DEFAULT_PORT}" for host in url.hosts)
    root = url.path.rstrip("/")
    if root and any(part in ("", ".", "..") or "\x00" in part for part in root.split("/")[1:]):
        raise ConfigurationError(f"the chroot in {url} must be an absolute path like /apps/locks")
    return hosts, root


def node_component(key: str) -> str:
    """Return ``key`` as one node name: '/' and every non-ASCII byte escaped, never '.' or '..'.

    Percent-escaping is one-to-one ('%' itself is escaped), so distinct keys get distinct nodes;
    ':' stays as it is, for people reading the tree (``tenure:lock:orders%2F42``).
    """
    name = quote(key, safe=":")
    return name.replace(".", "%2E") if name in (".", "..") else name


def node_data(ttl: float, label: str) -> bytes:
    return f"{round(ttl * 1000)}\n{label}".encode()


def parse_node_data(data: bytes) -> tuple[float, str]:
    """Return the ttl (seconds) and label stored in a node; foreign data never expires."""
    ttl_ms, _, label = data.decode(errors="replace").partition("\n")
    return (int(ttl_ms) / 1000 if ttl_ms.isdigit() else float("inf")), label


def sequence(name: str) -> int:
    """Return the sequence number of a lock node, or -1 for a name that is not one of ours."""
    _, dash, digits = name.rpartition("-")
    return int(digits) if dash and digits.isdigit() else -1


def predecessor(children: list[str], name: str) -> str | None:
    index = children.index(name) if name in children else -1
    return children[index - 1] if index > 0 else None
