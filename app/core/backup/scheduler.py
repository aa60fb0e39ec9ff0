"""Scheduled backups inside the service, run by exactly one process of a fleet.

Every process starts a `BackupScheduler` when BACKUP_ENABLED is set; they elect a leader with a
lock that dies with its holder: a PostgreSQL advisory lock on a dedicated connection (any number
of hosts sharing the database) or, on SQLite (one host), an flock on DATA_DIR/backup-leader.lock.
The others retry now and then and take over when the leader goes away.

The leader backs up every BACKUP_INTERVAL_HOURS, counting from the newest backup on disk, so a
restart does not trigger an extra backup. After a successful backup it prunes old ones
(BACKUP_RETENTION_DAYS, never the newest good backup); a failed backup is logged and counted,
retried sooner, and deletes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

from app.core.backup.errors import BackupError
from app.core.backup.locks import FileLock, LeaderLock, PostgresAdvisoryLock
from app.core.backup.service import (
    BackupLayout,
    BackupResult,
    RetentionResult,
    create_backup,
    keyring_for,
    newest_backup_time,
    prune_backups,
)
from app.core.config import Settings
from app.core.media.storage import MediaStorage
from app.db.session import is_sqlite_url

logger = logging.getLogger(__name__)

LEADER_LOCK_NAME = "genapi:backup-scheduler"
LEADER_LOCK_FILE = "backup-leader.lock"
DEFAULT_LEADER_RETRY_SECONDS = 30.0
DEFAULT_FAILURE_RETRY_SECONDS = 900.0


def default_leader_lock(settings: Settings) -> LeaderLock:
    url = settings.resolved_database_url
    if is_sqlite_url(url):
        return FileLock(Path(settings.data_dir) / LEADER_LOCK_FILE)
    return PostgresAdvisoryLock(url, LEADER_LOCK_NAME)


class BackupScheduler:
    """Wire it in the lifespan::

        scheduler = BackupScheduler(settings, storage=media_storage)
        await scheduler.start()      # returns at once; elects a leader in the background
        ...
        await scheduler.stop()       # cancels a running backup, releases the leadership

    Counters for metrics: `backups_succeeded`, `backups_failed`, `retention_failures`,
    `last_success_at`, `last_failure_at`, `last_error`, `last_result`, `is_leader`,
    `election_attempts`.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        storage: MediaStorage | None = None,
        lock: LeaderLock | None = None,
        interval_seconds: float | None = None,
        leader_retry_seconds: float = DEFAULT_LEADER_RETRY_SECONDS,
        failure_retry_seconds: float = DEFAULT_FAILURE_RETRY_SECONDS,
        keep_last: int = 1,
    ) -> None:
        self.settings = settings
        self.storage = storage
        self.lock = lock or default_leader_lock(settings)
        self.interval = timedelta(
            seconds=interval_seconds or settings.backup_interval_hours * 3600.0
        )
        self.leader_retry_seconds = leader_retry_seconds
        self.failure_retry = timedelta(seconds=failure_retry_seconds)
        self.keep_last = keep_last
        self.layout = BackupLayout.for_settings(settings)

        self.is_leader = False
        self.election_attempts = 0
        self.running = False
        self.backups_succeeded = 0
        self.backups_failed = 0
        self.retention_failures = 0
        self.last_success_at: datetime | None = None
        self.last_failure_at: datetime | None = None
        self.last_error: str | None = None
        self.last_result: BackupResult | None = None
        self.last_retention: RetentionResult | None = None
        self.next_due_at: datetime | None = None

        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        if self._task is not None:
            return
        # Fail fast on a missing key: a scheduler that can never succeed should say so at start.
        keyring_for(self.settings)
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self._loop(), name="backup-scheduler")

    async def stop(self) -> None:
        task, self._task = self._task, None
        self._stop.set()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.is_leader:
            self.is_leader = False
        await self.lock.release()

    # --- the loop --------------------------------------------------------------------------

    def _now(self) -> datetime:
        return datetime.now(UTC)

    async def _become_leader(self) -> None:
        newest = await asyncio.to_thread(newest_backup_time, self.layout.root)
        now = self._now()
        self.next_due_at = now if newest is None else min(newest, now) + self.interval
        self.is_leader = True
        logger.info(
            "backup scheduler: this process leads; next backup at %s",
            self.next_due_at.isoformat(timespec="seconds"),
        )

    async def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                await self._tick()
            except asyncio.CancelledError:
                raise
            except Exception:  # the loop must survive anything; the next tick retries
                logger.exception("backup scheduler tick failed")
            await self._sleep(self._wait_seconds())

    async def _tick(self) -> None:
        if self.is_leader and not await self.lock.still_held():
            self.is_leader = False
        if not self.is_leader:
            self.election_attempts += 1
            if not await self.lock.try_acquire():
                return
            await self._become_leader()
        assert self.next_due_at is not None
        if self._now() >= self.next_due_at:
            ok = await self.run_once()
            delay = self.interval if ok else min(self.interval, self.failure_retry)
            self.next_due_at = self._now() + delay

    def _wait_seconds(self) -> float:
        if not self.is_leader or self.next_due_at is None:
            return self.leader_retry_seconds
        until_due = (self.next_due_at - self._now()).total_seconds()
        # Wake at least every leader_retry_seconds to notice a lost database connection.
        return max(0.0, min(until_due, self.leader_retry_seconds))

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)

    async def run_once(self) -> bool:
        """One backup now, then retention if it succeeded. True on success."""
        self.running = True
        try:
            result = await create_backup(self.settings, storage=self.storage)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.backups_failed += 1
            self.last_failure_at = self._now()
            self.last_error = str(exc) if isinstance(exc, BackupError) else repr(exc)
            logger.error(
                "scheduled backup failed (%d failure(s) so far): %s",
                self.backups_failed,
                self.last_error,
                exc_info=not isinstance(exc, BackupError),
            )
            return False
        finally:
            self.running = False
        self.backups_succeeded += 1
        self.last_success_at = result.manifest.created_at
        self.last_result = result
        self.last_error = None
        try:
            self.last_retention = await prune_backups(self.settings, keep_last=self.keep_last)
        except Exception:
            self.retention_failures += 1
            logger.exception("backup retention failed; old backups are kept")
        return True

    @property
    def last_success_age_seconds(self) -> float | None:
        if self.last_success_at is None:
            return None
        return (self._now() - self.last_success_at).total_seconds()
