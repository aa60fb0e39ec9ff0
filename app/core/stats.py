"""Usage statistics for the admin dashboard's charts.

Counts are aggregated in the database (grouped by UTC day, model and status), so the cost
grows with the number of distinct (day, model, status) groups, not with the number of tasks.
The median time to result needs every duration; PostgreSQL computes it with
`percentile_cont`, SQLite (development, tests) hands the window's durations to Python.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Float, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import GenerationTask, Media, User

MAX_WINDOW_DAYS = 366
TOP_STORAGE_USERS = 20


@dataclass(frozen=True)
class ModelSeries:
    model: str
    counts: list[int]


@dataclass(frozen=True)
class ModelOutcome:
    model: str
    completed: int
    failed: int
    cancelled: int
    active: int

    @property
    def success_rate(self) -> float | None:
        return _rate(self.completed, self.failed)


@dataclass(frozen=True)
class ModelTiming:
    model: str
    completed: int
    median_seconds: float | None


@dataclass(frozen=True)
class UserStorage:
    user_id: str
    username: str
    used_bytes: int
    quota_bytes: int
    by_kind: dict[str, int]


@dataclass(frozen=True)
class Stats:
    since: datetime
    until: datetime
    days: list[str]
    tasks_per_day: list[ModelSeries]
    outcomes: list[ModelOutcome]
    timings: list[ModelTiming]
    median_seconds: float | None
    storage: list[UserStorage]
    totals: dict[str, int] = field(default_factory=dict)

    @property
    def success_rate(self) -> float | None:
        return _rate(self.totals.get("completed", 0), self.totals.get("failed", 0))


def _rate(completed: int, failed: int) -> float | None:
    # Cancelled tasks are the user's choice, not a failure of the service: left out.
    finished = completed + failed
    return round(completed / finished, 4) if finished else None


def _day_expression(dialect: str) -> ColumnElement[Any]:
    column = GenerationTask.created_at
    if dialect == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD")
    # SQLite keeps UTC datetimes as naive ISO text (see app.db.base.UTCDateTime).
    return func.strftime("%Y-%m-%d", column)


def _window(days: int, now: datetime) -> tuple[datetime, list[str]]:
    """The first instant of the window and its UTC day labels, oldest first, today included."""
    today = now.astimezone(UTC).date()
    first = today - timedelta(days=days - 1)
    labels = [(first + timedelta(days=i)).isoformat() for i in range(days)]
    return datetime.combine(first, datetime.min.time(), tzinfo=UTC), labels


async def _tasks_per_day(
    db: AsyncSession, since: datetime, labels: list[str]
) -> tuple[list[ModelSeries], list[ModelOutcome]]:
    day = _day_expression(db.get_bind().dialect.name).label("day")
    rows = await db.execute(
        select(day, GenerationTask.model, GenerationTask.status, func.count())
        .where(GenerationTask.created_at >= since)
        .group_by(day, GenerationTask.model, GenerationTask.status)
    )
    index = {label: i for i, label in enumerate(labels)}
    per_day: dict[str, list[int]] = defaultdict(lambda: [0] * len(labels))
    by_status: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for day_label, model, status, count in rows.all():
        position = index.get(str(day_label))
        if position is not None:
            per_day[model][position] += int(count)
        by_status[model][status] += int(count)
    series = sorted(
        (ModelSeries(model=m, counts=c) for m, c in per_day.items()),
        key=lambda s: (-sum(s.counts), s.model),
    )
    outcomes = sorted(
        (
            ModelOutcome(
                model=model,
                completed=counts.get("completed", 0),
                failed=counts.get("failed", 0),
                cancelled=counts.get("cancelled", 0),
                active=counts.get("queued", 0) + counts.get("in_progress", 0),
            )
            for model, counts in by_status.items()
        ),
        key=lambda o: o.model,
    )
    return series, outcomes


def _completed_in(since: datetime) -> list[ColumnElement[bool]]:
    return [
        GenerationTask.created_at >= since,
        GenerationTask.status == "completed",
        GenerationTask.completed_at.is_not(None),
    ]


async def _timings(db: AsyncSession, since: datetime) -> tuple[list[ModelTiming], float | None]:
    """Median seconds from creation to result, per model and overall."""
    conditions = _completed_in(since)
    if db.get_bind().dialect.name == "postgresql":
        seconds = func.extract("epoch", GenerationTask.completed_at - GenerationTask.created_at)
        median = func.percentile_cont(0.5).within_group(seconds)
        per_model = await db.execute(
            select(GenerationTask.model, func.count(), median)
            .where(*conditions)
            .group_by(GenerationTask.model)
        )
        timings = [
            ModelTiming(model=m, completed=int(c), median_seconds=_round(v))
            for m, c, v in per_model.all()
        ]
        overall = await db.scalar(select(median).where(*conditions))
        return sorted(timings, key=lambda t: t.model), _round(overall)
    seconds_sqlite = cast(
        (func.julianday(GenerationTask.completed_at) - func.julianday(GenerationTask.created_at))
        * 86400.0,
        Float,
    )
    rows = await db.execute(select(GenerationTask.model, seconds_sqlite).where(*conditions))
    durations: dict[str, list[float]] = defaultdict(list)
    everything: list[float] = []
    for model, value in rows.all():
        if value is None:
            continue
        durations[model].append(float(value))
        everything.append(float(value))
    timings = [
        ModelTiming(model=m, completed=len(v), median_seconds=_round(statistics.median(v)))
        for m, v in sorted(durations.items())
    ]
    return timings, _round(statistics.median(everything)) if everything else None


def _round(value: Any) -> float | None:
    return None if value is None else round(float(value), 2)


async def _storage(db: AsyncSession, limit: int) -> list[UserStorage]:
    users = (
        await db.execute(
            select(User.id, User.username, User.storage_used_bytes, User.storage_quota_bytes)
            .where(User.storage_used_bytes > 0)
            .order_by(User.storage_used_bytes.desc(), User.username)
            .limit(limit)
        )
    ).all()
    if not users:
        return []
    kinds: dict[str, dict[str, int]] = defaultdict(dict)
    rows = await db.execute(
        select(Media.user_id, Media.kind, func.sum(Media.bytes + Media.thumbnail_bytes))
        .where(Media.user_id.in_([u.id for u in users]), Media.state == "stored")
        .group_by(Media.user_id, Media.kind)
    )
    for user_id, kind, total in rows.all():
        kinds[user_id][kind] = int(total or 0)
    return [
        UserStorage(
            user_id=u.id,
            username=u.username,
            used_bytes=int(u.storage_used_bytes),
            quota_bytes=int(u.storage_quota_bytes),
            by_kind=kinds.get(u.id, {}),
        )
        for u in users
    ]


async def collect(db: AsyncSession, *, days: int = 14, now: datetime | None = None) -> Stats:
    """Statistics over the last `days` UTC days (today included) plus current storage."""
    days = max(1, min(days, MAX_WINDOW_DAYS))
    now = now or datetime.now(UTC)
    since, labels = _window(days, now)
    series, outcomes = await _tasks_per_day(db, since, labels)
    timings, median = await _timings(db, since)
    totals = {
        "tasks": sum(o.completed + o.failed + o.cancelled + o.active for o in outcomes),
        "completed": sum(o.completed for o in outcomes),
        "failed": sum(o.failed for o in outcomes),
        "cancelled": sum(o.cancelled for o in outcomes),
        "active": sum(o.active for o in outcomes),
    }
    return Stats(
        since=since,
        until=now,
        days=labels,
        tasks_per_day=series,
        outcomes=outcomes,
        timings=timings,
        median_seconds=median,
        storage=await _storage(db, TOP_STORAGE_USERS),
        totals=totals,
    )
