"""The task worker: claims due tasks, submits and polls them upstream concurrently, stores
results and sweeps deadlines.

Durability rules:
- A task is worked on only under a lease (`lease_owner`, `lease_expires_at`) taken by one
  atomic claim (`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite serialises writers). Leases
  expire, so a crashed worker's tasks are picked up by another; a live worker keeps the leases
  of its in-flight tasks fresh with one UPDATE per lease third, whatever step they are in.
- Every state change is a compare-and-swap on status and lease owner: two workers can never
  both complete, fail or refund one task; a user's cancel makes the worker's late write a no-op.
- A create is marked `sending` (committed) before it is sent. A task found still `sending`
  after a crash may have reached the upstream, so it is failed, never sent twice; an error
  that proves the upstream did not take the request puts it back to `pending`.
- Results are recorded in two transactions around the file moves (see `results.py`); the
  second one completes the task, so a crash anywhere in between is redone, never doubled.

Scale: one claim query per batch, at most `MAX_CONCURRENT_TASKS` jobs in flight, and two
long-lived helpers (the lease keeper and the webhook sender); retries are rescheduled in the
database instead of sleeping in a slot, so a flaky upstream never starves the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import os
import random
import socket
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta
from typing import Any, cast

import httpx
from sqlalchemy import Integer, Table, Update, bindparam, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.clients.base import (
    TaskStatus,
    UpstreamAdapter,
    UpstreamCredentials,
    UpstreamResult,
    UpstreamStatus,
    UpstreamSubmission,
)
from app.clients.errors import (
    UpstreamAuthError,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRejected,
)
from app.clients.registry import UnknownAdapterError
from app.core.channels.policy import is_overloaded, may_fail_over
from app.core.config import Settings
from app.core.encryption import DecryptionError, Encryptor
from app.core.media.download import DownloadPolicy
from app.core.media.storage import MediaStorage
from app.core.observability.metrics import (
    record_media_stored,
    record_poll_lag,
    record_transition,
)
from app.core.tasks.completion import Completion, complete_in_one_statement
from app.core.tasks.events import TaskEventBus, TaskOutcome
from app.core.tasks.owned import (
    HAS_MEDIA,
    LIGHT_COLUMNS,
    LIGHT_TABLE_COLUMNS,
    OWNED,
    TASKS,
)
from app.core.tasks.payload import TaskPayload, build_generation_request
from app.core.tasks.poll_writes import Applied, PollWrites
from app.core.tasks.results import (
    FetchedResult,
    TransientFetchError,
    close_move_journal,
    delete_keys,
    discard_temp,
    fetch_result,
    move_into_storage,
    open_move_journal,
    plan_media,
    planned_keys,
    record_media,
    recover_interrupted_moves,
    release_task_media,
)
from app.core.tasks.service import ACTIVE_STATUSES, InlineLease, task_event
from app.core.tasks.upstream import ChannelNotFound, UpstreamRouter
from app.core.webhooks import deliver_due, enqueue_terminal_webhook
from app.db.base import utcnow
from app.db.session import Database
from app.models import GenerationTask

logger = logging.getLogger(__name__)

# Creates that provably never reached the upstream (connection refused, …) are sent again up
# to this many times; a 429 is retried until the deadline (the upstream asked us to wait).
MAX_SUBMIT_RETRIES = 8
MAX_AUTH_FAILURES = 3
# Consecutive 4xx answers to a poll (the upstream no longer knows the task) before giving up.
MAX_REJECTED_POLLS = 10
MAX_DOWNLOAD_RETRIES = 5
MAX_ERROR_BACKOFF = 60.0
MAX_RETRY_AFTER = 300.0
IDLE_WAIT = 0.5
WEBHOOK_IDLE_WAIT = 1.0
MAINTENANCE_EVERY = 300.0
# While every slot is busy, wait for this share of them to free up (or BATCH_WAIT seconds)
# before claiming again: fewer, larger claim queries.
BATCH_FRACTION = 0.1
BATCH_WAIT = 0.05
SAVE_ATTEMPTS = 3
# Synchronous requests (a client waiting on its connection for the result) go ahead at most
# this long after arriving while every admission is taken; then they queue like any task.
ADMISSION_WAIT = 5.0
# A move journal older than this belongs to a process that died between its file moves and its
# commit (a live one closes its journal within the move and one transaction).
MOVE_JOURNAL_MAX_AGE = 3600.0


def _results_to_json(results: Sequence[UpstreamResult]) -> list[dict[str, Any]]:
    return [
        {
            "url": r.url,
            "b64_data": r.b64_data,
            "content_type": r.content_type,
            "requires_auth": r.requires_auth,
        }
        for r in results
    ]


def _results_from_json(items: Sequence[dict[str, Any]]) -> list[UpstreamResult]:
    return [
        UpstreamResult(
            url=item.get("url"),
            b64_data=item.get("b64_data"),
            content_type=item.get("content_type"),
            requires_auth=bool(item.get("requires_auth")),
        )
        for item in items
    ]


async def enqueue_webhook_on(conn: AsyncConnection, encryptor: Encryptor, task_id: str) -> None:
    """Queue the terminal webhook of a task inside `conn`'s transaction (a session joins it:
    the webhook body needs the whole row, request included, and its media)."""
    session = AsyncSession(bind=conn, expire_on_commit=False)
    full = await session.get(GenerationTask, task_id, populate_existing=True)
    if full is not None:
        await enqueue_terminal_webhook(session, encryptor, full)
        await session.flush()


@functools.cache
def owned_update(columns: tuple[str, ...], *, with_has_media: bool = False) -> Update:
    """The compare-and-swap that sets `columns` of a task still active and leased by us,
    returning its new row. Built once per set of columns, the values bound per call as
    `set_<column>`: building and cache-keying a statement of ~40 returned columns cost more
    CPU than sending it."""
    returning = (*LIGHT_TABLE_COLUMNS, HAS_MEDIA) if with_has_media else LIGHT_TABLE_COLUMNS
    return (
        update(TASKS)
        .where(*OWNED)
        .values({column: bindparam(f"set_{column}") for column in columns})
        .returning(*returning)
    )


def light_task(row: Any) -> GenerationTask:
    """A detached task built from a `LIGHT_COLUMNS` row (never added to a session); other
    columns the row carries (`HAS_MEDIA`) are left out."""
    values = dict(row._mapping)
    values.pop("has_media", None)
    return GenerationTask(**values)


def detached_copy(task: GenerationTask, **changes: Any) -> GenerationTask:
    """A detached task with `task`'s `LIGHT_COLUMNS` values, `changes` applied."""
    return GenerationTask(**{**{c.name: getattr(task, c.name) for c in LIGHT_COLUMNS}, **changes})


