"""Faults the contract suites inject into a real backend."""

from __future__ import annotations

import time
import types
from collections.abc import Awaitable, Callable

import tenure
from tenure._async.backends.base import AsyncLeaseStore
from tenure._exceptions import BackendUnavailable


async def stall_renewals(coordinator: tenure.AsyncCoordinator, *, seconds: float) -> None:
    """Inject a backend outage that only renewals see, for ``seconds`` from now.

    The server itself is real; only this coordinator's renewals fail, as during a partition.
    """
    store = coordinator._store
    real_renew = store.renew
    until = time.monotonic() + seconds

    async def failing_renew(key: str, owner: object, ttl: float) -> bool:
        if time.monotonic() < until:
            raise BackendUnavailable("injected partition")
        return await real_renew(key, owner, ttl)  # type: ignore[arg-type]

    replace_renew(store, failing_renew)


def replace_renew(store: AsyncLeaseStore, renew: Callable[..., Awaitable[bool]]) -> None:
    """Make ``store`` renew through ``renew``, lease by lease, in the renewer's batches too."""
    store.renew = renew  # type: ignore[method-assign]
    store.renew_many = types.MethodType(AsyncLeaseStore.renew_many, store)  # type: ignore[method-assign]
