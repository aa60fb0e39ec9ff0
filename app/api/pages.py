"""Web pages (the sign-in page and the home page) and the static-asset app.

Pages other than /login are reached only with a valid cookie session:
app/middleware/web_auth_redirect.py sends everyone else to /login first.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from app.core.config import Settings

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
# Assets have no content hash in their names, so production caches them for an hour and then
# revalidates (ETag) rather than "forever": a deploy shows up within the hour.
PRODUCTION_ASSET_CACHE = "public, max-age=3600, must-revalidate"

router = APIRouter(include_in_schema=False)


def _page(name: str) -> FileResponse:
    # Pages depend on who is signed in: never cache them.
    return FileResponse(
        STATIC_DIR / name, media_type="text/html", headers={"Cache-Control": "no-store"}
    )


@router.get("/")
async def index() -> FileResponse:
    return _page("index.html")


@router.get("/login")
async def login_page() -> FileResponse:
    return _page("login.html")


class CachingStaticFiles(StaticFiles):
    """StaticFiles with a Cache-Control header: `no-store` outside production, so edits to
    the front end show up on reload while developing."""

    def __init__(self, *, directory: Path, cache_control: str) -> None:
        super().__init__(directory=directory)
        self.cache_control = cache_control

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        if response.status_code in (200, 304):
            response.headers.setdefault("Cache-Control", self.cache_control)
        return response


def static_files(settings: Settings) -> CachingStaticFiles:
    """The app to mount at /static:
    `app.mount("/static", static_files(settings), name="static")`."""
    cache_control = PRODUCTION_ASSET_CACHE if settings.is_production else "no-store"
    return CachingStaticFiles(directory=STATIC_DIR, cache_control=cache_control)
