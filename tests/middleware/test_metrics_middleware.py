"""The metrics middleware on its own: streams pass through unbuffered, every outcome is
counted once under its route template, and the request id is bound for the request's logs."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Mount, Route
from starlette.types import Message, Receive, Scope, Send

from app.core.observability.logging import current_request_id
from app.core.observability.metrics import Metrics
from app.middleware.metrics import MetricsMiddleware
from tests.core.observability.helpers import parse_samples, value

REQUESTS = "genapi_http_requests_total"


class Boom(RuntimeError):
    pass


def build(metrics: Metrics, stream_gate: asyncio.Event | None = None) -> Any:
    async def item(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "id": request.path_params["item_id"],
                "request_id": current_request_id(),
                "state_request_id": request.scope["state"]["request_id"],
            }
        )

    async def stream(request: Request) -> StreamingResponse:
        async def body() -> Any:
            yield b"first "
            if stream_gate is not None:
                # Produced only once the first chunk has reached the server: a buffering
                # middleware would wait here forever.
                await asyncio.wait_for(stream_gate.wait(), timeout=5)
            yield b"second"

        return StreamingResponse(body(), media_type="text/plain")

    async def fail(request: Request) -> PlainTextResponse:
        raise Boom("handler failed")

    async def files(request: Request) -> PlainTextResponse:
        return PlainTextResponse(request.path_params["path"])

    app = Starlette(
        routes=[
            Route("/items/{item_id}", item),
            Route("/stream", stream),
            Route("/fail", fail),
            Mount("/files", routes=[Route("/{path:path}", files)]),
        ]
    )
    return MetricsMiddleware(app, metrics=metrics)


def scope_for(path: str, headers: list[tuple[bytes, bytes]] | None = None) -> Scope:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers or [],
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
    }


def receiver() -> Receive:
    """An empty request body, then silence: the client stays connected (like a server's)."""
    delivered = False

    async def receive() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    return receive


def samples(metrics: Metrics) -> dict[Any, float]:
    from prometheus_client import generate_latest

    return parse_samples(generate_latest(metrics.registry).decode())


async def test_a_streamed_body_passes_chunk_by_chunk_and_is_timed_to_its_end() -> None:
    metrics = Metrics()
    gate = asyncio.Event()
    app = build(metrics, gate)
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and message.get("body") == b"first ":
            # Nothing is counted before the stream ends.
            assert (
                value(samples(metrics), REQUESTS, method="GET", route="/stream", status="200")
                is None
            )
            gate.set()

    await asyncio.wait_for(app(scope_for("/stream"), receiver(), send), timeout=10)
    bodies = [m.get("body") for m in sent if m["type"] == "http.response.body"]
    assert bodies[:2] == [b"first ", b"second"]
    result = samples(metrics)
    assert value(result, REQUESTS, method="GET", route="/stream", status="200") == 1
    assert (
        value(result, "genapi_http_request_duration_seconds_count", method="GET", route="/stream")
        == 1
    )


async def test_routes_are_labelled_by_template_mounts_included() -> None:
    metrics = Metrics()
    transport = httpx.ASGITransport(app=build(metrics))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        for item_id in ("a", "b", "c"):
            assert (await http.get(f"/items/{item_id}")).status_code == 200
        assert (await http.get("/files/x/y.txt")).status_code == 200
        assert (await http.get("/nowhere/at/all")).status_code == 404
        assert (await http.post("/items/a")).status_code == 405
    result = samples(metrics)
    assert value(result, REQUESTS, method="GET", route="/items/{item_id}", status="200") == 3
    assert value(result, REQUESTS, method="GET", route="/files/{path}", status="200") == 1
    assert value(result, REQUESTS, method="GET", route="<unmatched>", status="404") == 1
    assert value(result, REQUESTS, method="POST", route="/items/{item_id}", status="405") == 1


async def test_an_exception_before_any_answer_counts_as_500_and_propagates() -> None:
    metrics = Metrics()
    app = build(metrics)

    async def send(message: Message) -> None:
        return None

    with pytest.raises(Boom):
        await app(scope_for("/fail"), receiver(), send)
    assert value(samples(metrics), REQUESTS, method="GET", route="/fail", status="500") == 1


async def test_a_client_gone_mid_stream_is_counted_with_the_status_it_got() -> None:
    metrics = Metrics()
    app = build(metrics)

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body":
            raise OSError("client went away")

    with pytest.raises(OSError, match="went away"):
        await app(scope_for("/stream"), receiver(), send)
    assert value(samples(metrics), REQUESTS, method="GET", route="/stream", status="200") == 1


async def test_the_request_id_is_bound_for_the_request_and_only_for_it() -> None:
    metrics = Metrics()
    transport = httpx.ASGITransport(app=build(metrics))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        given = await http.get("/items/1", headers={"X-Request-ID": "trace-42"})
        generated, other = await asyncio.gather(http.get("/items/2"), http.get("/items/3"))
        hostile = await http.get("/items/4", headers={"X-Request-ID": "x" * 80})
    assert given.json()["request_id"] == "trace-42"
    assert given.json()["state_request_id"] == "trace-42"
    ids = [generated.json()["request_id"], other.json()["request_id"]]
    assert all(len(i) == 36 for i in ids)
    assert ids[0] != ids[1]
    assert hostile.json()["request_id"] != "x" * 80
    assert current_request_id() is None  # nothing leaks out of a request


async def test_other_scopes_pass_through_untouched() -> None:
    seen: list[Scope] = []

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope)

    metrics = Metrics()
    middleware = MetricsMiddleware(inner, metrics=metrics)
    scope: Scope = {"type": "lifespan", "asgi": {"version": "3.0"}}
    await middleware(scope, receiver(), lambda message: asyncio.sleep(0))
    assert seen == [{"type": "lifespan", "asgi": {"version": "3.0"}}]
    assert "state" not in seen[0]
    assert not any(name == REQUESTS for name, _ in samples(metrics))


async def test_unknown_methods_are_folded_so_clients_cannot_mint_series(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = Metrics()
    transport = httpx.ASGITransport(app=build(metrics))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        response = await http.request("BREW", "/items/1")
    assert response.status_code == 405
    assert (
        value(samples(metrics), REQUESTS, method="OTHER", route="/items/{item_id}", status="405")
        == 1
    )
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
