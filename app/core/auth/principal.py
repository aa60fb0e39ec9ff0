"""Who is calling: resolving a bearer JWT, a cookie JWT or a `gk_` API key to a user."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import Unauthorized
from app.core.security import (
    InvalidTokenError,
    decode_access_token,
    hash_api_key,
    looks_like_api_key,
)
from app.models import ApiKey, User, UserSession

AuthMethod = Literal["bearer", "cookie", "api_key"]

# Touch `last_used_at`/`last_seen_at` at most this often: no write on every request.
USAGE_WRITE_INTERVAL = timedelta(minutes=1)


@dataclass
class Principal:
    user: User
    method: AuthMethod
    session_id: str | None = None
    api_key_id: str | None = None
    # Copied out of the row: after a rollback the ORM object is expired, and the request-log
    # middleware still needs to attribute the request.
    user_id: str = field(init=False, default="")

    def __post_init__(self) -> None:
        self.user_id = self.user.id

    @property
    def uses_cookie(self) -> bool:
        return self.method == "cookie"


def _now() -> datetime:
    return datetime.now(UTC)


async def authenticate_jwt(
    db: AsyncSession, token: str, *, secret: str, method: AuthMethod
) -> Principal:
    try:
        claims = decode_access_token(token, secret)
    except InvalidTokenError as exc:
        raise Unauthorized("Invalid or expired token", code="invalid_token") from exc
    row = (
        await db.execute(
            select(UserSession, User)
            .join(User, User.id == UserSession.user_id)
            .where(UserSession.id == claims.session_id, UserSession.user_id == claims.user_id)
        )
    ).one_or_none()
    if row is None:
        raise Unauthorized("Session not found", code="invalid_token")
    user_session, user = row
    now = _now()
    if user_session.revoked_at is not None:
        raise Unauthorized("Session has been revoked", code="session_revoked")
    if user_session.expires_at <= now:
        raise Unauthorized("Session has expired", code="session_expired")
    if not user.is_active:
        raise Unauthorized("Account is disabled", code="account_disabled")
    if user_session.last_seen_at is None or now - user_session.last_seen_at > USAGE_WRITE_INTERVAL:
        await db.execute(
            update(UserSession).where(UserSession.id == user_session.id).values(last_seen_at=now)
        )
    return Principal(user=user, method=method, session_id=user_session.id)


# Runs on every API-key request: built once, and the key's few columns rather than its entity.
_API_KEY_LOOKUP = (
    select(User, ApiKey.id, ApiKey.revoked_at, ApiKey.expires_at, ApiKey.last_used_at)
    .join(User, User.id == ApiKey.user_id)
    .where(ApiKey.key_hash == bindparam("key_hash"))
)


async def authenticate_api_key(db: AsyncSession, secret: str) -> Principal:
    row = (await db.execute(_API_KEY_LOOKUP, {"key_hash": hash_api_key(secret)})).one_or_none()
    if row is None:
        raise Unauthorized("Invalid API key", code="invalid_api_key")
    user, key = row[0], row
    now = _now()
    if key.revoked_at is not None:
        raise Unauthorized("API key has been revoked", code="api_key_revoked")
    if key.expires_at is not None and key.expires_at <= now:
        raise Unauthorized("API key has expired", code="api_key_expired")
    if not user.is_active:
        raise Unauthorized("Account is disabled", code="account_disabled")
    if key.last_used_at is None or now - key.last_used_at > USAGE_WRITE_INTERVAL:
        await db.execute(update(ApiKey).where(ApiKey.id == key.id).values(last_used_at=now))
    return Principal(user=user, method="api_key", api_key_id=key.id)


async def authenticate(
    db: AsyncSession, *, bearer: str | None, cookie: str | None, jwt_secret: str
) -> Principal:
    """Bearer credentials win over the cookie; a `gk_` bearer is an API key."""
    if bearer:
        if looks_like_api_key(bearer):
            return await authenticate_api_key(db, bearer)
        return await authenticate_jwt(db, bearer, secret=jwt_secret, method="bearer")
    if cookie:
        return await authenticate_jwt(db, cookie, secret=jwt_secret, method="cookie")
    raise Unauthorized()
