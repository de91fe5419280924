"""What both modes of ``postgresql://`` share: the pool, the table's creation, change feeds."""

from __future__ import annotations

from typing import Any, ClassVar, cast

from tenure._async.backends.base import AsyncChangeFeed, AsyncLeaseStore
from tenure._async.backends.postgresql import sql
from tenure._async.backends.postgresql.connection import POOL_SIZE, AsyncPgPool, AsyncPgSession, Row
from tenure._async.backends.postgresql.listener import AsyncPgListener
from tenure._config import BackendConfig


class AsyncPostgresBase(AsyncLeaseStore):
    """The pool of sessions, the table's creation and LISTEN/NOTIFY wake-ups."""

    scheme: ClassVar[str] = "postgresql"
    # The table each part of the schema creates last: one missing, the (idempotent) schema is run.
    tables: ClassVar[tuple[str, ...]]
    schema: ClassVar[str]

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        self._params = sql.connect_params(config)  # raises ConfigurationError, no I/O
        self._pool_size = cast(int, config.extra.get("pool_size", POOL_SIZE))  # parsed by the registry
        self._pool = self._new_pool()
        # One LISTENing session, started by the first wait on it: table mode's releases and
        # election changes (``announce``) arrive there.
        self._listener = AsyncPgListener(self._pool)
        self._connected = False

    def _new_pool(self) -> AsyncPgPool:
        return AsyncPgPool(self.url, self._params, self.config.common.op_timeout, size=self._pool_size)

    async def connect(self) -> None:
        if self._connected:
            return
        await self._pool.open()
        try:
            session = await self._pool.checkout()
            try:
                await self._prepare(session)
            except BaseException:
                await self._pool.discard(session)
                raise
            await self._pool.checkin(session)
        except BaseException:
            await self._pool.aclose()  # stop the watchdog; a later connect starts afresh
            self._pool = self._new_pool()
            self._listener = AsyncPgListener(self._pool)
            raise
        self._connected = True

    async def _prepare(self, session: AsyncPgSession) -> None:
        """Create the tables if one is missing (one read when they exist)."""
        rows = await self._pool.run(
            session, sql.TABLES_EXIST, {"tables": list(self.tables)}, "looking for the tables"
        )
        if not rows[0][0]:
            # CREATE TABLE IF NOT EXISTS can still fail on the catalog's unique index when two
            # clients race to create it, so creators take turns on a transaction-scoped lock.
            create_lock = sql.lock_id(f"tenure:create:{self.tables[0]}")
            script = f"BEGIN; SELECT pg_advisory_xact_lock({create_lock}); {self.schema}; COMMIT"
            await self._pool.run(
                session, script, None, f"creating the tables {', '.join(self.tables)}", rows=False
            )

    async def _call(self, statement: str, params: dict[str, Any], what: str) -> list[Row]:
        """Run one short statement on a pooled session (at most ``pool_size`` at once)."""
        return await self._pool.call(statement, params, what)

    async def announce(self, key: str) -> None:
        # Lock statements send no NOTIFY (it would cost every release a commit); an election's
        # campaign and resignation announce themselves with one.
        await self._call(sql.ANNOUNCE, {"payload": str(sql.lock_id(key))}, "announcing a change")

    async def watch(self, key: str) -> AsyncChangeFeed:
        await self._listener.listening(self.config.common.op_timeout)  # else a change may be missed
        return AsyncPostgresFeed(self._listener, sql.lock_id(key))

    async def aclose(self) -> None:
        await self._listener.aclose()
        await self._pool.aclose()


class AsyncPostgresFeed(AsyncChangeFeed):
    """Wake an observer on a NOTIFY about its lock (a release in table mode, an announcement)."""

    def __init__(self, listener: AsyncPgListener, lock: int) -> None:
        super().__init__(0.0)
        self._listener, self._lock = listener, lock
        self._mark = listener.mark(lock)

    async def wait(self, timeout: float) -> None:
        # A listener that reconnects wakes every waiter: what it missed, the observer reads.
        await self._listener.wait(self._lock, self._mark, max(0.0, timeout))
        self._mark = self._listener.mark(self._lock)
