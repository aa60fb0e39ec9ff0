"""API keys: creation (the secret is returned once), listing and revocation.

Only the SHA-256 hash and a short display prefix are stored; authentication with a key lives in
`app.core.auth.principal`.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import NotFound, ValidationFailed
from app.core.security import api_key_display_prefix, generate_api_key, hash_api_key
from app.models import ApiKey


async def create_api_key(
    db: AsyncSession, *, user_id: str, name: str, expires_at: datetime | None = None
) -> tuple[ApiKey, str]:
    """Create a key for `user_id`; returns the row and the plaintext secret (never stored)."""
    if expires_at is not None and expires_at <= datetime.now(UTC):
        raise ValidationFailed(
            "expires_at must be in the future",
            details=[{"field": "expires_at", "message": "must be in the future"}],
        )
    secret = generate_api_key()
    key = ApiKey(
        user_id=user_id,
        name=name,
        prefix=api_key_display_prefix(secret),
        key_hash=hash_api_key(secret),
        created_at=datetime.now(UTC),
        expires_at=expires_at,
    )
    db.add(key)
    await db.flush()
    return key, secret


async def list_api_keys(db: AsyncSession, *, user_id: str) -> list[ApiKey]:
    result = await db.scalars(
        select(ApiKey)
        .where(ApiKey.user_id == user_id)
        .order_by(ApiKey.created_at.desc(), ApiKey.id)
    )
    return list(result)


async def revoke_api_key(db: AsyncSession, *, user_id: str, key_id: str) -> ApiKey:
    """Revoke one of the user's keys. Revoking twice keeps the first revocation time."""
    key = await db.scalar(select(ApiKey).where(ApiKey.id == key_id, ApiKey.user_id == user_id))
    if key is None:
        # Someone else's key is indistinguishable from a missing one.
        raise NotFound("API key not found", code="api_key_not_found")
    if key.revoked_at is None:
        key.revoked_at = datetime.now(UTC)
        await db.flush()
    return key
