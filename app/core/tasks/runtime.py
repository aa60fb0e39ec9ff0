"""The per-process task machinery, built in the lifespan and kept on `app.state.tasks`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import httpx
from sqlalchemy import select

from app.clients.base import MediaKind, TaskStatus
from app.core.catalog import Catalog, validate_request
from app.core.config import Settings
from app.core.encryption import Encryptor
from app.core.media.storage import MediaStorage, create_media_storage
from app.core.tasks.events import TaskEventBus, TaskOutcome
from app.core.tasks.pg_events import PgEventRelay
from app.core.tasks.search import derive_search_key
from app.core.tasks.service import TaskContext, ValidatedModelRequest, Validator
from app.core.tasks.upstream import UpstreamRouter
from app.core.tasks.worker import TaskWorker
from app.db.session import Database
from app.models import GenerationTask

logger = logging.getLogger(__name__)

# How often a waiting request re-reads its tasks' status besides listening to their events.
WAIT_RECHECK_SECONDS = 1.0


def catalog_validator(catalog: Catalog) -> Validator:
    def validate(
        *,
        model_id: str,
        kind: MediaKind,
        params: dict[str, Any],
        images_count: int,
        has_mask: bool,
        n: int,
    ) -> ValidatedModelRequest:
        """Validate against the catalog (a 422 naming the field). `n` here is the batch size:
        each task is one upstream call, so the catalog sees one request."""
        validated = validate_request(
            catalog,
            model_id,
            kind,
            params=params,
            images_count=images_count,
            has_mask=has_mask,
            n=1,
        )
        return ValidatedModelRequest(
            model=validated.model.id,
            adapter=validated.adapter,
            upstream_model=validated.upstream_model,
            params=dict(validated.params),
        )

    return validate


class TaskRuntime:
    def __init__(
        self,
        *,
        settings: Settings,
        database: Database,
        encryptor: Encryptor,
        http: httpx.AsyncClient,
        catalog: Catalog,
        storage: MediaStorage | None = None,
    ) -> None:
        self.catalog = catalog
        self.settings = settings
        self.database = database
        self.encryptor = encryptor
        self.http = http
        self.events = TaskEventBus()
        # PostgreSQL: events cross processes with LISTEN/NOTIFY (SQLite: one host; the SSE
        # streams' database recheck covers other processes there).
        self.relay: PgEventRelay | None = (
            None if database.is_sqlite else PgEventRelay(database.url, self.events)
        )
        self.storage = storage or create_media_storage(settings)
        self.router = UpstreamRouter(settings, http, encryptor, database)
        self.search_key = derive_search_key(settings.storage_master_key or "")
        self.worker = TaskWorker(
            database=database,
            encryptor=encryptor,
            settings=settings,
            http=http,
            storage=self.storage,
            events=self.events,
            router=self.router,
        )
        self._background: set[asyncio.Task[None]] = set()

    async def start(self, *, run_worker: bool) -> None:
        if self.relay is not None:
            await self.relay.start()
        if run_worker:
            await self.worker.start()

    async def stop(self) -> None:
        await self.worker.stop()
        if self.relay is not None:
            # After the worker: its last transitions are still announced to the fleet.
            await self.relay.stop()
        for job in list(self._background):
            job.cancel()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    async def wait_for(
        self, task_ids: list[str], seconds: float, *, just_created: bool = False
    ) -> dict[str, TaskOutcome]:
        """Return when every task has ended or `seconds` passed, with the outcomes this
        process's worker reported for them (the others are read from the database by the
        caller).

        Woken only by events of these tasks, whose status is trusted; the database is read at
        the start (skipped for tasks the caller created and committed without awaiting since:
        none can have ended unseen) and then once a second, for workers in other processes on
        SQLite (on PostgreSQL their events arrive through the LISTEN relay too). Tasks this
        process's worker is running are not read: their end is published here, and under load
        those reads (and the read-back of the outcome they then need) were pure overhead."""
        queue = self.events.subscribe_tasks(task_ids)
        remaining = set(task_ids)
        outcomes: dict[str, TaskOutcome] = {}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        recheck_at = loop.time() + (WAIT_RECHECK_SECONDS if just_created else 0.0)
        try:
            while remaining:
                if loop.time() >= recheck_at:
                    unseen = [t for t in remaining if not self.worker.is_running(t)]
                    if unseen:
                        async with self.database.session() as db:
                            rows = await db.execute(
                                select(GenerationTask.id, GenerationTask.status).where(
                                    GenerationTask.id.in_(unseen)
                                )
                            )
                            for task_id, status in rows.all():
                                if TaskStatus(status).is_terminal:
                                    remaining.discard(task_id)
                    recheck_at = loop.time() + WAIT_RECHECK_SECONDS
                    if not remaining:
                        break
                left = min(deadline, recheck_at) - loop.time()
                if deadline - loop.time() <= 0:
                    break
                with contextlib.suppress(TimeoutError):
                    event = await asyncio.wait_for(queue.get(), timeout=max(left, 0.0))
                    ended = event.data.get("status")
                    if event.task_id in remaining and ended and TaskStatus(ended).is_terminal:
                        remaining.discard(event.task_id)
                        if event.outcome is not None:
                            outcomes[event.task_id] = event.outcome
        finally:
            self.events.unsubscribe_tasks(task_ids, queue)
        return outcomes

    def wake_worker(self) -> None:
        self.worker.wake()

    def context(self) -> TaskContext:
        return TaskContext(
            settings=self.settings,
            encryptor=self.encryptor,
            search_key=self.search_key,
            events=self.events,
            wake_worker=self.wake_worker,
            validate=catalog_validator(self.catalog),
            request_upstream_cancel=self.request_upstream_cancel,
            inline_lease=self.worker.inline_lease,
            start_inline=self.worker.start_inline,
        )

    def request_upstream_cancel(self, task: GenerationTask) -> None:
        """Best effort, in the background: a local cancel never waits for the upstream."""

        async def cancel() -> None:
            try:
                # The channel that owns the task, with the adapters' own retries.
                route = await self.router.owner(task, patient=True)
                if route.adapter.supports_cancel and task.upstream_id:
                    await route.adapter.cancel(task.upstream_id, route.credentials)
            except Exception as exc:
                logger.info("task %s: upstream cancel failed: %s", task.id, type(exc).__name__)

        job = asyncio.get_running_loop().create_task(cancel())
        self._background.add(job)
        job.add_done_callback(self._background.discard)
