"""Inputs that once reached the database unchecked, found by fuzzing: each must be a clear 4xx
in the API's error shape on both backends (PostgreSQL refuses NUL in text and integers past
64 bits; SQLite stores or overflows them differently), never a 500.
"""

from __future__ import annotations

from typing import Any

import httpx

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
    # Datetimes at the edges of what Python and the databases can represent.
    ("GET", "/api/v1/videos?created_after=0001-01-01T00:00:00%2B01:00", None),
    ("GET", "/api/v1/videos?created_before=9999-12-31T23:59:59-14:00", None),
    ("GET", "/api/v1/logs?started_after=0001-01-01T00:00:00%2B01:00", None),
    ("POST", "/api/v1/keys", {"name": "k", "expires_at": "9999-12-31T23:59:59-14:00"}),
    ("POST", "/api/v1/images", {"model": "gpt-image-1", "prompt": "x", "n": HUGE}),
    ("POST", "/api/v1/images", {"model": "gpt-image-1", "prompt": "x", "params": {"a": NUL}}),
    ("PATCH", "/api/v1/admin/users/x/quota", {"storage_quota_bytes": HUGE}),
]


async def test_api_v1_edge_inputs_are_client_errors(
    client: httpx.AsyncClient, admin_user: AuthedUser
) -> None:
    # One app for all cases (starting one per case costs seconds on PostgreSQL).
    wrong = []
    for method, url, body in API_V1_CASES:
        response = await client.request(method, url, json=body, headers=admin_user.headers)
        error = response.json().get("error", {})
        if not 400 <= response.status_code < 500 or set(error) != {"code", "message", "details"}:
            wrong.append((method, url, str(body)[:60], response.status_code, response.text[:200]))
    assert not wrong, "\n".join(map(str, wrong))


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
    ("POST", "/v1/images/generations", {"prompt": "x", "n": HUGE}),
    # Past a float's range: not a duration (a large but finite one maps to the longest).
    ("POST", "/v1/videos", {"prompt": "x", "seconds": 10**400}),
    ("POST", "/v1/videos", {"prompt": "x", "seconds": "1e400"}),
    ("POST", "/v1/videos", {"prompt": "x", "seconds": "nan"}),
    ("POST", "/v1/videos", {"prompt": "x", "size": "99999999999999999999x1"}),
    ("GET", "/v1/videos?limit=" + str(HUGE), None),
]


async def test_openai_edge_inputs_are_client_errors(
    client: httpx.AsyncClient, admin_user: AuthedUser
) -> None:
    key = await client.post("/api/v1/keys", json={"name": "sdk"}, headers=admin_user.headers)
    headers = {"Authorization": f"Bearer {key.json()['key']}"}
    wrong = []
    for method, url, body in OPENAI_CASES:
        response = await client.request(method, url, json=body, headers=headers)
        error = response.json().get("error", {})
        if not 400 <= response.status_code < 500 or set(error) != {
            "message",
            "type",
            "code",
            "param",
        }:
            wrong.append((method, url, str(body)[:60], response.status_code, response.text[:200]))
    assert not wrong, "\n".join(map(str, wrong))
