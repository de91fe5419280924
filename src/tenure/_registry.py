"""The lazy scheme registry: which module serves which URL scheme, imported only when used."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from tenure._config import BackendConfig, file_mode, one_of, positive_float, validate_options, whole_number
from tenure._exceptions import ConfigurationError
from tenure._url import parse_url

Colour = Literal["_async", "_sync"]


@dataclass(frozen=True, slots=True)
class BackendEntry:
    """Where a backend lives, the extra that installs its driver, and its own URL options."""

    module: str
    cls: str
    extra: str | None = None
    options: Mapping[str, Callable[[str], object]] = field(default_factory=dict)
    modes: Mapping[str, str] = field(default_factory=dict)
    """Other classes of the same module chosen by the URL's ``mode`` option (``cls`` is the default)."""

    def classes(self) -> list[str]:
        """Return every class name this entry can resolve to, the default first."""
        return [self.cls, *(name for name in self.modes.values() if name != self.cls)]


# Both SQL backends: session-bound advisory locks by default, a lease table with ?mode=table;
# pool_size: how many sessions short calls use at once (holds and lock waits not counted).
SQL_OPTIONS: Mapping[str, Callable[[str], object]] = {
    "mode": one_of("mode", "advisory", "table"),
    "pool_size": whole_number("pool_size", least=1),
}

BACKENDS: Mapping[str, BackendEntry] = {
    "memory": BackendEntry("memory", "MemoryStore"),
    "sqlite": BackendEntry(
        "sqlite",
        "SQLiteStore",
        options={"busy_timeout": positive_float("busy_timeout"), "file_mode": file_mode("file_mode")},
    ),
    "redis": BackendEntry("redis", "RedisStore", extra="redis"),
    "rediss": BackendEntry("redis", "RedisStore", extra="redis"),
    "redis+unix": BackendEntry("redis", "RedisStore", extra="redis", options={"db": whole_number("db")}),
    "redlock": BackendEntry("redlock", "RedlockStore", extra="redis"),
    "zookeeper": BackendEntry(
        "zookeeper",
        "ZooKeeperStore",
        extra="zookeeper",
        options={"session_timeout": positive_float("session_timeout")},
    ),
    "etcd": BackendEntry(
        "etcd", "EtcdStore", extra="etcd", options={"session_ttl": positive_float("session_ttl")}
    ),
    "postgresql": BackendEntry(
        "postgresql",
        "PostgresStore",
        extra="postgresql",
        options=SQL_OPTIONS,
        modes={"table": "PostgresTableStore"},
    ),
    "mysql": BackendEntry(
        "mysql",
        "MySQLStore",
        extra="mysql",
        options=SQL_OPTIONS,
        modes={"table": "MySQLTableStore"},
    ),
}


def resolve(url: str, colour: Colour) -> tuple[type[object], BackendConfig]:
    """Return the backend class for ``url`` and its validated config, without any I/O.

    Raise ``ConfigurationError`` for an unknown scheme or option (naming the valid ones) and for
    a backend whose driver extra is not installed.
    """
    parsed = parse_url(url)
    entry = BACKENDS.get(parsed.scheme)
    if entry is None:
        schemes = ", ".join(f"{s}://" for s in sorted(BACKENDS))
        raise ConfigurationError(
            f"unknown URL scheme {parsed.scheme!r} in {parsed.redacted}; valid schemes: {schemes}"
        )
    config = validate_options(parsed, entry.options)
    try:
        module = importlib.import_module(f"tenure.{colour}.backends.{entry.module}")
    except ImportError as exc:
        hint = f"; install it with: pip install 'tenure[{entry.extra}]'" if entry.extra else ""
        raise ConfigurationError(f"the {parsed.scheme}:// backend is not available{hint}") from exc
    # The async source names its classes Async*; the generated sync twin drops the prefix.
    name = entry.modes.get(str(config.extra.get("mode", "")), entry.cls)
    cls: type[object] = getattr(module, ("Async" if colour == "_async" else "") + name)
    return cls, config
