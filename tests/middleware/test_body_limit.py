"""REQUEST_MAX_BYTES: an oversized body is refused with a 413 in the caller's error shape, and
nothing is created."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.conftest import AuthedUser

LIMIT = 4096


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"request_max_bytes": LIMIT}


def _video(prompt_bytes: int) -> dict[str, Any]:
    return {"model": "sora-2", "prompt": "x" * prompt_bytes}


async def _task_count(client: httpx.AsyncClient, user: AuthedUser) -> int:
    listed = await client.get("/api/v1/videos", headers=user.headers)
    assert listed.status_code == 200
    return int(listed.json()["total"])


async def test_a_declared_length_over_the_limit_is_refused_before_reading(
    client: httpx.AsyncClient, user: AuthedUser
) -> None:
    response = await client.post("/api/v1/videos", json=_video(LIMIT), headers=user.headers)
    assert response.status_code == 413
    error = response.json()["error"]
    assert error["code"] == "request_too_large"
    assert "REQUEST_MAX_BYTES" in error["message"]
    assert error["details"] == {"max_bytes": LIMIT}
    assert response.headers["connection"] == "close"
    assert await _task_count(client, user) == 0


async def _post_chunked(
    client: httpx.AsyncClient, user: AuthedUser, path: str, body: dict[str, Any]
) -> httpx.Response:
    """POST `body` as JSON in 1 KiB chunks without a Content-Length (chunked encoding)."""
    raw = json.dumps(body).encode()

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(raw), 1024):
            yield raw[start : start + 1024]

    return await client.post(
        path, content=chunks(), headers={**user.headers, "Content-Type": "application/json"}
    )


async def test_a_chunked_body_is_cut_off_once_it_passes_the_limit(
    client: httpx.AsyncClient, user: AuthedUser
) -> None:
    response = await _post_chunked(client, user, "/api/v1/videos", _video(3 * LIMIT))
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert await _task_count(client, user) == 0


async def test_a_body_under_the_limit_is_served(
    client: httpx.AsyncClient, user: AuthedUser
) -> None:
    response = await client.post("/api/v1/videos", json=_video(100), headers=user.headers)
    assert response.status_code == 202, response.text
    assert await _task_count(client, user) == 1


async def test_the_openai_surface_answers_in_openai_shape(
    client: httpx.AsyncClient, user: AuthedUser
) -> None:
    response = await client.post(
        "/v1/images/generations",
        json={"model": "gpt-image-1", "prompt": "x" * LIMIT},
        headers=user.headers,
    )
    assert response.status_code == 413
    error = response.json()["error"]
    assert error["code"] == "request_too_large"
    assert error["type"] == "invalid_request_error"
    assert "REQUEST_MAX_BYTES" in error["message"]


async def test_an_oversized_chunked_openai_body_answers_in_openai_shape(
    client: httpx.AsyncClient, user: AuthedUser
) -> None:
    response = await _post_chunked(
        client,
        user,
        "/v1/images/generations",
        {"model": "gpt-image-1", "prompt": "y" * (2 * LIMIT)},
    )
    assert response.status_code == 413
    error = response.json()["error"]
    assert error["code"] == "request_too_large"
    assert set(error) >= {"message", "type", "code"}
