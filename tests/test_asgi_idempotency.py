"""tenure.asgi.IdempotencyMiddleware behind a real uvicorn server, driven by a real httpx client.

The apps (tests/asgi_apps.py: one Starlette, one FastAPI) count their handlers' executions per
Idempotency-Key, so a test can tell a replay from a second run. The server runs in a thread of
its own, with its own event loop; its coordinator connects there on the first request and closes
in the app's lifespan.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

import tenure
from tenure.asgi import IdempotencyMiddleware
from tests.asgi_apps import BIG, Handlers, client_identity, fastapi_app, serving, starlette_app
from tests.conftest import declared_capabilities

BACKENDS = [name for name in ("sqlite", "redis") if tenure.Capability.RECORDS in declared_capabilities(name)]
FRAMEWORKS = ["starlette", "fastapi"]
MAX_SIZE = 64 * 1024  # bytes of record the space keeps: less than a BIG response


@dataclass
class Served:
    url: str
    handlers: Handlers


@pytest.fixture(
    params=[(framework, backend) for backend in BACKENDS for framework in FRAMEWORKS],
    ids=lambda pair: "-".join(pair),
)
def served(request: pytest.FixtureRequest) -> Iterator[Served]:
    """A uvicorn server on a free loopback port, in a thread, stopped by its handle at the end.

    Three middlewares over one app, chosen per request by the ``x-wait`` header: the default
    waits for a run in progress (5 s), ``option`` waits 0.2 s (the middleware's ``timeout=``),
    ``space`` not at all (its keys' own ``timeout=0``).
    """
    framework, backend = request.param
    coord = tenure.AsyncCoordinator(request.getfixturevalue(f"{backend}_url"))
    handlers = Handlers()
    app = (starlette_app if framework == "starlette" else fastapi_app)(handlers, coord)
    keys = coord.idempotency("api", ttl=60, lease=5, timeout=5, max_size=MAX_SIZE)
    patient = IdempotencyMiddleware(app, keys=keys, identity=client_identity)
    by_wait = {
        "option": IdempotencyMiddleware(app, keys=keys, identity=client_identity, timeout=0.2),
        "space": IdempotencyMiddleware(
            app, keys=coord.idempotency("api", ttl=60, lease=5, timeout=0), identity=client_identity
        ),
    }

    async def dispatch(scope: Any, receive: Any, send: Any) -> None:
        wait = dict(scope.get("headers", ())).get(b"x-wait", b"").decode()
        await by_wait.get(wait, patient)(scope, receive, send)

    try:
        with serving(dispatch, f"{framework}-{backend}") as url:
            yield Served(url, handlers)
    finally:
        handlers.slow_release.set()  # before the server waits for its requests to end


@pytest.fixture
async def client(served: Served) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=served.url, timeout=20) as client:
        yield client


def new_key() -> str:
    return f"key-{uuid.uuid4()}"


def same_response(first: httpx.Response, other: httpx.Response) -> bool:
    """Equal status, body and headers, except what every response has of its own."""
    own = {"date", "idempotent-replayed", "set-cookie"}

    def kept(response: httpx.Response) -> list[tuple[str, str]]:
        return sorted((name, value) for name, value in response.headers.multi_items() if name not in own)

    return (first.status_code, first.content, kept(first)) == (other.status_code, other.content, kept(other))


async def test_concurrent_duplicates_run_the_handler_once(served: Served, client: httpx.AsyncClient) -> None:
    key = new_key()
    responses = await asyncio.gather(
        *(
            client.post("/orders", json={"item": "book", "quantity": 2}, headers={"Idempotency-Key": key})
            for _ in range(20)
        )
    )
    assert served.handlers.calls[key] == 1
    assert {response.status_code for response in responses} == {201}
    first = [response for response in responses if "idempotent-replayed" not in response.headers]
    assert len(first) == 1, "exactly one request ran the handler; the others were replayed"
    assert all(
        response.headers.get("idempotent-replayed") == "true"
        for response in responses
        if response is not first[0]
    )
    assert all(same_response(first[0], response) for response in responses)
    assert first[0].json()["item"] == "book"
    assert int(first[0].headers["content-length"]) == len(first[0].content)
    # Set-Cookie is sent with the first response only: the store keeps no credentials.
    assert "session=" in first[0].headers["set-cookie"]
    assert all("set-cookie" not in response.headers for response in responses if response is not first[0])


async def test_a_repeat_is_replayed_with_the_header(served: Served, client: httpx.AsyncClient) -> None:
    key = new_key()
    first = await client.post("/orders", json={"item": "pen"}, headers={"Idempotency-Key": key})
    again = await client.post("/orders", json={"item": "pen"}, headers={"Idempotency-Key": key})
    assert (first.status_code, again.status_code) == (201, 201)
    assert "idempotent-replayed" not in first.headers
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json() and again.headers["x-order"] == first.headers["x-order"]
    assert len(again.headers.get_list("date")) == 1, "the server's own Date, not the recorded one too"
    assert served.handlers.calls[key] == 1
    other = await client.post("/orders", json={"item": "pen"}, headers={"Idempotency-Key": new_key()})
    assert other.json()["order"] != first.json()["order"], "another key is another request"


@pytest.mark.parametrize("wait", ["option", "space"])
async def test_a_duplicate_while_the_first_runs_gets_409(
    served: Served, client: httpx.AsyncClient, wait: str
) -> None:
    key = new_key()
    headers = {"Idempotency-Key": key, "x-wait": wait}
    first = asyncio.create_task(client.post("/slow", content=b"{}", headers=headers))
    assert await asyncio.to_thread(served.handlers.slow_started.wait, 10)
    duplicate = await client.post("/slow", content=b"{}", headers=headers)
    assert duplicate.status_code == 409
    assert duplicate.headers["retry-after"] == "1"
    assert duplicate.headers["content-type"] == "application/json"
    assert duplicate.json()["error"] == "idempotency_key_in_progress"
    assert "still being processed" in duplicate.json()["message"]
    served.handlers.slow_release.set()
    assert (await first).status_code == 200
    later = await client.post("/slow", content=b"{}", headers=headers)
    assert later.status_code == 200 and later.headers["idempotent-replayed"] == "true"
    assert served.handlers.calls[key] == 1


async def test_a_duplicate_waits_for_the_first_runs_response(
    served: Served, client: httpx.AsyncClient
) -> None:
    key = new_key()
    first = asyncio.create_task(client.post("/slow", content=b"{}", headers={"Idempotency-Key": key}))
    assert await asyncio.to_thread(served.handlers.slow_started.wait, 10)
    duplicate = asyncio.create_task(client.post("/slow", content=b"{}", headers={"Idempotency-Key": key}))
    await asyncio.sleep(0.3)
    assert not duplicate.done(), "the duplicate waits while the first run is in progress"
    served.handlers.slow_release.set()
    assert (await first).status_code == (await duplicate).status_code == 200
    assert (await duplicate).headers["idempotent-replayed"] == "true"
    assert served.handlers.calls[key] == 1


async def test_the_same_key_with_another_request_gets_422(served: Served, client: httpx.AsyncClient) -> None:
    key = new_key()
    body, json_type = b'{"item":"cup"}', {"Idempotency-Key": key, "content-type": "application/json"}
    assert (await client.post("/orders", content=body, headers=json_type)).status_code == 201
    others = [
        await client.post("/orders", content=b'{"item":"mug"}', headers=json_type),
        await client.post("/orders", content=body, headers={**json_type, "content-type": "text/plain"}),
        await client.post("/orders?express=1", content=body, headers=json_type),
    ]
    for other in others:
        assert other.status_code == 422
        assert other.headers["content-type"] == "application/json"
        assert other.json()["error"] == "idempotency_key_reused"
    assert served.handlers.calls[key] == 1
    same = await client.post("/orders", content=body, headers=json_type)
    assert same.status_code == 201 and same.headers["idempotent-replayed"] == "true"


@pytest.mark.parametrize("key", ["", "k" * 256, "tab\there"], ids=["empty", "256-chars", "control-char"])
async def test_a_malformed_key_gets_400(served: Served, client: httpx.AsyncClient, key: str) -> None:
    response = await client.post("/orders", json={"item": "hat"}, headers={"Idempotency-Key": key})
    assert response.status_code == 400
    assert response.json()["error"] == "idempotency_key_invalid"
    assert "Idempotency-Key" in response.json()["message"]
    assert sum(served.handlers.calls.values()) == 0, "nothing ran"


async def test_a_key_of_255_characters_is_used(served: Served, client: httpx.AsyncClient) -> None:
    key = "k" * 255
    for _ in range(2):
        response = await client.post("/orders", json={"item": "hat"}, headers={"Idempotency-Key": key})
        assert response.status_code == 201
    assert response.headers["idempotent-replayed"] == "true"
    assert served.handlers.calls[key] == 1


async def test_two_key_headers_get_400(served: Served, client: httpx.AsyncClient) -> None:
    headers = [("Idempotency-Key", new_key()), ("Idempotency-Key", new_key())]
    response = await client.post("/orders", json={"item": "hat"}, headers=headers)
    assert response.status_code == 400 and "one Idempotency-Key" in response.json()["message"]
    assert sum(served.handlers.calls.values()) == 0


async def test_get_and_requests_without_a_key_pass_through(served: Served, client: httpx.AsyncClient) -> None:
    key = new_key()
    for _ in range(2):
        response = await client.get("/orders", headers={"Idempotency-Key": key})
        assert response.status_code == 200 and "idempotent-replayed" not in response.headers
    assert served.handlers.calls[key] == 2
    numbers = {(await client.post("/orders", json={"item": "tea"})).json()["order"] for _ in range(2)}
    assert len(numbers) == 2 and served.handlers.calls[""] == 2


async def test_two_identities_with_one_key_do_not_meet(served: Served, client: httpx.AsyncClient) -> None:
    key = new_key()
    answers = {}
    for who in ("alice", "bob", "alice", "bob"):
        response = await client.post(
            "/orders", json={"item": "tea"}, headers={"Idempotency-Key": key, "x-client": who}
        )
        assert response.status_code == 201
        answers.setdefault(who, []).append(response)
    assert served.handlers.calls[key] == 2, "one run per identity"
    assert answers["alice"][0].json()["order"] != answers["bob"][0].json()["order"]
    for who in ("alice", "bob"):
        first, again = answers[who]
        assert again.headers["idempotent-replayed"] == "true" and same_response(first, again)
    # No identity is a scope of its own too.
    anonymous = await client.post("/orders", json={"item": "tea"}, headers={"Idempotency-Key": key})
    assert "idempotent-replayed" not in anonymous.headers and served.handlers.calls[key] == 3


@pytest.mark.parametrize("status", [500, 503, 408, 429])
async def test_a_5xx_or_a_retry_later_frees_the_key(
    served: Served, client: httpx.AsyncClient, status: int
) -> None:
    key = new_key()
    headers = {"Idempotency-Key": key}
    url = f"/flaky?status={status}"
    failed = await client.post(url, content=b"{}", headers=headers)
    assert failed.status_code == status and failed.json() == {"error": "try again"}
    assert "idempotent-replayed" not in failed.headers
    retried = await client.post(url, content=b"{}", headers=headers)
    assert retried.status_code == 201 and "idempotent-replayed" not in retried.headers
    replayed = await client.post(url, content=b"{}", headers=headers)
    assert replayed.status_code == 201 and replayed.headers["idempotent-replayed"] == "true"
    assert served.handlers.calls[key] == 2


async def test_a_4xx_is_recorded(served: Served, client: httpx.AsyncClient) -> None:
    key = new_key()
    headers = {"Idempotency-Key": key}
    refused = await client.post("/flaky?status=403", content=b"{}", headers=headers)
    again = await client.post("/flaky?status=403", content=b"{}", headers=headers)
    assert refused.status_code == again.status_code == 403
    assert again.headers["idempotent-replayed"] == "true" and same_response(refused, again)
    assert served.handlers.calls[key] == 1


async def test_an_app_error_frees_the_key(served: Served, client: httpx.AsyncClient) -> None:
    key = new_key()
    headers = {"Idempotency-Key": key}
    # Starlette re-raises after its 500 and uvicorn then drops the connection: not one to reuse.
    failed = await client.post("/boom", content=b"{}", headers={**headers, "connection": "close"})
    assert failed.status_code == 500
    retried = await client.post("/boom", content=b"{}", headers=headers)
    assert retried.status_code == 200 and retried.json() == {"boom": "not this time"}
    assert served.handlers.calls[key] == 2


async def test_patch_is_idempotent_and_apart_from_post(served: Served, client: httpx.AsyncClient) -> None:
    key = new_key()
    headers = {"Idempotency-Key": key}
    first = await client.patch("/orders", json={"item": "lamp"}, headers=headers)
    again = await client.patch("/orders", json={"item": "lamp"}, headers=headers)
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.headers["idempotent-replayed"] == "true" and same_response(first, again)
    assert served.handlers.calls[key] == 1
    posted = await client.post("/orders", json={"item": "lamp"}, headers=headers)
    assert posted.status_code == 201 and "idempotent-replayed" not in posted.headers
    assert served.handlers.calls[key] == 2, "the method is part of the key's scope"


async def test_a_streaming_response_is_buffered_and_replayed(
    served: Served, client: httpx.AsyncClient
) -> None:
    key = new_key()
    first = await client.post("/stream", content=b"go", headers={"Idempotency-Key": key})
    again = await client.post("/stream", content=b"go", headers={"Idempotency-Key": key})
    assert first.text == "".join(f"part {part} of run 1\n" for part in range(5))
    assert again.text == first.text and again.headers["idempotent-replayed"] == "true"
    for response in (first, again):
        assert response.headers["content-length"] == str(len(first.content))
        assert "transfer-encoding" not in response.headers
    assert served.handlers.calls[key] == 1


async def test_a_response_too_large_to_record_is_sent_unrecorded(
    served: Served, client: httpx.AsyncClient
) -> None:
    key = new_key()
    first = await client.post("/big", content=b"{}", headers={"Idempotency-Key": key})
    again = await client.post("/big", content=b"{}", headers={"Idempotency-Key": key})
    for response, number in ((first, b"1"), (again, b"2")):
        assert response.status_code == 200 and len(response.content) == BIG
        assert response.content.startswith(number) and "idempotent-replayed" not in response.headers
    assert served.handlers.calls[key] == 2, "nothing was recorded: the retry ran again"


async def test_a_response_is_sent_before_the_apps_background_work_ends(
    served: Served, client: httpx.AsyncClient
) -> None:
    key = new_key()
    first = await client.post("/later", content=b"{}", headers={"Idempotency-Key": key})
    assert first.status_code == 202 and not served.handlers.background_done.is_set()
    again = await client.post("/later", content=b"{}", headers={"Idempotency-Key": key})
    assert again.headers["idempotent-replayed"] == "true", "recorded before the background work ended"
    served.handlers.slow_release.set()
    assert await asyncio.to_thread(served.handlers.background_done.wait, 10)
    assert served.handlers.calls[key] == 1


async def test_a_204_is_replayed_without_a_body(served: Served, client: httpx.AsyncClient) -> None:
    key = new_key()
    first = await client.post("/empty", content=b"{}", headers={"Idempotency-Key": key})
    again = await client.post("/empty", content=b"{}", headers={"Idempotency-Key": key})
    for response in (first, again):
        assert response.status_code == 204 and response.content == b""
        assert response.headers["x-done"] == "yes" and "content-length" not in response.headers
    assert again.headers["idempotent-replayed"] == "true"
    assert served.handlers.calls[key] == 1


async def test_an_unreachable_store_gets_503_and_nothing_runs(tmp_path: Path) -> None:
    (tmp_path / "file").touch()  # a file where the database's folder should be: it cannot open
    coord = tenure.AsyncCoordinator(f"sqlite://{tmp_path}/file/locks.db")
    handlers = Handlers()
    app = IdempotencyMiddleware(starlette_app(handlers, coord), keys=coord.idempotency("api"))
    with serving(app, "unreachable") as url:
        async with httpx.AsyncClient(base_url=url, timeout=20) as client:
            response = await client.post("/orders", json={"item": "x"}, headers={"Idempotency-Key": "k"})
            unkeyed = await client.post("/orders", json={"item": "x"})
    assert response.status_code == 503 and response.headers["retry-after"] == "1"
    assert response.json()["error"] == "idempotency_store_unavailable"
    assert handlers.calls["k"] == 0
    assert unkeyed.status_code == 201, "a request without a key does not need the store"


async def test_the_middleware_refuses_bad_arguments(sqlite_url: str) -> None:
    async with tenure.AsyncCoordinator(sqlite_url) as coord:
        app = fastapi_app(Handlers(), coord)
        with pytest.raises(tenure.ConfigurationError, match="AsyncIdempotency"):
            IdempotencyMiddleware(app, keys=object())  # type: ignore[arg-type]
        covering = coord.idempotency("api", store_errors=Exception)
        with pytest.raises(tenure.ConfigurationError, match="store_errors"):
            IdempotencyMiddleware(app, keys=covering)
        with pytest.raises(tenure.ConfigurationError, match="timeout"):
            IdempotencyMiddleware(app, keys=coord.idempotency("api"), timeout=-1)
        with pytest.raises(tenure.ConfigurationError, match="methods"):
            IdempotencyMiddleware(app, keys=coord.idempotency("api"), methods="POST")


def test_key_for_scopes_method_path_and_identity() -> None:
    key_for = IdempotencyMiddleware.key_for
    keys = {
        key_for("POST", "/orders", "k"),
        key_for("PATCH", "/orders", "k"),
        key_for("POST", "/orders/1", "k"),
        key_for("POST", "/orders", "k", "alice"),
        key_for("POST", "/orders", "k", "bob"),
        key_for("POST", "/orders", "k2"),
    }
    assert len(keys) == 6
    assert key_for("post", "/orders", "k") == key_for("POST", "/orders", "k")
    assert all(len(key) <= 255 for key in keys)
