"""Security headers on every response (pure ASGI: streamed bodies pass through untouched).

Headers a route set itself are kept. HTML gets a strict Content-Security-Policy (no inline
script or style); the Swagger UI at /docs, which needs its CDN assets and an inline bootstrap
script, gets a policy relaxed for exactly that.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
    "script-src 'self'; style-src 'self'; connect-src 'self'; frame-ancestors 'none'; "
    "base-uri 'self'; form-action 'self'"
)


def content_security_policy(media_origin: str | None) -> str:
    """The pages' policy; with presigned S3 downloads (`app.state.media_origin`) images and
    videos also load from the store they are redirected to."""
    if not media_origin:
        return CONTENT_SECURITY_POLICY
    return CONTENT_SECURITY_POLICY.replace(
        "img-src 'self' data: blob:;", f"img-src 'self' data: blob: {media_origin};"
    ).replace("media-src 'self' blob:;", f"media-src 'self' blob: {media_origin};")


DOCS_CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data: https://fastapi.tiangolo.com; "
    "script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
)
DOCS_PATHS = frozenset({"/docs", "/docs/oauth2-redirect"})
HSTS = "max-age=31536000; includeSubDomains"

BASE_HEADERS: tuple[tuple[str, str], ...] = (
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "strict-origin-when-cross-origin"),
    ("X-Frame-Options", "DENY"),
    ("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=(), usb=()"),
)


class SecurityHeadersMiddleware:
    """`hsts=None` follows the app's settings: HSTS only when COOKIE_SECURE (served over HTTPS)."""

    def __init__(self, app: ASGIApp, hsts: bool | None = None) -> None:
        self.app = app
        self.hsts = hsts

    def _hsts_enabled(self, scope: Scope) -> bool:
        if self.hsts is not None:
            return self.hsts
        app = scope.get("app")
        settings = getattr(getattr(app, "state", None), "settings", None)
        return bool(getattr(settings, "cookie_secure", False))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        hsts = self._hsts_enabled(scope)
        path: str = scope["path"]
        state = getattr(scope.get("app"), "state", None)
        media_origin = getattr(state, "media_origin", None)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                headers = MutableHeaders(scope=message)
                for name, value in BASE_HEADERS:
                    headers.setdefault(name, value)
                if hsts:
                    headers.setdefault("Strict-Transport-Security", HSTS)
                if headers.get("content-type", "").lower().startswith("text/html"):
                    policy = (
                        DOCS_CONTENT_SECURITY_POLICY
                        if path in DOCS_PATHS
                        else content_security_policy(
                            media_origin if isinstance(media_origin, str) else None
                        )
                    )
                    headers.setdefault("Content-Security-Policy", policy)
            await send(message)

        await self.app(scope, receive, send_with_headers)
