# GENERATED from src/tenure/_async/backends/redis/connection.py by scripts/unasync.py: do not edit; edit the source and re-run.
"""redis-py clients for ``redis://`` and ``redlock://``: options, driver errors, change feeds.

Both backends build their connections from ``base_options`` (timeouts from the URL, no retry:
a retried acquire could hold or vote twice) and map every redis-py error with ``map_errors``.
"""

from __future__ import annotations

from typing import Any

from redis import exceptions as redis_errors
from redis.retry import Retry as Retry
from redis.backoff import NoBackoff

from tenure._sync.backends.base import ChangeFeed
from tenure._config import BackendConfig
from tenure._exceptions import (
    BackendError,
    BackendProtocolError,
    BackendTimeout,
    BackendUnavailable,
    ConfigurationError,
)

# What a redis-py call can raise besides a reply: each is mapped by ``map_errors``.
DRIVER_ERRORS = (redis_errors.RedisError, OSError)
# One connection per concurrent call, as many as the server takes (its default maxclients):
# redis-py's asyncio pool refuses a 101st concurrent call ("Too many connections"), which a
# burst of rate-limit decisions from one event loop reaches; its sync pool has no bound.
MAX_CONNECTIONS = 10_000


def map_errors(exc: BaseException, what: str) -> BackendError:
    """Return the tenure error for a redis-py error; ``what`` names the server and the step."""
    if isinstance(exc, BackendError):
        return exc
    if isinstance(exc, redis_errors.TimeoutError | TimeoutError):
        return BackendTimeout(f"no answer within the timeout from {what}")
    if isinstance(exc, redis_errors.ConnectionError | OSError):
        return BackendUnavailable(f"cannot reach {what}: {exc}")
    return BackendProtocolError(f"unexpected reply from {what}: {exc}")


def base_options(config: BackendConfig) -> dict[str, Any]:
    """Return the redis-py options every connection of ``config`` shares (no I/O)."""
    url, common = config.url, config.common
    return {
        "socket_connect_timeout": common.connect_timeout,
        "socket_timeout": common.op_timeout,
        "retry": Retry(NoBackoff(), 0),  # never retry: a retried acquire could double-hold
        "max_connections": MAX_CONNECTIONS,
        "username": url.username,
        "password": url.password,
    }


def database(config: BackendConfig) -> int:
    """Return the database number in a ``redis://`` or ``redlock://`` URL's path (default 0)."""
    url = config.url
    db_text = url.path.strip("/") or "0"
    if not db_text.isdigit():
        raise ConfigurationError(f"the database in {url} must be a number, e.g. {url.scheme}://host/0")
    return int(db_text)


def client_options(config: BackendConfig) -> dict[str, Any]:
    """Return redis-py client options for a validated ``redis://``-family URL (no I/O)."""
    url = config.url
    options = base_options(config)
    if url.scheme == "redis+unix":
        if not url.path or url.hosts:
            raise ConfigurationError(
                f"redis+unix URL needs a socket path: redis+unix:///path/redis.sock ({url})"
            )
        options["unix_socket_path"] = url.path
        options["db"] = config.extra.get("db", 0)
        return options
    if len(url.hosts) > 1:
        raise ConfigurationError(f"{url.scheme}:// takes one host; for several use redlock:// ({url})")
    host = url.hosts[0] if url.hosts else None
    options["host"] = host.host if host and host.host else "127.0.0.1"
    options["port"] = host.port if host and host.port else 6379
    options["db"] = database(config)
    if url.scheme == "rediss":
        options["ssl"] = True
    return options


class RedisFeed(ChangeFeed):
    """Read a lock's change channel on a pub/sub connection of its own."""

    def __init__(self, pubsub: Any, op_timeout: float, server: str) -> None:
        super().__init__(op_timeout)
        self._pubsub = pubsub
        self._op_timeout = op_timeout
        self._server = server  # redacted URL, for error messages

    def subscribe(self, channel: str) -> None:
        """Subscribe, and wait for the server's confirmation: from then on no change is missed."""
        try:
            self._pubsub.subscribe(channel)
            confirmed = self._pubsub.get_message(timeout=self._op_timeout)
        except DRIVER_ERRORS as exc:
            self.close()
            raise map_errors(exc, f"{self._server} (subscribing)") from exc
        if confirmed is None or confirmed.get("type") != "subscribe":
            self.close()
            raise BackendTimeout(f"no confirmation of the subscription to {channel!r}")

    def wait(self, timeout: float) -> None:
        # A blocked read must finish before the socket timeout (op_timeout) fires.
        timeout = min(max(0.0, timeout), self._op_timeout * 0.8)
        try:
            self._pubsub.get_message(ignore_subscribe_messages=True, timeout=timeout)
            while self._pubsub.get_message(ignore_subscribe_messages=True, timeout=0) is not None:
                pass  # several changes at once: one look at the holder covers them all
        except DRIVER_ERRORS as exc:
            raise map_errors(exc, f"{self._server} (waiting for a change)") from exc

    def close(self) -> None:
        self._pubsub.close()
