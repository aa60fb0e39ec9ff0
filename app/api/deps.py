"""Typed dependencies shared by every route: settings, DB session, caller, admin."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.auth.principal import Principal, authenticate
from app.core.config import Settings
from app.core.encryption import Encryptor
from app.core.errors import Forbidden, ValidationFailed
from app.core.security import ACCESS_COOKIE
from app.db.session import Database
from app.models import User
from app.models.schemas.common import NUL, NUL_MESSAGE


def app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def app_database(request: Request) -> Database:
    database: Database = request.app.state.db
    return database


# The dependencies are `async def` although they do no I/O: FastAPI runs a plain `def`
# dependency in a worker thread, a thread trip per dependency per request.
async def get_settings_dep(request: Request) -> Settings:
    return app_settings(request)


async def get_database(request: Request) -> Database:
    return app_database(request)


async def get_encryptor(request: Request) -> Encryptor:
    encryptor: Encryptor = request.app.state.encryptor
    return encryptor


async def get_db(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request: committed when the handler succeeds, rolled back otherwise."""
    async with app_database(request).session() as session:
        yield session


async def reject_nul_characters(request: Request) -> None:
    """Refuse a NUL (U+0000) in any path or query parameter as a 422 before it reaches a query:
    PostgreSQL cannot compare or store text containing it (a 500 otherwise), and SQLite would
    answer differently. Request bodies get the same check from `InputModel`. Use as a router
    dependency: `APIRouter(dependencies=[NoNulParameters])`."""
    for location, items in (
        ("path", list(request.path_params.items())),
        ("query", request.query_params.multi_items()),
    ):
        for name, value in items:
            if isinstance(value, str) and NUL in value:
                raise ValidationFailed(
                    f"Invalid value for: {name}",
                    details=[
                        {
                            "field": name,
                            "location": location,
                            "message": NUL_MESSAGE,
                            "type": "string_nul",
                        }
                    ],
                )


NoNulParameters = Depends(reject_nul_characters)

SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
EncryptorDep = Annotated[Encryptor, Depends(get_encryptor)]
SessionDep = Annotated[AsyncSession, Depends(get_db, scope="function")]


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return None


async def get_principal(request: Request, db: SessionDep, settings: SettingsDep) -> Principal:
    principal = await authenticate(
        db,
        bearer=bearer_token(request),
        cookie=request.cookies.get(ACCESS_COOKIE),
        jwt_secret=settings.jwt_secret_key or "",
    )
    # The request-log middleware reads this to attribute the request.
    request.state.principal = principal
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


async def get_current_user(principal: PrincipalDep) -> User:
    return principal.user


CurrentUser = Annotated[User, Depends(get_current_user)]


async def get_admin_user(user: CurrentUser) -> User:
    if not user.is_admin:
        raise Forbidden("Administrator rights required", code="admin_required")
    return user


AdminUser = Annotated[User, Depends(get_admin_user)]