@functools.cache
def claim_statement() -> Update:
    """One statement that leases up to `claim_limit` due tasks to `claim_owner` until
    `claim_until` and returns them (bound per call; built once, as building and cache-keying it
    cost more CPU than running it, several times a second even when idle).

    Due: active and either scheduled for `claim_now` or past its deadline (the sweep), and not
    leased by a live worker. On PostgreSQL the inner SELECT skips rows another worker is
    claiming (`FOR UPDATE SKIP LOCKED`), and a row claimed meanwhile is re-checked against the
    lease condition, so two workers never lease one task.

    Written against the table, not the ORM class: the rows become detached tasks anyway, and
    the ORM's DML layer cost about a fifth of a claim's CPU.
    """
    table = cast(Table, GenerationTask.__table__)
    tasks = table.c
    now = bindparam("claim_now", type_=tasks.next_poll_at.type)
    due = (
        select(tasks.id)
        .where(
            tasks.status.in_(ACTIVE_STATUSES),
            or_(tasks.next_poll_at <= now, tasks.deadline_at <= now),
            or_(tasks.lease_expires_at.is_(None), tasks.lease_expires_at < now),
        )
        .order_by(tasks.next_poll_at)
        .limit(bindparam("claim_limit", type_=Integer))
        .with_for_update(skip_locked=True)
    )
    return (
        update(table)
        .where(tasks.id.in_(due.scalar_subquery()))
        .values(lease_owner=bindparam("claim_owner"), lease_expires_at=bindparam("claim_until"))
        .returning(*LIGHT_COLUMNS)
    )


