"""Admin user management over HTTP: listing, search, pagination, enable/disable, admin rights,
quotas; 403 for everyone else, 404 for unknown ids."""

from __future__ import annotations

import uuid

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from app.db.session import Database
from app.models import UserSession
from tests.conftest import TEST_PASSWORD, AuthedUser, register_and_login

USERS = "/api/v1/admin/users"


async def test_non_admins_get_403_and_anonymous_401(
    client: httpx.AsyncClient, user: AuthedUser
) -> None:
    target = f"{USERS}/{user.id}"
    for method, url, body in (
        ("GET", USERS, None),
        ("GET", target, None),
        ("PATCH", target, {"is_admin": True}),
        ("PATCH", f"{target}/quota", {"storage_quota_bytes": 10**12}),
    ):
        response = await client.request(method, url, json=body, headers=user.headers)
        assert response.status_code == 403, (method, url, response.text)
        assert response.json()["error"]["code"] == "admin_required"
        anonymous = await client.request(method, url, json=body)
        assert anonymous.status_code == 401
    # The attempted self-promotion did not happen.
    me = await client.get("/api/v1/auth/me", headers=user.headers)
    assert me.json()["is_admin"] is False


async def test_list_returns_every_user_with_admin_fields(
    client: httpx.AsyncClient, admin_user: AuthedUser, user: AuthedUser, other_user: AuthedUser
) -> None:
    response = await client.get(USERS, headers=admin_user.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["total"], body["page"], body["size"], body["pages"]) == (3, 1, 20, 1)
    assert [item["username"] for item in body["items"]] == ["admin", "alice", "mallory"]
    alice = body["items"][1]
    assert alice["id"] == user.id
    assert alice["email"] == user.email
    assert alice["is_active"] is True
    assert alice["is_admin"] is False
    assert alice["storage_used_bytes"] == 0
    assert alice["storage_quota_bytes"] > 0
    assert "password_hash" not in alice
    assert body["items"][0]["is_admin"] is True


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"search": "ali"}, ["alice"]),
        ({"search": "ALICE@EXAMPLE"}, ["alice"]),  # e-mail, case-insensitive
        ({"search": "example.com"}, ["admin", "alice", "mallory"]),
        ({"search": "nobody"}, []),
        ({"search": "%"}, []),  # LIKE wildcards are literal
        ({"search": "_"}, []),
        ({"is_admin": "true"}, ["admin"]),
        ({"is_admin": "false"}, ["alice", "mallory"]),
        ({"is_admin": "false", "search": "EXAMPLE"}, ["alice", "mallory"]),
        ({"is_active": "true", "search": "ice"}, ["alice"]),
        ({"is_active": "false"}, []),
    ],
)
async def test_search_and_filters(
    client: httpx.AsyncClient,
    admin_user: AuthedUser,
    user: AuthedUser,
    other_user: AuthedUser,
    params: dict[str, str],
    expected: list[str],
) -> None:
    response = await client.get(USERS, params=params, headers=admin_user.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [item["username"] for item in body["items"]] == expected
    assert body["total"] == len(expected)


async def test_pagination(client: httpx.AsyncClient, admin_user: AuthedUser) -> None:
    for i in range(4):
        await register_and_login(client, f"page{i}")
    pages = []
    for page in (1, 2, 3):
        response = await client.get(
            USERS, params={"page": page, "size": 2}, headers=admin_user.headers
        )
        assert response.status_code == 200
        pages.append(response.json())
    assert [p["total"] for p in pages] == [5, 5, 5]
    assert [p["pages"] for p in pages] == [3, 3, 3]
    names = [[item["username"] for item in p["items"]] for p in pages]
    assert names == [["admin", "page0"], ["page1", "page2"], ["page3"]]

    beyond = await client.get(USERS, params={"page": 9, "size": 2}, headers=admin_user.headers)
    assert beyond.json()["items"] == []
    assert beyond.json()["total"] == 5


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"size": 0}, "size"),
        ({"size": 101}, "size"),
        ({"page": 0}, "page"),
        ({"page": "x"}, "page"),
        ({"is_active": "maybe"}, "is_active"),
    ],
)
async def test_bad_list_parameters_are_422(
    client: httpx.AsyncClient, admin_user: AuthedUser, params: dict[str, object], field: str
) -> None:
    response = await client.get(USERS, params=params, headers=admin_user.headers)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert field in [d["field"] for d in error["details"]]


async def test_get_one_user_and_unknown_ids(
    client: httpx.AsyncClient, admin_user: AuthedUser, user: AuthedUser
) -> None:
    response = await client.get(f"{USERS}/{user.id}", headers=admin_user.headers)
    assert response.status_code == 200
    assert response.json()["username"] == "alice"

    unknown = str(uuid.uuid4())
    for method, url, body in (
        ("GET", f"{USERS}/{unknown}", None),
        ("GET", f"{USERS}/not-a-uuid", None),
        ("PATCH", f"{USERS}/{unknown}", {"is_active": False}),
        ("PATCH", f"{USERS}/{unknown}/quota", {"storage_quota_bytes": 1}),
    ):
        response = await client.request(method, url, json=body, headers=admin_user.headers)
        assert response.status_code == 404, (method, url, response.text)
        assert response.json()["error"]["code"] == "user_not_found"


