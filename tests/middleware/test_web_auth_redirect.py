"""Pages redirect to /login?next=… unless the browser holds a valid cookie session."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update

from app.api import pages
from app.models import User, UserSession
from tests.conftest import TEST_PASSWORD, AuthedUser, register_and_login


def ensure_pages(app: FastAPI) -> None:
    """Include the page routes and /static unless app.main already does (idempotent)."""
    paths = {getattr(route, "path", None) for route in app.router.routes}
    if "/login" not in paths:
        app.include_router(pages.router)
    if "/static" not in paths:
        app.mount("/static", pages.static_files(app.state.settings), name="static")


@pytest.fixture(autouse=True)
def _pages(app: FastAPI) -> None:
    ensure_pages(app)


async def _cookie_login(client: httpx.AsyncClient, username: str = "alice") -> AuthedUser:
    user = await register_and_login(client, username)
    response = await client.post(
        "/api/v1/auth/login",
        params={"set_cookie": "1"},
        json={"username_or_email": username, "password": TEST_PASSWORD},
    )
    assert response.status_code == 200
    return AuthedUser(
        id=user.id,
        username=username,
        email=user.email,
        password=TEST_PASSWORD,
        token=response.json()["access_token"],
        session_id=response.json()["session_id"],
    )


async def test_home_without_cookie_redirects_to_login(client: httpx.AsyncClient) -> None:
    response = await client.get("/")
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2F"
    assert response.headers["cache-control"] == "no-store"


async def test_redirect_keeps_path_and_query_encoded(client: httpx.AsyncClient) -> None:
    response = await client.get("/studio/tasks?page=2&q=a b")
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2Fstudio%2Ftasks%3Fpage%3D2%26q%3Da%2520b"


async def test_home_with_valid_cookie_is_served(client: httpx.AsyncClient) -> None:
    await _cookie_login(client)
    response = await client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert '<script src="/static/js/studio.js" type="module"></script>' in response.text
    assert response.headers["cache-control"] == "no-store"


async def test_bearer_token_alone_does_not_open_pages(client: httpx.AsyncClient) -> None:
    user = await register_and_login(client, "bob")
    response = await client.get("/", headers=user.headers)
    assert response.status_code == 303


async def test_invalid_cookie_redirects(client: httpx.AsyncClient) -> None:
    client.cookies.set("access_token", "not-a-jwt")
    response = await client.get("/")
    assert response.status_code == 303


async def test_revoked_session_cookie_redirects(client: httpx.AsyncClient, app: FastAPI) -> None:
    user = await _cookie_login(client)
    assert (await client.get("/")).status_code == 200
    async with app.state.db.session() as db:
        await db.execute(
            update(UserSession)
            .where(UserSession.id == user.session_id)
            .values(revoked_at=datetime.now(UTC))
        )
    assert (await client.get("/")).status_code == 303


async def test_expired_session_cookie_redirects(client: httpx.AsyncClient, app: FastAPI) -> None:
    user = await _cookie_login(client)
    async with app.state.db.session() as db:
        await db.execute(
            update(UserSession)
            .where(UserSession.id == user.session_id)
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    assert (await client.get("/")).status_code == 303


async def test_disabled_user_cookie_redirects(client: httpx.AsyncClient, app: FastAPI) -> None:
    user = await _cookie_login(client)
    async with app.state.db.session() as db:
        await db.execute(update(User).where(User.id == user.id).values(is_active=False))
    assert (await client.get("/")).status_code == 303


async def test_login_page_and_assets_are_open(client: httpx.AsyncClient) -> None:
    login = await client.get("/login", params={"next": "/"})
    assert login.status_code == 200
    assert 'id="signin-form"' in login.text
    for asset, kind in (("/static/css/base.css", "text/css"), ("/static/js/login.js", "script")):
        response = await client.get(asset)
        assert response.status_code == 200, asset
        assert kind in response.headers["content-type"]
        # Outside production the front end is never cached, so edits show up on reload.
        assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    "path", ["/health", "/docs", "/openapi.json", "/api/v1/auth/me", "/favicon.ico"]
)
async def test_non_pages_are_not_redirected(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code != 303
    assert "location" not in response.headers


async def test_non_get_requests_are_not_redirected(client: httpx.AsyncClient) -> None:
    response = await client.post("/")
    assert response.status_code == 405


async def test_pages_contain_no_inline_script_or_style() -> None:
    for name in ("index.html", "login.html"):
        html = (pages.STATIC_DIR / name).read_text()
        assert "<style" not in html
        assert " style=" not in html
        for tag in html.split("<script")[1:]:
            assert tag.lstrip().startswith("src="), name
        assert re.search(r"\son[a-z]+\s*=", html) is None, name  # no onclick= and friends


@pytest.mark.parametrize("settings_overrides", [{"env": "production"}])
async def test_static_assets_are_cached_in_production(client: httpx.AsyncClient) -> None:
    response = await client.get("/static/css/base.css")
    assert response.status_code == 200
    assert "max-age=" in response.headers["cache-control"]
