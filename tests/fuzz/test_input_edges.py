"""Inputs that once reached the database unchecked, found by fuzzing: each must be a clear 4xx
in the API's error shape on both backends (PostgreSQL refuses NUL in text and integers past
64 bits; SQLite stores or overflows them differently), never a 500.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import AuthedUser

NUL = "a\x00b"
HUGE = 10**30

# (method, url, json body) as /api/v1 sees them.
API_V1_CASES: list[tuple[str, str, Any]] = [
    ("GET", "/api/v1/videos/a%00b", None),
    ("PATCH", "/api/v1/videos/a%00b", {"title": "x"}),
    ("DELETE", "/api/v1/images/a%00b", None),
    ("POST", "/api/v1/images/a%00b/cancel", None),
    ("GET", "/api/v1/images/a%00b/media/a%00b/content", None),
    ("GET", "/api/v1/tasks/a%00b", None),
    ("GET", "/api/v1/videos?search=a%00b", None),
    ("GET", "/api/v1/videos?model=a%00b", None),
    ("GET", "/api/v1/videos?tags=a%00b", None),
    ("GET", "/api/v1/videos?status=a%00b", None),
    ("GET", f"/api/v1/videos?page={HUGE}", None),
    ("GET", f"/api/v1/images?page={HUGE}&size=100", None),
    ("POST", "/api/v1/tasks/bulk-delete", {"ids": [NUL]}),
    ("POST", "/api/v1/keys", {"name": NUL}),
    ("DELETE", "/api/v1/keys/a%00b", None),
    ("POST", "/api/v1/categories", {"name": NUL}),
    ("POST", "/api/v1/categories", {"name": "ok", "description": NUL}),
    ("GET", "/api/v1/categories/a%00b", None),
    ("PATCH", "/api/v1/categories/a%00b", {"name": "x"}),
    ("GET", "/api/v1/logs?path_contains=a%00b", None),
    ("GET", "/api/v1/logs?method=a%00b", None),
    ("GET", "/api/v1/logs?category_id=a%00b", None),
    ("GET", "/api/v1/logs/a%00b", None),
    ("PATCH", "/api/v1/logs/a%00b", {"note": "x"}),
    ("GET", "/api/v1/admin/users?search=a%00b", None),
    ("GET", "/api/v1/admin/users/a%00b", None),
    ("PATCH", "/api/v1/admin/users/a%00b/quota", {"storage_quota_bytes": 1}),
    ("DELETE", "/api/v1/auth/sessions/a%00b", None),
    ("GET", "/api/v1/models/a%00b", None),
    ("POST", "/api/v1/auth/login", {"username_or_email": NUL, "password": "x"}),
    ("POST", "/api/v1/auth/register", {"username": "abc", "email": "a@b.co", "password": NUL * 4}),
]


@pytest.mark.parametrize(("method", "url", "body"), API_V1_CASES)
async def test_api_v1_edge_inputs_are_client_errors(
    client: httpx.AsyncClient, admin_user: AuthedUser, method: str, url: str, body: Any
) -> None:
    response = await client.request(method, url, json=body, headers=admin_user.headers)
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    error = response.json()["error"]
    assert set(error) == {"code", "message", "details"}


async def test_nul_in_a_task_title_is_refused_not_stored(
    client: httpx.AsyncClient, admin_user: AuthedUser
) -> None:
    created = await client.post(
        "/api/v1/images",
        json={"model": "gpt-image-1", "prompt": "a cat"},
        headers=admin_user.headers,
    )
    assert created.status_code == 202, created.text
    task_id = created.json()["id"]
    patched = await client.patch(
        f"/api/v1/images/{task_id}", json={"title": NUL}, headers=admin_user.headers
    )
    assert patched.status_code == 422, patched.text
    assert patched.json()["error"]["details"][0]["field"] == "title"
    tagged = await client.patch(
        f"/api/v1/images/{task_id}", json={"tags": [NUL]}, headers=admin_user.headers
    )
    assert tagged.status_code == 422, tagged.text
    current = await client.get(f"/api/v1/images/{task_id}", headers=admin_user.headers)
    assert current.json()["title"] is None
    assert current.json()["tags"] == []


OPENAI_CASES: list[tuple[str, str, Any]] = [
    ("GET", "/v1/videos/a%00b", None),
    ("DELETE", "/v1/videos/a%00b", None),
    ("GET", "/v1/videos/a%00b/content", None),
    ("POST", "/v1/videos/a%00b/remix", {"prompt": "x"}),
    ("GET", "/v1/videos?after=a%00b", None),
    ("GET", "/v1/models/a%00b", None),
    ("POST", "/v1/videos", {"prompt": NUL}),
    ("POST", "/v1/videos", {"prompt": "x", "model": NUL}),
    ("POST", "/v1/images/generations", {"prompt": "x", "model": NUL}),
    ("POST", "/v1/images/generations", {"prompt": "x", "size": NUL}),
]


@pytest.mark.parametrize(("method", "url", "body"), OPENAI_CASES)
async def test_openai_edge_inputs_are_client_errors(
    client: httpx.AsyncClient, admin_user: AuthedUser, method: str, url: str, body: Any
) -> None:
    key = await client.post("/api/v1/keys", json={"name": "sdk"}, headers=admin_user.headers)
    headers = {"Authorization": f"Bearer {key.json()['key']}"}
    response = await client.request(method, url, json=body, headers=headers)
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    error = response.json()["error"]
    assert {"message", "type", "code", "param"} <= set(error)

