"""Periodic housekeeping that must run once per fleet, not once per process.

Every API process starts a `FleetRunner` in its lifespan. The runners elect one leader with the
lock the backup scheduler uses (`app.core.backup.locks`): a PostgreSQL advisory lock held on a
dedicated connection (any number of hosts sharing the database) or, on SQLite (one host), an
flock on DATA_DIR/fleet-leader.lock. Both die with their holder, so when the leader exits or
loses its database connection another runner takes over at its next election attempt (every
`leader_retry_seconds`). The leader runs each job on taking over and then every `interval`
seconds; a failing job is logged and counted and never stops the others.

The jobs (`default_jobs`):
- request-log retention: delete `api_request_logs` rows older than REQUEST_LOG_RETENTION_DAYS;
- idempotency keys: delete `idempotency_keys` rows past their 24-hour lifetime;
- stale temp media: files an interrupted download left in the media store's temp directory.
  The local backend keeps it inside the (shared) media directory; the S3 backend keeps it under
  DATA_DIR, so on several hosts with S3 each host's own leftovers are only purged where a
  runner (or a worker's own maintenance) runs.

Not here, on purpose:
- Backups: `BackupScheduler` (its own settings, schedule and lock, same mechanism).
- The deadline sweep: every worker's claim query also selects active tasks past `deadline_at`
  (`worker.claim_statement`), and a claim is exclusive (`FOR UPDATE SKIP LOCKED` plus a lease,
  then compare-and-swap transitions), so each expired task is failed exactly once by whichever
  worker claims it first, without a leader; a fleet with no worker has nothing to sweep.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import delete

from app.core.backup.locks import FileLock, LeaderLock, PostgresAdvisoryLock
from app.core.config import Settings
from app.core.media.storage import MediaStorage
from app.core.request_log.retention import purge_expired_logs
from app.db.base import utcnow
from app.db.session import Database, is_sqlite_url
from app.models import IdempotencyKey

logger = logging.getLogger(__name__)

LEADER_LOCK_NAME = "genapi:fleet-jobs"
LEADER_LOCK_FILE = "fleet-leader.lock"
DEFAULT_LEADER_RETRY_SECONDS = 15.0
# On stop, a running job may finish for this long before it is cancelled.
STOP_GRACE_SECONDS = 5.0
HOURLY = 3600.0
TEMP_MEDIA_MAX_AGE_SECONDS = 6 * 3600.0


@dataclass
class FleetJob:
    """A periodic job; `run` returns how many things it removed (or None)."""

    name: str
    interval: float
    run: Callable[[], Awaitable[int | None]]


@dataclass
class JobStats:
    runs: int = 0
    failures: int = 0
    last_result: int | None = None
    last_run_at: datetime | None = None
    last_error: str | None = None
    next_due: float = field(default=0.0, repr=False)  # monotonic


def default_leader_lock(settings: Settings) -> LeaderLock:
    url = settings.resolved_database_url
    if is_sqlite_url(url):
        return FileLock(Path(settings.data_dir) / LEADER_LOCK_FILE)
    return PostgresAdvisoryLock(url, LEADER_LOCK_NAME)


async def purge_expired_idempotency_keys(database: Database) -> int:
    from app.core.tasks.service import IDEMPOTENCY_TTL

    async with database.session() as db:
        result = await db.execute(
            delete(IdempotencyKey)
            .where(IdempotencyKey.created_at < utcnow() - IDEMPOTENCY_TTL)
            .execution_options(synchronize_session=False)
        )
    return int(getattr(result, "rowcount", 0) or 0)


def default_jobs(settings: Settings, database: Database, storage: MediaStorage) -> list[FleetJob]:
    async def request_log_retention() -> int:
        return await purge_expired_logs(database, settings.request_log_retention_days)

    async def idempotency_keys() -> int:
        return await purge_expired_idempotency_keys(database)

    async def temp_media() -> int:
        return await storage.purge_temp(older_than_seconds=TEMP_MEDIA_MAX_AGE_SECONDS)

    return [
        FleetJob("request-log-retention", HOURLY, request_log_retention),
        FleetJob("idempotency-keys", HOURLY, idempotency_keys),
        FleetJob("temp-media", HOURLY, temp_media),
    ]


class FleetRunner:
    """Wire it in the lifespan::

        fleet = FleetRunner.for_settings(settings, database=db, storage=storage)
        await fleet.start()   # returns at once; elects a leader in the background
        ...
        await fleet.stop()    # cancels a running job, releases the leadership

    `is_leader`, `election_attempts` and `stats` (per job: runs, failures, last result) are
    there for metrics and tests.
    """

    def __init__(
        self,
        jobs: Sequence[FleetJob],
        lock: LeaderLock,
        *,
        leader_retry_seconds: float = DEFAULT_LEADER_RETRY_SECONDS,
    ) -> None:
        self.jobs = list(jobs)
        self.lock = lock
        self.leader_retry_seconds = leader_retry_seconds
        self.is_leader = False
        self.election_attempts = 0
        self.stats: dict[str, JobStats] = {job.name: JobStats() for job in self.jobs}
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    @classmethod
    def for_settings(
        cls,
        settings: Settings,
        *,
        database: Database,
        storage: MediaStorage,
        leader_retry_seconds: float = DEFAULT_LEADER_RETRY_SECONDS,
    ) -> FleetRunner:
        return cls(
            default_jobs(settings, database, storage),
            default_leader_lock(settings),
            leader_retry_seconds=leader_retry_seconds,
        )

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        if self._task is not None:
            return
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self._loop(), name="fleet-jobs")

    async def stop(self) -> None:
        task, self._task = self._task, None
        self._stop.set()
        if task is not None:
            # Let the loop end by itself (no job starts after a stop): cancelling it in the
            # middle of an election's connect leaves asyncpg complaining about lost futures.
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(task), timeout=STOP_GRACE_SECONDS)
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self.is_leader = False
        await self.lock.release()

    # --- the loop ------------------------------------------------------------------------

    async def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                await self._tick()
            except asyncio.CancelledError:
                raise
            except Exception:  # the loop must survive anything; the next tick retries
                logger.exception("fleet jobs: tick failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=self._wait_seconds())

    async def _tick(self) -> None:
        if self.is_leader and not await self.lock.still_held():
            self.is_leader = False
            logger.warning("fleet jobs: lost the leadership (database connection dropped)")
        if not self.is_leader:
            acquired = await self.lock.try_acquire()
            self.election_attempts += 1  # counted once decided, so "attempts >= 1" means done
            if not acquired:
                return
            self.is_leader = True
            now = time.monotonic()
            for stats in self.stats.values():
                stats.next_due = now  # a new leader does not know when they last ran
            logger.info("fleet jobs: this process leads (%d jobs)", len(self.jobs))
        await self.run_due()

    def _wait_seconds(self) -> float:
        if not self.is_leader or not self.jobs:
            return self.leader_retry_seconds
        until_due = min(s.next_due for s in self.stats.values()) - time.monotonic()
        # Wake at least every leader_retry_seconds to notice a lost database connection.
        return max(0.0, min(until_due, self.leader_retry_seconds))

    async def run_due(self) -> None:
        """Run every job that is due, one after the other."""
        for job in self.jobs:
            stats = self.stats[job.name]
            if self._stop.is_set():
                return
            if time.monotonic() < stats.next_due:
                continue
            await self._run_job(job, stats)
            stats.next_due = time.monotonic() + job.interval

    async def _run_job(self, job: FleetJob, stats: JobStats) -> None:
        stats.last_run_at = datetime.now(UTC)
        try:
            result = await job.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            stats.failures += 1
            stats.last_error = repr(exc)
            logger.exception("fleet job %s failed", job.name)
            return
        stats.runs += 1
        stats.last_result = result
        stats.last_error = None
        if result:
            logger.info("fleet job %s: removed %d", job.name, result)
