"""A caller's own DB-API connections to a SQL backend's database, for the transaction option.

``OPENERS`` maps a backend of the suite to a function that opens a plain driver connection
to the database its URL names (sqlite3 for SQLite), as an application would.
"""

from __future__ import annotations

import sqlite3
import urllib.parse
import uuid
from collections.abc import Callable
from typing import Any

import pymysql  # type: ignore[import-untyped]
import pytest


def open_sqlite(url: str, request: pytest.FixtureRequest) -> Any:
    # Used from the thread of a background run too, as an application's pool would hand it on.
    return sqlite3.connect(url.removeprefix("sqlite://"), timeout=10, check_same_thread=False)


def open_mysql(url: str, request: pytest.FixtureRequest) -> Any:
    # PyMySQL's default: autocommit off, so statements run in a transaction until commit().
    parts = urllib.parse.urlsplit(url)
    return pymysql.connect(
        host=parts.hostname,
        port=parts.port or 3306,
        user=urllib.parse.unquote(parts.username or ""),
        password=urllib.parse.unquote(parts.password or ""),
        database=parts.path.strip("/"),
    )


def open_postgresql(url: str, request: pytest.FixtureRequest) -> Any:
    import psycopg

    return psycopg.connect(url.partition("?")[0])  # tenure's options are not libpq's


OPENERS: dict[str, Callable[[str, pytest.FixtureRequest], Any]] = {
    "sqlite": open_sqlite,
    "mysql": open_mysql,
    "mysql_table": open_mysql,
}
OPENERS["postgresql"] = OPENERS["postgresql_table"] = open_postgresql


class Orders:
    """A table of the caller's, written through its own connections (never committed by them)."""

    def __init__(
        self, opener: Callable[[str, pytest.FixtureRequest], Any], url: str, request: pytest.FixtureRequest
    ) -> None:
        self._open = lambda: opener(url, request)
        self.table = f"orders_{uuid.uuid4().hex[:12]}"
        self._connections: list[Any] = []
        self._reader = self._open()
        self._do(self._reader, f"CREATE TABLE {self.table} (id INTEGER PRIMARY KEY, fence BIGINT)")
        self._reader.commit()

    def connect(self) -> Any:
        """Return a new connection of the caller's, in its driver's default (transactional) mode."""
        connection = self._open()
        self._connections.append(connection)
        return connection

    def insert(self, connection: Any, order_id: int, fence: int) -> None:
        """Write a row in the connection's open transaction, without committing it."""
        mark = "?" if isinstance(connection, sqlite3.Connection) else "%s"
        self._do(
            connection, f"INSERT INTO {self.table} (id, fence) VALUES ({mark}, {mark})", (order_id, fence)
        )

    def ids(self) -> list[int]:
        """Return the committed rows' ids, as another connection sees them."""
        self._reader.rollback()  # a fresh snapshot
        cursor = self._reader.cursor()
        cursor.execute(f"SELECT id FROM {self.table} ORDER BY id")
        rows = [int(row[0]) for row in cursor.fetchall()]
        cursor.close()
        self._reader.rollback()
        return rows

    def close(self) -> None:
        for connection in [*self._connections, self._reader]:
            connection.close()

    @staticmethod
    def _do(connection: Any, sql: str, params: tuple[object, ...] = ()) -> None:
        cursor = connection.cursor()
        cursor.execute(sql, params)
        cursor.close()
