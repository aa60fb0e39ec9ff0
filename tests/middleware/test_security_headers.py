"""Security headers on every response, CSP on HTML, HSTS only over secure cookies; CORS."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from app.middleware.security_headers import CONTENT_SECURITY_POLICY, SecurityHeadersMiddleware
from tests.middleware.test_web_auth_redirect import ensure_pages

EXPECTED_CSP = (
    "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
    "script-src 'self'; style-src 'self'; connect-src 'self'; frame-ancestors 'none'; "
    "base-uri 'self'; form-action 'self'"
)


def _assert_base_headers(response: httpx.Response) -> None:
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "camera=()" in response.headers["Permissions-Policy"]


async def test_json_responses_carry_base_headers_without_csp(client: httpx.AsyncClient) -> None:
    for path in ("/health", "/api/v1/auth/me", "/api/v1/nowhere"):
        response = await client.get(path)
        _assert_base_headers(response)
        assert "Content-Security-Policy" not in response.headers
        assert "Strict-Transport-Security" not in response.headers


async def test_html_pages_get_the_strict_csp(client: httpx.AsyncClient, app: FastAPI) -> None:
    ensure_pages(app)
    response = await client.get("/login")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["Content-Security-Policy"] == EXPECTED_CSP == CONTENT_SECURITY_POLICY
    _assert_base_headers(response)


async def test_docs_page_gets_a_csp_that_lets_swagger_load(client: httpx.AsyncClient) -> None:
    response = await client.get("/docs")
    assert response.status_code == 200
    policy = response.headers["Content-Security-Policy"]
    assert "https://cdn.jsdelivr.net" in policy
    assert "frame-ancestors 'none'" in policy


async def test_redirects_and_errors_carry_headers(client: httpx.AsyncClient) -> None:
    redirect = await client.get("/")
    assert redirect.status_code == 303
    _assert_base_headers(redirect)
    preflight = await client.options(
        "/api/v1/auth/me",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    _assert_base_headers(preflight)


@pytest.mark.parametrize("settings_overrides", [{"cookie_secure": True}])
async def test_hsts_only_when_cookies_are_secure(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")


# --- behaviour of the middleware itself, on a minimal app -----------------------------------


async def _stream() -> AsyncIterator[bytes]:
    for i in range(5):
        yield f"chunk{i};".encode()


async def _own_headers(_: Request) -> Response:
    return HTMLResponse(
        "<p>framed</p>",
        headers={"X-Frame-Options": "SAMEORIGIN", "Content-Security-Policy": "default-src 'none'"},
    )


async def _streaming(_: Request) -> Response:
    return StreamingResponse(_stream(), media_type="text/plain")


async def _plain(_: Request) -> Response:
    return PlainTextResponse("ok")


def _mini_client(**kwargs: Any) -> httpx.AsyncClient:
    app = Starlette(
        routes=[
            Route("/own", _own_headers),
            Route("/stream", _streaming),
            Route("/plain", _plain),
        ]
    )
    wrapped = SecurityHeadersMiddleware(app, **kwargs)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=wrapped), base_url="http://t")


async def test_headers_set_by_a_route_are_kept() -> None:
    async with _mini_client() as client:
        response = await client.get("/own")
    assert response.headers["X-Frame-Options"] == "SAMEORIGIN"
    assert response.headers["Content-Security-Policy"] == "default-src 'none'"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert len(response.headers.get_list("X-Frame-Options")) == 1


async def test_streaming_responses_pass_through_whole() -> None:
    async with _mini_client(hsts=True) as client:
        response = await client.get("/stream")
    assert response.text == "".join(f"chunk{i};" for i in range(5))
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "Strict-Transport-Security" in response.headers
    assert "Content-Security-Policy" not in response.headers


async def test_no_hsts_by_default_on_an_app_without_settings() -> None:
    async with _mini_client() as client:
        response = await client.get("/plain")
    assert response.text == "ok"
    assert "Strict-Transport-Security" not in response.headers


# --- CORS (configured in app.main from CORS_ORIGINS) ----------------------------------------

ALLOWED = "https://studio.example"


@pytest.mark.parametrize("settings_overrides", [{"cors_origins": [ALLOWED]}])
async def test_cors_echoes_allowed_origin_with_credentials(client: httpx.AsyncClient) -> None:
    simple = await client.get("/health", headers={"Origin": ALLOWED})
    assert simple.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert simple.headers["Access-Control-Allow-Credentials"] == "true"
    preflight = await client.options(
        "/api/v1/auth/logout",
        headers={
            "Origin": ALLOWED,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "X-CSRF-Token, Content-Type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert preflight.headers["Access-Control-Allow-Credentials"] == "true"
    assert "x-csrf-token" in preflight.headers["Access-Control-Allow-Headers"].lower()


@pytest.mark.parametrize("settings_overrides", [{"cors_origins": [ALLOWED]}])
async def test_cors_ignores_other_origins(client: httpx.AsyncClient) -> None:
    simple = await client.get("/health", headers={"Origin": "https://evil.example"})
    assert simple.status_code == 200
    assert "Access-Control-Allow-Origin" not in simple.headers
    preflight = await client.options(
        "/api/v1/auth/logout",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 400
    assert "Access-Control-Allow-Origin" not in preflight.headers
