"""Sends browsers without a valid cookie session from pages to `/login?next=…`.

Only page loads (GET/HEAD outside the API, assets, docs and health probes) are redirected; API
clients get their 401 JSON from the routes. "Valid" means what the API would accept: a good
JWT whose session row is neither revoked nor expired and whose user is active.
"""

from __future__ import annotations

from urllib.parse import quote

from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.responses import RedirectResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from app.core.auth.principal import authenticate_jwt
from app.core.config import Settings
from app.core.errors import Unauthorized
from app.core.security import ACCESS_COOKIE
from app.db.session import Database

LOGIN_PATH = "/login"
PAGE_METHODS = frozenset({"GET", "HEAD"})
# Paths (and everything below them) that are never pages needing a session.
OPEN_PREFIXES = ("/api", "/v1", "/health", "/static", "/docs", "/redoc", LOGIN_PATH)
OPEN_PATHS = frozenset({"/openapi.json", "/favicon.ico", "/robots.txt", "/metrics"})


def is_open_path(path: str) -> bool:
    if path in OPEN_PATHS:
        return True
    return any(path == prefix or path.startswith(prefix + "/") for prefix in OPEN_PREFIXES)


def login_redirect_target(path: str, query_string: bytes) -> str:
    target = path
    if query_string:
        target += "?" + query_string.decode("latin-1")
    return f"{LOGIN_PATH}?next={quote(target, safe='')}"


class WebAuthRedirectMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def _has_valid_session(self, scope: Scope, token: str) -> bool:
        state = scope["app"].state
        database: Database = state.db
        settings: Settings = state.settings
        try:
            async with database.session() as db:
                await authenticate_jwt(
                    db, token, secret=settings.jwt_secret_key or "", method="cookie"
                )
        except Unauthorized:
            return False
        return True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in PAGE_METHODS
            or is_open_path(scope["path"])
        ):
            await self.app(scope, receive, send)
            return
        # First Cookie header only, as the routes read it.
        token = cookie_parser(Headers(scope=scope).get("cookie", "")).get(ACCESS_COOKIE)
        if token and await self._has_valid_session(scope, token):
            await self.app(scope, receive, send)
            return
        response = RedirectResponse(
            login_redirect_target(scope["path"], scope.get("query_string", b"")),
            status_code=303,
        )
        # Never cached: the same URL answers differently once signed in.
        response.headers["Cache-Control"] = "no-store"
        await response(scope, receive, send)
