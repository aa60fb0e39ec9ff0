"""Channel health in the database: failures, cooldowns, successes and probes.

Every change is one short transaction with an atomic increment or a conditional update, so any
number of worker processes can report on the same channel; a probe is claimed by moving
`last_probe_at` forward first, so only one process probes a channel per interval.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import httpx
from sqlalchemy import exists, or_, select, update

from app.core.channels.policy import ChannelPolicy
from app.core.channels.view import Health
from app.db.base import utcnow
from app.db.session import Database
from app.models import Channel, GenerationTask

logger = logging.getLogger(__name__)

PROBE_ALIVE_BELOW = 500


def _health(row: Channel) -> Health:
    return Health(
        consecutive_failures=row.consecutive_failures,
        cooldown_until=row.cooldown_until,
        last_error=row.last_error,
        last_error_at=row.last_error_at,
        last_success_at=row.last_success_at,
        last_probe_at=row.last_probe_at,
    )


async def record_failure(
    database: Database, channel_id: str, error: str, policy: ChannelPolicy
) -> Health | None:
    """One more consecutive failure; starts a cooldown at the threshold. The new health."""
    now = utcnow()
    async with database.session() as db:
        row = await db.scalar(
            update(Channel)
            .where(Channel.id == channel_id)
            .values(
                consecutive_failures=Channel.consecutive_failures + 1,
                last_error=error[:500],
                last_error_at=now,
            )
            .returning(Channel)
            .execution_options(synchronize_session=False)
        )
        if row is None:
            return None
        cooldown = policy.cooldown_after(row.consecutive_failures)
        cooling = row.cooldown_until is not None and row.cooldown_until > now
        if cooldown is not None and not cooling:
            # Failures of requests sent before the cooldown began do not extend it.
            row = await db.scalar(
                update(Channel)
                .where(Channel.id == channel_id)
                .values(cooldown_until=now + cooldown)
                .returning(Channel)
                .execution_options(synchronize_session=False, populate_existing=True)
            )
            if row is not None:
                logger.warning(
                    "channel %s cools down for %.0f s after %d consecutive failures",
                    channel_id,
                    cooldown.total_seconds(),
                    row.consecutive_failures,
                )
        return _health(row) if row is not None else None


async def record_success(database: Database, channel_id: str) -> Health | None:
    now = utcnow()
    async with database.session() as db:
        row = await db.scalar(
            update(Channel)
            .where(Channel.id == channel_id)
            .values(consecutive_failures=0, cooldown_until=None, last_success_at=now)
            .returning(Channel)
            .execution_options(synchronize_session=False)
        )
        return _health(row) if row is not None else None


async def claim_probes(database: Database, policy: ChannelPolicy) -> list[tuple[str, str]]:
    """(id, base URL) of each cooling channel due for a probe, claimed for this process."""
    now = utcnow()
    due_before = now - timedelta(seconds=policy.probe_interval_seconds)
    claimed: list[tuple[str, str]] = []
    async with database.session() as db:
        rows = await db.execute(
            update(Channel)
            .where(
                Channel.deleted_at.is_(None),
                Channel.enabled.is_(True),
                Channel.cooldown_until > now,
                or_(Channel.last_probe_at.is_(None), Channel.last_probe_at < due_before),
            )
            .values(last_probe_at=now)
            .returning(Channel.id, Channel.base_url)
            .execution_options(synchronize_session=False)
        )
        claimed = [(str(r[0]), str(r[1])) for r in rows.all()]
    return claimed


async def probe(http: httpx.AsyncClient, base_url: str, policy: ChannelPolicy) -> str | None:
    """GET the base URL without credentials: None when it answers, else why not.

    Any HTTP answer below 500 (even 401 or 404) shows the upstream is reachable and serving;
    it costs nothing, sends no key and creates nothing."""
    try:
        response = await http.get(base_url, timeout=policy.probe_timeout_seconds)
    except httpx.HTTPError as exc:
        return f"probe: no answer ({type(exc).__name__})"
    if response.status_code >= PROBE_ALIVE_BELOW:
        return f"probe: HTTP {response.status_code}"
    return None


async def record_probe(database: Database, channel_id: str, failure: str | None) -> None:
    now = utcnow()
    values: dict[str, object]
    if failure is None:
        values = {"consecutive_failures": 0, "cooldown_until": None}
        logger.info("channel %s answered its probe; back in rotation", channel_id)
    else:
        values = {"last_error": failure[:500], "last_error_at": now}
    async with database.session() as db:
        await db.execute(
            update(Channel)
            .where(Channel.id == channel_id)
            .values(**values)
            .execution_options(synchronize_session=False)
        )


async def purge_deleted(database: Database) -> int:
    """Remove deleted channels that no task points at any more (their tasks were deleted)."""
    async with database.session() as db:
        referenced = exists().where(GenerationTask.channel_id == Channel.id)
        ids = list(
            (
                await db.scalars(
                    select(Channel.id).where(Channel.deleted_at.is_not(None), ~referenced)
                )
            ).all()
        )
        for channel_id in ids:
            row = await db.get(Channel, channel_id)
            if row is not None:
                await db.delete(row)
    return len(ids)


def cooling(health: Health, now: datetime | None = None) -> bool:
    return health.cooling_down(now or utcnow())
