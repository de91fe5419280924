"""Call protection in one process: retry, circuit breaker, bulkhead, fallback.

Each object serves a plain ``def`` and an ``async def`` alike (as a decorator, or through
``call`` / ``acall``), and the breaker and the bulkhead serve ``with`` and ``async with``::

    @tenure.fallback(None)
    @tenure.bulkhead(limit=10, timeout=0.1)
    @tenure.circuit_breaker("partner", failure_rate=0.5, min_calls=20, reset_after=30)
    @tenure.retry(attempts=3, timeout=5, on=(ConnectionError,), budget=tenure.RetryBudget())
    async def fetch(order_id): ...

Layered like this (outermost first: bulkhead, breaker, retry), a refused call costs nothing, the
breaker counts one verdict per logical call, and retries stop inside one deadline and budget.
``coord.circuit_breaker`` shares a breaker's state between processes; ``tenure.http`` wires the
layers into an httpx client. docs/resilience.md says what each default is and why.
"""

from tenure._core.breaker import BreakerState
from tenure._core.retrying import RetryBudget
from tenure.resilience._breaker import BreakerCall, CircuitBreaker, circuit_breaker
from tenure.resilience._bulkhead import Bulkhead, bulkhead
from tenure.resilience._fallback import Fallback, fallback
from tenure.resilience._retry import Retry, RetryAttempts, retry

__all__ = [
    "BreakerCall",
    "BreakerState",
    "Bulkhead",
    "CircuitBreaker",
    "Fallback",
    "Retry",
    "RetryAttempts",
    "RetryBudget",
    "bulkhead",
    "circuit_breaker",
    "fallback",
    "retry",
]
