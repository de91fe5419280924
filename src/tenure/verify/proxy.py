"""A local TCP proxy between one worker and its servers, which the partition nemesis cuts and heals.

The worker connects to ``127.0.0.1:<local port>`` instead of each server; the proxy forwards the
bytes. ``cut()`` stops forwarding without closing anything, as a real partition does: the bytes
wait in the kernel's buffers, both ends see a silent peer and time out by themselves, and a new
connection is accepted but not forwarded. ``heal()`` forwards again (what waited is delivered,
as TCP would retransmit it); ``close()`` ends every connection. No root is needed.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from dataclasses import dataclass

from tenure._url import parse_url

SEND_TIMEOUT = 5.0  # a peer that reads nothing for this long loses its connection
CONNECT_TIMEOUT = 2.0


@dataclass(slots=True)
class _Pair:
    client: socket.socket
    upstream: socket.socket | None  # None while the connection waits for a cut to heal
    target: tuple[str, int]


class Proxy:
    """Forward local ports to upstream servers on one thread; cut and heal all of them at once."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.cut_now = False
        self._selector = selectors.DefaultSelector()
        self._listeners: dict[socket.socket, tuple[str, int]] = {}
        self._pairs: list[_Pair] = []
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = socket.socketpair()
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"tenure-verify-proxy-{name}", daemon=True)

    def listen(self, host: str, port: int) -> int:
        """Forward a new local port to ``host:port``; return the local port (before ``start``)."""
        listener = socket.create_server(("127.0.0.1", 0))
        listener.setblocking(False)
        self._listeners[listener] = (host, port)
        self._selector.register(listener, selectors.EVENT_READ, None)
        local_port: int = listener.getsockname()[1]
        return local_port

    def start(self) -> Proxy:
        """Start forwarding."""
        self._thread.start()
        return self

    def cut(self) -> None:
        """Stop forwarding in both directions; every connection stays open but silent."""
        with self._lock:
            self.cut_now = True
        self._wake()

    def heal(self) -> None:
        """Forward again, and connect what was accepted meanwhile."""
        with self._lock:
            self.cut_now = False
        self._wake()

    def close(self) -> None:
        """Stop the thread and close every socket (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._wake()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        for sock in [*self._listeners, *self._sockets(), self._wake_r, self._wake_w]:
            with contextlib.suppress(OSError):
                sock.close()
        self._selector.close()

    @property
    def ports(self) -> list[int]:
        """Return the local ports the proxy listens on."""
        return [int(listener.getsockname()[1]) for listener in self._listeners if listener.fileno() >= 0]

    @property
    def connections(self) -> int:
        """Return the number of client connections open through the proxy."""
        return len(self._pairs)

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def _sockets(self) -> list[socket.socket]:
        return [s for pair in self._pairs for s in (pair.client, pair.upstream) if s is not None]

    def _run(self) -> None:
        forwarding = True
        while not self._closed:
            with self._lock:
                cut = self.cut_now
            if cut and forwarding:
                self._unwatch_pairs()
            elif not cut and not forwarding:
                self._watch_pairs()
            forwarding = not cut
            for key, _ in self._selector.select(timeout=0.5):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is self._wake_r:
                    with contextlib.suppress(OSError):
                        self._wake_r.recv(4096)
                elif sock in self._listeners:
                    self._accept(sock, connect=not cut)
                elif not cut:
                    self._forward(key.data, sock)

    def _accept(self, listener: socket.socket, *, connect: bool) -> None:
        try:
            client, _ = listener.accept()
        except OSError:
            return
        pair = _Pair(client, None, self._listeners[listener])
        self._pairs.append(pair)
        if connect:
            self._connect(pair)

    def _connect(self, pair: _Pair) -> None:
        try:
            upstream = socket.create_connection(pair.target, timeout=CONNECT_TIMEOUT)
        except OSError:
            self._drop(pair)  # the server is down: the client sees its connection end
            return
        for sock in (pair.client, upstream):
            sock.settimeout(SEND_TIMEOUT)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pair.upstream = upstream
        self._selector.register(pair.client, selectors.EVENT_READ, pair)
        self._selector.register(upstream, selectors.EVENT_READ, pair)

    def _forward(self, pair: _Pair, sock: socket.socket) -> None:
        other = pair.upstream if sock is pair.client else pair.client
        try:
            data = sock.recv(65536)
            if data and other is not None:
                other.sendall(data)
                return
        except OSError:
            pass
        self._drop(pair)

    def _drop(self, pair: _Pair) -> None:
        for sock in (pair.client, pair.upstream):
            if sock is None:
                continue
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(sock)
            with contextlib.suppress(OSError):
                sock.close()
        with contextlib.suppress(ValueError):
            self._pairs.remove(pair)

    def _unwatch_pairs(self) -> None:
        for sock in self._sockets():
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(sock)

    def _watch_pairs(self) -> None:
        for pair in list(self._pairs):
            if pair.upstream is None:
                self._connect(pair)
                continue
            for sock in (pair.client, pair.upstream):
                with contextlib.suppress(KeyError, ValueError):
                    self._selector.register(sock, selectors.EVENT_READ, pair)


DEFAULT_PORTS = {
    "redis": 6379,
    "rediss": 6379,
    "redlock": 6379,
    "etcd": 2379,
    "zookeeper": 2181,
    "postgresql": 5432,
    "postgres": 5432,
    "mysql": 3306,
}


def proxied_url(url: str, proxy: Proxy) -> str | None:
    """Return ``url`` with every server reached through ``proxy``; None if it has no TCP server.

    A URL without hosts (SQLite, memory) or with a Unix socket (``?host=/run/...``) cannot be cut
    off this way: the partition nemesis then reports that it could not run.
    """
    if not proxiable(url):
        return None
    parsed = parse_url(url)
    default = DEFAULT_PORTS[parsed.scheme]
    local = []
    for host in parsed.hosts:
        name = host.host or "127.0.0.1"
        local.append(f"127.0.0.1:{proxy.listen(name, host.port or default)}")
    scheme, rest = url.split("://", 1)
    netloc, sep, tail = _split_netloc(rest)
    userinfo = netloc.rsplit("@", 1)[0] + "@" if "@" in netloc else ""
    return f"{scheme}://{userinfo}{','.join(local)}{sep}{tail}"


def proxiable(url: str) -> bool:
    """Return whether ``url`` reaches its servers over TCP, so that a proxy can cut it off."""
    parsed = parse_url(url)
    return parsed.scheme in DEFAULT_PORTS and bool(parsed.hosts) and "host" not in parsed.options


def _split_netloc(rest: str) -> tuple[str, str, str]:
    """Split what follows ``scheme://`` into the host part and the rest, as ``parse_url`` does."""
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    return rest[:cut], rest[cut : cut + 1], rest[cut + 1 :]
