"""Administration of user accounts: listing, enabling/disabling, admin rights, quotas.

Services flush but never commit: the request's unit of work (app/api/deps.get_db) commits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import ColumnElement, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import Conflict, NotFound
from app.db.base import escape_like
from app.models import User, UserSession

MAX_QUOTA_BYTES = 2**63 - 1  # BIGINT


@dataclass(frozen=True)
class UserPage:
    items: list[User]
    total: int
    page: int
    size: int

    @property
    def pages(self) -> int:
        return math.ceil(self.total / self.size) if self.size else 0


async def list_users(
    session: AsyncSession,
    *,
    search: str | None = None,
    is_active: bool | None = None,
    is_admin: bool | None = None,
    page: int = 1,
    size: int = 20,
) -> UserPage:
    """Users matching every given filter, oldest first; `search` is a case-insensitive
    substring of the username or the e-mail address."""
    conditions: list[ColumnElement[bool]] = []
    if search and search.strip():
        pattern = f"%{escape_like(search.strip().lower())}%"
        conditions.append(
            or_(
                func.lower(User.username).like(pattern, escape="\\"),
                func.lower(User.email).like(pattern, escape="\\"),
            )
        )
    if is_active is not None:
        conditions.append(User.is_active.is_(is_active))
    if is_admin is not None:
        conditions.append(User.is_admin.is_(is_admin))

    total = (
        await session.execute(select(func.count()).select_from(User).where(*conditions))
    ).scalar_one()
    items = (
        await session.scalars(
            select(User)
            .where(*conditions)
            .order_by(User.created_at, User.id)
            .offset((page - 1) * size)
            .limit(size)
        )
    ).all()
    return UserPage(items=list(items), total=total, page=page, size=size)


async def get_user(session: AsyncSession, user_id: str) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound("User not found", code="user_not_found")
    return user


async def revoke_all_sessions(session: AsyncSession, user_id: str) -> int:
    """Revoke every live session of the user; their tokens fail on the next request."""
    result = await session.execute(
        update(UserSession)
        .where(UserSession.user_id == user_id, UserSession.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC))
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def update_user(
    session: AsyncSession,
    *,
    actor: User,
    user_id: str,
    is_active: bool | None = None,
    is_admin: bool | None = None,
) -> User:
    """Enable/disable an account or grant/withdraw admin rights.

    An admin may not disable or demote themselves: that is how a service ends up with no
    administrator at all. Disabling revokes every session of the account at once.
    """
    user = await get_user(session, user_id)
    if user.id == actor.id:
        if is_active is False:
            raise Conflict("You cannot disable your own account", code="cannot_modify_self")
        if is_admin is False:
            raise Conflict(
                "You cannot remove your own administrator rights", code="cannot_modify_self"
            )
    if is_active is not None and is_active != user.is_active:
        user.is_active = is_active
        if not is_active:
            await revoke_all_sessions(session, user.id)
    if is_admin is not None:
        user.is_admin = is_admin
    await session.flush()
    return user


async def set_quota(session: AsyncSession, user_id: str, quota_bytes: int) -> User:
    """Set the storage quota. It may go below current usage: nothing is deleted, but no
    further reservation succeeds until usage falls under it."""
    if not 0 <= quota_bytes <= MAX_QUOTA_BYTES:
        raise ValueError("quota out of range")
    user = await get_user(session, user_id)
    user.storage_quota_bytes = quota_bytes
    await session.flush()
    return user
