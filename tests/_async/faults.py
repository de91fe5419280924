"""Faults the contract suites inject into a real backend."""

from __future__ import annotations

import time

import tenure
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

    store.renew = failing_renew  # type: ignore[method-assign,assignment]
