"""``IdempotencyMiddleware``: the ``Idempotency-Key`` request header, over tenure's idempotency keys.

A pure ASGI 3 middleware (standard library and tenure only). For POST and PATCH requests that
carry ``Idempotency-Key``, the app runs once per key and its response is recorded; a repeat of the
request gets the recorded response back with ``Idempotent-Replayed: true``. See
``docs/idempotency.md`` for what is scoped, recorded and answered.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from tenure._async.idempotency import AsyncIdempotency
from tenure._core.durations import check_timeout
from tenure._core.idempotency import check_key
from tenure._exceptions import BackendUnavailable, ConfigurationError, InProgress, PayloadMismatch
from tenure.asgi._http import (
    NEVER_RECORDED,
    ASGIApp,
    Receive,
    Response,
    ResponseBuffer,
    Scope,
    Send,
    error_response,
    header_values,
    read_body,
    replaying,
)

log = logging.getLogger("tenure")

KEY_HEADER = b"idempotency-key"
REPLAYED_HEADER = (b"idempotent-replayed", b"true")
DEFAULT_METHODS = frozenset({"POST", "PATCH"})
DEFAULT_UNRECORDED = frozenset({"set-cookie"})
"""A cookie is usually a credential: it is not kept at rest in the shared store, nor handed to
whoever presents the key later. The first response still carries it."""
RETRY_LATER = frozenset({408, 425, 429})
"""Statuses that ask the client to retry (timeout, too early, rate limited): never recorded."""
RETRY_AFTER = 1  # seconds: a run in progress usually ends within a request's time

Identity = Callable[[Scope], "str | Awaitable[str | None] | None"]


class _Unset:
    pass


_UNSET = _Unset()


class _NotRecorded(Exception):  # not an error to the caller: a response to pass on
    """Raised inside the run to free the key; carries the app's response to send all the same."""

    def __init__(self, response: Response | None) -> None:
        super().__init__("the app's response is not recorded")
        self.response = response


