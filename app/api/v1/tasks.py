"""`/api/v1/tasks`: every kind at once — live events (SSE), bulk delete, lookup by id."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import select

from app.api.deps import CurrentUser, EncryptorDep, NoNulParameters, SessionDep
from app.api.v1.generations import ContextDep, RuntimeDep, _delete_files
from app.core.errors import error_response_doc, error_responses
from app.core.tasks import service
from app.core.tasks.events import TaskEvent
from app.core.tasks.runtime import TaskRuntime
from app.db.base import utcnow
from app.db.session import commit
from app.models import GenerationTask
from app.models.schemas.tasks import BulkDeleteRequest, BulkDeleteResult, TaskOut

router = APIRouter(responses=error_responses(401, 422), dependencies=[NoNulParameters])

KEEPALIVE_SECONDS = 15.0
# Without a cross-process relay (SQLite, or PostgreSQL while the relay reconnects) other
# processes' changes reach a stream only through this recheck; with the relay they arrive by
# NOTIFY and the recheck is only the safety net for dropped events.
DB_RECHECK_SECONDS = 2.0
DB_RECHECK_SECONDS_RELAYED = 30.0
# `updated_at` is stamped before the writer commits, so a change can become visible after a
# recheck that started later than its stamp; looking back this far (duplicates are skipped)
# catches it.
DB_RECHECK_OVERLAP = timedelta(seconds=10)
DB_RECHECK_LIMIT = 500


def _sse(event: str, data: dict[str, object], event_id: str | None = None) -> str:
    lines = []
    if event_id:
        lines.append(f"id: {event_id}")
    lines.append(f"event: {event}")
    lines.append("data: " + json.dumps(data, separators=(",", ":"), default=str))
    return "\n".join(lines) + "\n\n"


async def _changes_since(
    runtime: TaskRuntime, user_id: str, since: datetime
) -> list[GenerationTask]:
    """The user's tasks changed after `since`, the most recent `DB_RECHECK_LIMIT`, oldest first."""
    async with runtime.database.session() as db:
        rows = await db.scalars(
            select(GenerationTask)
            .where(GenerationTask.user_id == user_id, GenerationTask.updated_at > since)
            .order_by(GenerationTask.updated_at.desc())
            .limit(DB_RECHECK_LIMIT)
        )
        return list(reversed(rows.all()))


def _recheck_interval(runtime: TaskRuntime) -> float:
    relay = runtime.relay
    if relay is not None and relay.connected:
        return DB_RECHECK_SECONDS_RELAYED
    return DB_RECHECK_SECONDS


def _event_for(task: GenerationTask) -> TaskEvent:
    kind = {"completed": "task.completed", "failed": "task.failed", "cancelled": "task.cancelled"}
    return service.task_event(task, kind.get(task.status, "task.updated"))


def _is_news(event: TaskEvent, last_sent: dict[str, tuple[datetime, str]]) -> bool:
    """Whether `event` tells the client something it was not told yet (and remember it).

    The same change can arrive twice (from this process's bus and from a database recheck),
    and a recheck can read a row that a queued event already described; neither a repeat nor
    an older state is sent.
    """
    if event.type == "task.deleted":
        last_sent.pop(event.task_id, None)
        return True
    try:
        stamp = (datetime.fromisoformat(str(event.data["updated_at"])), str(event.data["status"]))
    except (KeyError, ValueError):
        return True
    previous = last_sent.get(event.task_id)
    if previous is not None and (
        stamp[0] < previous[0] or (stamp[0] == previous[0] and stamp[1] == previous[1])
    ):
        return False
    last_sent[event.task_id] = stamp
    return True


@router.get(
    "/events",
    summary="Live task changes (Server-Sent Events)",
    description=(
        "Streams `task.created`, `task.updated`, `task.completed`, `task.failed`, "
        "`task.cancelled` and `task.deleted` events of the caller's tasks; each `data` is a "
        "JSON summary (id, object, model, status, progress, title, error_code, updated_at)."
    ),
    response_class=StreamingResponse,
)
async def events(
    request: Request, user: CurrentUser, db: SessionDep, runtime: RuntimeDep
) -> StreamingResponse:
    user_id = user.id
    await commit(db)  # never hold a transaction open for the life of a stream
    queue = runtime.events.subscribe(user_id)

    async def stream() -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        last_sent: dict[str, tuple[datetime, str]] = {}
        since = utcnow()
        last_keepalive = loop.time()
        last_recheck = loop.time()
        counter = 0
        try:
            yield "retry: 3000\n: connected\n\n"
            while True:
                batch: list[TaskEvent] = []
                # Re-read each time: the relay can connect or drop while the stream lives.
                next_recheck = last_recheck + _recheck_interval(runtime)
                try:
                    # Wake for the keepalive too (the relayed recheck is longer than it).
                    wake_at = min(next_recheck, last_keepalive + KEEPALIVE_SECONDS)
                    wait = max(0.0, wake_at - loop.time())
                    batch.append(await asyncio.wait_for(queue.get(), timeout=wait))
                except TimeoutError:
                    pass
                # Changes made by workers in other processes reach us by the relay or, failing
                # that, through the database: recheck on a clock, not only when this process
                # is quiet (a busy stream would otherwise never see them).
                if loop.time() >= next_recheck:
                    checked_at = utcnow()
                    changed = await _changes_since(runtime, user_id, since - DB_RECHECK_OVERLAP)
                    batch.extend(_event_for(t) for t in changed)
                    since = checked_at
                    last_recheck = loop.time()
                for item in batch:
                    if not _is_news(item, last_sent):
                        continue
                    counter += 1
                    yield _sse(item.type, item.data, str(counter))
                if loop.time() - last_keepalive >= KEEPALIVE_SECONDS:
                    last_keepalive = loop.time()
                    yield ": keepalive\n\n"
                if await request.is_disconnected():
                    return
        finally:
            runtime.events.unsubscribe(user_id, queue)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.post(
    "/bulk-delete",
    response_model=BulkDeleteResult,
    summary="Delete many tasks",
    responses=error_responses(400),
)
async def bulk_delete(
    body: BulkDeleteRequest,
    user: CurrentUser,
    db: SessionDep,
    runtime: RuntimeDep,
    ctx: ContextDep,
) -> BulkDeleteResult:
    removed: list[str] = []
    deleted, missing = await service.bulk_delete(db, ctx, user.id, body.ids, removed)
    await commit(db)
    await _delete_files(runtime, removed)
    return BulkDeleteResult(deleted=deleted, not_found=missing)


@router.get(
    "/{task_id}",
    response_model=TaskOut,
    summary="A task of any kind",
    responses={404: error_response_doc(404, "No such task of yours")},
)
async def get_any(
    task_id: str, user: CurrentUser, db: SessionDep, encryptor: EncryptorDep
) -> TaskOut:
    task = await service.get_task(db, user.id, task_id)
    return (await service.tasks_out(db, encryptor, [task]))[0]
