"""``RateLimitMiddleware``: a rate limit per client in front of an ASGI app, over tenure's limiter.

A pure ASGI 3 middleware (standard library and tenure only). Each HTTP request takes ``cost``
permits of its key's bucket (by default the client's address): a request the limiter refuses
gets 429 with ``Retry-After``; every answer carries the ``RateLimit-Policy`` and ``RateLimit``
header fields of draft-ietf-httpapi-ratelimit-headers-11 (May 2026; sections 3 and 4):

    RateLimit-Policy: "default";q=100;w=1          the quota: q permits every w seconds
    RateLimit: "default";r=17;t=1                  r permits left now, t seconds until all are back

Both are Structured Field Lists (RFC 8941) of String items with Integer parameters; ``w`` and
``t`` are whole seconds ("delay-seconds"), so they are rounded up, as ``Retry-After`` is.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

from tenure._async.ratelimit import AsyncRateLimiter
from tenure._core.ratelimit import Rate, RateState, check_cost
from tenure._exceptions import ConfigurationError
from tenure.asgi._http import ASGIApp, Message, Receive, Scope, Send, error_response

log = logging.getLogger("tenure")

POLICY = "default"
"""The name of the limiter's first rate in the headers; its second is "default-2", and so on.

``RateLimit`` tells the rates as one (the fewest permits left, the longest wait) under this name."""

FLOAT_NOISE = 1e-6
"""Seconds below which a difference of two store times is rounding, not time (they are ~1e9)."""

Key = Callable[[Scope], "str | Awaitable[str | None] | None"]
Cost = Callable[[Scope], "int | Awaitable[int]"]


def client_address(scope: Scope) -> str:
    """Return the client's address (host, without the port): the default key.

    A server without one (a Unix socket) gives one bucket to every such request: "unknown".
    Behind a proxy this is the proxy's address: run the server with its forwarded-headers
    option (uvicorn's ``--proxy-headers``) or pass ``key=`` yourself.
    """
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


class RateLimitMiddleware:
    """Admit each HTTP request only if its key's bucket of ``limiter`` has ``cost`` permits.

    ``limiter`` is an ``AsyncRateLimiter`` (``coord.rate_limiter(name, rate=, burst=)`` of an
    ``AsyncCoordinator``): one decision per request, one round trip, by the store's clock.
    ``key(scope)`` names the request's bucket (str, or an awaitable of one; default: the
    client's address); a key of None lets the request through uncounted (health checks, say).
    ``cost`` is an int or a function of the scope that returns one (or an awaitable of one).

    A refused request gets 429 with ``Retry-After`` (whole seconds, rounded up) and a short
    JSON body, and the app is not called. Admitted ones reach the app, and its response gets
    ``RateLimit-Policy`` and ``RateLimit``; refused ones carry them too. With ``shadow=True``
    nothing is refused: the permits are counted as they would be, a request that would have
    been refused is logged (warning, logger "tenure") and passed on with its headers
    (``r=0``), so operators can see what a limit would do before they enforce it.

    When the store does not answer within the limiter's ``deadline``, its ``on_unavailable``
    decides: "allow" passes the request on (without RateLimit headers: nothing is known),
    "deny" answers 503 with ``Retry-After`` (in shadow mode, passed on as well). Requests
    other than HTTP (websocket, lifespan) pass through untouched.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        limiter: AsyncRateLimiter,
        key: Key = client_address,
        cost: int | Cost = 1,
        shadow: bool = False,
    ) -> None:
        if not isinstance(limiter, AsyncRateLimiter):
            raise ConfigurationError(
                "limiter must be an AsyncRateLimiter (AsyncCoordinator.rate_limiter(...)): an ASGI app "
                f"runs on an event loop, where a blocking limiter would stall every request; got {limiter!r}"
            )
        if not callable(key):
            raise ConfigurationError(f"key must be a function of the ASGI scope, got {key!r}")
        if not callable(cost):
            check_cost(cost, limiter.rates)
        if not isinstance(shadow, bool):
            raise ConfigurationError(f"shadow must be True or False, got {shadow!r}")
        self.app = app
        self.limiter = limiter
        self.key = key
        self.cost = cost
        self.shadow = shadow
        self.policy = (b"ratelimit-policy", policy_field(limiter.rates).encode("ascii"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        key = await _resolve(self.key(scope))
        if key is None:
            await self.app(scope, receive, send)
            return
        if not isinstance(key, str):
            raise ConfigurationError(f"key(scope) must return a str or None, got {key!r}")
        cost = self.cost if isinstance(self.cost, int) else await _resolve(self.cost(scope))
        state = await self.limiter.decide(key=key, cost=cost)
        if state.unavailable:
            if state.allowed or self.shadow:
                await self.app(scope, receive, send)
            else:
                await error_response(
                    503,
                    "rate_limit_unavailable",
                    "the rate limiter's store cannot be reached; retry later",
                    retry_after=retry_after_seconds(state),
                ).send_to(send)
            return
        headers = [self.policy, (b"ratelimit", limit_field(state).encode("ascii"))]
        if state.allowed:
            await self.app(scope, receive, _adding(headers, send))
            return
        if self.shadow:
            log.warning(
                "tenure: rate limiter %r (shadow): %s %s of key %r would be refused (retry after %.3f s)",
                self.limiter.name,
                scope.get("method"),
                scope.get("path"),
                key,
                state.retry_after,
            )
            await self.app(scope, receive, _adding(headers, send))
            return
        await error_response(
            429,
            "rate_limited",
            f"too many requests; retry after {retry_after_seconds(state)} s",
            retry_after=retry_after_seconds(state),
        ).send_to(send, extra=headers)


def retry_after_seconds(state: RateState) -> int:
    """Return ``Retry-After`` for a refusal: whole seconds, rounded up, at least 1."""
    return max(1, whole_seconds(state.retry_after))


def whole_seconds(seconds: float) -> int:
    """Return ``seconds`` rounded up, but not for the float noise of a clock near 1.7e9 s."""
    return max(0, math.ceil(seconds - FLOAT_NOISE))


def policy_field(rates: tuple[Rate, ...]) -> str:
    """Return the ``RateLimit-Policy`` field value of ``rates``: one quota policy item per rate.

    A rate whose period is not a whole number of seconds is told over the next whole number
    (``w`` has no fractions), its quota scaled down to fit: "3/1.5s" is ``q=4;w=2``.
    """
    items = []
    for index, rate in enumerate(rates):
        window = max(1, whole_seconds(rate.period))
        quota = rate.permits if window == rate.period else math.floor(rate.permits * window / rate.period)
        items.append(f"{_policy_name(index)};q={quota};w={window}")
    return ", ".join(items)


def limit_field(state: RateState) -> str:
    """Return the ``RateLimit`` field value of a decision (the limiter's rates as one).

    ``r`` is how many permits could be taken at once now, ``t`` the seconds until the bucket
    is full again; on a refusal ``t`` is ``Retry-After`` instead, which the draft wants no
    earlier than the end of the effective window (section 6), and within which nothing more
    can be had.
    """
    seconds = retry_after_seconds(state) if not state.allowed else whole_seconds(state.reset_after)
    return f"{_policy_name(0)};r={state.remaining};t={seconds}"


def _policy_name(index: int) -> str:
    name = POLICY if index == 0 else f"{POLICY}-{index + 1}"
    return f'"{name}"'  # an sf-string: plain ASCII letters, digits and '-' need no escapes


async def _resolve(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


def _adding(headers: list[tuple[bytes, bytes]], send: Send) -> Send:
    """Return a ``send`` that adds ``headers`` to the app's response start."""

    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), *headers]}
        await send(message)

    return send_with_headers
