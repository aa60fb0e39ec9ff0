"""Accounts and sessions over HTTP: register, login (bearer and cookie), me, logout, password,
sessions, throttling, and the login log."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, update

from app.core.security import generate_api_key, hash_api_key, hash_password
from app.models import ApiKey, User, UserLoginLog, UserSession
from tests.conftest import TEST_PASSWORD, AuthedUser, register_and_login

AUTH = "/api/v1/auth"


async def _login(
    client: httpx.AsyncClient, identifier: str, password: str = TEST_PASSWORD, **kwargs: Any
) -> httpx.Response:
    return await client.post(
        f"{AUTH}/login", json={"username_or_email": identifier, "password": password}, **kwargs
    )


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _execute(app: FastAPI, statement: Any) -> None:
    async with app.state.db.session() as db:
        await db.execute(statement)


async def _login_logs(app: FastAPI) -> list[UserLoginLog]:
    async with app.state.db.session() as db:
        return list(
            (await db.scalars(select(UserLoginLog).order_by(UserLoginLog.created_at))).all()
        )


async def _make_api_key(app: FastAPI, user_id: str) -> str:
    secret = generate_api_key()
    async with app.state.db.session() as db:
        db.add(
            ApiKey(user_id=user_id, name="test", prefix=secret[:11], key_hash=hash_api_key(secret))
        )
    return secret


# --- register -------------------------------------------------------------------------------


async def test_register_returns_user_and_first_user_is_admin(client: httpx.AsyncClient) -> None:
    first = await client.post(
        f"{AUTH}/register",
        json={"username": "First.User", "email": "first@example.com", "password": "p" * 8},
    )
    assert first.status_code == 201, first.text
    body = first.json()
    assert set(body) == {
        "id",
        "username",
        "email",
        "is_admin",
        "is_active",
        "storage_quota_bytes",
        "storage_used_bytes",
        "created_at",
    }
    assert body["username"] == "First.User"
    assert body["is_admin"] is True
    assert body["is_active"] is True
    assert body["storage_quota_bytes"] == 1024**3
    assert body["storage_used_bytes"] == 0

    second = await client.post(
        f"{AUTH}/register",
        json={"username": "second", "email": "second@example.com", "password": "p" * 128},
    )
    assert second.status_code == 201, second.text
    assert second.json()["is_admin"] is False


@pytest.mark.parametrize(
    "settings_overrides", [{"admin_username": "Boss", "default_storage_quota_bytes": 12345}]
)
async def test_admin_username_setting_makes_that_user_admin(client: httpx.AsyncClient) -> None:
    await register_and_login(client, "someone")
    boss = await client.post(
        f"{AUTH}/register",
        json={"username": "boss", "email": "boss@example.com", "password": TEST_PASSWORD},
    )
    assert boss.status_code == 201
    assert boss.json()["is_admin"] is True
    assert boss.json()["storage_quota_bytes"] == 12345


async def test_password_is_stored_hashed(client: httpx.AsyncClient, app: FastAPI) -> None:
    created = await register_and_login(client, "hashme")
    async with app.state.db.session() as db:
        stored = await db.scalar(select(User.password_hash).where(User.id == created.id))
    assert stored is not None
    assert TEST_PASSWORD not in stored
    assert stored.startswith("$2b$")


@pytest.mark.parametrize(
    ("username", "email", "field"),
    [
        ("ALICE", "new@example.com", "username"),
        ("newname", "Alice@Example.COM", "email"),
    ],
)
async def test_register_duplicate_is_409_case_insensitive(
    client: httpx.AsyncClient, username: str, email: str, field: str
) -> None:
    await register_and_login(client, "alice")
    response = await client.post(
        f"{AUTH}/register", json={"username": username, "email": email, "password": TEST_PASSWORD}
    )
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == f"{field}_taken"
    assert error["details"] == {"field": field}


async def test_concurrent_duplicate_registrations_give_one_201_and_409s(
    client: httpx.AsyncClient,
) -> None:
    async def attempt(i: int) -> int:
        response = await client.post(
            f"{AUTH}/register",
            json={"username": "racer", "email": f"racer{i}@example.com", "password": TEST_PASSWORD},
        )
        return response.status_code

    statuses = await asyncio.gather(*(attempt(i) for i in range(6)))
    assert sorted(statuses) == [201] + [409] * 5


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"username": "ab", "email": "a@example.com", "password": TEST_PASSWORD}, "username"),
        ({"username": "a" * 51, "email": "a@example.com", "password": TEST_PASSWORD}, "username"),
        ({"username": "bad name", "email": "a@example.com", "password": TEST_PASSWORD}, "username"),
        ({"username": "valid", "email": "not-an-email", "password": TEST_PASSWORD}, "email"),
        ({"username": "valid", "email": "a@example.com", "password": "Zq9x!"}, "password"),
        ({"username": "valid", "email": "a@example.com", "password": "p" * 129}, "password"),
        ({"username": "valid", "email": "a@example.com"}, "password"),
    ],
)
async def test_register_validation_names_the_field(
    client: httpx.AsyncClient, payload: dict[str, str], field: str
) -> None:
    response = await client.post(f"{AUTH}/register", json=payload)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert [d["field"] for d in error["details"]] == [field]
    # The password is never echoed back in an error.
    if "password" in payload:
        assert payload["password"] not in response.text


# --- login ----------------------------------------------------------------------------------


async def test_login_returns_token_and_records_session(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    await register_and_login(client, "bob")
    response = await _login(client, "BOB@example.com", headers={"User-Agent": "pytest-agent/1"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == app.state.settings.jwt_expire_minutes * 60
    assert "set-cookie" not in response.headers
    async with app.state.db.session() as db:
        row = await db.get(UserSession, body["session_id"])
    assert row is not None
    assert row.ip_address == "203.0.113.7"
    assert row.user_agent == "pytest-agent/1"
    lifetime = (row.expires_at - row.created_at).total_seconds()
    assert abs(lifetime - body["expires_in"]) < 2
    me = await client.get(f"{AUTH}/me", headers=_bearer(body["access_token"]))
    assert me.status_code == 200
    assert me.json()["username"] == "bob"


async def test_wrong_password_and_unknown_user_get_the_same_401(
    client: httpx.AsyncClient,
) -> None:
    await register_and_login(client, "carol")
    wrong = await _login(client, "carol", "not the password")
    unknown = await _login(client, "nobody-here", "not the password")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert wrong.json()["error"]["code"] == "invalid_credentials"


async def test_every_login_attempt_is_logged(client: httpx.AsyncClient, app: FastAPI) -> None:
    user = await register_and_login(client, "Dave")  # one successful login
    await _login(client, "DAVE", "wrong password", headers={"User-Agent": "ua-test"})
    await _login(client, "Ghost@Example.com", "whatever")
    logs = await _login_logs(app)
    assert [(log.identifier, log.success, log.reason) for log in logs] == [
        ("dave", True, None),
        ("dave", False, "invalid_credentials"),
        ("ghost@example.com", False, "invalid_credentials"),
    ]
    assert logs[0].user_id == logs[1].user_id == user.id
    assert logs[2].user_id is None
    assert all(log.ip_address == "203.0.113.7" for log in logs)
    assert logs[1].user_agent == "ua-test"


async def test_login_upgrades_a_weak_hash(client: httpx.AsyncClient, app: FastAPI) -> None:
    user = await register_and_login(client, "legacy")
    weak = hash_password(TEST_PASSWORD, rounds=4)
    await _execute(app, update(User).where(User.id == user.id).values(password_hash=weak))
    app.state.settings.bcrypt_rounds = 5
    try:
        assert (await _login(client, "legacy")).status_code == 200
    finally:
        app.state.settings.bcrypt_rounds = 4
    async with app.state.db.session() as db:
        stored = await db.scalar(select(User.password_hash).where(User.id == user.id))
    assert stored is not None
    assert stored.startswith("$2b$05$")
    assert (await _login(client, "legacy")).status_code == 200


def _cookie_attributes(response: httpx.Response, name: str) -> dict[str, str]:
    for header in response.headers.get_list("set-cookie"):
        first, *attributes = (part.strip() for part in header.split(";"))
        if first.split("=", 1)[0] == name:
            parsed = {"value": first.split("=", 1)[1]}
            for attribute in attributes:
                key, _, value = attribute.partition("=")
                parsed[key.lower()] = value
            return parsed
    raise AssertionError(f"no Set-Cookie for {name}: {response.headers.get_list('set-cookie')}")


@pytest.mark.parametrize(
    ("settings_overrides", "secure", "samesite"),
    [
        ({}, False, "lax"),
        ({"cookie_secure": True, "cookie_samesite": "strict"}, True, "strict"),
    ],
)
async def test_cookie_login_sets_session_and_csrf_cookies(
    client: httpx.AsyncClient, settings_overrides: dict[str, Any], secure: bool, samesite: str
) -> None:
    await register_and_login(client, "erin")
    response = await _login(client, "erin", params={"set_cookie": "1"})
    assert response.status_code == 200
    body = response.json()
    access = _cookie_attributes(response, "access_token")
    csrf = _cookie_attributes(response, "csrf_token")
    assert access["value"] == body["access_token"]
    assert "httponly" in access
    assert "httponly" not in csrf
    assert len(csrf["value"]) >= 32
    for cookie in (access, csrf):
        assert cookie["path"] == "/"
        assert cookie["max-age"] == str(body["expires_in"])
        assert cookie["samesite"].lower() == samesite
        assert ("secure" in cookie) is secure


async def test_cookie_session_authenticates_me(client: httpx.AsyncClient) -> None:
    await register_and_login(client, "frank")
    await _login(client, "frank", params={"set_cookie": "1"})
    me = await client.get(f"{AUTH}/me")
    assert me.status_code == 200
    assert me.json()["username"] == "frank"


async def test_me_requires_authentication(client: httpx.AsyncClient) -> None:
    response = await client.get(f"{AUTH}/me")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    garbage = await client.get(f"{AUTH}/me", headers=_bearer("not-a-jwt"))
    assert garbage.status_code == 401
    assert garbage.json()["error"]["code"] == "invalid_token"


# --- logout, password, sessions -----------------------------------------------------------


async def test_logout_revokes_the_token_at_once(client: httpx.AsyncClient) -> None:
    user = await register_and_login(client, "gina")
    assert (await client.get(f"{AUTH}/me", headers=user.headers)).status_code == 200
    response = await client.post(f"{AUTH}/logout", headers=user.headers)
    assert response.status_code == 204
    after = await client.get(f"{AUTH}/me", headers=user.headers)
    assert after.status_code == 401
    assert after.json()["error"]["code"] == "session_revoked"


async def test_cookie_logout_clears_both_cookies(client: httpx.AsyncClient) -> None:
    await register_and_login(client, "hank")
    await _login(client, "hank", params={"set_cookie": "1"})
    csrf = client.cookies["csrf_token"]
    response = await client.post(f"{AUTH}/logout", headers={"X-CSRF-Token": csrf})
    assert response.status_code == 204
    for name in ("access_token", "csrf_token"):
        assert _cookie_attributes(response, name)["max-age"] == "0"
    assert "access_token" not in client.cookies
    assert (await client.get(f"{AUTH}/me")).status_code == 401


async def test_api_key_principal_cannot_log_out_but_can_list_sessions(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await register_and_login(client, "ivan")
    secret = await _make_api_key(app, user.id)
    logout = await client.post(f"{AUTH}/logout", headers=_bearer(secret))
    assert logout.status_code == 400
    assert logout.json()["error"]["code"] == "not_a_session"
    sessions = await client.get(f"{AUTH}/sessions", headers=_bearer(secret))
    assert sessions.status_code == 200
    assert [(s["id"], s["current"]) for s in sessions.json()] == [(user.session_id, False)]
    # The user's session is untouched by the refused logout.
    assert (await client.get(f"{AUTH}/me", headers=user.headers)).status_code == 200


async def test_password_change_revokes_other_sessions_only(client: httpx.AsyncClient) -> None:
    first = await register_and_login(client, "judy")
    second = (await _login(client, "judy")).json()["access_token"]
    new_password = "a brand new passphrase"
    response = await client.post(
        f"{AUTH}/password",
        json={"current_password": TEST_PASSWORD, "new_password": new_password},
        headers=first.headers,
    )
    assert response.status_code == 204, response.text
    assert (await client.get(f"{AUTH}/me", headers=first.headers)).status_code == 200
    revoked = await client.get(f"{AUTH}/me", headers=_bearer(second))
    assert revoked.status_code == 401
    assert revoked.json()["error"]["code"] == "session_revoked"
    assert (await _login(client, "judy")).status_code == 401
    assert (await _login(client, "judy", new_password)).status_code == 200


async def test_password_change_rejects_wrong_current_and_weak_new(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await register_and_login(client, "kate")
    wrong = await client.post(
        f"{AUTH}/password",
        json={"current_password": "not it", "new_password": "long enough pass"},
        headers=user.headers,
    )
    assert wrong.status_code == 400
    assert wrong.json()["error"]["code"] == "invalid_current_password"
    weak = await client.post(
        f"{AUTH}/password",
        json={"current_password": TEST_PASSWORD, "new_password": "short"},
        headers=user.headers,
    )
    assert weak.status_code == 422
    assert [d["field"] for d in weak.json()["error"]["details"]] == ["new_password"]
    assert (await _login(client, "kate")).status_code == 200


async def test_password_change_sets_password_changed_at(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await register_and_login(client, "liam")
    before = datetime.now(UTC) - timedelta(seconds=1)
    await client.post(
        f"{AUTH}/password",
        json={"current_password": TEST_PASSWORD, "new_password": "another passphrase"},
        headers=user.headers,
    )
    async with app.state.db.session() as db:
        changed = await db.scalar(select(User.password_changed_at).where(User.id == user.id))
    assert changed is not None
    assert changed > before


async def test_sessions_list_marks_current_and_revoke_one(client: httpx.AsyncClient) -> None:
    user = await register_and_login(client, "mona")
    other = (await _login(client, "mona")).json()
    listed = await client.get(f"{AUTH}/sessions", headers=user.headers)
    assert listed.status_code == 200
    sessions = {s["id"]: s for s in listed.json()}
    assert set(sessions) == {user.session_id, other["session_id"]}
    assert sessions[user.session_id]["current"] is True
    assert sessions[other["session_id"]]["current"] is False
    assert sessions[user.session_id]["ip_address"] == "203.0.113.7"
    assert all(s["revoked"] is False for s in sessions.values())

    revoke = await client.delete(f"{AUTH}/sessions/{other['session_id']}", headers=user.headers)
    assert revoke.status_code == 204
    assert (
        await client.get(f"{AUTH}/me", headers=_bearer(other["access_token"]))
    ).status_code == 401

    active = await client.get(f"{AUTH}/sessions", headers=user.headers)
    assert [s["id"] for s in active.json()] == [user.session_id]
    everything = await client.get(
        f"{AUTH}/sessions", params={"include_inactive": "true"}, headers=user.headers
    )
    revoked = {s["id"]: s["revoked"] for s in everything.json()}
    assert revoked == {user.session_id: False, other["session_id"]: True}


async def test_another_users_session_is_404(
    client: httpx.AsyncClient, user: AuthedUser, other_user: AuthedUser
) -> None:
    response = await client.delete(f"{AUTH}/sessions/{other_user.session_id}", headers=user.headers)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "session_not_found"
    unknown = await client.delete(f"{AUTH}/sessions/does-not-exist", headers=user.headers)
    assert unknown.status_code == 404
    # The other user's session still works, and is not in this user's list.
    assert (await client.get(f"{AUTH}/me", headers=other_user.headers)).status_code == 200
    mine = await client.get(f"{AUTH}/sessions", headers=user.headers)
    assert other_user.session_id not in {s["id"] for s in mine.json()}


async def test_disabled_user_is_rejected_on_next_request(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await register_and_login(client, "nina")
    await _execute(app, update(User).where(User.id == user.id).values(is_active=False))
    response = await client.get(f"{AUTH}/me", headers=user.headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "account_disabled"
    # Sign-in says "disabled" only to someone who knows the password.
    correct = await _login(client, "nina")
    assert correct.status_code == 401
    assert correct.json()["error"]["code"] == "account_disabled"
    wrong = await _login(client, "nina", "wrong password")
    assert wrong.json()["error"]["code"] == "invalid_credentials"


async def test_expired_session_is_rejected(client: httpx.AsyncClient, app: FastAPI) -> None:
    user = await register_and_login(client, "omar")
    past = datetime.now(UTC) - timedelta(seconds=1)
    await _execute(
        app, update(UserSession).where(UserSession.id == user.session_id).values(expires_at=past)
    )
    response = await client.get(f"{AUTH}/me", headers=user.headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "session_expired"
    listed = await client.get(f"{AUTH}/sessions", headers=user.headers)
    assert listed.status_code == 401


# --- throttling ------------------------------------------------------------------------------

ACCOUNT_LIMIT = {
    "login_max_failures_per_account": 3,
    "login_max_failures_per_ip": 100,
    "login_failure_window_seconds": 600,
}
IP_LIMIT = {
    "login_max_failures_per_account": 100,
    "login_max_failures_per_ip": 3,
    "login_failure_window_seconds": 600,
}


@pytest.mark.parametrize("settings_overrides", [ACCOUNT_LIMIT])
async def test_per_account_throttling_answers_429_with_retry_after(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await register_and_login(client, "pat")
    for identifier in ("pat", "PAT@example.com", "pat"):  # username and e-mail count together
        assert (await _login(client, identifier, "wrong")).status_code == 401
    throttled = await _login(client, "pat")  # even the right password: checked before it
    assert throttled.status_code == 429
    assert throttled.json()["error"]["code"] == "login_throttled"
    retry_after = int(throttled.headers["Retry-After"])
    assert 590 <= retry_after <= 600
    # Another account from the same address is not affected.
    assert (await register_and_login(client, "quinn")).token

    logs = await _login_logs(app)
    assert [log.reason for log in logs if log.user_id == user.id][-1] == "throttled"

    # Retry-After is the time until the oldest counted failure leaves the window.
    now = datetime.now(UTC)
    failures = [log for log in logs if log.reason == "invalid_credentials"]
    await _execute(
        app,
        update(UserLoginLog)
        .where(UserLoginLog.id == failures[0].id)
        .values(created_at=now - timedelta(seconds=600 - 42)),
    )
    again = await _login(client, "pat")
    assert again.status_code == 429
    assert 40 <= int(again.headers["Retry-After"]) <= 43

    # Once it leaves the window the account is usable again: no lock-out for ever, and the
    # throttled attempts in between did not extend it.
    await _execute(
        app,
        update(UserLoginLog)
        .where(UserLoginLog.id == failures[0].id)
        .values(created_at=now - timedelta(seconds=601)),
    )
    assert (await _login(client, "pat")).status_code == 200


@pytest.mark.parametrize("settings_overrides", [IP_LIMIT])
async def test_per_ip_throttling_answers_429(client: httpx.AsyncClient, app: FastAPI) -> None:
    await register_and_login(client, "rita")
    for identifier in ("ghost1", "ghost2", "rita"):
        assert (await _login(client, identifier, "wrong")).status_code == 401
    throttled = await _login(client, "rita")
    assert throttled.status_code == 429
    assert int(throttled.headers["Retry-After"]) > 0
    # Another address is not throttled.
    transport = httpx.ASGITransport(app=app, client=("198.51.100.9", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as elsewhere:
        assert (await _login(elsewhere, "rita")).status_code == 200
    logs = await _login_logs(app)
    assert [log.reason for log in logs if log.ip_address == "203.0.113.7"][-1] == "throttled"
