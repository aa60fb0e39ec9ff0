"""CSRF protection for cookie-authenticated requests (double-submit cookie).

A non-safe request under `/api/` that carries the session cookie and no bearer credentials
must send `X-CSRF-Token` equal to the `csrf_token` cookie. Another site can make a browser
send our cookies but can neither read them nor set custom headers without passing CORS, so
only our own pages can satisfy the check. Bearer tokens and API keys are never sent
automatically by a browser, so those requests are exempt.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from app.core.errors import error_body
from app.core.security import ACCESS_COOKIE, CSRF_COOKIE, constant_time_equals

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "x-csrf-token"
# These authenticate by the request body and ignore the cookie, so it grants nothing there;
# checking would only lock out a browser holding a stale cookie from signing in again.
EXEMPT_PATHS = frozenset({"/api/v1/auth/login", "/api/v1/auth/register"})


def _has_bearer(authorization: str | None) -> bool:
    # Mirrors app.api.deps.bearer_token: only a usable bearer makes the cookie irrelevant.
    if not authorization:
        return False
    scheme, _, value = authorization.partition(" ")
    return scheme.lower() == "bearer" and bool(value.strip())


class CSRFMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    def _needs_check(self, scope: Scope) -> bool:
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS:
            return False
        path: str = scope["path"]
        return path.startswith("/api/") and path.rstrip("/") not in EXEMPT_PATHS

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._needs_check(scope):
            await self.app(scope, receive, send)
            return
        # Read headers exactly as the route will (first value wins), so both see the same
        # credentials.
        headers = Headers(scope=scope)
        cookies = cookie_parser(headers.get("cookie", ""))
        if ACCESS_COOKIE not in cookies or _has_bearer(headers.get("authorization")):
            await self.app(scope, receive, send)
            return
        expected = cookies.get(CSRF_COOKIE, "")
        supplied = headers.get(CSRF_HEADER, "")
        if expected and supplied and constant_time_equals(supplied, expected):
            await self.app(scope, receive, send)
            return
        response = JSONResponse(
            error_body(
                "csrf_failed",
                "Missing or invalid CSRF token: send the csrf_token cookie's value in the "
                "X-CSRF-Token header",
            ),
            status_code=403,
        )
        await response(scope, receive, send)
