"""Rare events reported wherever they happen: breaker state changes and retry decisions.

They have no coordinator to ask, so each looks up the instruments when it happens (a few
microseconds, on a path that already failed or changed state).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from tenure.observability._instruments import current

if TYPE_CHECKING:
    from tenure._core.breaker import BreakerState
    from tenure._core.retrying import RetryBudget

log = logging.getLogger("tenure")


def breaker_changed(name: str, old: BreakerState, new: BreakerState, *, backend: str | None = None) -> None:
    """Log a breaker's change of state (once, at WARNING) and count it.

    ``backend`` is the store's scheme for a shared breaker, None for an in-process one.
    """
    where = "in this process" if backend is None else f"shared on {backend}://"
    log.warning("tenure: circuit breaker %r (%s): %s -> %s", name, where, old.value, new.value)
    instruments = current()
    if instruments is None or not instruments.metered:
        return
    attributes: dict[str, Any] = {
        "tenure.breaker.state": new.value,
        "tenure.breaker.previous_state": old.value,
        "tenure.backend": backend or "process",
    }
    if instruments.names:
        attributes["tenure.name"] = name
    instruments.breaker_changes.add(1, attributes)


def retry_decided(decision: str, budget: RetryBudget | None) -> None:
    """Count one retry decision ("retry", or why not) and, with a budget, the retries it has left."""
    instruments = current()
    if instruments is None or not instruments.metered:
        return
    instruments.retry_decisions.add(1, {"tenure.retry.decision": decision})
    if budget is not None and instruments.budget_available is not None:
        instruments.budget_available.set(budget.available())
