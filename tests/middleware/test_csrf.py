"""CSRF (double-submit cookie) for cookie-authenticated, non-safe `/api/` requests."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from app.core.security import generate_api_key, hash_api_key
from app.models import ApiKey
from tests.conftest import TEST_PASSWORD, AuthedUser, register_and_login

AUTH = "/api/v1/auth"


async def _cookie_login(client: httpx.AsyncClient, username: str) -> AuthedUser:
    user = await register_and_login(client, username)
    response = await client.post(
        f"{AUTH}/login",
        params={"set_cookie": "1"},
        json={"username_or_email": username, "password": TEST_PASSWORD},
    )
    assert response.status_code == 200, response.text
    assert "access_token" in client.cookies
    assert "csrf_token" in client.cookies
    return user


async def test_cookie_request_without_header_is_403(client: httpx.AsyncClient) -> None:
    await _cookie_login(client, "alice")
    response = await client.post(f"{AUTH}/logout")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "csrf_failed"
    # Nothing happened: the session still works.
    assert (await client.get(f"{AUTH}/me")).status_code == 200


async def test_cookie_request_with_wrong_header_is_403(client: httpx.AsyncClient) -> None:
    await _cookie_login(client, "alice")
    wrong = client.cookies["csrf_token"][:-1] + "x"
    response = await client.post(f"{AUTH}/logout", headers={"X-CSRF-Token": wrong})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "csrf_failed"


async def test_header_without_csrf_cookie_is_403(client: httpx.AsyncClient) -> None:
    await _cookie_login(client, "alice")
    token = client.cookies["csrf_token"]
    client.cookies.delete("csrf_token")
    response = await client.post(f"{AUTH}/logout", headers={"X-CSRF-Token": token})
    assert response.status_code == 403


async def test_cookie_request_with_matching_header_passes(client: httpx.AsyncClient) -> None:
    await _cookie_login(client, "alice")
    csrf = client.cookies["csrf_token"]
    response = await client.post(f"{AUTH}/logout", headers={"X-CSRF-Token": csrf})
    assert response.status_code == 204
    assert (await client.get(f"{AUTH}/me")).status_code == 401


async def test_safe_methods_need_no_token(client: httpx.AsyncClient) -> None:
    await _cookie_login(client, "alice")
    assert (await client.get(f"{AUTH}/me")).status_code == 200
    assert (await client.get(f"{AUTH}/sessions")).status_code == 200


async def test_bearer_request_is_exempt_even_with_cookie(client: httpx.AsyncClient) -> None:
    user = await _cookie_login(client, "alice")
    response = await client.post(f"{AUTH}/logout", headers=user.headers)
    assert response.status_code == 204
    # The bearer's session was revoked, the cookie's was not.
    assert (await client.get(f"{AUTH}/me", headers=user.headers)).status_code == 401
    assert (await client.get(f"{AUTH}/me")).status_code == 200


async def test_non_bearer_authorization_does_not_bypass(client: httpx.AsyncClient) -> None:
    await _cookie_login(client, "alice")
    response = await client.post(f"{AUTH}/logout", headers={"Authorization": "Basic Zm9vOmJhcg=="})
    assert response.status_code == 403


async def test_api_key_request_is_exempt_even_with_cookie(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await _cookie_login(client, "alice")
    secret = generate_api_key()
    async with app.state.db.session() as db:
        db.add(ApiKey(user_id=user.id, name="k", prefix=secret[:11], key_hash=hash_api_key(secret)))
    response = await client.post(
        f"{AUTH}/password",
        json={"current_password": "wrong password", "new_password": "irrelevant here"},
        headers={"Authorization": f"Bearer {secret}"},
    )
    # Past the CSRF check: the route itself answered.
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_current_password"


async def test_login_and_register_work_without_and_with_a_stale_cookie(
    client: httpx.AsyncClient,
) -> None:
    await register_and_login(client, "alice")
    client.cookies.set("access_token", "stale-token-from-an-old-session")
    registered = await client.post(
        f"{AUTH}/register",
        json={"username": "bob", "email": "bob@example.com", "password": TEST_PASSWORD},
    )
    assert registered.status_code == 201
    login = await client.post(
        f"{AUTH}/login",
        params={"set_cookie": "1"},
        json={"username_or_email": "bob", "password": TEST_PASSWORD},
    )
    assert login.status_code == 200
    assert (await client.get(f"{AUTH}/me")).json()["username"] == "bob"
