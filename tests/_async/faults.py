"""Faults the contract suites inject into a real backend."""

from __future__ import annotations

import time
from collections.abc import Sequence

import tenure
from tenure._async.backends.base import AsyncLeaseStore, Renewal, RenewOutcome
from tenure._concurrency import AsyncReturning
from tenure._core.tokens import Owner
from tenure._exceptions import BackendUnavailable


async def stall_renewals(coordinator: tenure.AsyncCoordinator, *, seconds: float) -> None:
    """Inject a backend outage that only renewals see, for ``seconds`` from now.

    The server itself is real; only this coordinator's renewals fail, as during a partition.
    """
    until = time.monotonic() + seconds

    async def failing_renew(key: str, owner: Owner, ttl: float) -> bool:
        if time.monotonic() < until:
            raise BackendUnavailable("injected partition")
        return await real_renew(key, owner, ttl)

    real_renew = replace_renew(coordinator._store, failing_renew)


def replace_renew(store: AsyncLeaseStore, renew: AsyncReturning[bool]) -> AsyncReturning[bool]:
    """Make ``store`` renew through ``renew``, lease by lease, in the renewer's batches too.

    Return the store's own renewal of one lease, untouched by the replacement, for a ``renew``
    that passes some renewals on.
    """
    real_renew_many = store.renew_many

    async def real_renew(key: str, owner: Owner, ttl: float) -> bool:
        outcome = (await real_renew_many([Renewal(key, owner, ttl)]))[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def renew_many(renewals: Sequence[Renewal]) -> list[RenewOutcome]:
        outcomes: list[RenewOutcome] = []
        for renewal in renewals:
            try:
                outcomes.append(await renew(*renewal))
            except Exception as exc:  # this lease's outcome, as a batch reports it
                outcomes.append(exc)
        return outcomes

    store.renew = renew  # type: ignore[method-assign,assignment,unused-ignore]
    store.renew_many = renew_many  # type: ignore[method-assign]
    return real_renew
