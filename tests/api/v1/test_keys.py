"""API keys: created with the secret shown once, listed without it, revoked, expiring."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.security import hash_api_key
from app.models import ApiKey
from tests.conftest import AuthedUser


async def _create(
    client: httpx.AsyncClient, headers: dict[str, str], **body: Any
) -> dict[str, Any]:
    response = await client.post("/api/v1/keys", json={"name": "ci", **body}, headers=headers)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


def _bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def test_create_shows_the_secret_once(
    client: httpx.AsyncClient, user: AuthedUser, cleanup_engine: AsyncEngine
) -> None:
    response = await client.post("/api/v1/keys", json={"name": "  laptop  "}, headers=user.headers)
    assert response.status_code == 201
    assert response.headers["cache-control"] == "no-store"
    key = response.json()
    assert set(key) == {
        "id",
        "name",
        "prefix",
        "created_at",
        "expires_at",
        "last_used_at",
        "revoked_at",
        "key",
    }
    assert key["name"] == "laptop"
    assert key["key"].startswith("gk_")
    assert len(key["key"]) > 40
    assert key["prefix"] == key["key"][:11]
    assert key["expires_at"] is None
    assert key["last_used_at"] is None
    assert key["revoked_at"] is None

    listed = await client.get("/api/v1/keys", headers=user.headers)
    assert listed.status_code == 200
    (item,) = listed.json()
    assert item["id"] == key["id"]
    assert "key" not in item
    assert "key_hash" not in item
    assert key["key"] not in listed.text

    # Stored as a hash and a display prefix only.
    async with cleanup_engine.connect() as conn:
        row = (await conn.execute(select(ApiKey.__table__))).one()._mapping
    assert row["key_hash"] == hash_api_key(key["key"])
    assert key["key"] not in repr(dict(row))


async def test_key_authenticates_and_records_last_use(
    client: httpx.AsyncClient, user: AuthedUser
) -> None:
    key = await _create(client, user.headers)
    me = await client.get("/api/v1/auth/me", headers=_bearer(key["key"]))
    assert me.status_code == 200
    assert me.json()["id"] == user.id

    (listed,) = (await client.get("/api/v1/keys", headers=user.headers)).json()
    assert listed["last_used_at"] is not None
    used_at = datetime.fromisoformat(listed["last_used_at"])
    assert abs(datetime.now(UTC) - used_at) < timedelta(minutes=1)

    # A second use within the minute does not write again.
    assert (await client.get("/api/v1/auth/me", headers=_bearer(key["key"]))).status_code == 200
    (again,) = (await client.get("/api/v1/keys", headers=user.headers)).json()
    assert again["last_used_at"] == listed["last_used_at"]


async def test_last_used_is_refreshed_after_a_minute(
    client: httpx.AsyncClient, user: AuthedUser, cleanup_engine: AsyncEngine
) -> None:
    key = await _create(client, user.headers)
    stale = datetime.now(UTC) - timedelta(minutes=5)
    async with cleanup_engine.begin() as conn:
        await conn.execute(update(ApiKey).where(ApiKey.id == key["id"]).values(last_used_at=stale))
    assert (await client.get("/api/v1/auth/me", headers=_bearer(key["key"]))).status_code == 200
    (listed,) = (await client.get("/api/v1/keys", headers=user.headers)).json()
    assert datetime.fromisoformat(listed["last_used_at"]) > stale + timedelta(minutes=4)


async def test_key_can_create_keys(client: httpx.AsyncClient, user: AuthedUser) -> None:
    key = await _create(client, user.headers)
    child = await _create(client, _bearer(key["key"]), name="made by a key")
    listed = (await client.get("/api/v1/keys", headers=_bearer(child["key"]))).json()
    assert {item["name"] for item in listed} == {"ci", "made by a key"}


async def test_revoked_key_is_rejected(client: httpx.AsyncClient, user: AuthedUser) -> None:
    key = await _create(client, user.headers)
    revoked = await client.delete(f"/api/v1/keys/{key['id']}", headers=user.headers)
    assert revoked.status_code == 204
    assert revoked.content == b""

    rejected = await client.get("/api/v1/auth/me", headers=_bearer(key["key"]))
    assert rejected.status_code == 401
    assert rejected.json()["error"]["code"] == "api_key_revoked"

    (listed,) = (await client.get("/api/v1/keys", headers=user.headers)).json()
    assert listed["revoked_at"] is not None
    # Revoking again is harmless and keeps the first revocation time.
    again = await client.delete(f"/api/v1/keys/{key['id']}", headers=user.headers)
    assert again.status_code == 204
    (relisted,) = (await client.get("/api/v1/keys", headers=user.headers)).json()
    assert relisted["revoked_at"] == listed["revoked_at"]


async def test_expired_key_is_rejected(
    client: httpx.AsyncClient, user: AuthedUser, cleanup_engine: AsyncEngine
) -> None:
    expires = datetime.now(UTC) + timedelta(days=30)
    key = await _create(client, user.headers, expires_at=expires.isoformat())
    assert abs(datetime.fromisoformat(key["expires_at"]) - expires) < timedelta(seconds=1)
    assert (await client.get("/api/v1/auth/me", headers=_bearer(key["key"]))).status_code == 200

    past = datetime.now(UTC) - timedelta(seconds=1)
    async with cleanup_engine.begin() as conn:
        await conn.execute(update(ApiKey).where(ApiKey.id == key["id"]).values(expires_at=past))
    rejected = await client.get("/api/v1/auth/me", headers=_bearer(key["key"]))
    assert rejected.status_code == 401
    assert rejected.json()["error"]["code"] == "api_key_expired"


async def test_expiry_must_be_in_the_future(client: httpx.AsyncClient, user: AuthedUser) -> None:
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    response = await client.post(
        "/api/v1/keys", json={"name": "old", "expires_at": past}, headers=user.headers
    )
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert [d["field"] for d in error["details"]] == ["expires_at"]
    assert (await client.get("/api/v1/keys", headers=user.headers)).json() == []


async def test_name_is_validated(client: httpx.AsyncClient, user: AuthedUser) -> None:
    for body in ({"name": ""}, {"name": "   "}, {"name": "x" * 101}, {}, {"name": "a", "x": 1}):
        response = await client.post("/api/v1/keys", json=body, headers=user.headers)
        assert response.status_code == 422, body
        assert response.json()["error"]["code"] == "validation_error"
    assert (await _create(client, user.headers, name="x" * 100))["name"] == "x" * 100


async def test_another_users_key_is_invisible(
    client: httpx.AsyncClient, user: AuthedUser, other_user: AuthedUser
) -> None:
    key = await _create(client, user.headers)
    assert (await client.get("/api/v1/keys", headers=other_user.headers)).json() == []
    stolen = await client.delete(f"/api/v1/keys/{key['id']}", headers=other_user.headers)
    assert stolen.status_code == 404
    assert stolen.json()["error"]["code"] == "api_key_not_found"
    missing = await client.delete(f"/api/v1/keys/{uuid.uuid4()}", headers=user.headers)
    assert missing.status_code == 404
    # Still working for its owner.
    assert (await client.get("/api/v1/auth/me", headers=_bearer(key["key"]))).status_code == 200


async def test_unknown_or_missing_credentials(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/v1/keys")).status_code == 401
    unknown = await client.get("/api/v1/auth/me", headers=_bearer("gk_not-a-real-key"))
    assert unknown.status_code == 401
    assert unknown.json()["error"]["code"] == "invalid_api_key"
    assert (await client.post("/api/v1/keys", json={"name": "x"})).status_code == 401
