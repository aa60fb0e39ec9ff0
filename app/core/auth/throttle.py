"""Login throttling, counted from user_login_logs so every process sees the same numbers.

Only wrong-password attempts count. Throttled attempts are logged but never counted, so a
client that keeps knocking while locked out cannot extend the lock: it always ends at most one
window after the last counted failure.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.models import UserLoginLog

REASON_INVALID_CREDENTIALS = "invalid_credentials"
REASON_ACCOUNT_DISABLED = "account_disabled"
REASON_THROTTLED = "throttled"


async def _seconds_until_below(
    db: AsyncSession,
    scope: ColumnElement[bool],
    *,
    limit: int,
    window: timedelta,
    now: datetime,
) -> int | None:
    """Seconds until fewer than `limit` counted failures match `scope`, or None if already so.

    The `limit`-th newest failure is the one whose expiry brings the count below the limit.
    """
    nth_newest = await db.scalar(
        select(UserLoginLog.created_at)
        .where(
            scope,
            UserLoginLog.success.is_(False),
            UserLoginLog.reason == REASON_INVALID_CREDENTIALS,
            UserLoginLog.created_at > now - window,
        )
        .order_by(UserLoginLog.created_at.desc())
        .offset(limit - 1)
        .limit(1)
    )
    if nth_newest is None:
        return None
    return max(1, math.ceil((nth_newest + window - now).total_seconds()))


async def login_retry_after(
    db: AsyncSession,
    settings: Settings,
    *,
    identifier: str,
    user_id: str | None,
    ip_address: str | None,
    now: datetime,
) -> int | None:
    """Seconds the caller must wait before trying again, or None when it may try now.

    Per account, failures count by the identifier typed and by the account it names, so
    alternating username and e-mail does not double the guesses.
    """
    window = timedelta(seconds=settings.login_failure_window_seconds)
    account_scope: ColumnElement[bool] = UserLoginLog.identifier == identifier
    if user_id is not None:
        account_scope = or_(account_scope, UserLoginLog.user_id == user_id)
    waits = [
        await _seconds_until_below(
            db,
            account_scope,
            limit=settings.login_max_failures_per_account,
            window=window,
            now=now,
        )
    ]
    if ip_address:
        waits.append(
            await _seconds_until_below(
                db,
                UserLoginLog.ip_address == ip_address,
                limit=settings.login_max_failures_per_ip,
                window=window,
                now=now,
            )
        )
    pending = [wait for wait in waits if wait is not None]
    return max(pending) if pending else None