def claim_params(
    worker_id: str, now: datetime, lease_until: datetime, limit: int
) -> dict[str, Any]:
    return {
        "claim_owner": worker_id,
        "claim_now": now,
        "claim_until": lease_until,
        "claim_limit": limit,
    }


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
        # PostgreSQL completes a task in one statement when it can (`app.core.tasks.completion`);
        # SQLite serialises its writers anyway and always uses the transaction.
        self._one_statement = not database.is_sqlite
        self.encryptor = encryptor
        self.settings = settings
        self.http = http
        self.storage = storage
        self.events = events
        self.router = router
        router.attach_database(database)
        self.worker_id = (
            worker_id or f"{socket.gethostname()[:40]}:{os.getpid()}:{os.urandom(4).hex()}"
        )[:64]
        self.lease = timedelta(seconds=settings.task_lease_seconds)
        self.slots = settings.max_concurrent_tasks
        self._inflight: dict[str, asyncio.Task[None]] = {}
        # Synchronous requests admitted at once: the slots less the share kept for claims, so
        # queued tasks still get slots under a steady synchronous load (see `admission`).
        self._admission = asyncio.Semaphore(
            max(1, self.slots - max(1, int(self.slots * BATCH_FRACTION)))
        )
        self.awaiting_admission = 0
        # Hand-backs of tasks a stop kept us from starting (see `start_inline`).
        self._handbacks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._webhook_wake = asyncio.Event()
        self._stopping = False
        self._helpers: list[asyncio.Task[None]] = []
        self._loop_task: asyncio.Task[None] | None = None
        self._last_maintenance: float | None = None
        self._poll_writes = PollWrites(database, self.worker_id)

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def inflight_count(self) -> int:
        return len(self._inflight)

    def is_running(self, task_id: str) -> bool:
        """Whether a job of this worker runs the task now (its end will be published here)."""
        return task_id in self._inflight

    async def start(self) -> None:
        self._stopping = False
        self._helpers = [
            asyncio.create_task(self._keep_leases(), name=f"task-leases-{self.worker_id}"),
            asyncio.create_task(self._send_webhooks(), name=f"task-webhooks-{self.worker_id}"),
            asyncio.create_task(self._probe_channels(), name=f"task-probes-{self.worker_id}"),
        ]
        self._loop_task = asyncio.create_task(self._run(), name=f"task-worker-{self.worker_id}")

    async def stop(self, grace_seconds: float = 10.0) -> None:
        """Stop claiming, let in-flight work finish briefly, then hand leases back so another
        worker continues at once instead of waiting for them to expire."""
        self._stopping = True
        self._wake.set()
        self._webhook_wake.set()
        if self._loop_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
            self._loop_task = None
        jobs = [*self._inflight.values(), *self._handbacks]
        if jobs:
            _, pending = await asyncio.wait(jobs, timeout=grace_seconds)
            for job in pending:
                job.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        for helper in self._helpers:
            helper.cancel()
        if self._helpers:
            await asyncio.gather(*self._helpers, return_exceptions=True)
        self._helpers = []
        # Queued poll results (of cancelled jobs too) are written while the leases are still
        # ours: after the release their compare-and-swap would fail and they would be lost.
        await self._poll_writes.flush()
        if self._handbacks:
            await asyncio.gather(*self._handbacks, return_exceptions=True)
        await self._release_my_leases()

    def wake(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping:
            if self._last_maintenance is None or (
                loop.time() - self._last_maintenance > MAINTENANCE_EVERY
            ):
                self._last_maintenance = loop.time()
                await self._maintenance()
            free = self.slots - len(self._inflight)
            claimed = 0
            if free > 0:
                self._wake.clear()
                try:
                    claimed = await self.tick()
                except Exception:
                    logger.exception("task worker: claiming failed")
            if self._stopping:
                break
            if free > 0 and claimed == free:
                continue  # a full batch: more may be due right now
            if free > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=IDLE_WAIT)
            else:
                await self._wait_for_slots()

    async def _wait_for_slots(self) -> None:
        """Every slot is busy: wait until a batch's worth frees up (or a stop is asked)."""
        wanted = max(1, int(self.slots * BATCH_FRACTION))
        stop_waiter = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait(
                [*self._inflight.values(), stop_waiter], return_when=asyncio.FIRST_COMPLETED
            )
            loop = asyncio.get_running_loop()
            until = loop.time() + BATCH_WAIT
            while (
                not self._stopping
                and self._inflight
                and self.slots - len(self._inflight) < wanted
                and (left := until - loop.time()) > 0
            ):
                await asyncio.wait(
                    list(self._inflight.values()),
                    timeout=left,
                    return_when=asyncio.FIRST_COMPLETED,
                )
        finally:
            stop_waiter.cancel()
        if not self._stopping:
            self._wake.clear()

    async def tick(self) -> int:
        """Claim due tasks for the free slots and start them; returns how many were claimed."""
        free = self.slots - len(self._inflight)
        if free <= 0:
            return 0
        claimed = await self.claim(free)
        for task in claimed:
            if task.id in self._inflight:
                # Its lease lapsed while our own job still runs (and the claim just renewed it):
                # never run one task twice in one process.
                continue
            job = asyncio.create_task(self._process_guarded(task), name=f"task-{task.id}")
            self._inflight[task.id] = job
            job.add_done_callback(functools.partial(self._forget, task.id))
        return len(claimed)

    @contextlib.asynccontextmanager
    async def admission(self) -> AsyncIterator[None]:
        """Hold for the length of a synchronous request, before it touches the database.

        Past the slots its task would not be handed over (`inline_lease`) but queued for a
        claim: a re-read of the request and two more writes for the same work, under exactly
        the load where CPU is short. Waiting here instead costs nothing (no pooled connection
        is held yet), and the request then goes through the hand-over. After `ADMISSION_WAIT`
        it goes ahead anyway and queues, so nothing waits unseen for long. Without a running
        worker in this process there is nothing to wait for."""
        if self._loop_task is None or self._stopping:
            yield
            return
        self.awaiting_admission += 1
        try:
            await asyncio.wait_for(self._admission.acquire(), ADMISSION_WAIT)
            admitted = True
        except TimeoutError:
            admitted = False
        finally:
            self.awaiting_admission -= 1
        if not admitted:
            yield
            return
        try:
            yield
        finally:
            self._admission.release()

    def inline_lease(self, count: int) -> InlineLease | None:
        """A lease for `count` tasks about to be created in this process, if this worker runs
        and has slots for them (see `start_inline`)."""
        if self._loop_task is None or self._stopping:
            return None
        if len(self._inflight) + count > self.slots:
            return None  # busy: they queue and are claimed in order like any other
        return InlineLease(self.worker_id, utcnow() + self.lease)

    def start_inline(self, tasks: Sequence[GenerationTask], payload: TaskPayload) -> None:
        """Start tasks just committed with an `inline_lease`, from the creator's own copy of
        the request. Same rules as a claim: if this process dies first, the lease expires and
        any worker claims them."""
        if self._stopping:
            # A stop began between the lease and the commit: the stop hands our leases back
            # (or they expire), and whichever worker claims the tasks runs them. Those inserted
            # `sending` (their creator waits) were never sent: say so first, or the claimer
            # would fail them as interrupted.
            unsent = [t.id for t in tasks if t.submit_state == "sending"]
            if unsent:
                job = asyncio.create_task(self._hand_back_unsent(unsent))
                self._handbacks.add(job)
                job.add_done_callback(self._handbacks.discard)
            return
        for task in tasks:
            if task.id in self._inflight:
                continue
            job = asyncio.create_task(
                self._process_guarded(detached_copy(task), payload), name=f"task-{task.id}"
            )
            self._inflight[task.id] = job
            job.add_done_callback(functools.partial(self._forget, task.id))

    async def _hand_back_unsent(self, task_ids: list[str]) -> None:
        try:
            async with self.database.session() as db:
                await db.execute(
                    update(GenerationTask)
                    .where(
                        GenerationTask.id.in_(task_ids),
                        GenerationTask.submit_state == "sending",
                        GenerationTask.upstream_id.is_(None),
                        or_(
                            GenerationTask.lease_owner == self.worker_id,
                            GenerationTask.lease_owner.is_(None),
                        ),
                    )
                    .values(submit_state="pending", lease_owner=None, lease_expires_at=None)
                    .execution_options(synchronize_session=False)
                )
        except Exception:
            logger.exception("could not hand back tasks %s (they fail as interrupted)", task_ids)

    def _forget(self, task_id: str, job: asyncio.Task[None]) -> None:
        if self._inflight.get(task_id) is job:
            del self._inflight[task_id]

    async def run_until_idle(self, limit_seconds: float | None = 30.0) -> None:
        """Process everything due now, wait for it, and send due webhooks (tests, benchmarks,
        `genapi worker --once`)."""
        async with asyncio.timeout(limit_seconds):
            keeper = asyncio.create_task(self._keep_leases())
            try:
                while True:
                    claimed = await self.tick()
                    if self._inflight:
                        await asyncio.gather(*list(self._inflight.values()), return_exceptions=True)
                        continue
                    if claimed == 0:
                        break
                while await deliver_due(self.database, self.encryptor, self.http, self.settings):
                    pass
            finally:
                keeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await keeper

    # -- claiming and leases -----------------------------------------------------------------

    async def claim(self, limit: int) -> list[GenerationTask]:
        now = utcnow()
        # A plain connection, not an ORM session: nothing here needs one, and one claim runs
        # per batch of freed slots, many times a second under load.
        async with self.database.engine.begin() as conn:
            rows = await conn.execute(
                claim_statement(), claim_params(self.worker_id, now, now + self.lease, limit)
            )
            claimed = [light_task(row) for row in rows.all()]
        for task in claimed:
            if task.next_poll_at is not None:
                record_poll_lag((now - task.next_poll_at).total_seconds())
        return claimed

    async def _keep_leases(self) -> None:
        """Extend the leases of every in-flight task, in one statement, every lease third."""
        interval = max(0.2, self.lease.total_seconds() / 3)
        while True:
            await asyncio.sleep(interval)
            ids = list(self._inflight)
            if not ids:
                continue
            try:
                async with self.database.session() as db:
                    await db.execute(
                        update(GenerationTask)
                        .where(
                            GenerationTask.id.in_(ids),
                            GenerationTask.lease_owner == self.worker_id,
                        )
                        .values(lease_expires_at=utcnow() + self.lease)
                        .execution_options(synchronize_session=False)
                    )
            except Exception:
                logger.exception("task worker: could not extend leases")

    async def _release_my_leases(self) -> None:
        try:
            async with self.database.session() as db:
                await db.execute(
                    update(GenerationTask)
                    .where(GenerationTask.lease_owner == self.worker_id)
                    .values(lease_owner=None, lease_expires_at=None)
                    .execution_options(synchronize_session=False)
                )
        except Exception:
            logger.exception("could not release leases on shutdown (they will expire)")

    async def _send_webhooks(self) -> None:
        """Deliver due webhooks on their own pace, so a slow receiver never delays polling."""
        while not self._stopping:
            self._webhook_wake.clear()
            try:
                sent = await deliver_due(self.database, self.encryptor, self.http, self.settings)
            except Exception:
                logger.exception("webhook delivery round failed")
                sent = 0
            if sent == 0 and not self._stopping:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._webhook_wake.wait(), timeout=WEBHOOK_IDLE_WAIT)

    async def _probe_channels(self) -> None:
        """Probe cooling channels so one that answers again is back before its cooldown ends
        (the claim in the database lets one process of many probe each channel)."""
        while not self._stopping:
            try:
                await self.router.probe_due()
            except Exception:
                logger.exception("channel probe round failed")
            await asyncio.sleep(max(0.05, self.router.policy.probe_interval_seconds / 2))

    # -- transitions ---------------------------------------------------------------------------

    def _owned(self, task_id: str) -> dict[str, str]:
        """The parameters of `OWNED` for `task_id`."""
        return {"owned_id": task_id, "owned_by": self.worker_id}

    async def _write_if_owned(
        self,
        conn: AsyncConnection,
        task_id: str,
        values: dict[str, Any],
        *,
        with_has_media: bool = False,
    ) -> Any:
        """The compare-and-swap itself, inside the caller's transaction: the new row (`LIGHT_
        COLUMNS`, plus `has_media` when asked), or None when the task is no longer active and
        ours."""
        statement = owned_update(tuple(sorted(values)), with_has_media=with_has_media)
        params = {**self._owned(task_id), **{f"set_{k}": v for k, v in values.items()}}
        return (await conn.execute(statement, params)).one_or_none()

    async def _cas(
        self, task: GenerationTask, values: dict[str, Any], *, event: str | None = None
    ) -> GenerationTask | None:
        """Update `task` if it is still active and leased by us; returns the new row or None."""
        values = {**values, "updated_at": utcnow()}
        async with self.database.engine.begin() as conn:
            written = await self._write_if_owned(conn, task.id, values)
            row = light_task(written) if written is not None else None
            if row is not None and row.has_webhook and TaskStatus(row.status).is_terminal:
                await enqueue_webhook_on(conn, self.encryptor, row.id)
        if row is not None:
            if row.status != task.status:
                record_transition(row.model, row.status)
            if row.has_webhook and TaskStatus(row.status).is_terminal:
                self._webhook_wake.set()
            if event is not None:
                self._publish(row, event)
        return row

    def _publish(self, task: GenerationTask, event_type: str) -> None:
        self.events.publish(task_event(task, event_type))

    def _released(self, **values: Any) -> dict[str, Any]:
        return {"lease_owner": None, "lease_expires_at": None, **values}

    async def _reschedule(
        self, task: GenerationTask, delay: float, *, event: str | None = None, **values: Any
    ) -> None:
        """Hand the task back, still active, to be taken again in `delay` seconds.

        The write joins a batch (see `poll_writes.py`): the same compare-and-swap as `_cas`, one
        commit for many polls; `event` is published after that commit, and only if the row was
        still ours. Under the claim loop the job ends as soon as the write is queued, so its
        slot polls another task meanwhile (the row stays leased to us until the write lands,
        so nobody takes it; a stop writes the queue before handing leases back). Outside it
        (`run_until_idle`: tests, `genapi worker --once`) this waits for the commit.
        """
        now = utcnow()
        values = self._released(
            next_poll_at=now + timedelta(seconds=max(0.0, delay)), updated_at=now, **values
        )
        if values.get("status", task.status) not in ACTIVE_STATUSES:
            # Not a reschedule: an ending keeps its own transaction (webhook outbox).
            await self._cas(task, values, event=event)
            return

        def written(outcome: asyncio.Future[Applied | None]) -> None:
            if outcome.cancelled() or outcome.exception() is not None:
                return  # logged by the batch; the lease runs out and the task is polled again
            applied = outcome.result()
            if applied is None:
                return  # the CAS lost: cancelled, deleted or taken over meanwhile
            if values.get("status", task.status) != task.status:
                record_transition(task.model, values["status"])
            if event is not None:
                # The row as written (detached, like the rows `_cas` returns).
                self._publish(detached_copy(task, **{**values, "title": applied.title}), event)

        outcome = self._poll_writes.add(task.id, values)
        outcome.add_done_callback(written)
        if self._loop_task is None:
            await asyncio.shield(outcome)

    async def _fail(self, task: GenerationTask, code: str, message: str) -> GenerationTask | None:
        now = utcnow()
        return await self._cas(
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
        """Exponential from one poll interval, jittered; an upstream's Retry-After is obeyed."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), MAX_RETRY_AFTER)
        base = self.settings.polling_interval * (2 ** min(max(errors - 1, 0), 10))
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

    async def _process_guarded(
        self, task: GenerationTask, payload: TaskPayload | None = None
    ) -> None:
        try:
            if payload is not None:
                await self._submit(task, payload)  # a new task handed over by its creator
            else:
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
        if task.submit_state == "pending":
            await self._submit(task)
            return
        try:
            # Polls and downloads go to the channel that was sent the create, always.
            route = await self.router.owner(task)
            adapter, credentials = route.adapter, route.credentials
        except UnknownAdapterError as exc:
            await self._fail(task, "unknown_adapter", str(exc))
            return
        except ChannelNotFound as exc:
            await self._fail(task, "upstream_channel_gone", str(exc))
            return
        except DecryptionError as exc:
            await self._fail(task, "decryption_failed", str(exc))
            return
        stored = self._pending_results(task)
        if stored is not None:
            await self._store_results(task, stored, credentials)
            return
        await self._poll(task, adapter, credentials)

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
        failed = await self._fail(
            task,
            "timeout",
            f"No result within {self.settings.task_deadline_minutes:g} minutes",
        )
        if failed is not None and task.upstream_id:
            await self._cancel_upstream(task)

    async def _cancel_upstream(self, task: GenerationTask) -> None:
        """Best effort: the task has ended here whatever the upstream answers."""
        if not task.upstream_id:
            return
        try:
            route = await self.router.owner(task, patient=True)
            if route.adapter.supports_cancel:
                await route.adapter.cancel(task.upstream_id, route.credentials)
        except (UpstreamError, UnknownAdapterError, DecryptionError, ChannelNotFound) as exc:
            logger.info("task %s: upstream cancel failed: %s", task.id, type(exc).__name__)

    async def _submit(self, task: GenerationTask, payload: TaskPayload | None = None) -> None:
        try:
            if payload is None:
                async with self.database.session() as db:
                    encrypted = await db.scalar(
                        select(GenerationTask.request_encrypted).where(GenerationTask.id == task.id)
                    )
                payload = TaskPayload.from_json(self.encryptor.decrypt_json(encrypted or ""))
            request = build_generation_request(task.kind, payload)  # type: ignore[arg-type]
        except DecryptionError as exc:
            await self._fail(task, "decryption_failed", str(exc))
            return
        except (ValueError, TypeError) as exc:
            await self._fail(task, "invalid_request", f"The stored request is unusable: {exc}")
            return
        # Inserted `sending` by a creator that waits for it (see `create_tasks`): nothing to
        # record before the first attempt, and the submission is recorded with the results.
        # Every way back to the queue before the upstream call says `pending` (it was not sent).
        creator_waits = task.submit_state == "sending"
        try:
            plan = await self.router.plan(task, payload)
        except ChannelNotFound as exc:  # a remix whose source's channel is gone
            await self._fail(task, "upstream_channel_gone", str(exc))
            return
        except Exception:
            if not creator_waits:
                raise  # `_process_guarded` retries it later, still `pending`
            logger.exception("task %s: planning the create failed; retrying later", task.id)
            errors = task.consecutive_errors + 1
            await self._reschedule(
                task, self._error_backoff(errors), submit_state="pending", consecutive_errors=errors
            )
            return
        if plan.retry_at is not None:
            # Every channel serving the model cools down: look again once a probe may have
            # brought one back, or when the first cooldown ends.
            wait = (plan.retry_at - utcnow()).total_seconds()
            probe_every = self.router.policy.probe_interval_seconds
            await self._reschedule(
                task,
                max(min(wait, probe_every), self.settings.polling_interval),
                submit_state="pending",
            )
            return
        if not plan.routes:
            await self._fail(task, "no_upstream_channel", plan.problem or "No upstream channel")
            return
        for index, route in enumerate(plan.routes):
            sending: GenerationTask | None
            if creator_waits and index == 0:
                sending = task
            else:
                # Committed before the request leaves: after a crash we know it may have
                # arrived, and at which channel.
                sending = await self._cas(
                    task, {"submit_state": "sending", "channel_id": route.channel_id}
                )
            if sending is None:
                return
            attempt = request
            if route.upstream_model:
                attempt = dataclasses.replace(request, model=route.upstream_model)
            try:
                submission = await route.adapter.submit(attempt, route.credentials)
            except UpstreamError as exc:
                await self.router.record_failure(route, exc)
                if may_fail_over(exc) and index + 1 < len(plan.routes):
                    # It provably was not taken: the next channel may have it.
                    logger.info(
                        "task %s: channel %s failed (%s); trying the next channel",
                        task.id,
                        route.channel.id,
                        type(exc).__name__,
                    )
                    continue
                await self._submit_failed(task, exc)
                return
            await self.router.record_success(route)
            await self._submitted(task, submission, route.channel_id, creator_waits=creator_waits)
            return

    async def _submitted(
        self,
        task: GenerationTask,
        submission: UpstreamSubmission,
        channel_id: str | None,
        *,
        creator_waits: bool = False,
    ) -> None:
        now = utcnow()
        status = submission.status
        values: dict[str, Any] = {
            "submit_state": "submitted",
            "upstream_id": submission.upstream_id,
            "submitted_at": now,
            "consecutive_errors": 0,
            "channel_id": channel_id,
        }
        if status is None or not status.status.is_terminal:
            progress = status.progress if status and status.progress is not None else 0
            values.update(
                status=(status.status if status else TaskStatus.QUEUED).value,
                progress=max(0, min(99, progress)),
            )
            if status and status.status == TaskStatus.IN_PROGRESS:
                values["started_at"] = now
            next_at = now + timedelta(seconds=self._pace(TaskStatus.QUEUED, 0))
            await self._save_submission(
                task, self._released(next_poll_at=next_at, **values), event="task.updated"
            )
            return
        # A synchronous upstream (images) answered with the result itself.
        if status.status == TaskStatus.COMPLETED and status.results:
            # Saved with the submission, in one write: where the results are, so a restart
            # resumes the download instead of failing the task as interrupted.
            values.update(
                status=TaskStatus.IN_PROGRESS.value,
                progress=max(task.progress, 99),
                started_at=task.started_at or now,
                upstream_status=(status.upstream_status or "")[:64] or None,
                response_encrypted=self.encryptor.encrypt_json(
                    {"pending_results": _results_to_json(status.results)}
                ),
            )
            if creator_waits:
                # Its creator waits: download first and record the submission with the
                # outcome (or with the retry, should the download fail). Only a crash in
                # between loses it, and then the client's connection went with the process.
                unsaved = detached_copy(task, **values)
                await self._store_results(
                    unsaved,
                    list(status.results),
                    await self.router.credentials_for(unsaved),
                    unsaved=values,
                )
                return
            saved = await self._save_submission(task, values)
            if saved is not None:
                await self._store_results(
                    saved, list(status.results), await self.router.credentials_for(saved)
                )
            return
        updated = await self._save_submission(task, values)
        if updated is None:
            return
        await self._handle_status(updated, status)

    async def _save_submission(
        self, task: GenerationTask, values: dict[str, Any], *, event: str | None = None
    ) -> GenerationTask | None:
        """Record an accepted create. Retried on database errors: losing the upstream id now
        would leave the task `sending`, i.e. failed although it is being generated."""
        for attempt in range(1, SAVE_ATTEMPTS + 1):
            try:
                return await self._cas(task, values, event=event)
            except Exception:
                if attempt == SAVE_ATTEMPTS:
                    raise
                logger.warning("task %s: saving the submission failed; retrying", task.id)
                await asyncio.sleep(0.2 * attempt)
        return None  # pragma: no cover

    async def _submit_failed(self, task: GenerationTask, exc: UpstreamError) -> None:
        errors = task.consecutive_errors + 1
        if isinstance(exc, UpstreamRateLimited) or is_overloaded(exc):
            # A 429 (or a 503 "overloaded") means "not taken, come back later": resend after
            # the pause it asks for, for as long as the deadline allows.
            await self._reschedule(
                task,
                self._error_backoff(errors, getattr(exc, "retry_after", None)),
                submit_state="pending",
                consecutive_errors=errors,
            )
            return
        if not exc.reached_upstream and exc.retryable and errors <= MAX_SUBMIT_RETRIES:
            await self._reschedule(
                task,
                self._error_backoff(errors),
                submit_state="pending",
                consecutive_errors=errors,
            )
            return
        if isinstance(exc, UpstreamAuthError):
            code = "upstream_auth_failed"
        elif isinstance(exc, UpstreamRejected):
            code = "upstream_rejected"
        elif not exc.reached_upstream:
            code = "upstream_unavailable"
        else:
            # It may or may not have arrived: never send it again.
            code = "upstream_submit_failed"
        await self._fail(task, code, str(exc))

    async def _poll(
        self, task: GenerationTask, adapter: UpstreamAdapter, credentials: UpstreamCredentials
    ) -> None:
        if not task.upstream_id:
            await self._fail(task, "upstream_no_task_id", "The upstream returned no task id")
            return
        errors = task.consecutive_errors + 1
        try:
            status = await adapter.poll(
                task.upstream_id,
                credentials,
                kind=task.kind,  # type: ignore[arg-type]
                previous=TaskStatus(task.status),
            )
        except UpstreamAuthError as exc:
            if errors >= MAX_AUTH_FAILURES:
                await self._fail(task, "upstream_auth_failed", str(exc))
            else:
                await self._reschedule(
                    task,
                    self._error_backoff(errors),
                    consecutive_errors=errors,
                    poll_attempts=task.poll_attempts + 1,
                )
            return
        except UpstreamError as exc:
            if isinstance(exc, UpstreamRejected) and errors >= MAX_REJECTED_POLLS:
                await self._fail(task, "upstream_task_lost", str(exc))
                return
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
            # Remember where the results are before downloading: a restart resumes from here
            # instead of asking the upstream again.
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
                await self._store_results(
                    saved, list(status.results), await self.router.credentials_for(saved)
                )
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

    async def _store_results(
        self,
        task: GenerationTask,
        results: list[UpstreamResult],
        credentials: UpstreamCredentials,
        *,
        unsaved: dict[str, Any] | None = None,
    ) -> None:
        """Download, store and complete. `unsaved`: values of `task` not written yet (a
        submission whose creator waits), written with whichever write comes next."""
        policy = DownloadPolicy(
            allowed_hosts=set(self.settings.media_download_allowed_hosts),
            trusted_hosts=self.router.trusted_hosts,
        )
        # The owning channel's adapter knows its upstream's scheme (Bearer, x-goog-api-key, …).
        auth = await self.router.download_headers(task, credentials)
        final_attempt = task.consecutive_errors + 1 >= MAX_DOWNLOAD_RETRIES
        fetched: list[FetchedResult] = []
        try:
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
            await self._commit_results(task, fetched, unsaved)
        except TransientFetchError as exc:
            logger.info("task %s: result download failed (%s); retrying later", task.id, exc)
            await self._reschedule(
                task,
                self._error_backoff(task.consecutive_errors + 1),
                **{**(unsaved or {}), "consecutive_errors": task.consecutive_errors + 1},
            )
        finally:
            for item in fetched:
                discard_temp(item)

    async def _commit_results(
        self,
        task: GenerationTask,
        fetched: list[FetchedResult],
        unsaved: dict[str, Any] | None = None,
    ) -> None:
        """Move the files into storage, then in one transaction complete the task (if it is
        still ours), reserve quota and write the media rows (see `app.core.tasks.results`)."""
        rows = plan_media(
            self.encryptor,
            task_id=task.id,
            user_id=task.user_id,
            kind=task.kind,
            fetched=fetched,
        )
        moved = planned_keys(rows)
        journal = open_move_journal(self.storage, moved)
        # 1. Files first: a committed row never names a missing file.
        try:
            await move_into_storage(self.storage, fetched, rows)
        except BaseException:
            await delete_keys(self.storage, moved)
            close_move_journal(journal)
            raise
        # 2. Complete the task, reserve quota and write the rows, atomically. The task row's
        #    lock (the compare-and-swap comes first) orders this against a cancel or delete.
        usable = [m for m in rows if m.state == "pending"]
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
        values = {**(unsaved or {}), **values}
        values.update(
            lease_owner=None,
            lease_expires_at=None,
            next_poll_at=None,
            updated_at=now,
            response_encrypted=self.encryptor.encrypt_json({"stored": len(rows)}),
        )
        unkept: list[str] = []
        # If this raises, whether the commit happened is unknown: the journal stays for
        # `recover_interrupted_moves`, which asks the database which files to keep.
        row: GenerationTask | None = None
        completion = Completion.FALLBACK
        if usable and len(usable) == len(rows) and not task.has_webhook and self._one_statement:
            completion, row = await complete_in_one_statement(
                self.database.engine,
                task_id=task.id,
                worker_id=self.worker_id,
                user_id=task.user_id,
                values=values,
                rows=rows,
            )
        if completion is Completion.FALLBACK:
            async with self.database.engine.begin() as conn:
                written = await self._write_if_owned(conn, task.id, values, with_has_media=True)
                if written is not None:
                    # Rows an attempt of the code before the move journal left as `pending`.
                    if written.has_media:
                        unkept += await release_task_media(conn, task.id, task.user_id)
                    unkept += await record_media(conn, task.user_id, rows)
                    if written.has_webhook:
                        await enqueue_webhook_on(conn, self.encryptor, task.id)
                    row = light_task(written)
        if row is None:
            logger.info("task %s: ended elsewhere while storing its results; discarded", task.id)
            await delete_keys(self.storage, moved)
            close_move_journal(journal)
            return
        close_move_journal(journal)
        await delete_keys(self.storage, unkept)
        record_transition(row.model, row.status)
        record_media_stored(sum(m.bytes + m.thumbnail_bytes for m in rows if m.state == "stored"))
        if row.has_webhook:
            self._webhook_wake.set()
        outcome = TaskOutcome(task=row, media=list(rows))
        self.events.publish(dataclasses.replace(task_event(row, event), outcome=outcome))

    # -- housekeeping --------------------------------------------------------------------------

    async def _maintenance(self) -> None:
        # Expired idempotency keys are the fleet runner's job (`app.core.fleet`, once per fleet).
        # Stale temp files stay here too: with S3 each host keeps its own under DATA_DIR.
        try:
            await self.storage.purge_temp(older_than_seconds=6 * 3600)
            await recover_interrupted_moves(
                self.database, self.storage, older_than_seconds=MOVE_JOURNAL_MAX_AGE
            )
            await self.router.maintenance()
        except Exception:
            logger.exception("task maintenance failed")
