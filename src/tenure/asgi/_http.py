"""Plain ASGI 3 plumbing for the middleware: read a request body, buffer a response, record it.

Nothing here knows about tenure's stores: a response is taken whole from the app, turned into a
JSON-able record (what the idempotency space's serializer stores) and sent back from it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from tenure._exceptions import IdempotencyError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

RECORD_VERSION = 1

LENGTH_HEADERS = frozenset({b"content-length", b"transfer-encoding"})
"""Recomputed for the buffered body on every response, first or replayed."""

NEVER_RECORDED = LENGTH_HEADERS | {
    # Hop-by-hop (RFC 9110 7.6.1): they describe one connection, not the response.
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"te",
    b"trailer",
    b"upgrade",
    # The server stamps its own on every response; a replayed one would be stale (or doubled).
    b"date",
}
"""Headers of the app's response that are never recorded (the first response keeps all but
the length ones)."""

NO_BODY_STATUSES = frozenset({204, 304})


@dataclasses.dataclass(frozen=True, slots=True)
class Response:
    """A whole HTTP response: status, headers (lower-case names, as ASGI has them) and body."""

    status: int
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes

    def to_record(self, unrecorded: frozenset[bytes]) -> dict[str, Any]:
        """Return this response as plain JSON values, without the headers that are not replayed."""
        kept = [
            [name.decode("latin-1"), value.decode("latin-1")]
            for name, value in self.headers
            if name not in unrecorded
        ]
        body = base64.b64encode(self.body).decode("ascii")
        return {"v": RECORD_VERSION, "status": self.status, "headers": kept, "body": body}

    @classmethod
    def from_record(cls, record: object) -> Response:
        """Return the response a record holds; raise ``IdempotencyError`` if it is not one."""
        try:
            if isinstance(record, dict) and record.get("v") == RECORD_VERSION:
                status, headers, body = record["status"], record["headers"], record["body"]
                if type(status) is int and isinstance(headers, list) and isinstance(body, str):
                    pairs = tuple((n.encode("latin-1"), v.encode("latin-1")) for n, v in headers)
                    return cls(status, pairs, base64.b64decode(body, validate=True))
        except (KeyError, TypeError, ValueError, AttributeError, binascii.Error):
            pass  # the same answer as any other shape that is not ours
        raise IdempotencyError(
            "the idempotency record is not a response this middleware recorded (is the space "
            "shared with other code?)"
        )

    async def send_to(self, send: Send, *, extra: Iterable[tuple[bytes, bytes]] = ()) -> None:
        """Send this response with its framing recomputed: one start message, one body message."""
        headers = [(name, value) for name, value in self.headers if name not in LENGTH_HEADERS]
        headers.extend(extra)
        body = self.body
        if self.status in NO_BODY_STATUSES or self.status < 200:
            body = b""  # such responses have no content, and no Content-Length to announce
        else:
            headers.append((b"content-length", str(len(body)).encode("ascii")))
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})


def error_response(status: int, code: str, message: str, *, retry_after: int | None = None) -> Response:
    """Return a JSON error: ``{"error": code, "message": message}``."""
    body = json.dumps({"error": code, "message": message}).encode("utf-8")
    headers = [(b"content-type", b"application/json")]
    if retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode("ascii")))
    return Response(status, tuple(headers), body)


class ResponseBuffer:
    """The ``send`` given to the app: it keeps the response instead of sending it.

    ``response`` is set, and ``finished`` set, once the app has sent its last body message
    (``more_body`` false); the app may still be running then (background tasks).
    """

    def __init__(self) -> None:
        self.finished = asyncio.Event()
        self._status: int | None = None
        self._headers: tuple[tuple[bytes, bytes], ...] = ()
        self._chunks: list[bytes] = []
        self.response: Response | None = None

    async def __call__(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            if self._status is not None:
                raise RuntimeError("the ASGI app sent http.response.start twice")
            self._status = int(message["status"])
            self._headers = tuple((bytes(name).lower(), bytes(value)) for name, value in message["headers"])
        elif kind == "http.response.body":
            if self._status is None:
                raise RuntimeError("the ASGI app sent a response body before http.response.start")
            if self.response is not None:
                raise RuntimeError("the ASGI app sent a response body after its last one")
            self._chunks.append(bytes(message.get("body", b"")))
            if not message.get("more_body", False):
                self.response = Response(self._status, self._headers, b"".join(self._chunks))
                self._chunks = []
                self.finished.set()
        else:
            # The response-side extensions (trailers, pathsend, ...) are hidden from the app.
            raise RuntimeError(f"the ASGI app sent {kind!r}, which an idempotent response cannot record")


async def read_body(receive: Receive) -> bytes | None:
    """Return the whole request body (every ``more_body`` part), or None if the client left."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(bytes(message.get("body", b"")))
        if not message.get("more_body", False):
            return b"".join(chunks)


def replaying(body: bytes, receive: Receive) -> Receive:
    """Return a ``receive`` that gives the app ``body`` whole, then what the client sends next."""
    pending = True

    async def receive_again() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # waits for http.disconnect, as the server's own would

    return receive_again


def header_values(scope: Scope, name: bytes) -> list[bytes]:
    """Return every value of the request header ``name`` (lower case)."""
    return [value for key, value in scope.get("headers", ()) if bytes(key).lower() == name]
