"""Per-user storage quota: atomic reserve/release of bytes against `users.storage_quota_bytes`.

Both operations are a single conditional UPDATE, so the check and the increment happen inside
the database under the row's write lock. On PostgreSQL a concurrent UPDATE of the same row
waits for the first to commit and then re-evaluates the WHERE clause against the new value; on
SQLite `BEGIN IMMEDIATE` (see app/db/session.py) serialises writers. Either way, concurrent
reservations can never push `storage_used_bytes` past the quota.

The caller's session owns the transaction: reserve before writing a file and commit with it, or
release what was reserved when the write fails.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

from sqlalchemy import Table, bindparam, case, func, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.core.errors import NotFound, QuotaExceeded
from app.models import Media, User


@dataclass(frozen=True)
class QuotaUsage:
    quota_bytes: int
    used_bytes: int
    # Bytes of stored media (files and their thumbnails) per kind ("video", "image").
    by_kind: dict[str, int] = field(default_factory=dict)

    @property
    def available_bytes(self) -> int:
        return max(0, self.quota_bytes - self.used_bytes)

    @property
    def used_percent(self) -> float:
        if self.quota_bytes <= 0:
            return 100.0 if self.used_bytes > 0 else 0.0
        # Not capped at 100: an admin may lower a quota below what is already stored.
        return round(self.used_bytes * 100 / self.quota_bytes, 2)


# Either runs the statements: a session, or a bare connection (the worker's Core transactions).
Executor = AsyncSession | AsyncConnection


def _check_amount(nbytes: int) -> None:
    if nbytes < 0:
        raise ValueError("byte counts must not be negative")


_USERS = cast(Table, User.__table__)
# Built once and bound per call, on the table rather than the entity: it runs for every stored
# result, and building it (and the ORM's bulk-update path) cost more than executing it.
_RESERVE = (
    update(_USERS)
    .where(
        _USERS.c.id == bindparam("reserve_user"),
        _USERS.c.storage_used_bytes + bindparam("reserve_bytes") <= _USERS.c.storage_quota_bytes,
    )
    .values(storage_used_bytes=_USERS.c.storage_used_bytes + bindparam("reserve_bytes"))
)


async def reserve(session: Executor, user_id: str, nbytes: int) -> bool:
    """Add `nbytes` to the user's usage if it fits in their quota. Returns whether it did.

    Also False for an unknown user: there is nothing to reserve against.
    """
    _check_amount(nbytes)
    result = await session.execute(_RESERVE, {"reserve_user": user_id, "reserve_bytes": nbytes})
    assert isinstance(result, CursorResult)
    return result.rowcount == 1


async def reserve_or_raise(session: AsyncSession, user_id: str, nbytes: int) -> None:
    """`reserve`, raising QuotaExceeded (413) with the numbers when it does not fit."""
    if await reserve(session, user_id, nbytes):
        return
    from app.core.observability.metrics import record_quota_rejection

    record_quota_rejection()
    current = await usage(session, user_id)
    raise QuotaExceeded(
        f"Storage quota exceeded: {nbytes} bytes requested, "
        f"{current.available_bytes} of {current.quota_bytes} available",
        details={
            "requested_bytes": nbytes,
            "quota_bytes": current.quota_bytes,
            "used_bytes": current.used_bytes,
            "available_bytes": current.available_bytes,
        },
    )


async def release(session: Executor, user_id: str, nbytes: int) -> None:
    """Give `nbytes` back. Clamped at zero so a double release cannot make usage negative."""
    _check_amount(nbytes)
    if nbytes == 0:
        return
    await session.execute(
        update(User)
        .where(User.id == user_id)
        .values(
            storage_used_bytes=case(
                (User.storage_used_bytes >= nbytes, User.storage_used_bytes - nbytes),
                else_=0,
            )
        )
        .execution_options(synchronize_session=False)
    )


async def usage(session: AsyncSession, user_id: str) -> QuotaUsage:
    row = (
        await session.execute(
            select(User.storage_quota_bytes, User.storage_used_bytes).where(User.id == user_id)
        )
    ).one_or_none()
    if row is None:
        raise NotFound("User not found", code="user_not_found")
    return QuotaUsage(
        quota_bytes=row.storage_quota_bytes,
        used_bytes=row.storage_used_bytes,
        by_kind=await stored_bytes_by_kind(session, user_id),
    )


async def stored_bytes_by_kind(session: AsyncSession, user_id: str) -> dict[str, int]:
    """Bytes of the user's stored media per kind, thumbnails included (as quota counts them).

    Only kinds with stored media appear (`{}` before the first result). Media still being
    written are reserved in `storage_used_bytes` but counted here only once stored, so the
    parts may briefly sum to less than the total.
    """
    rows = await session.execute(
        select(Media.kind, func.sum(Media.bytes + Media.thumbnail_bytes))
        .where(Media.user_id == user_id, Media.state == "stored")
        .group_by(Media.kind)
    )
    return {str(kind): int(total or 0) for kind, total in rows.all() if total}
