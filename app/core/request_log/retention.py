"""Retention of the request log: delete rows older than `REQUEST_LOG_RETENTION_DAYS`."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select

from app.db.session import Database
from app.models import ApiRequestLog

logger = logging.getLogger(__name__)

PURGE_BATCH_SIZE = 1000


async def purge_expired_logs(
    database: Database,
    retention_days: int,
    *,
    batch_size: int = PURGE_BATCH_SIZE,
    now: datetime | None = None,
) -> int:
    """Delete log rows started more than `retention_days` ago; returns how many were deleted.

    Deletes in batches, each in its own short transaction, so a large backlog never holds a
    long write lock (SQLite) or one huge transaction (PostgreSQL).
    """
    if retention_days < 1:
        raise ValueError("retention_days must be at least 1")
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    cutoff = (now or datetime.now(UTC)) - timedelta(days=retention_days)
    total = 0
    while True:
        oldest = (
            select(ApiRequestLog.id)
            .where(ApiRequestLog.started_at < cutoff)
            .order_by(ApiRequestLog.started_at)
            .limit(batch_size)
            .scalar_subquery()
        )
        async with database.session() as session:
            result = await session.execute(
                delete(ApiRequestLog)
                .where(ApiRequestLog.id.in_(oldest))
                .execution_options(synchronize_session=False)
            )
        deleted = int(getattr(result, "rowcount", 0) or 0)
        total += deleted
        if deleted < batch_size:
            break
    if total:
        logger.info("request log retention: deleted %d entries older than %s", total, cutoff)
    return total
