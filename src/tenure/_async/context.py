"""What a coordinator gives each primitive it makes: the store, the renewer, who holds what.

Primitives use only this object's methods, never the coordinator's or each other's insides.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tenure._async.backends.base import AsyncLeaseStore, AsyncQueueing
from tenure._async.renewer import AsyncRenewer
from tenure._concurrency import AsyncMutex, async_running_loop
from tenure._core.fences import FenceHighWater
from tenure._core.holding import Holding
from tenure._exceptions import ConfigurationError
from tenure.observability._instruments import current as current_instruments

if TYPE_CHECKING:
    from tenure._async.lease import AsyncLease
    from tenure.observability._instruments import Instruments


class AsyncContext:
    """One coordinator's shared state: its store and connection, renewer, holders and fences."""

    def __init__(self, store: AsyncLeaseStore) -> None:
        self.store = store
        self.queueing: AsyncQueueing | None = store if isinstance(store, AsyncQueueing) else None
        self.renewer = AsyncRenewer(store)
        self.fences = FenceHighWater()  # the highest fence seen per name, to refuse one that goes back
        # (key, task or thread) -> the lease it holds: entered again by a reentrant lock, and a
        # non-reentrant one asked for again by its holder raises at once instead of waiting.
        self._holders: dict[tuple[str, object], tuple[Holding, AsyncLease]] = {}
        self._connect_mutex = AsyncMutex()
        self._connected = False
        self.closed = False
        self._loop: object = None  # the event loop of its first use (None in sync code)
        # OpenTelemetry's instruments, looked up once when connecting: None (the rule) costs
        # the primitives one test per operation.
        self.observer: Instruments | None = None

    @property
    def url(self) -> str:
        """Return the backend URL, password redacted."""
        return self.store.url

    @property
    def connected(self) -> bool:
        """Return whether the store was connected (it stays so until the coordinator closes)."""
        return self._connected

    def held_by(self, key: str, actor: object) -> tuple[Holding, AsyncLease] | None:
        """Return what ``actor`` (a task or thread) holds on ``key``, if anything."""
        return self._holders.get((key, actor))

    def held(self) -> list[tuple[Holding, AsyncLease]]:
        """Return every lease held through this coordinator."""
        return list(self._holders.copy().values())  # copy(): atomic while other threads add

    def add_holder(self, actor: object, holding: Holding, lease: AsyncLease) -> None:
        """Record that ``actor`` holds ``lease``."""
        self._holders[(holding.key, actor)] = (holding, lease)

    def drop_holder(self, key: str, actor: object, lease: AsyncLease) -> None:
        """Forget ``lease`` as ``actor``'s hold on ``key`` (not a successor that replaced it)."""
        entry = self._holders.get((key, actor))
        if entry is not None and entry[1] is lease:
            del self._holders[(key, actor)]

    async def ensure_connected(self) -> None:
        """Connect once, on first use; refuse a closed coordinator or another event loop."""
        if self.closed:  # before "connected": closing does not undo that flag
            raise ConfigurationError(
                f"the coordinator for {self.url} is closed; make a new one to go on (closing is final)"
            )
        self.check_loop()
        if self._connected:
            return
        async with self._connect_mutex:
            if not self._connected:
                await self.store.connect()
                self._observe()
                self._connected = True

    def _observe(self) -> None:
        observer = self.observer = self.renewer.observer = current_instruments()
        if observer is not None:
            observer.watch_context(self)

    def check_loop(self) -> None:
        """Bind to the event loop of the first use; refuse any other loop.

        The renewer task, the mutexes and the driver's connections belong to that loop: used from
        another one (a second ``asyncio.run``), leases would silently never be renewed.
        """
        loop = async_running_loop()
        if loop is self._loop:
            return
        if self._loop is None:
            self._loop = loop
            return
        raise ConfigurationError(
            f"the coordinator for {self.url} was first used in another event loop, to which its "
            "renewer and connections belong; make one coordinator per event loop (for example "
            "inside the coroutine that asyncio.run runs)"
        )
