"""One MySQL connection's calls, bounded by a timeout, in each colour (the mysql:// backend)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


class AsyncMySQLCalls:
    """Open one aiomysql connection and bound each call on it: a late call is cancelled.

    The caller drops a connection whose call failed or was cancelled: its state is unknown.
    """

    async def connect(
        self, connect: Callable[..., Awaitable[T]], options: dict[str, Any], timeout: float
    ) -> T:
        """Return ``connect(**options)``, raising TimeoutError after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            return await connect(**options)

    async def call(self, make: Callable[[], Awaitable[T]], timeout: float) -> T:
        """Return what ``make()`` awaits, raising TimeoutError after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            return await make()

    def close(self, connection: Any) -> None:
        """Close the connection (the server ends its session)."""
        connection.close()


class MySQLCalls:
    """Open one PyMySQL connection over a socket of our own, and bound each call by its timeout.

    PyMySQL takes a connected socket (``defer_connect=True``, then ``connect(sock)``, both
    public), sets the socket's timeout while connecting and, given equal read and write
    timeouts, never again: so the timeout stays ours to raise for a long server-side wait and
    lower after it (tests/test_mysql.py checks both bounds against a real server).
    """

    def __init__(self) -> None:
        self._socket: socket.socket | None = None
        self._timeout: float | None = None

    def connect(self, connect: Callable[..., T], options: dict[str, Any], timeout: float) -> T:
        """Return a connection opened within ``timeout`` seconds (OSError, or the driver's error)."""
        options = dict(options)
        options["database"] = options.pop("db")  # PyMySQL's name for it
        sock = socket.create_connection((options["host"], options["port"]), timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            connection: Any = connect(
                **options, read_timeout=timeout, write_timeout=timeout, defer_connect=True
            )
            connection.connect(sock)
        except BaseException:
            sock.close()
            raise
        self._socket, self._timeout = sock, timeout
        return connection  # type: ignore[no-any-return]

    def call(self, make: Callable[[], T], timeout: float) -> T:
        """Return ``make()``; a read or write on the socket longer than ``timeout`` fails it."""
        if timeout != self._timeout and self._socket is not None:
            self._socket.settimeout(timeout)
            self._timeout = timeout
        return make()

    def close(self, connection: Any) -> None:
        """Close the connection; a thread still reading it wakes with an error."""
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.shutdown(socket.SHUT_RDWR)
        connection.close()
