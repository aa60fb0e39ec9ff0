"""Web pages of the studio and the static-asset app that serves their scripts and styles.

Pages other than /login are reached only with a valid cookie session:
app/middleware/web_auth_redirect.py sends everyone else to /login first. Pages are static
HTML shells; their ES modules fetch everything else from `/api/v1` with the same cookie.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from app.core.auth.principal import authenticate_jwt
from app.core.config import Settings
from app.core.errors import Unauthorized
from app.core.security import ACCESS_COOKIE
from app.db.session import Database

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
# Asset names carry no content hash, so production lets browsers keep them for an hour and
# then revalidate with the ETag StaticFiles sends (a 304 when unchanged): a deploy shows up
# within the hour and an unchanged asset costs no bytes.
PRODUCTION_ASSET_CACHE = "public, max-age=3600, must-revalidate"

router = APIRouter(include_in_schema=False)


def _page(name: str, status_code: int = 200) -> FileResponse:
    # Pages depend on who is signed in: never cache them.
    return FileResponse(
        STATIC_DIR / name,
        status_code=status_code,
        media_type="text/html",
        headers={"Cache-Control": "no-store"},
    )


@router.get("/")
async def studio_page() -> FileResponse:
    return _page("index.html")


@router.get("/login")
async def login_page() -> FileResponse:
    return _page("login.html")


@router.get("/library")
async def library_page() -> FileResponse:
    return _page("library.html")


@router.get("/image")
async def image_page() -> FileResponse:
    return _page("image.html")


@router.get("/account")
async def account_page() -> FileResponse:
    return _page("account.html")


async def _is_admin(request: Request) -> bool:
    token = request.cookies.get(ACCESS_COOKIE)
    if not token:
        return False
    database: Database = request.app.state.db
    settings: Settings = request.app.state.settings
    try:
        async with database.session() as db:
            principal = await authenticate_jwt(
                db, token, secret=settings.jwt_secret_key or "", method="cookie"
            )
            return bool(principal.user.is_admin)
    except Unauthorized:
        return False


@router.get("/admin")
async def admin_page(request: Request) -> FileResponse:
    # The redirect middleware already guaranteed a valid session; only the role is left.
    if not await _is_admin(request):
        return _page("forbidden.html", status_code=403)
    return _page("admin.html")


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
