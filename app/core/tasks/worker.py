"""The task worker: claims due tasks, submits and polls them upstream concurrently, stores
results and sweeps deadlines.

Durability rules:
- A task is worked on only under a lease (`lease_owner`, `lease_expires_at`) taken by one
  atomic claim (`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite serialises writers). Leases
  expire, so a crashed worker's tasks are picked up by another.
- Every state change is a compare-and-swap on status and lease owner: two workers can never
  both complete, fail or refund one task; a user's cancel makes the worker's late write a no-op.
- A create is marked `sending` (committed) before it is sent. A task found still `sending`
  after a crash may have reached the upstream, so it is failed, never sent twice; an error
  that proves the upstream did not take the request puts it back to `pending`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import delete, or_, select, update

from app.clients.base import TaskStatus, UpstreamResult, UpstreamStatus
from app.clients.errors import (
    UpstreamAuthError,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRejected,
)
from app.core.config import Settings
from app.core.encryption import DecryptionError, Encryptor
from app.core.media.download import DownloadPolicy
from app.core.media.storage import MediaStorage
from app.core.tasks.events import TaskEvent, TaskEventBus
from app.core.tasks.payload import TaskPayload, build_generation_request
from app.core.tasks.results import (
    FetchedResult,
    TransientFetchError,
    delete_keys,
    discard_temp,
    fetch_result,
    move_into_storage,
    release_pending_media,
    reserve_and_record,
)
from app.core.tasks.service import ACTIVE_STATUSES
from app.core.tasks.upstream import UpstreamRouter
from app.core.webhooks import deliver_due, enqueue_terminal_webhook
from app.db.base import utcnow
from app.db.session import Database
from app.models import GenerationTask, IdempotencyKey, Media

logger = logging.getLogger(__name__)

MAX_SUBMIT_RETRIES = 5
MAX_AUTH_FAILURES = 3
MAX_DOWNLOAD_RETRIES = 5
MAX_ERROR_BACKOFF = 60.0
IDLE_WAIT = 0.5
MAINTENANCE_EVERY = 300.0


def _results_to_json(results: Sequence[UpstreamResult]) -> list[dict[str, Any]]:
    return [
        {
            "url": r.url,
            "b64_data": r.b64_data,
            "content_type": r.content_type,
            "requires_auth": bool(getattr(r, "requires_auth", False)),
        }
        for r in results
    ]


def _results_from_json(items: Sequence[dict[str, Any]]) -> list[UpstreamResult]:
    results = []
    for item in items:
        kwargs: dict[str, Any] = {
            "url": item.get("url"),
            "b64_data": item.get("b64_data"),
            "content_type": item.get("content_type"),
        }
        if "requires_auth" in UpstreamResult.__dataclass_fields__:
            kwargs["requires_auth"] = bool(item.get("requires_auth"))
        results.append(UpstreamResult(**kwargs))
    return results


class TaskWorker:
    def __init__(
        self,
        *,
        database: Database,
        encryptor: Encryptor,
        settings: Settings,
        http: httpx.AsyncClient,
        storage: MediaStorage,
        events: TaskEventBus,
        router: UpstreamRouter,
        worker_id: str | None = None,
    ) -> None:
        self.database = database
        self.encryptor = encryptor
        self.settings = settings
        self.http = http
        self.storage = storage
        self.events = events
        self.router = router
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"[:64]
        self.lease = timedelta(seconds=settings.task_lease_seconds)
        self._slots = settings.max_concurrent_tasks
        self._inflight: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._stopping = False
        self._loop_task: asyncio.Task[None] | None = None
        self._last_maintenance = 0.0

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self._stopping = False
        self._loop_task = asyncio.create_task(self._run(), name=f"task-worker-{self.worker_id}")

    async def stop(self, grace_seconds: float = 10.0) -> None:
        """Stop claiming, let in-flight work finish briefly, then hand leases back."""
        self._stopping = True
        self._wake.set()
        if self._loop_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        if self._inflight:
            _, pending = await asyncio.wait(self._inflight, timeout=grace_seconds)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        await self._release_my_leases()

    def wake(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        while not self._stopping:
            try:
                claimed = await self.tick()
            except Exception:
                logger.exception("task worker tick failed")
                claimed = 0
            if self._stopping:
                break
            if claimed == 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=IDLE_WAIT)

    async def tick(self) -> int:
        """One round: maintenance, webhooks, then claim and start due tasks."""
        loop = asyncio.get_running_loop()
        if loop.time() - self._last_maintenance > MAINTENANCE_EVERY:
            self._last_maintenance = loop.time()
            await self._maintenance()
        await deliver_due(self.database, self.encryptor, self.http, self.settings)
        free = self._slots - len(self._inflight)
        if free <= 0:
            await asyncio.wait(self._inflight, return_when=asyncio.FIRST_COMPLETED)
            return 1
        claimed = await self.claim(free)
        for task in claimed:
            job = asyncio.create_task(self._process_guarded(task))
            self._inflight.add(job)
            job.add_done_callback(self._inflight.discard)
        return len(claimed)

    async def run_until_idle(self, limit_seconds: float = 30.0) -> None:
        """Process everything due now and wait for it (tests, benchmarks, `worker --once`)."""
        async with asyncio.timeout(limit_seconds):
            while True:
                claimed = await self.tick()
                if self._inflight:
                    await asyncio.gather(*list(self._inflight), return_exceptions=True)
                    continue
                if claimed == 0:
                    return

    # -- claiming and leases -----------------------------------------------------------------

    async def claim(self, limit: int) -> list[GenerationTask]:
        now = utcnow()
        due = (
            select(GenerationTask.id)
            .where(
                GenerationTask.status.in_(ACTIVE_STATUSES),
                or_(GenerationTask.next_poll_at <= now, GenerationTask.deadline_at <= now),
                or_(
                    GenerationTask.lease_expires_at.is_(None),
                    GenerationTask.lease_expires_at < now,
                ),
            )
            .order_by(GenerationTask.next_poll_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        async with self.database.session() as db:
            rows = await db.scalars(
                update(GenerationTask)
                .where(GenerationTask.id.in_(due.scalar_subquery()))
                .values(lease_owner=self.worker_id, lease_expires_at=now + self.lease)
                .returning(GenerationTask)
                .execution_options(synchronize_session=False)
            )
            return list(rows.all())

    @contextlib.asynccontextmanager
    async def _holding_lease(self, task_id: str) -> AsyncIterator[None]:
        """Keep extending the lease while a long step (submit, download) runs."""

        async def extend() -> None:
            interval = max(0.5, self.lease.total_seconds() / 3)
            while True:
                await asyncio.sleep(interval)
                async with self.database.session() as db:
                    await db.execute(
                        update(GenerationTask)
                        .where(
                            GenerationTask.id == task_id,
                            GenerationTask.lease_owner == self.worker_id,
                        )
                        .values(lease_expires_at=utcnow() + self.lease)
                    )

        keeper = asyncio.create_task(extend())
        try:
            yield
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper

    async def _release_my_leases(self) -> None:
        try:
            async with self.database.session() as db:
                await db.execute(
                    update(GenerationTask)
                    .where(GenerationTask.lease_owner == self.worker_id)
                    .values(lease_owner=None, lease_expires_at=None)
                )
        except Exception:
            logger.exception("could not release leases on shutdown (they will expire)")

    # -- transitions ---------------------------------------------------------------------------

    async def _cas(
        self, task: GenerationTask, values: dict[str, Any], *, event: str | None = None
    ) -> GenerationTask | None:
        """Update `task` if it is still active and leased by us; returns the new row or None."""
        values = {**values, "updated_at": utcnow()}
        async with self.database.session() as db:
            row = await db.scalar(
                update(GenerationTask)
                .where(
                    GenerationTask.id == task.id,
                    GenerationTask.status.in_(ACTIVE_STATUSES),
                    GenerationTask.lease_owner == self.worker_id,
                )
                .values(**values)
                .returning(GenerationTask)
                .execution_options(synchronize_session=False)
            )
            if row is not None and TaskStatus(row.status).is_terminal:
                await enqueue_terminal_webhook(db, self.encryptor, row)
        if row is not None and event is not None:
            self._publish(row, event)
        return row

    def _publish(self, task: GenerationTask, event_type: str) -> None:
        self.events.publish(
            TaskEvent(
                user_id=task.user_id,
                task_id=task.id,
                type=event_type,
                data={
                    "id": task.id,
                    "object": task.kind,
                    "model": task.model,
                    "status": task.status,
                    "progress": task.progress,
                    "title": task.title,
                    "error_code": task.error_code,
                    "updated_at": task.updated_at.isoformat(),
                },
            )
        )

    def _released(self, **values: Any) -> dict[str, Any]:
        return {"lease_owner": None, "lease_expires_at": None, **values}

    async def _reschedule(
        self, task: GenerationTask, delay: float, *, event: str | None = None, **values: Any
    ) -> GenerationTask | None:
        next_at = utcnow() + timedelta(seconds=max(0.0, delay))
        return await self._cas(task, self._released(next_poll_at=next_at, **values), event=event)

    async def _fail(self, task: GenerationTask, code: str, message: str) -> None:
        now = utcnow()
        await self._cas(
            task,
            self._released(
                status=TaskStatus.FAILED.value,
                error_code=code,
                error_message_encrypted=self.encryptor.encrypt_text(message[:2000]),
                completed_at=now,
                next_poll_at=None,
            ),
            event="task.failed",
        )

    def _error_backoff(self, errors: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), MAX_ERROR_BACKOFF * 5)
        base = self.settings.polling_interval * (2 ** min(errors, 10))
        return min(MAX_ERROR_BACKOFF, base) * random.uniform(0.8, 1.2)

    def _pace(self, status: TaskStatus, progress: int) -> float:
        """Poll sooner when the upstream says it is nearly done, later while it is queued."""
        base = self.settings.polling_interval
        if status == TaskStatus.QUEUED:
            return base * 1.5
        if progress >= 80:
            return base / 3
        if progress >= 50:
            return base / 1.5
        return base

    # -- processing --------------------------------------------------------------------------

    async def _process_guarded(self, task: GenerationTask) -> None:
        try:
            await self._process(task)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("task %s: unexpected error; retrying later", task.id)
            with contextlib.suppress(Exception):
                await self._reschedule(
                    task,
                    self._error_backoff(task.consecutive_errors + 1),
                    consecutive_errors=task.consecutive_errors + 1,
                )

    async def _process(self, task: GenerationTask) -> None:
        if task.deadline_at <= utcnow():
            await self._expire(task)
            return
        if task.submit_state == "sending":
            await self._fail(
                task,
                "submit_interrupted",
                "The service stopped while sending this request upstream; it was not sent "
                "again to avoid a duplicate generation. Retry it if no result arrives.",
            )
            return
        try:
            payload = TaskPayload.from_json(self.encryptor.decrypt_json(task.request_encrypted))
        except DecryptionError as exc:
            await self._fail(task, "decryption_failed", str(exc))
            return
        if task.submit_state == "pending":
            await self._submit(task, payload)
            return
        stored = self._pending_results(task)
        if stored is not None:
            await self._store_results(task, stored)
            return
        await self._poll(task)

    def _pending_results(self, task: GenerationTask) -> list[UpstreamResult] | None:
        """Results saved before an interrupted download (synchronous upstreams have no id)."""
        if not task.response_encrypted:
            return None
        try:
            response = self.encryptor.decrypt_json(task.response_encrypted)
        except DecryptionError:
            return None
        if isinstance(response, dict) and response.get("pending_results"):
            return _results_from_json(response["pending_results"])
        return None

    async def _expire(self, task: GenerationTask) -> None:
        await self._fail(
            task,
            "timeout",
            f"No result within {self.settings.task_deadline_minutes:g} minutes",
        )
        if task.upstream_id:
            await self._cancel_upstream(task)

    async def _cancel_upstream(self, task: GenerationTask) -> None:
        adapter = self.router.adapter(task.adapter)
        if not getattr(adapter, "supports_cancel", False) or not task.upstream_id:
            return
        try:
            await adapter.cancel(task.upstream_id, self.router.credentials(task))
        except UpstreamError as exc:
            logger.info("task %s: upstream cancel failed: %s", task.id, exc)

    async def _submit(self, task: GenerationTask, payload: TaskPayload) -> None:
        sending = await self._cas(task, {"submit_state": "sending"})
        if sending is None:
            return
        adapter = self.router.adapter(task.adapter)
        request = build_generation_request(task.kind, payload)  # type: ignore[arg-type]
        try:
            async with self._holding_lease(task.id):
                submission = await adapter.submit(request, self.router.credentials(task))
        except UpstreamError as exc:
            await self._submit_failed(task, exc)
            return
        now = utcnow()
        status = submission.status
        values: dict[str, Any] = {
            "submit_state": "submitted",
            "upstream_id": submission.upstream_id,
            "submitted_at": now,
            "consecutive_errors": 0,
        }
        if status is None or not status.status.is_terminal:
            progress = status.progress if status and status.progress is not None else 0
            values.update(
                status=(status.status if status else TaskStatus.QUEUED).value,
                progress=progress,
            )
            if status and status.status == TaskStatus.IN_PROGRESS:
                values["started_at"] = now
            await self._reschedule(
                task, self._pace(TaskStatus.QUEUED, 0), event="task.updated", **values
            )
            return
        # A synchronous upstream (images) answered with the result itself.
        updated = await self._cas(task, values)
        if updated is None:
            return
        await self._handle_status(updated, status)

    async def _submit_failed(self, task: GenerationTask, exc: UpstreamError) -> None:
        provably_not_taken = not exc.reached_upstream or isinstance(exc, UpstreamRateLimited)
        if provably_not_taken and task.consecutive_errors < MAX_SUBMIT_RETRIES:
            retry_after = getattr(exc, "retry_after", None)
            await self._reschedule(
                task,
                self._error_backoff(task.consecutive_errors + 1, retry_after),
                submit_state="pending",
                consecutive_errors=task.consecutive_errors + 1,
            )
            return
        if isinstance(exc, UpstreamAuthError):
            code = "upstream_auth_failed"
        elif isinstance(exc, UpstreamRejected):
            code = "upstream_rejected"
        elif provably_not_taken:
            code = "upstream_unavailable"
        else:
            # It may or may not have arrived: never send it again.
            code = "upstream_submit_failed"
        await self._fail(task, code, str(exc))

    async def _poll(self, task: GenerationTask) -> None:
        if not task.upstream_id:
            await self._fail(task, "upstream_no_task_id", "The upstream returned no task id")
            return
        adapter = self.router.adapter(task.adapter)
        errors = task.consecutive_errors + 1
        try:
            status = await adapter.poll(
                task.upstream_id,
                self.router.credentials(task),
                kind=task.kind,  # type: ignore[arg-type]
            )
        except UpstreamAuthError as exc:
            if errors >= MAX_AUTH_FAILURES:
                await self._fail(task, "upstream_auth_failed", str(exc))
            else:
                await self._reschedule(task, self._error_backoff(errors), consecutive_errors=errors)
            return
        except UpstreamError as exc:
            logger.info("task %s: poll failed (%s); retrying", task.id, type(exc).__name__)
            await self._reschedule(
                task,
                self._error_backoff(errors, getattr(exc, "retry_after", None)),
                consecutive_errors=errors,
                poll_attempts=task.poll_attempts + 1,
            )
            return
        await self._handle_status(task, status)

    async def _handle_status(self, task: GenerationTask, status: UpstreamStatus) -> None:
        now = utcnow()
        common: dict[str, Any] = {
            "poll_attempts": task.poll_attempts + 1,
            "consecutive_errors": 0,
            "upstream_status": (status.upstream_status or "")[:64] or None,
        }
        if status.status == TaskStatus.COMPLETED:
            if not status.results:
                await self._fail(
                    task,
                    "upstream_no_result",
                    "The upstream reported success but returned no result",
                )
                return
            saved = await self._cas(
                task,
                {
                    **common,
                    "status": TaskStatus.IN_PROGRESS.value,
                    "progress": max(task.progress, 99),
                    "started_at": task.started_at or now,
                    "response_encrypted": self.encryptor.encrypt_json(
                        {"pending_results": _results_to_json(status.results)}
                    ),
                },
            )
            if saved is not None:
                await self._store_results(saved, list(status.results))
            return
        if status.status == TaskStatus.FAILED:
            error = status.error
            await self._fail(
                task,
                "upstream_failed",
                error.message if error else "The upstream reported a failure",
            )
            return
        if status.status == TaskStatus.CANCELLED:
            await self._cas(
                task,
                self._released(
                    **common,
                    status=TaskStatus.CANCELLED.value,
                    error_code="upstream_cancelled",
                    error_message_encrypted=self.encryptor.encrypt_text(
                        "The upstream cancelled this task"
                    ),
                    completed_at=now,
                    next_poll_at=None,
                ),
                event="task.cancelled",
            )
            return
        progress = max(task.progress, min(99, status.progress or 0))
        values: dict[str, Any] = {**common, "status": status.status.value, "progress": progress}
        if status.status == TaskStatus.IN_PROGRESS and task.started_at is None:
            values["started_at"] = now
        changed = progress != task.progress or status.status.value != task.status
        await self._reschedule(
            task,
            self._pace(status.status, progress),
            event="task.updated" if changed else None,
            **values,
        )

    async def _store_results(self, task: GenerationTask, results: list[UpstreamResult]) -> None:
        policy = DownloadPolicy(
            allowed_hosts=set(self.settings.media_download_allowed_hosts),
            trusted_hosts=self.router.trusted_hosts,
        )
        credentials = self.router.credentials(task)
        auth = {"Authorization": f"Bearer {credentials.api_key}"}
        final_attempt = task.consecutive_errors + 1 >= MAX_DOWNLOAD_RETRIES
        fetched: list[FetchedResult] = []
        try:
            async with self._holding_lease(task.id):
                for position, result in enumerate(results):
                    fetched.append(
                        await fetch_result(
                            self.http,
                            self.storage,
                            self.settings,
                            policy,
                            result,
                            position,
                            auth_header=auth,
                            transient_is_final=final_attempt,
                        )
                    )
                await self._commit_results(task, fetched)
        except TransientFetchError as exc:
            logger.info("task %s: result download failed (%s); retrying later", task.id, exc)
            await self._reschedule(
                task,
                self._error_backoff(task.consecutive_errors + 1),
                consecutive_errors=task.consecutive_errors + 1,
            )
        finally:
            for item in fetched:
                discard_temp(item)

    async def _commit_results(self, task: GenerationTask, fetched: list[FetchedResult]) -> None:
        # 1. Reserve quota and write pending rows (releasing an interrupted attempt's rows).
        async with self.database.session() as db:
            stale_keys = await release_pending_media(db, task.id, task.user_id)
            rows = await reserve_and_record(
                db,
                self.encryptor,
                task_id=task.id,
                user_id=task.user_id,
                kind=task.kind,
                fetched=fetched,
            )
        await delete_keys(self.storage, stale_keys)
        # 2. Move files into storage.
        await move_into_storage(self.storage, fetched, rows)
        # 3. Mark stored and complete the task, atomically.
        usable = [m for m in rows if m.state in ("pending", "not_stored")]
        now = utcnow()
        if usable:
            values: dict[str, Any] = {
                "status": TaskStatus.COMPLETED.value,
                "progress": 100,
                "completed_at": now,
                "error_code": None,
                "error_message_encrypted": None,
            }
            event = "task.completed"
        else:
            first = rows[0] if rows else None
            reason = first.reason if first and first.reason else "result_unavailable"
            values = {
                "status": TaskStatus.FAILED.value,
                "completed_at": now,
                "error_code": f"result_{reason}",
                "error_message_encrypted": self.encryptor.encrypt_text(
                    first.reason_message if first and first.reason_message else reason
                ),
            }
            event = "task.failed"
        values.update(
            lease_owner=None,
            lease_expires_at=None,
            next_poll_at=None,
            updated_at=now,
            response_encrypted=self.encryptor.encrypt_json({"stored": len(rows)}),
        )
        async with self.database.session() as db:
            await db.execute(
                update(Media)
                .where(Media.task_id == task.id, Media.state == "pending")
                .values(state="stored")
            )
            row = await db.scalar(
                update(GenerationTask)
                .where(
                    GenerationTask.id == task.id,
                    GenerationTask.status.in_(ACTIVE_STATUSES),
                    GenerationTask.lease_owner == self.worker_id,
                )
                .values(**values)
                .returning(GenerationTask)
                .execution_options(synchronize_session=False)
            )
            if row is None:
                # Cancelled, deleted or taken over meanwhile: undo everything of this attempt.
                await db.rollback()
            else:
                await enqueue_terminal_webhook(db, self.encryptor, row)
        if row is not None:
            self._publish(row, event)
            return
        async with self.database.session() as db:
            orphan_keys = await release_pending_media(db, task.id, task.user_id)
        await delete_keys(self.storage, orphan_keys)

    # -- housekeeping --------------------------------------------------------------------------

    async def _maintenance(self) -> None:
        from app.core.tasks.service import IDEMPOTENCY_TTL

        try:
            async with self.database.session() as db:
                await db.execute(
                    delete(IdempotencyKey).where(
                        IdempotencyKey.created_at < utcnow() - IDEMPOTENCY_TTL
                    )
                )
            await self.storage.purge_temp(older_than_seconds=6 * 3600)
        except Exception:
            logger.exception("task maintenance failed")
