"""Request-log categories: each user's own, unique by name per user."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import AuthedUser
from tests.core.request_log.helpers import flush_logs


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"request_log_flush_interval": 3600}


async def _create(client: httpx.AsyncClient, who: AuthedUser, **body: Any) -> dict[str, Any]:
    response = await client.post("/api/v1/categories", json=body, headers=who.headers)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


async def test_crud(client: httpx.AsyncClient, user: AuthedUser) -> None:
    created = await _create(
        client, user, name=" uploads ", color="#ff8800", description="image uploads"
    )
    assert created["name"] == "uploads"
    assert created["color"] == "#ff8800"
    assert created["description"] == "image uploads"
    assert uuid.UUID(created["id"])
    await _create(client, user, name="errors")

    listed = (await client.get("/api/v1/categories", headers=user.headers)).json()
    assert [c["name"] for c in listed] == ["errors", "uploads"]

    url = f"/api/v1/categories/{created['id']}"
    fetched = await client.get(url, headers=user.headers)
    assert fetched.json() == created

    patched = await client.patch(url, json={"name": "media", "color": None}, headers=user.headers)
    assert patched.status_code == 200
    assert (patched.json()["name"], patched.json()["color"]) == ("media", None)
    assert patched.json()["description"] == "image uploads"

    deleted = await client.delete(url, headers=user.headers)
    assert deleted.status_code == 204
    assert (await client.get(url, headers=user.headers)).status_code == 404
    listed = (await client.get("/api/v1/categories", headers=user.headers)).json()
    assert [c["name"] for c in listed] == ["errors"]


async def test_duplicate_name_is_a_conflict_per_user(
    client: httpx.AsyncClient, user: AuthedUser, other_user: AuthedUser
) -> None:
    first = await _create(client, user, name="debug")
    second = await _create(client, user, name="prod")
    duplicate = await client.post(
        "/api/v1/categories", json={"name": "debug"}, headers=user.headers
    )
    assert duplicate.status_code == 409
    assert duplicate.json()["error"]["code"] == "category_exists"
    renamed = await client.patch(
        f"/api/v1/categories/{second['id']}", json={"name": "debug"}, headers=user.headers
    )
    assert renamed.status_code == 409
    # Renaming to its own name is no conflict.
    same = await client.patch(
        f"/api/v1/categories/{first['id']}", json={"name": "debug"}, headers=user.headers
    )
    assert same.status_code == 200
    # Another user may use the same name.
    await _create(client, other_user, name="debug")


async def test_another_users_category_is_not_found(
    client: httpx.AsyncClient, user: AuthedUser, other_user: AuthedUser
) -> None:
    mine = await _create(client, user, name="mine")
    url = f"/api/v1/categories/{mine['id']}"
    for response in (
        await client.get(url, headers=other_user.headers),
        await client.patch(url, json={"name": "stolen"}, headers=other_user.headers),
        await client.delete(url, headers=other_user.headers),
    ):
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "category_not_found"
    assert (await client.get("/api/v1/categories", headers=other_user.headers)).json() == []
    assert (await client.get(url, headers=user.headers)).json()["name"] == "mine"


async def test_validation(client: httpx.AsyncClient, user: AuthedUser) -> None:
    for body in (
        {},
        {"name": ""},
        {"name": "x" * 65},
        {"name": "a", "color": "not a colour!"},
        {"name": "a", "color": "#12345"},
        {"name": "a", "description": "d" * 501},
        {"name": "a", "extra": 1},
    ):
        response = await client.post("/api/v1/categories", json=body, headers=user.headers)
        assert response.status_code == 422, body
        assert response.json()["error"]["code"] == "validation_error"
    created = await _create(client, user, name="ok", color="teal")
    nulled = await client.patch(
        f"/api/v1/categories/{created['id']}", json={"name": None}, headers=user.headers
    )
    assert nulled.status_code == 422
    assert (await client.get("/api/v1/categories")).status_code == 401


async def test_deleting_a_category_uncategorises_its_entries(
    app: FastAPI, client: httpx.AsyncClient, user: AuthedUser
) -> None:
    assert (await client.get("/api/v1/auth/me", headers=user.headers)).status_code == 200
    await flush_logs(app)
    (entry,) = (await client.get("/api/v1/logs", headers=user.headers)).json()["items"]
    category = await _create(client, user, name="temp")
    patched = await client.patch(
        f"/api/v1/logs/{entry['id']}", json={"category_id": category["id"]}, headers=user.headers
    )
    assert patched.json()["category_id"] == category["id"]

    deleted = await client.delete(f"/api/v1/categories/{category['id']}", headers=user.headers)
    assert deleted.status_code == 204
    detail = (await client.get(f"/api/v1/logs/{entry['id']}", headers=user.headers)).json()
    assert detail["category_id"] is None


async def test_concurrent_duplicates_give_one_category(
    client: httpx.AsyncClient, user: AuthedUser
) -> None:
    responses = await asyncio.gather(
        *(
            client.post("/api/v1/categories", json={"name": "race"}, headers=user.headers)
            for _ in range(10)
        )
    )
    assert sorted(r.status_code for r in responses) == [201] + [409] * 9
    listed = (await client.get("/api/v1/categories", headers=user.headers)).json()
    assert [c["name"] for c in listed] == ["race"]
