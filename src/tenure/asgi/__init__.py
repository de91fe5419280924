"""ASGI middleware over tenure's primitives (pure ASGI 3: standard library and tenure only).

``IdempotencyMiddleware(app, keys=coord.idempotency("api"))`` answers the ``Idempotency-Key``
header: one run of the app per key, the same response to every repeat.
``RateLimitMiddleware(app, limiter=coord.rate_limiter("api", rate="100/s"))`` answers 429 with
``Retry-After`` past a client's rate, and tells every client its quota in the IETF ``RateLimit``
header fields.
"""

from tenure.asgi.idempotency import IdempotencyMiddleware
from tenure.asgi.ratelimit import RateLimitMiddleware

__all__ = ["IdempotencyMiddleware", "RateLimitMiddleware"]
