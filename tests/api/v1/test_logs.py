"""The request log API: listing with filters and pagination, detail, annotation, deletion."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from fastapi import FastAPI
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from app.models import ApiRequestLog
from tests.conftest import AuthedUser
from tests.core.request_log.helpers import flush_logs, raw_log_rows


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    # Only explicit flushes write: listings must not pick up their own entries half-way.
    return {"request_log_flush_interval": 3600}


@dataclass
class History:
    user_paths: list[tuple[str, str, int]]
    other_log_id: str


async def _logs(client: httpx.AsyncClient, who: AuthedUser, **params: Any) -> dict[str, Any]:
    response = await client.get("/api/v1/logs", params=params, headers=who.headers)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


@pytest.fixture
async def history(
    app: FastAPI,
    client: httpx.AsyncClient,
    user: AuthedUser,
    other_user: AuthedUser,
    cleanup_engine: AsyncEngine,
) -> History:
    h = user.headers
    calls = [
        ("GET", "/api/v1/auth/me", await client.get("/api/v1/auth/me", headers=h)),
        ("GET", "/api/v1/keys", await client.get("/api/v1/keys", headers=h)),
        ("POST", "/api/v1/keys", await client.post("/api/v1/keys", json={"name": "a"}, headers=h)),
        (
            "DELETE",
            "/api/v1/keys/x",
            await client.delete(f"/api/v1/keys/{uuid.uuid4()}", headers=h),
        ),
        ("GET", "/api/v1/auth/me", await client.get("/api/v1/auth/me?x=1", headers=h)),
    ]
    assert (await client.get("/api/v1/auth/me", headers=other_user.headers)).status_code == 200
    await flush_logs(app)
    (other_row,) = await raw_log_rows(cleanup_engine, user_id=other_user.id)
    return History(
        user_paths=[(method, path, response.status_code) for method, path, response in calls],
        other_log_id=other_row["id"],
    )


async def test_lists_own_entries_newest_first(
    client: httpx.AsyncClient, user: AuthedUser, history: History
) -> None:
    page = await _logs(client, user)
    assert page["total"] == 5
    assert (page["page"], page["size"], page["pages"]) == (1, 50, 1)
    items = page["items"]
    assert all(item["user_id"] == user.id for item in items)
    started = [item["started_at"] for item in items]
    assert started == sorted(started, reverse=True)
    assert [item["status_code"] for item in items] == [
        status for _, _, status in reversed(history.user_paths)
    ]
    first = items[-1]
    assert first["path"] == "/api/v1/auth/me"
    assert first["method"] == "GET"
    assert first["duration_ms"] > 0
    assert first["decryption_error"] is None
    assert "request_body" not in first
    assert items[0]["query"] == "x=1"


async def test_pagination(client: httpx.AsyncClient, user: AuthedUser, history: History) -> None:
    everything = (await _logs(client, user))["items"]
    pages = [await _logs(client, user, page=n, size=2) for n in (1, 2, 3)]
    assert [p["pages"] for p in pages] == [3, 3, 3]
    assert [len(p["items"]) for p in pages] == [2, 2, 1]
    assert [i["id"] for p in pages for i in p["items"]] == [i["id"] for i in everything]
    beyond = await _logs(client, user, page=4, size=2)
    assert (beyond["items"], beyond["total"]) == ([], 5)
    for bad in ({"page": 0}, {"size": 0}, {"size": 1000}):
        response = await client.get("/api/v1/logs", params=bad, headers=user.headers)
        assert response.status_code == 422


async def test_filters(client: httpx.AsyncClient, user: AuthedUser, history: History) -> None:
    posts = await _logs(client, user, method="post")
    assert [(i["method"], i["status_code"]) for i in posts["items"]] == [("POST", 201)]
    not_found = await _logs(client, user, status_code=404)
    assert [i["method"] for i in not_found["items"]] == ["DELETE"]
    me = await _logs(client, user, path_contains="AUTH/ME")
    assert me["total"] == 2
    assert (await _logs(client, user, path_contains="%"))["total"] == 0
    assert (await _logs(client, user, path_contains="keys", method="GET"))["total"] == 1

    items = (await _logs(client, user))["items"]
    pivot = items[2]["started_at"]
    after = await _logs(client, user, started_after=pivot)
    before = await _logs(client, user, started_before=pivot)
    assert [i["id"] for i in after["items"]] == [i["id"] for i in items[:3]]
    assert [i["id"] for i in before["items"]] == [i["id"] for i in items[3:]]
    window = await _logs(client, user, started_after=items[3]["started_at"], started_before=pivot)
    assert [i["id"] for i in window["items"]] == [items[3]["id"]]

    for bad in ({"status_code": 99}, {"started_after": "yesterday"}, {"method": "x" * 11}):
        response = await client.get("/api/v1/logs", params=bad, headers=user.headers)
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "validation_error"


async def test_admin_sees_everyone(
    client: httpx.AsyncClient,
    admin_user: AuthedUser,
    user: AuthedUser,
    other_user: AuthedUser,
    history: History,
) -> None:
    everything = await _logs(client, admin_user, size=200)
    owners = {item["user_id"] for item in everything["items"]}
    assert {user.id, other_user.id} <= owners
    assert everything["total"] > 6  # plus the anonymous register/login calls
    only_user = await _logs(client, admin_user, user_id=user.id)
    assert only_user["total"] == 5
    assert {item["user_id"] for item in only_user["items"]} == {user.id}
    detail = await client.get(f"/api/v1/logs/{history.other_log_id}", headers=admin_user.headers)
    assert detail.status_code == 200
    # A non-admin asking for someone else's entries just gets none.
    assert (await _logs(client, user, user_id=other_user.id))["total"] == 0
    assert (await _logs(client, other_user))["total"] == 1


async def test_detail_is_decrypted_and_redacted(
    client: httpx.AsyncClient, user: AuthedUser, history: History
) -> None:
    (created,) = (await _logs(client, user, method="POST"))["items"]
    response = await client.get(f"/api/v1/logs/{created['id']}", headers=user.headers)
    assert response.status_code == 200
    detail = response.json()
    assert detail["id"] == created["id"]
    assert detail["request_headers"]["authorization"] == "<redacted>"
    assert detail["request_content_type"] == "application/json"
    assert detail["request_body"] == '{"name":"a"}'
    assert detail["request_body_truncated"] is False
    assert detail["response_content_type"] == "application/json"
    assert '"key":"<redacted>"' in detail["response_body"]
    assert '"name":"a"' in detail["response_body"]
    assert detail["decryption_error"] is None
    assert detail["query"] is None


async def test_another_users_entry_is_not_found(
    client: httpx.AsyncClient, user: AuthedUser, history: History
) -> None:
    url = f"/api/v1/logs/{history.other_log_id}"
    for response in (
        await client.get(url, headers=user.headers),
        await client.patch(url, json={"note": "mine now"}, headers=user.headers),
        await client.delete(url, headers=user.headers),
    ):
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "log_not_found"
    missing = await client.get(f"/api/v1/logs/{uuid.uuid4()}", headers=user.headers)
    assert missing.status_code == 404
    assert (await client.get("/api/v1/logs")).status_code == 401


async def test_patch_category_tags_and_note(
    client: httpx.AsyncClient,
    user: AuthedUser,
    other_user: AuthedUser,
    history: History,
    cleanup_engine: AsyncEngine,
) -> None:
    category = (
        await client.post("/api/v1/categories", json={"name": "debug"}, headers=user.headers)
    ).json()
    target = (await _logs(client, user))["items"][-1]
    url = f"/api/v1/logs/{target['id']}"
    response = await client.patch(
        url,
        json={"category_id": category["id"], "tags": ["slow", " retry ", "slow"], "note": "Note42"},
        headers=user.headers,
    )
    assert response.status_code == 200, response.text
    patched = response.json()
    assert patched["category_id"] == category["id"]
    assert patched["tags"] == ["slow", "retry"]
    assert patched["note"] == "Note42"

    (row,) = await raw_log_rows(cleanup_engine, id=target["id"])
    assert "Note42" not in repr(row)
    assert row["tags"] == ["slow", "retry"]

    in_category = await _logs(client, user, category_id=category["id"])
    assert [item["id"] for item in in_category["items"]] == [target["id"]]
    assert in_category["items"][0]["note"] == "Note42"

    # Only the fields sent change.
    cleared = (await client.patch(url, json={"note": None}, headers=user.headers)).json()
    assert (cleared["note"], cleared["tags"], cleared["category_id"]) == (
        None,
        ["slow", "retry"],
        category["id"],
    )
    uncategorised = await client.patch(url, json={"category_id": None}, headers=user.headers)
    assert uncategorised.json()["category_id"] is None

    foreign = (
        await client.post("/api/v1/categories", json={"name": "theirs"}, headers=other_user.headers)
    ).json()
    stolen = await client.patch(url, json={"category_id": foreign["id"]}, headers=user.headers)
    assert stolen.status_code == 404
    assert stolen.json()["error"]["code"] == "category_not_found"

    for bad in (
        {"tags": ["x" * 33]},
        {"tags": [""]},
        {"tags": [f"t{i}" for i in range(21)]},
        {"note": "n" * 4001},
        {"colour": "red"},
    ):
        response = await client.patch(url, json=bad, headers=user.headers)
        assert response.status_code == 422, bad


async def test_delete_entry(client: httpx.AsyncClient, user: AuthedUser, history: History) -> None:
    target = (await _logs(client, user))["items"][0]
    deleted = await client.delete(f"/api/v1/logs/{target['id']}", headers=user.headers)
    assert deleted.status_code == 204
    gone = await client.get(f"/api/v1/logs/{target['id']}", headers=user.headers)
    assert gone.status_code == 404
    assert (await _logs(client, user))["total"] == 4


async def test_undecryptable_row_reports_an_error_and_never_breaks_a_listing(
    client: httpx.AsyncClient, user: AuthedUser, history: History, cleanup_engine: AsyncEngine
) -> None:
    foreign = Fernet(Fernet.generate_key())
    bad_id = str(uuid.uuid4())
    async with cleanup_engine.begin() as conn:
        await conn.execute(
            insert(ApiRequestLog).values(
                id=bad_id,
                request_id=str(uuid.uuid4()),
                started_at=datetime.now(UTC) + timedelta(seconds=5),
                duration_ms=1.0,
                method="GET",
                path="/api/v1/old",
                status_code=200,
                user_id=user.id,
                query_encrypted=foreign.encrypt(b"a=1").decode(),
                request_headers_encrypted=foreign.encrypt(b"{}").decode(),
                request_body_encrypted="not-a-fernet-token",
                note_encrypted=foreign.encrypt(b"old note").decode(),
                request_bytes=0,
                response_bytes=0,
                tags=[],
            )
        )
    listing = await _logs(client, user)
    assert listing["total"] == 6
    broken, *healthy = listing["items"]
    assert broken["id"] == bad_id
    assert broken["path"] == "/api/v1/old"
    assert broken["query"] is None
    assert broken["note"] is None
    assert "query" in broken["decryption_error"]
    assert "note" in broken["decryption_error"]
    assert "cannot be decrypted" in broken["decryption_error"]
    assert all(item["decryption_error"] is None for item in healthy)

    response = await client.get(f"/api/v1/logs/{bad_id}", headers=user.headers)
    assert response.status_code == 200
    detail = response.json()
    for field in ("query", "request_headers", "request_body"):
        assert field in detail["decryption_error"]
    assert detail["request_body"] is None
    assert detail["request_headers"] is None

    # Annotating still works, and a new note is readable again.
    patched = await client.patch(
        f"/api/v1/logs/{bad_id}", json={"note": "fresh"}, headers=user.headers
    )
    assert patched.status_code == 200
    assert patched.json()["note"] == "fresh"
