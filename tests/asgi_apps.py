"""The ASGI apps behind tests/test_asgi_idempotency.py, and a uvicorn server to serve them in.

Both apps (Starlette, FastAPI) serve the same routes and count their handlers' executions per
Idempotency-Key, so a test can tell a replay from a second run.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi import Request as FastAPIRequest
from fastapi import Response as FastAPIResponse
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

import tenure

BIG = 100_000  # bytes of the /big response


@dataclass
class Handlers:
    """What the app's handlers did, per Idempotency-Key (the server thread writes, the test reads)."""

    calls: collections.Counter[str] = field(default_factory=collections.Counter)
    numbers: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    slow_started: threading.Event = field(default_factory=threading.Event)
    slow_release: threading.Event = field(default_factory=threading.Event)
    background_done: threading.Event = field(default_factory=threading.Event)

    def execute(self, request: Request) -> int:
        """Count one execution for the request's key; return a number no other execution gets."""
        self.calls[request.headers.get("idempotency-key", "")] += 1
        return next(self.numbers)


class Order(BaseModel):
    item: str
    quantity: int = 1


def shared_routes(handlers: Handlers) -> list[Route]:
    """The routes both apps serve alike (plain Starlette endpoints)."""

    async def slow(request: Request) -> Response:
        handlers.execute(request)
        handlers.slow_started.set()
        while not handlers.slow_release.is_set():
            await asyncio.sleep(0.01)
        return JSONResponse({"slow": "done"})

    async def flaky(request: Request) -> Response:
        handlers.execute(request)
        if handlers.calls[request.headers["idempotency-key"]] == 1:
            return JSONResponse({"error": "try again"}, status_code=int(request.query_params["status"]))
        return JSONResponse({"flaky": "ok"}, status_code=201)

    async def boom(request: Request) -> Response:
        handlers.execute(request)
        if handlers.calls[request.headers["idempotency-key"]] == 1:
            raise RuntimeError("the handler failed (on purpose, in a test)")
        return JSONResponse({"boom": "not this time"})

    async def stream(request: Request) -> Response:
        number = handlers.execute(request)

        async def parts() -> AsyncIterator[bytes]:
            for part in range(5):
                await asyncio.sleep(0.01)
                yield f"part {part} of run {number}\n".encode()

        return StreamingResponse(parts(), media_type="text/plain")

    async def big(request: Request) -> Response:
        number = handlers.execute(request)
        return Response(str(number).encode().ljust(BIG, b"."), media_type="text/plain")

    async def later(request: Request) -> Response:
        handlers.execute(request)

        async def background() -> None:
            while not handlers.slow_release.is_set():
                await asyncio.sleep(0.01)
            handlers.background_done.set()

        return JSONResponse({"later": "queued"}, status_code=202, background=BackgroundTask(background))

    async def empty(request: Request) -> Response:
        handlers.execute(request)
        return Response(status_code=204, headers={"x-done": "yes"})

    return [
        Route("/slow", slow, methods=["POST"]),
        Route("/flaky", flaky, methods=["POST"]),
        Route("/boom", boom, methods=["POST"]),
        Route("/stream", stream, methods=["POST"]),
        Route("/big", big, methods=["POST"]),
        Route("/later", later, methods=["POST"]),
        Route("/empty", empty, methods=["POST"]),
    ]


def closing(coord: tenure.AsyncCoordinator) -> Callable[[Any], contextlib.AbstractAsyncContextManager[None]]:
    """Return an app's lifespan that closes ``coord`` when the app stops."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        yield
        await coord.aclose()

    return lifespan


def starlette_app(handlers: Handlers, coord: tenure.AsyncCoordinator) -> Starlette:
    async def orders(request: Request) -> Response:
        number = handlers.execute(request)
        if request.method == "GET":
            return JSONResponse({"orders": number})
        order = await request.json()
        response = JSONResponse(
            {"order": number, "item": order["item"]}, status_code=201 if request.method == "POST" else 200
        )
        response.headers["x-order"] = str(number)
        response.set_cookie("session", f"s{number}")
        return response

    routes = [Route("/orders", orders, methods=["GET", "POST", "PATCH"]), *shared_routes(handlers)]
    return Starlette(routes=routes, lifespan=closing(coord))


def fastapi_app(handlers: Handlers, coord: tenure.AsyncCoordinator) -> FastAPI:
    api = FastAPI(lifespan=closing(coord))

    @api.get("/orders")
    async def list_orders(request: FastAPIRequest) -> dict[str, int]:
        return {"orders": handlers.execute(request)}

    async def place_order(order: Order, request: FastAPIRequest, response: FastAPIResponse) -> dict[str, Any]:
        number = handlers.execute(request)
        response.headers["x-order"] = str(number)
        response.set_cookie("session", f"s{number}")
        return {"order": number, "item": order.item}

    api.post("/orders", status_code=201)(place_order)  # creates an order
    api.patch("/orders")(place_order)  # changes it: the same handler, answering 200

    for route in shared_routes(handlers):
        api.router.routes.append(route)
    return api


def client_identity(scope: dict[str, Any]) -> str | None:
    """The caller, as an auth layer in front would have set it: here a plain header."""
    for name, value in scope["headers"]:
        if name == b"x-client":
            return str(value.decode("latin-1"))
    return None


@contextlib.contextmanager
def serving(app: Any, name: str) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port, in a thread; stop it by its handle."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, name=f"uvicorn-{name}", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 15
        while not server.started:
            assert thread.is_alive(), "uvicorn stopped while starting"
            assert time.monotonic() < deadline, "uvicorn did not start within 15 s"
            time.sleep(0.01)
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        assert not thread.is_alive(), "uvicorn did not stop within 15 s"