class IdempotencyMiddleware:
    """Run POST and PATCH requests that carry ``Idempotency-Key`` once per key; replay the rest.

    ``keys`` is an ``AsyncIdempotency`` (``coord.idempotency(name, ...)`` of an
    ``AsyncCoordinator``): its ``ttl`` is how long a response is replayed, its ``lease`` how long
    a crashed run blocks its key, its ``timeout`` how long a duplicate waits for the first run's
    response before it gets 409 (``timeout=`` here overrides it; 0 answers 409 at once).

    A key is scoped by the request's method and path and by ``identity(scope)`` (a str such as
    the authenticated user or client certificate, or None), so two callers' keys never meet. The
    fingerprint of a request is its body, its ``Content-Type`` and its query string: the same key
    with another one answers 422. The app's response is buffered whole (streaming ones too) and
    sent once recorded (the app may go on with background tasks meanwhile); a 5xx response, or
    a 408, 425 or 429 (retry later), frees the key instead (a retry runs the app again) and is
    passed on unrecorded.
    ``unrecorded_headers`` of the app's response are sent the first time only (default:
    ``Set-Cookie``); ``Date``, ``Content-Length`` and hop-by-hop headers are never recorded, and
    every response gets a ``Content-Length`` of its buffered body.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        keys: AsyncIdempotency,
        identity: Identity | None = None,
        timeout: float | _Unset | None = _UNSET,
        methods: Iterable[str] = DEFAULT_METHODS,
        unrecorded_headers: Iterable[str] = DEFAULT_UNRECORDED,
    ) -> None:
        if not isinstance(keys, AsyncIdempotency):
            raise ConfigurationError(
                f"keys must be an AsyncIdempotency (AsyncCoordinator.idempotency(...)), got {keys!r}"
            )
        if issubclass(_NotRecorded, keys.store_errors):
            raise ConfigurationError(
                f"the store_errors of {keys!r} cover Exception: failed responses would be recorded; "
                "give the middleware a space that records only results"
            )
        if identity is not None and not callable(identity):
            raise ConfigurationError(f"identity must be a function of the ASGI scope, got {identity!r}")
        if isinstance(methods, str) or not all(isinstance(method, str) for method in methods):
            raise ConfigurationError(f"methods must be HTTP method names, got {methods!r}")
        if isinstance(unrecorded_headers, str) or not all(
            isinstance(name, str) for name in unrecorded_headers
        ):
            raise ConfigurationError(f"unrecorded_headers must be header names, got {unrecorded_headers!r}")
        self.app = app
        self.keys = keys
        self.identity = identity
        self.timeout = timeout if isinstance(timeout, _Unset) else check_timeout(timeout)
        self.methods = frozenset(method.upper() for method in methods)
        self.unrecorded = NEVER_RECORDED | {name.lower().encode("latin-1") for name in unrecorded_headers}

    @staticmethod
    def key_for(method: str, path: str, key: str, identity: str | None = None) -> str:
        """Return the key under which a request's ``Idempotency-Key`` lives in ``keys``.

        For ``keys.state(...)`` when looking into one: a digest of the scope and the key, so that
        no (method, path, identity, key) meets another and any length fits the store.
        """
        scoped = json.dumps([method.upper(), path, identity, key], ensure_ascii=False)
        return "asgi:" + hashlib.sha256(scoped.encode("utf-8", "surrogatepass")).hexdigest()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"].upper() not in self.methods:
            await self.app(scope, receive, send)
            return
        sent = header_values(scope, KEY_HEADER)
        if not sent:
            await self.app(scope, receive, send)
            return
        if len(sent) > 1:
            await _invalid_key("send one Idempotency-Key header, not several").send_to(send)
            return
        try:
            key = check_key(sent[0].decode("latin-1"))
        except ConfigurationError as exc:
            await _invalid_key(f"the Idempotency-Key header is not usable: {exc}").send_to(send)
            return
        body = await read_body(receive)
        if body is None:
            return  # the client left before its request was whole: nothing to run or answer
        who = await self._identity_of(scope)
        store_key = self.key_for(scope["method"], scope["path"], key, who)
        await self._run_once(scope, replaying(body, receive), send, store_key, _payload(scope, body))

    async def _identity_of(self, scope: Scope) -> str | None:
        if self.identity is None:
            return None
        who = self.identity(scope)
        if inspect.isawaitable(who):
            who = await who
        if who is not None and not isinstance(who, str):
            raise ConfigurationError(f"identity(scope) must return a str or None, got {who!r}")
        return who

    async def _run_once(self, scope: Scope, receive: Receive, send: Send, key: str, payload: bytes) -> None:
        buffer = ResponseBuffer()
        scope = _without_response_extensions(scope)
        app_run: asyncio.Future[None] | None = None

        async def first_run() -> dict[str, Any]:
            nonlocal app_run
            # The app runs in a task of its own, so that its response can be recorded and sent
            # as soon as it is whole, while the app goes on (background tasks) as it would.
            app_run = asyncio.ensure_future(self.app(scope, receive, buffer))
            response = await _whole_response(app_run, buffer)
            if response is None or response.status >= 500 or response.status in RETRY_LATER:
                raise _NotRecorded(response)  # frees the key: a retry runs the app again
            return response.to_record(self.unrecorded)

        options: dict[str, Any] = {} if isinstance(self.timeout, _Unset) else {"timeout": self.timeout}
        answer: Response | None
        extra: list[tuple[bytes, bytes]] = []
        try:
            recorded = await self.keys.run(key, first_run, payload=payload, **options)
        except _NotRecorded as failed:
            # A 5xx is passed on; without a whole response the server answers as it would.
            answer = failed.response
        except InProgress:
            answer = error_response(
                409,
                "idempotency_key_in_progress",
                "a request with this Idempotency-Key is still being processed; retry later",
                retry_after=RETRY_AFTER,
            )
        except PayloadMismatch:
            answer = error_response(
                422,
                "idempotency_key_reused",
                "this Idempotency-Key was used with another request (body, content type or query "
                "string); use a new key for a new request",
            )
        except Exception as exc:
            if buffer.response is None:
                if app_run is not None or not isinstance(exc, BackendUnavailable):
                    raise  # the app failed (its key is free again), or something unforeseen
                answer = error_response(
                    503,
                    "idempotency_store_unavailable",
                    "the idempotency store cannot be reached; nothing was run, retry with the same key",
                    retry_after=RETRY_AFTER,
                )
            else:
                # The app did its work but its response could not be recorded (too large, the
                # run's lease lost, the store gone): the client gets it, and a retry runs again.
                log.warning(
                    "tenure: a response to %s %s (key %s) was not recorded: %s",
                    scope["method"],
                    scope["path"],
                    key,
                    exc,
                )
                answer = buffer.response
        else:
            if buffer.response is not None:  # this request ran the app
                answer = buffer.response
            else:
                answer = Response.from_record(recorded)
                extra.append(REPLAYED_HEADER)
        if answer is not None:
            await answer.send_to(send, extra=extra)
        if app_run is not None:
            await app_run  # the app's background work, and any error it ends with


async def _whole_response(app_run: asyncio.Future[None], buffer: ResponseBuffer) -> Response | None:
    """Wait until the app has sent its whole response (returned then) or has ended without one.

    Raises what the app raised before its response was whole.
    """
    finished = asyncio.ensure_future(buffer.finished.wait())
    either: set[asyncio.Future[Any]] = {app_run, finished}
    try:
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        app_run.cancel()  # the run was cancelled: so is the app, as it would be without us
        raise
    finally:
        finished.cancel()
    if buffer.response is None:
        app_run.result()
    return buffer.response


def _payload(scope: Scope, body: bytes) -> bytes:
    """Return what makes two requests under one key the same: content type, query string, body."""
    content_type = b",".join(header_values(scope, b"content-type"))
    query = bytes(scope.get("query_string", b""))
    # Lengths first, so that no two different triples make the same bytes.
    return b"%d:%d:" % (len(content_type), len(query)) + content_type + query + body


def _without_response_extensions(scope: Scope) -> Scope:
    """Return ``scope`` without the response extensions (trailers, pathsend, ...) a buffer cannot keep."""
    extensions = scope.get("extensions")
    if not extensions:
        return scope
    kept = {name: value for name, value in extensions.items() if not name.startswith("http.response.")}
    return {**scope, "extensions": kept}


def _invalid_key(message: str) -> Response:
    return error_response(400, "idempotency_key_invalid", message)
