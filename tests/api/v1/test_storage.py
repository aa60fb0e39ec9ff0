from __future__ import annotations

import httpx
from fastapi import FastAPI

from app.core import quota
from app.core.config import Settings
from app.db.session import Database
from tests.conftest import AuthedUser


async def test_storage_me_defaults_to_the_configured_quota(
    client: httpx.AsyncClient, user: AuthedUser, settings: Settings
) -> None:
    response = await client.get("/api/v1/storage/me", headers=user.headers)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "quota_bytes": settings.default_storage_quota_bytes,
        "used_bytes": 0,
        "available_bytes": settings.default_storage_quota_bytes,
        "used_percent": 0.0,
        "by_kind": {},
    }


async def test_storage_me_follows_reservations_and_is_per_user(
    app: FastAPI, client: httpx.AsyncClient, user: AuthedUser, other_user: AuthedUser
) -> None:
    database: Database = app.state.db
    async with database.session() as session:
        assert await quota.reserve(session, user.id, 256 * 1024**2)

    mine = (await client.get("/api/v1/storage/me", headers=user.headers)).json()
    theirs = (await client.get("/api/v1/storage/me", headers=other_user.headers)).json()

    assert mine["used_bytes"] == 256 * 1024**2
    assert mine["available_bytes"] == mine["quota_bytes"] - 256 * 1024**2
    assert mine["used_percent"] == round(256 * 1024**2 * 100 / mine["quota_bytes"], 2)
    assert theirs["used_bytes"] == 0


async def test_storage_me_after_the_quota_was_lowered_below_usage(
    app: FastAPI, client: httpx.AsyncClient, admin_user: AuthedUser, user: AuthedUser
) -> None:
    database: Database = app.state.db
    async with database.session() as session:
        assert await quota.reserve(session, user.id, 3000)
    lowered = await client.patch(
        f"/api/v1/admin/users/{user.id}/quota",
        json={"storage_quota_bytes": 2000},
        headers=admin_user.headers,
    )
    assert lowered.status_code == 200, lowered.text

    body = (await client.get("/api/v1/storage/me", headers=user.headers)).json()
    assert body["quota_bytes"] == 2000
    assert body["used_bytes"] == 3000
    assert body["available_bytes"] == 0
    assert body["used_percent"] == 150.0


async def test_storage_me_requires_authentication(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/storage/me")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
