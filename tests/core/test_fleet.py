"""Once-per-fleet housekeeping: one leader among several runners, failover, the real jobs.

The runners use the service's own lock (`default_leader_lock`): a PostgreSQL advisory lock
under TEST_DB=postgres, an flock in DATA_DIR on SQLite.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path

import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import insert, select

from app.core.config import Settings
from app.core.fleet import (
    TEMP_MEDIA_MAX_AGE_SECONDS,
    FleetJob,
    FleetRunner,
    default_leader_lock,
)
from app.core.media.storage import LocalMediaStorage
from app.core.tasks.service import IDEMPOTENCY_TTL
from app.db.base import new_uuid, utcnow
from app.db.session import Database
from app.main import create_app
from app.models import ApiRequestLog, IdempotencyKey, User

DEADLINE = 15.0
FAST = 0.02


async def eventually(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"not within {DEADLINE} s: {what}")


def counting_runner(settings: Settings, runs: list[str], name: str) -> FleetRunner:
    async def job() -> int:
        runs.append(name)
        return 0

    return FleetRunner(
        [FleetJob("count", FAST, job)], default_leader_lock(settings), leader_retry_seconds=FAST
    )


@pytest.fixture
async def database(settings: Settings) -> AsyncIterator[Database]:
    db = Database(settings.resolved_database_url)
    yield db
    await db.dispose()


async def test_one_leader_runs_the_jobs_and_another_takes_over_when_it_stops(
    settings: Settings,
) -> None:
    runs: list[str] = []
    first = counting_runner(settings, runs, "first")
    second = counting_runner(settings, runs, "second")
    await first.start()
    try:
        await eventually(lambda: first.is_leader, "the first runner leads")
        await second.start()
        try:
            # The follower keeps trying (it would take over at once) while the leader works.
            await eventually(
                lambda: second.election_attempts >= 5 and runs.count("first") >= 5,
                "the leader runs its jobs while the other keeps asking",
            )
            assert not second.is_leader
            assert "second" not in runs
            assert first.stats["count"].runs == runs.count("first")

            await first.stop()
            stopped_at = len(runs)
            await eventually(lambda: "second" in runs, "the second runner takes over")
            assert second.is_leader
            assert not first.is_leader
            assert set(runs[stopped_at:]) == {"second"}
        finally:
            await second.stop()
    finally:
        await first.stop()


async def test_a_failing_job_is_counted_and_does_not_stop_the_others(settings: Settings) -> None:
    ran: list[str] = []

    async def broken() -> int:
        raise RuntimeError("boom")

    async def fine() -> int:
        ran.append("fine")
        return 1

    runner = FleetRunner(
        [FleetJob("broken", FAST, broken), FleetJob("fine", FAST, fine)],
        default_leader_lock(settings),
        leader_retry_seconds=FAST,
    )
    await runner.start()
    try:
        await eventually(lambda: len(ran) >= 3, "the healthy job keeps running")
        assert runner.stats["broken"].failures >= 2
        assert runner.stats["broken"].runs == 0
        assert runner.stats["broken"].last_error == "RuntimeError('boom')"
        assert runner.stats["fine"].last_result == 1
    finally:
        await runner.stop()


async def test_the_real_jobs_purge_old_logs_keys_and_temp_files(
    settings: Settings, database: Database, tmp_path: Path
) -> None:
    now = utcnow()
    user_id = new_uuid()
    async with database.session() as db:
        await db.execute(
            insert(User).values(
                id=user_id,
                username="fleet",
                email="fleet@example.com",
                password_hash="x",
                is_admin=False,
                is_active=True,
                storage_quota_bytes=0,
            )
        )
        for key, age in (("old", IDEMPOTENCY_TTL + timedelta(hours=1)), ("new", timedelta())):
            await db.execute(
                insert(IdempotencyKey).values(
                    id=new_uuid(),
                    user_id=user_id,
                    key=key,
                    request_hash="0" * 64,
                    task_ids=[],
                    created_at=now - age,
                )
            )
        retention = timedelta(days=settings.request_log_retention_days)
        for path, age in (("/old", retention + timedelta(days=1)), ("/new", timedelta())):
            await db.execute(
                insert(ApiRequestLog).values(
                    id=new_uuid(),
                    request_id=new_uuid(),
                    started_at=now - age,
                    duration_ms=1.0,
                    method="GET",
                    path=path,
                    status_code=200,
                    request_headers_encrypted="x",
                    request_bytes=0,
                    response_bytes=0,
                    tags=[],
                )
            )
    storage = LocalMediaStorage(tmp_path / "media")
    stale, fresh = storage.new_temp_path(".part"), storage.new_temp_path(".part")
    for path in (stale, fresh):
        path.write_bytes(b"partial download")
    old = time.time() - TEMP_MEDIA_MAX_AGE_SECONDS - 60
    os.utime(stale, (old, old))

    runner = FleetRunner.for_settings(settings, database=database, storage=storage)
    await runner.start()
    try:
        await eventually(
            lambda: all(s.runs == 1 for s in runner.stats.values()), "every job ran once"
        )
    finally:
        await runner.stop()
    assert {name: s.last_result for name, s in runner.stats.items()} == {
        "request-log-retention": 1,
        "idempotency-keys": 1,
        "temp-media": 1,
    }
    async with database.session() as db:
        keys = set(await db.scalars(select(IdempotencyKey.key)))
        paths = set(await db.scalars(select(ApiRequestLog.path)))
        await db.execute(IdempotencyKey.__table__.delete())
        await db.execute(ApiRequestLog.__table__.delete())
        await db.execute(User.__table__.delete().where(User.id == user_id))
    assert keys == {"new"}
    assert paths == {"/new"}
    assert not stale.exists()
    assert fresh.exists()


async def test_the_service_starts_a_runner_and_two_instances_elect_one_leader(
    app: FastAPI, settings: Settings, tmp_path: Path
) -> None:
    leader = app.state.fleet
    assert isinstance(leader, FleetRunner)
    await eventually(lambda: leader.is_leader, "the first instance leads")
    # Its first round ran at once (nothing to purge in an empty database).
    await eventually(
        lambda: all(s.runs + s.failures >= 1 for s in leader.stats.values()), "jobs ran"
    )
    assert all(s.failures == 0 for s in leader.stats.values())
    other = create_app(settings.model_copy(update={"run_worker": False}))
    async with LifespanManager(other, startup_timeout=30, shutdown_timeout=30):
        follower = other.state.fleet
        await eventually(lambda: follower.election_attempts >= 1, "the second one asked")
        assert not follower.is_leader
        assert all(s.runs == 0 for s in follower.stats.values())
        assert leader.is_leader