async def test_disabling_a_user_revokes_their_sessions_at_once(
    app: FastAPI, client: httpx.AsyncClient, admin_user: AuthedUser, user: AuthedUser
) -> None:
    assert (await client.get("/api/v1/auth/me", headers=user.headers)).status_code == 200

    response = await client.patch(
        f"{USERS}/{user.id}", json={"is_active": False}, headers=admin_user.headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["is_active"] is False

    rejected = await client.get("/api/v1/storage/me", headers=user.headers)
    assert rejected.status_code == 401
    database: Database = app.state.db
    async with database.session() as session:
        sessions = (
            await session.scalars(select(UserSession).where(UserSession.user_id == user.id))
        ).all()
    assert sessions
    assert all(s.revoked_at is not None for s in sessions)
    disabled_login = await client.post(
        "/api/v1/auth/login", json={"username_or_email": user.username, "password": TEST_PASSWORD}
    )
    assert disabled_login.status_code in (401, 403)

    enabled = await client.patch(
        f"{USERS}/{user.id}", json={"is_active": True}, headers=admin_user.headers
    )
    assert enabled.json()["is_active"] is True
    # Re-enabling does not resurrect the revoked session; a fresh sign-in works.
    assert (await client.get("/api/v1/auth/me", headers=user.headers)).status_code == 401
    login = await client.post(
        "/api/v1/auth/login", json={"username_or_email": user.username, "password": TEST_PASSWORD}
    )
    assert login.status_code == 200, login.text
    fresh = {"Authorization": f"Bearer {login.json()['access_token']}"}
    assert (await client.get("/api/v1/auth/me", headers=fresh)).status_code == 200


async def test_disabling_one_user_leaves_others_signed_in(
    client: httpx.AsyncClient, admin_user: AuthedUser, user: AuthedUser, other_user: AuthedUser
) -> None:
    await client.patch(f"{USERS}/{user.id}", json={"is_active": False}, headers=admin_user.headers)
    assert (await client.get("/api/v1/auth/me", headers=other_user.headers)).status_code == 200
    assert (await client.get("/api/v1/auth/me", headers=admin_user.headers)).status_code == 200
    disabled = await client.get(USERS, params={"is_active": False}, headers=admin_user.headers)
    assert [item["id"] for item in disabled.json()["items"]] == [user.id]


@pytest.mark.parametrize("body", [{"is_active": False}, {"is_admin": False}])
async def test_admin_cannot_disable_or_demote_themselves(
    client: httpx.AsyncClient, admin_user: AuthedUser, body: dict[str, bool]
) -> None:
    response = await client.patch(f"{USERS}/{admin_user.id}", json=body, headers=admin_user.headers)
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "cannot_modify_self"
    assert "your own" in error["message"]
    me = await client.get("/api/v1/auth/me", headers=admin_user.headers)
    assert me.status_code == 200
    assert me.json()["is_admin"] is True
    assert me.json()["is_active"] is True


async def test_admin_may_send_harmless_self_updates(
    client: httpx.AsyncClient, admin_user: AuthedUser
) -> None:
    response = await client.patch(
        f"{USERS}/{admin_user.id}",
        json={"is_active": True, "is_admin": True},
        headers=admin_user.headers,
    )
    assert response.status_code == 200
    assert response.json()["is_admin"] is True


async def test_granting_and_withdrawing_admin_rights(
    client: httpx.AsyncClient, admin_user: AuthedUser, user: AuthedUser
) -> None:
    promoted = await client.patch(
        f"{USERS}/{user.id}", json={"is_admin": True}, headers=admin_user.headers
    )
    assert promoted.status_code == 200
    assert promoted.json()["is_admin"] is True
    assert (await client.get(USERS, headers=user.headers)).status_code == 200

    # The new admin can demote the one who promoted them (just not themselves).
    demoted = await client.patch(
        f"{USERS}/{admin_user.id}", json={"is_admin": False}, headers=user.headers
    )
    assert demoted.status_code == 200
    forbidden = await client.get(USERS, headers=admin_user.headers)
    assert forbidden.status_code == 403
    assert forbidden.json()["error"]["code"] == "admin_required"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"active": False}, "active"),
        ({"is_active": "definitely"}, "is_active"),
        ({"is_admin": [True]}, "is_admin"),
    ],
)
async def test_bad_update_bodies_are_422(
    client: httpx.AsyncClient,
    admin_user: AuthedUser,
    user: AuthedUser,
    body: dict[str, object],
    field: str,
) -> None:
    response = await client.patch(f"{USERS}/{user.id}", json=body, headers=admin_user.headers)
    assert response.status_code == 422
    assert field in [d["field"] for d in response.json()["error"]["details"]]


async def test_quota_edit(
    client: httpx.AsyncClient, admin_user: AuthedUser, user: AuthedUser
) -> None:
    response = await client.patch(
        f"{USERS}/{user.id}/quota",
        json={"storage_quota_bytes": 5 * 1024**3},
        headers=admin_user.headers,
    )
    assert response.status_code == 200, response.text
    assert response.json()["storage_quota_bytes"] == 5 * 1024**3
    storage = (await client.get("/api/v1/storage/me", headers=user.headers)).json()
    assert storage["quota_bytes"] == 5 * 1024**3

    zero = await client.patch(
        f"{USERS}/{user.id}/quota", json={"storage_quota_bytes": 0}, headers=admin_user.headers
    )
    assert zero.json()["storage_quota_bytes"] == 0


@pytest.mark.parametrize(
    "body",
    [
        {"storage_quota_bytes": -1},
        {"storage_quota_bytes": 2**63},
        {"storage_quota_bytes": "lots"},
        {"storage_quota_bytes": 1.5},
        {},
        {"storage_quota_bytes": 10, "extra": 1},
    ],
)
async def test_bad_quota_bodies_are_422(
    client: httpx.AsyncClient, admin_user: AuthedUser, user: AuthedUser, body: dict[str, object]
) -> None:
    response = await client.patch(f"{USERS}/{user.id}/quota", json=body, headers=admin_user.headers)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"
    unchanged = (await client.get(f"{USERS}/{user.id}", headers=admin_user.headers)).json()
    assert unchanged["storage_quota_bytes"] > 0
