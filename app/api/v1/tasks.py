"""`/api/v1/tasks`: every kind at once — live events (SSE), bulk delete, lookup by id."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import select

from app.api.deps import CurrentUser, EncryptorDep, SessionDep
from app.api.v1.generations import ContextDep, RuntimeDep, _delete_files
from app.core.tasks import service
from app.core.tasks.events import TaskEvent
from app.core.tasks.runtime import TaskRuntime
from app.db.base import utcnow
from app.db.session import commit
from app.models import GenerationTask
from app.models.schemas.tasks import BulkDeleteRequest, BulkDeleteResult, TaskOut

router = APIRouter()

KEEPALIVE_SECONDS = 15.0
DB_RECHECK_SECONDS = 2.0


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
    async with runtime.database.session() as db:
        rows = await db.scalars(
            select(GenerationTask)
            .where(GenerationTask.user_id == user_id, GenerationTask.updated_at > since)
            .order_by(GenerationTask.updated_at)
            .limit(200)
        )
        return list(rows.all())


def _event_for(task: GenerationTask) -> TaskEvent:
    kind = {"completed": "task.completed", "failed": "task.failed", "cancelled": "task.cancelled"}
    return TaskEvent(
        user_id=task.user_id,
        task_id=task.id,
        type=kind.get(task.status, "task.updated"),
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
        last_sent: dict[str, str] = {}
        since = utcnow()
        last_keepalive = loop.time()
        counter = 0
        try:
            yield "retry: 3000\n: connected\n\n"
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), timeout=DB_RECHECK_SECONDS)
                    batch = [event]
                except TimeoutError:
                    # Changes made by workers in other processes reach us through the database.
                    checked_at = utcnow()
                    batch = [_event_for(t) for t in await _changes_since(runtime, user_id, since)]
                    since = checked_at
                for item in batch:
                    stamp = str(item.data.get("updated_at", "")) + item.type
                    if last_sent.get(item.task_id) == stamp:
                        continue
                    last_sent[item.task_id] = stamp
                    counter += 1
                    yield _sse(item.type, item.data, str(counter))
                if loop.time() - last_keepalive > KEEPALIVE_SECONDS:
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


@router.post("/bulk-delete", response_model=BulkDeleteResult, summary="Delete many tasks")
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


@router.get("/{task_id}", response_model=TaskOut, summary="A task of any kind")
async def get_any(
    task_id: str, user: CurrentUser, db: SessionDep, encryptor: EncryptorDep
) -> TaskOut:
    task = await service.get_task(db, user.id, task_id)
    return (await service.tasks_out(db, encryptor, [task]))[0]
