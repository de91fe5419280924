# GENERATED from tests/_async/faults.py by scripts/unasync.py: do not edit; edit the source and re-run.
"""Faults the contract suites inject into a real backend."""

from __future__ import annotations

import time
import types
from collections.abc import Awaitable, Callable

import tenure
from tenure._sync.backends.base import LeaseStore
from tenure._exceptions import BackendUnavailable


def stall_renewals(coordinator: tenure.Coordinator, *, seconds: float) -> None:
    """Inject a backend outage that only renewals see, for ``seconds`` from now.

    The server itself is real; only this coordinator's renewals fail, as during a partition.
    """
    store = coordinator._store
    real_renew = store.renew
    until = time.monotonic() + seconds

    def failing_renew(key: str, owner: object, ttl: float) -> bool:
        if time.monotonic() < until:
            raise BackendUnavailable("injected partition")
        return real_renew(key, owner, ttl)  # type: ignore[arg-type]

    replace_renew(store, failing_renew)


def replace_renew(store: LeaseStore, renew: Callable[..., Awaitable[bool]]) -> None:
    """Make ``store`` renew through ``renew``, lease by lease, in the renewer's batches too."""
    store.renew = renew  # type: ignore[method-assign]
    store.renew_many = types.MethodType(LeaseStore.renew_many, store)  # type: ignore[method-assign]
