"""A protected HTTP client on httpx: ``Client``, ``AsyncClient``, and ``Transport``/``AsyncTransport``.

The layers, outermost first: rate limit -> bulkhead -> breaker -> retry -> timeout -> pool.
``Transport`` plugs the same protections into an httpx client the user already has (or an
httpx2 one, the maintained fork). Needs httpx (or httpx2 aliased as httpx): ``pip install httpx``.
"""

from tenure._async.http import AsyncClient, AsyncTransport
from tenure._sync.http import Client, Transport
from tenure.http._policy import DEFAULT_LIMITS, IDEMPOTENT_METHODS, LeftOfDeadline

__all__ = [
    "DEFAULT_LIMITS",
    "IDEMPOTENT_METHODS",
    "AsyncClient",
    "AsyncTransport",
    "Client",
    "LeftOfDeadline",
    "Transport",
]
