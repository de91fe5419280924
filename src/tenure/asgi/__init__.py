"""ASGI middleware over tenure's primitives (pure ASGI 3: standard library and tenure only).

``IdempotencyMiddleware(app, keys=coord.idempotency("api"))`` answers the ``Idempotency-Key``
header: one run of the app per key, the same response to every repeat.
"""

from tenure.asgi.idempotency import IdempotencyMiddleware

__all__ = ["IdempotencyMiddleware"]
