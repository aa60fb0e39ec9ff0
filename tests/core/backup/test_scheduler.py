"""The in-service scheduler: one leader per fleet, counters, retention after success only."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.engine import make_url

from app.core.backup import BackupScheduler, create_backup
from app.core.backup.locks import FileLock, PostgresAdvisoryLock
from app.core.backup.service import backup_files
from tests.core.backup.conftest import Source
from tests.core.backup.helpers import make_settings, seed, use_postgres


async def wait_for(condition: Callable[[], bool], what: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for: {what}"
        await asyncio.sleep(0.02)


async def test_two_schedulers_elect_one_leader_and_back_up_once(source: Source) -> None:
    await seed(source.database, source.encryptor, source.storage, users=1, tasks_per_user=1)
    backup_dir = source.settings.resolved_backup_dir
    first, second = (
        BackupScheduler(source.settings, storage=source.storage, leader_retry_seconds=0.05)
        for _ in range(2)
    )
    expected_lock = PostgresAdvisoryLock if use_postgres() else FileLock
    assert isinstance(first.lock, expected_lock)
    await first.start()
    await second.start()
    try:
        await wait_for(
            lambda: first.backups_succeeded + second.backups_succeeded == 1, "the first backup"
        )
        leader, follower = (first, second) if first.is_leader else (second, first)
        # The follower keeps trying and keeps losing while the leader lives.
        attempts = follower.election_attempts
        await wait_for(lambda: follower.election_attempts >= attempts + 5, "follower retries")
        assert leader.is_leader
        assert not follower.is_leader
        assert follower.backups_succeeded == 0
        assert len(backup_files(backup_dir)) == 1
        assert leader.last_success_at is not None
        assert leader.last_result is not None

        # The leader goes away: the follower takes over, and counts the interval from the
        # existing backup instead of backing up again at once.
        await leader.stop()
        await wait_for(lambda: follower.is_leader, "the follower to take over")
        assert follower.next_due_at is not None
        assert follower.next_due_at > datetime.now(UTC) + timedelta(minutes=59)
        assert len(backup_files(backup_dir)) == 1
        assert follower.backups_succeeded == 0
    finally:
        await first.stop()
        await second.stop()


async def test_a_due_backup_runs_on_schedule(source: Source) -> None:
    await seed(source.database, source.encryptor, source.storage, users=1, tasks_per_user=1)
    scheduler = BackupScheduler(
        source.settings, storage=source.storage, interval_seconds=0.3, leader_retry_seconds=0.05
    )
    await scheduler.start()
    try:
        await wait_for(lambda: scheduler.backups_succeeded >= 2, "two scheduled backups")
    finally:
        await scheduler.stop()
    assert scheduler.backups_failed == 0
    assert len(backup_files(source.settings.resolved_backup_dir)) >= 2


async def test_failed_backup_is_counted_and_deletes_nothing(
    source: Source, tmp_path: Path, master_key: str
) -> None:
    await seed(source.database, source.encryptor, source.storage, users=1, tasks_per_user=1)
    now = datetime.now(UTC)
    old = [
        await create_backup(source.settings, storage=source.storage, now=now - timedelta(days=d))
        for d in (30, 20)
    ]
    if use_postgres():
        broken_url = make_url(source.url).set(database="genapi_no_such_database")
        broken = broken_url.render_as_string(hide_password=False)
    else:
        broken = f"sqlite+aiosqlite:///{tmp_path / 'gone.db'}"
    broken_settings = make_settings(
        broken, tmp_path / "broken", master_key, backup_dir=source.settings.resolved_backup_dir
    )
    failing = BackupScheduler(broken_settings, storage=source.storage)
    try:
        assert await failing.run_once() is False
    finally:
        await failing.stop()
    assert failing.backups_failed == 1
    assert failing.backups_succeeded == 0
    assert failing.last_error
    assert failing.last_failure_at is not None
    assert all(backup.path.exists() for backup in old)  # retention did not run

    # A later successful run prunes: the two 20+ day old backups go, the new one stays.
    working = BackupScheduler(source.settings, storage=source.storage)
    try:
        assert await working.run_once() is True
    finally:
        await working.stop()
    assert working.last_retention is not None
    assert sorted(working.last_retention.deleted) == sorted(backup.path for backup in old)
    assert working.last_result is not None
    assert backup_files(source.settings.resolved_backup_dir) == [working.last_result.path]
    assert working.last_success_age_seconds is not None
