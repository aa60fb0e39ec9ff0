"""The page routes and the static front end, checked without a browser: every page is
served (or redirected), /admin is for admins, pages carry no inline script or style (the CSP
forbids them), and every script, stylesheet and ES-module import resolves to a file."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from app.api import pages
from tests.conftest import TEST_PASSWORD, AuthedUser, register_and_login

PAGES = ["/", "/library", "/image", "/account", "/admin"]
HTML_FILES = sorted(pages.STATIC_DIR.glob("*.html"))
JS_FILES = sorted(pages.STATIC_DIR.glob("js/**/*.js"))
IMPORT_RE = re.compile(r"""(?:^|\n)\s*(?:import|export)\s[^;]*?from\s+["']([^"']+)["']""")


async def cookie_login(client: httpx.AsyncClient, user: AuthedUser) -> None:
    response = await client.post(
        "/api/v1/auth/login",
        params={"set_cookie": "1"},
        json={"username_or_email": user.username, "password": TEST_PASSWORD},
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("path", PAGES)
async def test_pages_need_a_session(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login?next=")


async def test_pages_are_served_to_members_and_admin_only_to_admins(
    app: FastAPI, client: httpx.AsyncClient, admin_user: AuthedUser
) -> None:
    member = await register_and_login(client, "bea")
    await cookie_login(client, member)
    for path, script in (
        ("/", "studio.js"),
        ("/library", "library.js"),
        ("/image", "image.js"),
        ("/account", "account.js"),
    ):
        response = await client.get(path)
        assert response.status_code == 200, path
        assert response.headers["cache-control"] == "no-store"
        assert f'<script src="/static/js/{script}" type="module"></script>' in response.text
        assert "Content-Security-Policy" in response.headers
    refused = await client.get("/admin")
    assert refused.status_code == 403
    assert "Administrators only" in refused.text
    assert refused.headers["cache-control"] == "no-store"

    client.cookies.clear()
    await cookie_login(client, admin_user)
    allowed = await client.get("/admin")
    assert allowed.status_code == 200
    assert '<script src="/static/js/admin.js" type="module"></script>' in allowed.text


@pytest.mark.parametrize("html", HTML_FILES, ids=lambda p: p.name)
def test_html_has_no_inline_script_or_style(html: Path) -> None:
    text = html.read_text()
    assert "<style" not in text
    assert " style=" not in text
    for tag in text.split("<script")[1:]:
        assert tag.lstrip().startswith("src="), "inline <script> in " + html.name
    assert re.search(r"\son[a-z]+\s*=", text) is None, "inline event handler in " + html.name
    for ref in re.findall(r'(?:src|href)="(/static/[^"#]+)', text):
        assert (pages.STATIC_DIR / ref.removeprefix("/static/")).is_file(), ref


@pytest.mark.parametrize("script", JS_FILES, ids=lambda p: str(p.relative_to(pages.STATIC_DIR)))
def test_module_imports_resolve(script: Path) -> None:
    text = script.read_text()
    for target in IMPORT_RE.findall(text):
        assert target.startswith("./") or target.startswith("../"), target
        assert (script.parent / target).resolve().is_file(), f"{script.name}: {target}"
    # No inline styles from script either: only CSSOM custom properties (setVar).
    assert '.setAttribute("style"' not in text
    assert "innerHTML" not in text, "text goes in as text nodes, never as markup"


def test_nothing_secret_goes_to_local_storage() -> None:
    for script in JS_FILES:
        assert "localStorage" not in script.read_text(), script.name


async def test_assets_are_served_with_the_right_types(client: httpx.AsyncClient) -> None:
    for path, kind in (
        ("/static/js/studio.js", "javascript"),
        ("/static/js/lib/catalog.js", "javascript"),
        ("/static/css/app.css", "text/css"),
        ("/static/img/icons.svg", "image/svg+xml"),
    ):
        response = await client.get(path)
        assert response.status_code == 200, path
        assert kind in response.headers["content-type"], path
        assert response.headers["cache-control"] == "no-store"
