"""Fixtures for the OpenAI-compatible surface: the real app served by uvicorn on 127.0.0.1
(port 0, in the test's event loop), a `gk_` API key, and the official `openai` package's async
client pointed at `/v1` (no retries, so every request a test makes is one request).

Until app/main.py mounts `openai_router` (and the middlewares know `/v1`), the `app` fixture
here does both itself; each step is skipped once the app already does it.
"""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from PIL import Image
from sqlalchemy.ext.asyncio import AsyncEngine

from app.api.openai import openai_router
from app.core.config import Settings
from app.main import create_app
from app.middleware import request_logging, web_auth_redirect
from app.simulator import Simulator
from tests.api.v1.conftest import FAST_TASKS, serve_asgi, simulator_of
from tests.conftest import AuthedUser, empty_all_tables

OPENAI_SETTINGS: dict[str, Any] = {**FAST_TASKS, "request_timeout": 30.0}


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return dict(OPENAI_SETTINGS)


def _mount_openai(application: FastAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    if not any(getattr(route, "path", "") == "/v1/videos" for route in application.routes):
        application.include_router(openai_router)
    # /v1 is an API, not a page: no login redirect, and every request goes to the request log.
    if not web_auth_redirect.is_open_path("/v1/videos"):
        monkeypatch.setattr(
            web_auth_redirect, "OPEN_PREFIXES", (*web_auth_redirect.OPEN_PREFIXES, "/v1")
        )
    if not "/v1/videos".startswith(request_logging.API_PREFIX):
        monkeypatch.setattr(request_logging, "API_PREFIX", ("/api/", "/v1/"))


@pytest.fixture
async def app(
    settings: Settings, cleanup_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    _mount_openai(application, monkeypatch)
    try:
        async with LifespanManager(application, startup_timeout=30, shutdown_timeout=30):
            yield application
    finally:
        await empty_all_tables(cleanup_engine)


@pytest.fixture
async def live_url(app: FastAPI) -> AsyncIterator[str]:
    async with serve_asgi(app) as base_url:
        yield base_url


async def create_api_key(client: httpx.AsyncClient, owner: AuthedUser) -> str:
    response = await client.post("/api/v1/keys", json={"name": "sdk"}, headers=owner.headers)
    assert response.status_code == 201, response.text
    key: str = response.json()["key"]
    assert key.startswith("gk_")
    return key


@pytest.fixture
async def api_key(client: httpx.AsyncClient, user: AuthedUser) -> str:
    return await create_api_key(client, user)


def sdk(live_url: str, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key=key, base_url=f"{live_url}/v1", max_retries=0, timeout=30)


@pytest.fixture
async def oai(live_url: str, api_key: str) -> AsyncIterator[openai.AsyncOpenAI]:
    async with sdk(live_url, api_key) as client:
        yield client


@pytest.fixture
async def raw(live_url: str, api_key: str) -> AsyncIterator[httpx.AsyncClient]:
    """Plain HTTP to the live server with the user's key (for what the SDK hides)."""
    headers = {"Authorization": f"Bearer {api_key}"}
    async with httpx.AsyncClient(base_url=live_url, headers=headers, timeout=30) as http:
        yield http


def png_bytes(width: int = 32, height: int = 18, colour: str = "orange") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def png_data_uri(colour: str = "orange") -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(colour=colour)).decode("ascii")


def assert_openai_error(
    response: httpx.Response, status: int, code: str | None = None
) -> dict[str, Any]:
    """The response is OpenAI's error shape (not /api/v1's `{code, message, details}`)."""
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"message", "type", "code", "param"}, error
    assert error["message"]
    assert isinstance(error["type"], str)
    if code is not None:
        assert error["code"] == code, error
    return error


@pytest.fixture
def sim(app: FastAPI) -> Simulator:
    return simulator_of(app)
