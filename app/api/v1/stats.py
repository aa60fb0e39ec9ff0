"""`GET /api/v1/admin/stats`: the data behind the admin dashboard's charts (admins only)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from app.api.deps import AdminUser, SessionDep
from app.core import stats

router = APIRouter()


class ModelSeriesOut(BaseModel):
    model: str
    counts: list[int] = Field(description="Tasks created per day, aligned with `days`.")


class ModelOutcomeOut(BaseModel):
    model: str
    completed: int
    failed: int
    cancelled: int
    active: int
    success_rate: float | None = Field(
        description="completed / (completed + failed); null before any task finished."
    )


class ModelTimingOut(BaseModel):
    model: str
    completed: int
    median_seconds: float | None


class UserStorageOut(BaseModel):
    user_id: str
    username: str
    used_bytes: int
    quota_bytes: int
    by_kind: dict[str, int]


class StatsOut(BaseModel):
    since: datetime
    until: datetime
    days: list[str] = Field(description="UTC days of the window, oldest first (YYYY-MM-DD).")
    tasks_per_day: list[ModelSeriesOut]
    totals: dict[str, int]
    success_rate: float | None
    outcomes: list[ModelOutcomeOut]
    median_seconds_to_result: float | None
    timings: list[ModelTimingOut]
    storage_by_user: list[UserStorageOut] = Field(
        description=f"The {stats.TOP_STORAGE_USERS} users using the most storage."
    )


_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Not authenticated"},
    403: {"description": "Caller is not an administrator (code `admin_required`)"},
}


@router.get("/stats", response_model=StatsOut, responses=_ERRORS, summary="Usage statistics")
async def get_stats(
    _: AdminUser,
    db: SessionDep,
    days: Annotated[int, Query(ge=1, le=stats.MAX_WINDOW_DAYS)] = 14,
) -> StatsOut:
    result = await stats.collect(db, days=days)
    return StatsOut(
        since=result.since,
        until=result.until,
        days=result.days,
        tasks_per_day=[
            ModelSeriesOut(model=s.model, counts=s.counts) for s in result.tasks_per_day
        ],
        totals=result.totals,
        success_rate=result.success_rate,
        outcomes=[
            ModelOutcomeOut(
                model=o.model,
                completed=o.completed,
                failed=o.failed,
                cancelled=o.cancelled,
                active=o.active,
                success_rate=o.success_rate,
            )
            for o in result.outcomes
        ],
        median_seconds_to_result=result.median_seconds,
        timings=[
            ModelTimingOut(model=t.model, completed=t.completed, median_seconds=t.median_seconds)
            for t in result.timings
        ],
        storage_by_user=[
            UserStorageOut(
                user_id=u.user_id,
                username=u.username,
                used_bytes=u.used_bytes,
                quota_bytes=u.quota_bytes,
                by_kind=u.by_kind,
            )
            for u in result.storage
        ],
    )
