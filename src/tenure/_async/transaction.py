"""Statements run on a caller's own DB-API connection (the caller's-transaction option).

Duck-typed over the drivers' connections (sqlite3, psycopg, PyMySQL; their asyncio twins in the
async colour), through DB-API calls only: ``cursor()``, ``execute``, ``fetchall``, ``commit``,
``rollback``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from tenure._async.backends.base import SQLStep
from tenure._concurrency import async_resolve
from tenure._exceptions import ConfigurationError

log = logging.getLogger("tenure")


def check_transactional(connection: Any) -> None:
    """Refuse a connection that commits every statement: the record could not join its writes."""
    if not callable(getattr(connection, "cursor", None)) or not callable(getattr(connection, "commit", None)):
        raise ConfigurationError(f"transaction= takes a DB-API connection, not {connection!r}")
    autocommit = getattr(connection, "autocommit", None)  # psycopg: a bool property
    if callable(getattr(connection, "get_autocommit", None)):  # PyMySQL and aiomysql
        autocommit = connection.get_autocommit()
    if autocommit is True:
        raise ConfigurationError(
            "transaction= needs a connection in a transaction, not in autocommit mode: the record "
            "would not commit together with your writes"
        )


async def run_steps(connection: Any, steps: Sequence[SQLStep]) -> bool:
    """Run ``steps`` in the connection's open transaction; return False if one proves the hold lost."""
    cursor = await async_resolve(connection.cursor())
    try:
        # sqlite3 in autocommit mode (isolation_level None, no transaction open): open one. A
        # psycopg connection's isolation_level is None by default too, but it has no
        # in_transaction and opens its transaction with the first statement.
        if (
            getattr(connection, "isolation_level", "") is None
            and getattr(connection, "in_transaction", None) is False
        ):
            await async_resolve(cursor.execute("BEGIN"))
        for step in steps:
            await async_resolve(cursor.execute(step.sql, step.params))
            if step.proves_hold and not await async_resolve(cursor.fetchall()):
                return False
    finally:
        await async_resolve(cursor.close())
    return True


async def roll_back(connection: Any) -> None:
    """Roll the caller's transaction back, keeping the error that led here."""
    try:
        await async_resolve(connection.rollback())
    except Exception as exc:
        log.warning("tenure: rolling back the caller's transaction failed (%s)", exc)
