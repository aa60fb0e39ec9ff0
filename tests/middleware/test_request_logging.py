"""The request-log middleware: what is captured, what is not, and that it stays out of the way."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from app.core.config import Settings
from app.core.encryption import Encryptor
from app.core.request_log.entry import BodyCapture
from app.core.request_log.writer import RequestLogWriter
from app.db.session import Database
from app.middleware.request_logging import RequestLoggingMiddleware
from app.models import ApiRequestLog
from tests.conftest import AuthedUser, register_and_login
from tests.core.request_log.helpers import flush_logs, raw_log_rows

REDACTED = "<redacted>"


def _decrypt(app: FastAPI | Starlette, token: str | None) -> Any:
    assert token is not None
    encryptor: Encryptor = app.state.encryptor
    return encryptor.decrypt_json(token)


# --- through the real application -----------------------------------------------------------


async def test_every_api_request_is_logged_with_status_duration_and_user(
    app: FastAPI, client: httpx.AsyncClient, user: AuthedUser, cleanup_engine: AsyncEngine
) -> None:
    me = await client.get("/api/v1/auth/me", headers={**user.headers, "User-Agent": "tests/1"})
    assert me.status_code == 200
    missing = await client.delete(f"/api/v1/keys/{uuid.uuid4()}", headers=user.headers)
    assert missing.status_code == 404
    anonymous = await client.get("/api/v1/keys")
    assert anonymous.status_code == 401
    await flush_logs(app)

    (me_row,) = await raw_log_rows(cleanup_engine, path="/api/v1/auth/me")
    assert me_row["method"] == "GET"
    assert me_row["status_code"] == 200
    assert me_row["duration_ms"] > 0
    assert me_row["user_id"] == user.id
    assert me_row["session_id"] == user.session_id
    assert me_row["api_key_id"] is None
    assert me_row["client_ip"] == "203.0.113.7"
    assert me_row["user_agent"] == "tests/1"
    assert me_row["request_id"] == me.headers["x-request-id"]

    (missing_row,) = await raw_log_rows(cleanup_engine, method="DELETE")
    assert missing_row["status_code"] == 404
    assert missing_row["user_id"] == user.id

    (anonymous_row,) = await raw_log_rows(cleanup_engine, path="/api/v1/keys", status_code=401)
    assert anonymous_row["user_id"] is None
    assert anonymous_row["session_id"] is None


async def test_api_key_requests_are_attributed_to_the_key(
    app: FastAPI, client: httpx.AsyncClient, user: AuthedUser, cleanup_engine: AsyncEngine
) -> None:
    created = await client.post("/api/v1/keys", json={"name": "ci"}, headers=user.headers)
    assert created.status_code == 201
    key = created.json()
    me = await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {key['key']}"})
    assert me.status_code == 200
    await flush_logs(app)
    (row,) = await raw_log_rows(cleanup_engine, path="/api/v1/auth/me")
    assert row["api_key_id"] == key["id"]
    assert row["user_id"] == user.id
    assert row["session_id"] is None


async def test_non_api_paths_are_not_logged(
    app: FastAPI, client: httpx.AsyncClient, cleanup_engine: AsyncEngine
) -> None:
    assert (await client.get("/health")).status_code == 200
    assert (await client.get("/openapi.json")).status_code == 200
    assert (await client.get("/apix/whatever")).status_code in {302, 303, 307, 401, 404}
    logged = await client.get("/api/v1/no-such-thing")
    assert logged.status_code == 404
    await flush_logs(app)
    rows = await raw_log_rows(cleanup_engine)
    assert [row["path"] for row in rows] == ["/api/v1/no-such-thing"]


async def test_request_id_is_honoured_when_sane(
    app: FastAPI, client: httpx.AsyncClient, cleanup_engine: AsyncEngine
) -> None:
    sane = await client.get("/api/v1/x", headers={"X-Request-ID": "trace-abc.123"})
    assert sane.headers["x-request-id"] == "trace-abc.123"
    weird = await client.get("/api/v1/y", headers={"X-Request-ID": "no spaces <allowed>"})
    replacement = weird.headers["x-request-id"]
    assert replacement != "no spaces <allowed>"
    assert uuid.UUID(replacement).version == 4
    too_long = await client.get("/api/v1/z", headers={"X-Request-ID": "a" * 37})
    assert too_long.headers["x-request-id"] != "a" * 37
    await flush_logs(app)
    ids = {row["path"]: row["request_id"] for row in await raw_log_rows(cleanup_engine)}
    assert ids == {
        "/api/v1/x": "trace-abc.123",
        "/api/v1/y": replacement,
        "/api/v1/z": too_long.headers["x-request-id"],
    }


async def test_secrets_are_redacted_before_storage(
    app: FastAPI, client: httpx.AsyncClient, cleanup_engine: AsyncEngine
) -> None:
    password = "Pa55word-Never-Stored"
    user = await register_and_login(client, "carol", password=password)
    created = await client.post("/api/v1/keys", json={"name": "ci"}, headers=user.headers)
    secret_key = created.json()["key"]
    blob = base64.b64encode(os.urandom(900)).decode()
    odd = await client.post(
        "/api/v1/keys?access_token=QueryTokenValue42",
        json={
            "name": "n",
            "refresh_token": "BodyTokenValue42",
            "image": f"data:image/png;base64,{blob}",
            "raw": blob,
        },
        headers={"Authorization": f"Bearer {secret_key}", "Cookie": "access_token=CookieVal42"},
    )
    assert odd.status_code == 422
    await flush_logs(app)

    rows = await raw_log_rows(cleanup_engine)
    assert len(rows) == 4  # register, login, create key, the odd request
    plaintexts = [password, user.token, secret_key, "QueryTokenValue42", "BodyTokenValue42"]
    plaintexts += ["CookieVal42", blob[:64]]
    for row in rows:
        stored = repr(row)
        for secret in plaintexts:
            assert secret not in stored
        # Nothing the user typed is readable in the raw row either.
        assert "carol@example.com" not in stored

    by_path = {(row["method"], row["path"], row["status_code"]): row for row in rows}
    login = by_path[("POST", "/api/v1/auth/login", 200)]
    login_request = _decrypt(app, login["request_body_encrypted"])
    assert json.loads(login_request["body"])["password"] == REDACTED
    assert (
        json.loads(_decrypt(app, login["response_body_encrypted"])["body"])["access_token"]
        == REDACTED
    )

    create = by_path[("POST", "/api/v1/keys", 201)]
    assert _decrypt(app, create["request_headers_encrypted"])["authorization"] == REDACTED
    created_body = json.loads(_decrypt(app, create["response_body_encrypted"])["body"])
    assert created_body["key"] == REDACTED
    assert created_body["prefix"] == secret_key[:11]

    odd_row = by_path[("POST", "/api/v1/keys", 422)]
    encryptor: Encryptor = app.state.encryptor
    assert encryptor.decrypt_text(odd_row["query_encrypted"]) == f"access_token={REDACTED}"
    headers = _decrypt(app, odd_row["request_headers_encrypted"])
    assert headers["authorization"] == REDACTED
    assert headers["cookie"] == REDACTED
    odd_body = json.loads(_decrypt(app, odd_row["request_body_encrypted"])["body"])
    assert odd_body == {
        "name": "n",
        "refresh_token": REDACTED,
        "image": "<redacted base64 900 bytes>",
        "raw": "<redacted base64 900 bytes>",
    }
    for row in rows:
        for column in ("request_body_encrypted", "response_body_encrypted"):
            if row[column]:
                text = json.dumps(_decrypt(app, row[column]))
                for secret in plaintexts:
                    assert secret not in text


@pytest.mark.parametrize("settings_overrides", [{"request_log_max_body_bytes": 64}])
async def test_bodies_are_truncated_to_the_limit(
    app: FastAPI, client: httpx.AsyncClient, user: AuthedUser, cleanup_engine: AsyncEngine
) -> None:
    payload = json.dumps({"password": "TruncatedSecret1", "name": "x" * 500})
    response = await client.post(
        "/api/v1/keys",
        content=payload,
        headers={**user.headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    await flush_logs(app)
    (row,) = await raw_log_rows(cleanup_engine, path="/api/v1/keys")
    assert row["request_bytes"] == len(payload)
    assert row["response_bytes"] == len(response.content)
    request = _decrypt(app, row["request_body_encrypted"])
    assert request["truncated"] is True
    assert request["size"] == len(payload)
    # At most the cap, give or take the redaction placeholders.
    assert len(request["body"]) <= 64 + len(REDACTED)
    assert "TruncatedSecret1" not in request["body"]
    assert request["body"].startswith('{"password": "<redacted>"')
    response_body = _decrypt(app, row["response_body_encrypted"])
    assert response_body["truncated"] is True
    assert len(response_body["body"]) <= 64 + len(REDACTED)


# --- a minimal app around the middleware (routes the real API does not have) ---------------


async def _upload(request: Request) -> JSONResponse:
    async with request.form() as form:
        return JSONResponse({"fields": len(form)})


async def _raw(request: Request) -> JSONResponse:
    body = await request.body()
    return JSONResponse({"size": len(body)})


async def _stream(_: Request) -> StreamingResponse:
    async def events() -> AsyncIterator[bytes]:
        for index in range(3):
            yield f"data: {index}\n\n".encode()

    return StreamingResponse(events(), media_type="text/event-stream")


async def _image(_: Request) -> Response:
    return Response(b"\x89PNG" + b"\0" * 100, media_type="image/png")


async def _boom(_: Request) -> Response:
    raise RuntimeError("boom")


@pytest.fixture
async def mini_app(settings: Settings, cleanup_engine: AsyncEngine) -> AsyncIterator[Starlette]:
    application = Starlette(
        routes=[
            Route("/api/upload", _upload, methods=["POST"]),
            Route("/api/raw", _raw, methods=["POST"]),
            Route("/api/stream", _stream),
            Route("/api/image", _image),
            Route("/api/boom", _boom),
        ],
        middleware=[Middleware(RequestLoggingMiddleware)],
    )
    database = Database(settings.resolved_database_url)
    encryptor = Encryptor(settings.storage_master_key or "")
    application.state.settings = settings
    application.state.encryptor = encryptor
    application.state.request_log_writer = RequestLogWriter(database, encryptor, settings)
    try:
        yield application
    finally:
        await database.dispose()
        async with cleanup_engine.begin() as conn:
            await conn.execute(delete(ApiRequestLog))


@pytest.fixture
async def mini_client(mini_app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=mini_app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


async def test_multipart_is_summarised_not_stored(
    mini_app: Starlette, mini_client: httpx.AsyncClient, cleanup_engine: AsyncEngine
) -> None:
    image = b"\x89PNG" + os.urandom(5000)
    response = await mini_client.post(
        "/api/upload",
        data={"prompt": "a secret prompt"},
        files={"file": ("cat.png", image, "image/png")},
    )
    assert response.json() == {"fields": 2}
    await flush_logs(mini_app)  # type: ignore[arg-type]
    (row,) = await raw_log_rows(cleanup_engine)
    request = _decrypt(mini_app, row["request_body_encrypted"])
    assert request["content_type"].startswith("multipart/form-data")
    assert json.loads(request["body"]) == {
        "multipart": [
            {"name": "prompt", "size": len("a secret prompt")},
            {"name": "file", "filename": "cat.png", "content_type": "image/png", "size": 5004},
        ]
    }
    assert row["request_bytes"] > 5004


async def test_binary_bodies_are_not_captured(
    mini_app: Starlette, mini_client: httpx.AsyncClient, cleanup_engine: AsyncEngine
) -> None:
    upload = await mini_client.post(
        "/api/raw", content=b"\0" * 300, headers={"Content-Type": "application/octet-stream"}
    )
    assert upload.json() == {"size": 300}
    image = await mini_client.get("/api/image")
    assert image.status_code == 200
    await flush_logs(mini_app)  # type: ignore[arg-type]
    rows = {row["path"]: row for row in await raw_log_rows(cleanup_engine)}
    raw_request = _decrypt(mini_app, rows["/api/raw"]["request_body_encrypted"])
    assert raw_request["body"] == "<not captured: application/octet-stream, 300 bytes>"
    image_response = _decrypt(mini_app, rows["/api/image"]["response_body_encrypted"])
    assert image_response["body"] == "<not captured: image/png, 104 bytes>"
    assert rows["/api/image"]["response_bytes"] == 104


async def test_sse_passes_through_and_is_not_captured(
    mini_app: Starlette, mini_client: httpx.AsyncClient, cleanup_engine: AsyncEngine
) -> None:
    response = await mini_client.get("/api/stream")
    assert response.text == "data: 0\n\ndata: 1\n\ndata: 2\n\n"
    assert "x-request-id" in response.headers
    await flush_logs(mini_app)  # type: ignore[arg-type]
    (row,) = await raw_log_rows(cleanup_engine)
    assert row["status_code"] == 200
    body = _decrypt(mini_app, row["response_body_encrypted"])
    assert body["body"].startswith("<not captured: text/event-stream")


async def test_unhandled_error_is_logged_as_500(
    mini_app: Starlette, mini_client: httpx.AsyncClient, cleanup_engine: AsyncEngine
) -> None:
    response = await mini_client.get("/api/boom")
    assert response.status_code == 500
    await flush_logs(mini_app)  # type: ignore[arg-type]
    (row,) = await raw_log_rows(cleanup_engine)
    assert row["status_code"] == 500
    assert row["path"] == "/api/boom"


def _scope(app: Starlette, path: str = "/api/thing", body_type: str = "application/json") -> Scope:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"a=1",
        "root_path": "",
        "headers": [(b"content-type", body_type.encode()), (b"user-agent", b"bench")],
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 80),
        "app": app,
    }


async def test_streamed_chunks_are_forwarded_immediately(mini_app: Starlette) -> None:
    first_chunk_seen = asyncio.Event()

    async def streaming_app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
        # Would deadlock if the middleware held chunks back until the end of the response.
        await first_chunk_seen.wait()
        await send({"type": "http.response.body", "body": b"data: 2\n\n", "more_body": False})

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)
        if message.get("body") == b"data: 1\n\n":
            first_chunk_seen.set()

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    middleware = RequestLoggingMiddleware(streaming_app)
    await asyncio.wait_for(middleware(_scope(mini_app, "/api/stream"), receive, send), 5)
    assert [m["type"] for m in sent] == [
        "http.response.start",
        "http.response.body",
        "http.response.body",
    ]
    writer: RequestLogWriter = mini_app.state.request_log_writer
    assert writer.pending == 1


def test_body_capture_keeps_only_the_cap() -> None:
    capture = BodyCapture(100)
    for _ in range(1000):
        capture.feed(b"x" * 1024)
    assert capture.total == 1024 * 1000
    assert capture.captured == 100
    assert capture.truncated is True
    assert len(capture.data()) == 100
    exact = BodyCapture(4)
    exact.feed(b"abcd")
    assert (exact.data(), exact.truncated) == (b"abcd", False)


async def test_overhead_is_well_under_a_millisecond(mini_app: Starlette) -> None:
    request_body = json.dumps({"prompt": "a cat", "model": "sora-2", "seconds": 8}).encode()
    response_body = json.dumps({"id": "t1", "status": "queued", "progress": 0}).encode()

    async def tiny_app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": response_body})

    async def receive() -> Message:
        return {"type": "http.request", "body": request_body, "more_body": False}

    async def send(_: Message) -> None:
        return None

    wrapped = RequestLoggingMiddleware(tiny_app)
    writer: RequestLogWriter = mini_app.state.request_log_writer
    writer.max_buffer = 100_000
    rounds = 2000

    async def run(application: Any) -> float:
        start = time.perf_counter()
        for _ in range(rounds):
            await application(_scope(mini_app), receive, send)
        return time.perf_counter() - start

    await run(wrapped)  # warm-up
    bare = min([await run(tiny_app) for _ in range(3)])
    logged = min([await run(wrapped) for _ in range(3)])
    overhead_ms = (logged - bare) / rounds * 1000
    assert writer.pending == rounds * 4
    assert overhead_ms < 0.25, f"{overhead_ms:.3f} ms per request"
    # These entries were only for timing: do not write thousands of rows.
    writer._buffer.clear()


async def test_requests_refused_by_the_csrf_check_are_logged(
    app: FastAPI, client: httpx.AsyncClient, user: AuthedUser, cleanup_engine: AsyncEngine
) -> None:
    login = await client.post(
        "/api/v1/auth/login",
        params={"set_cookie": "1"},
        json={"username_or_email": user.username, "password": user.password},
    )
    assert login.status_code == 200
    refused = await client.post("/api/v1/auth/logout")  # cookie, no X-CSRF-Token
    assert refused.status_code == 403
    await flush_logs(app)
    (row,) = await raw_log_rows(cleanup_engine, path="/api/v1/auth/logout")
    assert row["status_code"] == 403
    assert row["request_id"] == refused.headers["x-request-id"]
