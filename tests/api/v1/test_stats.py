"""GET /api/v1/admin/stats (the admin charts' data) and the per-kind storage breakdown of
GET /api/v1/storage/me, over HTTP against the real app and database (no browser needed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI

from app.api.v1 import stats
from app.db.session import Database
from app.models import GenerationTask, Media, User
from tests.conftest import AuthedUser

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(autouse=True)
def _stats_route(app: FastAPI) -> None:
    # Until app/api/v1/router.py mounts it (see the report), mount the router here.
    paths = {getattr(route, "path", None) for route in app.router.routes}
    if "/api/v1/admin/stats" not in paths:
        app.include_router(stats.router, prefix="/api/v1/admin")


async def add_task(
    db: Database,
    user_id: str,
    model: str,
    status: str,
    created_at: datetime,
    seconds: float | None = None,
    kind: str = "video",
) -> str:
    async with db.session() as session:
        task = GenerationTask(
            user_id=user_id,
            kind=kind,
            model=model,
            adapter="sora" if kind == "video" else "images",
            status=status,
            request_encrypted="not-read-by-stats",
            deadline_at=created_at + timedelta(hours=2),
            created_at=created_at,
            updated_at=created_at,
            completed_at=created_at + timedelta(seconds=seconds) if seconds is not None else None,
        )
        session.add(task)
        await session.flush()
        return task.id


async def add_media(
    db: Database, task_id: str, user_id: str, kind: str, nbytes: int, thumb: int, state: str
) -> None:
    async with db.session() as session:
        session.add(
            Media(
                task_id=task_id,
                user_id=user_id,
                kind=kind,
                state=state,
                bytes=nbytes,
                thumbnail_bytes=thumb,
            )
        )
        if state == "stored":
            user = await session.get(User, user_id)
            assert user is not None
            user.storage_used_bytes += nbytes + thumb


async def test_stats_count_rate_median_and_storage(
    app: FastAPI, client: httpx.AsyncClient, admin_user: AuthedUser, user: AuthedUser
) -> None:
    db: Database = app.state.db
    today = NOW
    yesterday = NOW - timedelta(days=1)
    await add_task(db, user.id, "sora-2", "completed", today, seconds=10)
    await add_task(db, user.id, "sora-2", "completed", yesterday, seconds=60)
    await add_task(db, user.id, "sora-2", "failed", today, seconds=5)
    await add_task(db, user.id, "veo3", "completed", today, seconds=20)
    await add_task(db, user.id, "veo3", "cancelled", today)
    await add_task(db, user.id, "veo3", "in_progress", today)
    # Outside a 7-day window: counted nowhere.
    await add_task(db, user.id, "veo3", "failed", NOW - timedelta(days=30), seconds=1)

    response = await client.get("/api/v1/admin/stats?days=7", headers=admin_user.headers)
    assert response.status_code == 200, response.text
    body = response.json()

    assert len(body["days"]) == 7
    assert body["days"][-1] == today.date().isoformat()
    assert body["days"][-2] == yesterday.date().isoformat()
    series = {s["model"]: s["counts"] for s in body["tasks_per_day"]}
    assert series["sora-2"][-1] == 2
    assert series["sora-2"][-2] == 1
    assert series["veo3"][-1] == 3
    assert sum(series["veo3"]) == 3
    assert body["totals"] == {
        "tasks": 6,
        "completed": 3,
        "failed": 1,
        "cancelled": 1,
        "active": 1,
    }
    # Cancelled tasks are left out of the success rate: 3 / (3 + 1).
    assert body["success_rate"] == 0.75
    outcomes = {o["model"]: o for o in body["outcomes"]}
    assert outcomes["sora-2"]["success_rate"] == round(2 / 3, 4)
    assert outcomes["veo3"]["success_rate"] == 1.0
    # Median of the completed tasks' times to result: 10, 20, 60 s.
    assert body["median_seconds_to_result"] == pytest.approx(20, abs=0.01)
    timings = {t["model"]: t for t in body["timings"]}
    assert timings["sora-2"]["median_seconds"] == pytest.approx(35, abs=0.01)
    assert timings["sora-2"]["completed"] == 2
    assert timings["veo3"]["median_seconds"] == pytest.approx(20, abs=0.01)

    wider = (await client.get("/api/v1/admin/stats?days=60", headers=admin_user.headers)).json()
    assert wider["totals"]["tasks"] == 7
    assert len(wider["days"]) == 60


async def test_storage_per_user_and_per_kind(
    app: FastAPI,
    client: httpx.AsyncClient,
    admin_user: AuthedUser,
    user: AuthedUser,
    other_user: AuthedUser,
) -> None:
    db: Database = app.state.db
    video = await add_task(db, user.id, "sora-2", "completed", NOW, seconds=3)
    image = await add_task(db, user.id, "flux-pro", "completed", NOW, seconds=3, kind="image")
    await add_media(db, video, user.id, "video", 5000, 300, "stored")
    await add_media(db, image, user.id, "image", 700, 50, "stored")
    await add_media(db, image, user.id, "image", 9999, 0, "not_stored")
    small = await add_task(db, other_user.id, "flux-pro", "completed", NOW, 1, kind="image")
    await add_media(db, small, other_user.id, "image", 100, 10, "stored")

    mine = (await client.get("/api/v1/storage/me", headers=user.headers)).json()
    assert mine["by_kind"] == {"video": 5300, "image": 750}
    assert mine["used_bytes"] == 6050
    nothing = (await client.get("/api/v1/storage/me", headers=admin_user.headers)).json()
    assert nothing["by_kind"] == {}

    body = (await client.get("/api/v1/admin/stats", headers=admin_user.headers)).json()
    assert [u["username"] for u in body["storage_by_user"]] == ["alice", "mallory"]
    alice = body["storage_by_user"][0]
    assert alice["used_bytes"] == 6050
    assert alice["by_kind"] == {"video": 5300, "image": 750}
    assert alice["quota_bytes"] > 0


async def test_stats_are_for_admins_only(
    client: httpx.AsyncClient, admin_user: AuthedUser, user: AuthedUser
) -> None:
    assert (await client.get("/api/v1/admin/stats")).status_code == 401
    refused = await client.get("/api/v1/admin/stats", headers=user.headers)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "admin_required"
    bad = await client.get("/api/v1/admin/stats?days=0", headers=admin_user.headers)
    assert bad.status_code == 422


async def test_empty_stats(client: httpx.AsyncClient, admin_user: AuthedUser) -> None:
    body = (await client.get("/api/v1/admin/stats?days=1", headers=admin_user.headers)).json()
    assert len(body["days"]) == 1
    assert body["tasks_per_day"] == []
    assert body["success_rate"] is None
    assert body["median_seconds_to_result"] is None
    assert body["storage_by_user"] == []
