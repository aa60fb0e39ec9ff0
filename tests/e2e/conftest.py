"""Browser tests: Debian's Chromium driven by Playwright against a live server (uvicorn in a
thread, the built-in simulator upstream, a freshly migrated database).

Without /usr/bin/chromium the suite is skipped with a message, except under CI=true, where it
fails. `playwright install` is never needed: the system Chromium is launched directly.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.e2e.server import LiveServer, database, e2e_settings, live_server

CHROMIUM = Path(os.environ.get("E2E_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
PASSWORD = "correct horse battery staple"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


def _require_chromium() -> None:
    if CHROMIUM.exists():
        return
    message = (
        f"Chromium not found at {CHROMIUM}: the browser tests need Debian's chromium package "
        "(`apt-get install -y chromium`)"
    )
    if IN_CI:
        pytest.fail(message + " (CI=true: the browser tests are required)")
    pytest.skip(message + "; skipping them (set CI=true to make this fail)")


@dataclass
class Account:
    username: str
    email: str
    password: str
    id: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def register(base_url: str, username: str | None = None) -> Account:
    """A user made through the API (the first one of a run is the administrator)."""
    username = username or f"u{uuid.uuid4().hex[:10]}"
    email = f"{username}@example.com"
    with httpx.Client(base_url=base_url, timeout=30) as http:
        created = http.post(
            "/api/v1/auth/register",
            json={"username": username, "email": email, "password": PASSWORD},
        )
        assert created.status_code == 201, created.text
        login = http.post(
            "/api/v1/auth/login", json={"username_or_email": username, "password": PASSWORD}
        )
        assert login.status_code == 200, login.text
    return Account(username, email, PASSWORD, created.json()["id"], login.json()["access_token"])


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    _require_chromium()
    tmp = tmp_path_factory.mktemp("e2e")
    with database(tmp) as url, live_server(e2e_settings(url, tmp / "data")) as live:
        yield live


@pytest.fixture(scope="session")
def admin(server: LiveServer) -> Account:
    # Registered before any test runs, so it is the first account and therefore the admin.
    return register(server.base_url, "admin")


@pytest.fixture(scope="session")
def browser(server: LiveServer, admin: Account) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield instance
        finally:
            instance.close()


class BrowserErrors:
    """Uncaught page errors (and failed-to-load scripts) make the test fail at the end."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def attach(self, page: Any) -> None:
        page.on("pageerror", lambda error: self.errors.append(f"pageerror: {error}"))
        page.on(
            "console",
            lambda message: (
                self.errors.append(f"console: {message.text}")
                if message.type == "error" and "Failed to load resource" not in message.text
                else None
            ),
        )


@pytest.fixture
def browser_errors() -> Iterator[BrowserErrors]:
    collected = BrowserErrors()
    yield collected
    assert collected.errors == [], collected.errors


@pytest.fixture
def context(browser: Any, server: LiveServer) -> Iterator[Any]:
    ctx = browser.new_context(base_url=server.base_url, viewport=DESKTOP, color_scheme="light")
    ctx.set_default_timeout(20_000)
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture
def page(context: Any, browser_errors: BrowserErrors) -> Any:
    new_page = context.new_page()
    browser_errors.attach(new_page)
    return new_page


def sign_in(page: Any, account: Account, next_path: str = "/") -> None:
    page.goto("/login?next=" + next_path)
    page.fill("#signin-identifier", account.username)
    page.fill("#signin-password", account.password)
    page.click("#signin-form button[type=submit]")
    target = urlsplit(next_path).path
    page.wait_for_url(lambda url: urlsplit(url).path == target)


IMAGES_IN_VIEW_LOADED = """() => [...document.images].every((img) => {
    const box = img.getBoundingClientRect();
    const visible = box.bottom > 0 && box.top < innerHeight && box.width > 0;
    return !visible || !img.getAttribute("src") || img.complete;
})"""


def screenshot(page: Any, name: str) -> None:
    """Full-page screenshots of the current page at desktop and phone size (animations
    finished, visible images loaded), saved as test artifacts."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    original = page.viewport_size
    for label, size in (("1280x800", DESKTOP), ("390x844", PHONE)):
        page.set_viewport_size(size)
        page.wait_for_function(IMAGES_IN_VIEW_LOADED, timeout=10_000)
        page.screenshot(
            path=str(SCREENSHOTS / f"{name}-{label}.png"), full_page=True, animations="disabled"
        )
    page.set_viewport_size(original)
