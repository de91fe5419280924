"""The ASGI apps behind tests/test_asgi_ratelimit.py (uvicorn's runner is tests/asgi_apps.serving).

Both apps (Starlette, FastAPI) serve the same two routes and count the requests that reached
them, so a test can tell an admitted request from a refused one on the app's side too.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import tenure


@dataclass
class Reached:
    """What reached the app (the server thread writes, the test reads)."""

    requests: int = 0
    started: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self) -> int:
        with self._lock:
            self.requests += 1
            return self.requests


def routes(reached: Reached) -> list[Route]:
    """The routes both apps serve alike (plain Starlette endpoints)."""

    async def hello(request: Request) -> Response:
        number = reached.count()
        return JSONResponse({"hello": number}, headers={"x-app": "yes"})

    async def created(request: Request) -> Response:
        reached.count()
        return Response(status_code=201, headers={"x-app": "created"})

    return [Route("/hello", hello, methods=["GET"]), Route("/created", created, methods=["POST"])]


@contextlib.asynccontextmanager
async def _lifespan(reached: Reached, coord: tenure.AsyncCoordinator) -> AsyncIterator[None]:
    reached.started.set()  # the lifespan scope went through the middleware to the app
    yield
    await coord.aclose()


def starlette_app(reached: Reached, coord: tenure.AsyncCoordinator) -> Starlette:
    return Starlette(routes=routes(reached), lifespan=lambda app: _lifespan(reached, coord))


def fastapi_app(reached: Reached, coord: tenure.AsyncCoordinator) -> FastAPI:
    api = FastAPI(lifespan=lambda app: _lifespan(reached, coord))

    @api.get("/status")
    async def status() -> dict[str, str]:  # a FastAPI route of its own beside the shared ones
        return {"status": "ok"}

    for route in routes(reached):
        api.router.routes.append(route)
    return api


def client_header(scope: dict[str, Any]) -> str | None:
    """The bucket of a request: its ``x-client`` header (None, uncounted, for ``x-client: none``)."""
    for name, value in scope["headers"]:
        if name == b"x-client":
            text = value.decode("latin-1")
            return None if text == "none" else text
    return "anonymous"


async def header_cost(scope: dict[str, Any]) -> int:
    """The cost of a request: its ``x-cost`` header (default 1); async, as a lookup may be."""
    for name, value in scope["headers"]:
        if name == b"x-cost":
            return int(value)
    return 1
