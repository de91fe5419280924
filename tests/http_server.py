"""A real local HTTP server for tenure.http's tests and benchmark, whose behaviour a test switches.

The server is uvicorn in a subprocess (so its work does not share the GIL with the client being
timed), on a free loopback port. Every path but the control ones answers with the behaviour in
force: the next one of a *script* if any is queued, else the *default*. A behaviour is a dict:

    {"status": 200, "delay_ms": 0, "retry_after": None, "reset": False, "body": "ok"}

``reset`` sends the response head and part of the body, then drops the connection (the client
sees the peer close mid-response). Control paths (plain HTTP, so any process can drive them):

    POST /_control  {"default": {...}, "script": [{...}, ...]}   replace behaviours, zero the hits
    GET  /_stats    {"hits": requests received, "open": connections open at the server}

Run it by hand with ``python -m tests.http_server`` (prints ``port N`` once listening).
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx

HEALTHY: dict[str, Any] = {"status": 200, "delay_ms": 0, "retry_after": None, "reset": False, "body": "ok"}


def behaviour(**changes: Any) -> dict[str, Any]:
    """A behaviour: the healthy one with ``changes`` (status=, delay_ms=, retry_after=, reset=, body=)."""
    unknown = set(changes) - set(HEALTHY)
    if unknown:
        raise ValueError(f"unknown behaviour fields: {sorted(unknown)}")
    return {**HEALTHY, **changes}


def http_date(seconds_from_now: float) -> str:
    """A Retry-After value in its HTTP-date form."""
    return email.utils.formatdate(time.time() + seconds_from_now, usegmt=True)


# -- the server side (runs in the subprocess) ------------------------------------------------------


class SwitchableApp:
    """The ASGI app: answers with the behaviour in force and counts what it receives."""

    def __init__(self) -> None:
        self.default: dict[str, Any] = dict(HEALTHY)
        self.script: list[dict[str, Any]] = []
        self.hits = 0
        self.open_connections: Any = None  # set to uvicorn's connection set once it runs

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = await read_body(receive)
        if scope["path"] == "/_control":
            order = json.loads(body or b"{}")
            self.default = behaviour(**order.get("default", {}))
            self.script = [behaviour(**step) for step in order.get("script", [])]
            self.hits = 0
            await answer(send, 200, json.dumps({"ok": True}).encode())
        elif scope["path"] == "/_stats":
            opened = len(self.open_connections) if self.open_connections is not None else -1
            await answer(send, 200, json.dumps({"hits": self.hits, "open": opened}).encode())
        else:
            self.hits += 1
            await self.perform(self.script.pop(0) if self.script else self.default, send)

    async def perform(self, how: dict[str, Any], send: Any) -> None:
        import asyncio

        if how["delay_ms"]:
            await asyncio.sleep(how["delay_ms"] / 1000)
        payload = str(how["body"]).encode()
        headers = [] if how["retry_after"] is None else [(b"retry-after", str(how["retry_after"]).encode())]
        if how["reset"]:
            head = [(b"content-length", b"1000"), *headers]
            await send({"type": "http.response.start", "status": how["status"], "headers": head})
            await send({"type": "http.response.body", "body": b"partial", "more_body": True})
            raise ConnectionAbortedError("dropping the connection mid-response, as asked")
        await answer(send, how["status"], payload, headers)


async def read_body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


Headers = list[tuple[bytes, bytes]]


async def answer(send: Any, status: int, body: bytes, headers: Headers | None = None) -> None:
    head = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode()), *(headers or [])]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    import asyncio

    import uvicorn

    app = SwitchableApp()
    # log_level critical: a reset is an exception in the app by design; its traceback is noise.
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="critical", timeout_graceful_shutdown=1, lifespan="off"
    )
    server = uvicorn.Server(config)
    app.open_connections = server.server_state.connections

    async def announce() -> None:
        for _ in range(1500):  # up to 15 s
            if server.started:
                port = server.servers[0].sockets[0].getsockname()[1]
                print(f"port {port}", flush=True)
                return
            await asyncio.sleep(0.01)

    async def run() -> None:
        task = asyncio.create_task(announce())
        await server.serve()
        await task

    asyncio.run(run())


# -- the test side ---------------------------------------------------------------------------------


class HttpServer:
    """A handle on the server subprocess: its URL, and how to switch it and read its counts."""

    def __init__(self, process: subprocess.Popen[str], url: str) -> None:
        self.process = process
        self.url = url
        self._control = httpx.Client(base_url=url, timeout=10)

    @classmethod
    def start(cls) -> HttpServer:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.http_server"], cwd=root, stdout=subprocess.PIPE, text=True
        )
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 20)
        line = process.stdout.readline() if ready else ""
        if not line.startswith("port "):
            process.kill()
            process.wait(10)
            raise RuntimeError(f"the test HTTP server did not start within 20 s (said {line!r})")
        return cls(process, f"http://127.0.0.1:{int(line.split()[1])}")

    def set(self, default: dict[str, Any] | None = None, script: list[dict[str, Any]] | None = None) -> None:
        """Put ``default`` in force (healthy when None) after the ``script`` steps; zero the hits."""
        order = {"default": default or {}, "script": script or []}
        self._control.post("/_control", json=order).raise_for_status()

    def stats(self) -> dict[str, int]:
        reply = self._control.get("/_stats")
        reply.raise_for_status()
        return dict(reply.json())

    def hits(self) -> int:
        return self.stats()["hits"]

    def stop(self) -> None:
        self._control.close()
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        if self.process.stdout is not None:
            self.process.stdout.close()


@contextlib.contextmanager
def running_server() -> Iterator[HttpServer]:
    server = HttpServer.start()
    try:
        yield server
    finally:
        server.stop()


if __name__ == "__main__":
    main()
