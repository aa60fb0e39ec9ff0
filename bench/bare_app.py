"""The API benchmark's baseline: a bare FastAPI app doing the same database work as
`POST /api/v1/videos` (insert one generation_tasks row) and `GET /api/v1/videos/{id}` (select
one row), with the app's own `Database` (same engine and pool settings) and models, and nothing
else: no auth, no validation against the catalog, no encryption, no middleware.

Served by uvicorn exactly like the real app:
`uvicorn bench.bare_app:create_bare_app --factory` with DATABASE_URL and BENCH_USER_ID set.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel, Field
from sqlalchemy import select

from app.db.base import new_uuid, utcnow
from app.db.session import Database
from app.models import GenerationTask


class BareCreate(BaseModel):
    model: str = Field(min_length=1, max_length=100)
    prompt: str = Field(min_length=1, max_length=32_000)
    params: dict[str, Any] = Field(default_factory=dict)


def _out(task: GenerationTask) -> dict[str, Any]:
    return {
        "id": task.id,
        "object": task.kind,
        "model": task.model,
        "status": task.status,
        "progress": task.progress,
        "created_at": task.created_at.isoformat(),
    }


def create_bare_app() -> FastAPI:
    database_url = os.environ["DATABASE_URL"]
    user_id = os.environ["BENCH_USER_ID"]

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.db = Database(database_url)
        yield
        await app.state.db.dispose()

    app = FastAPI(lifespan=lifespan)

    @app.post("/bare/videos", status_code=202)
    async def create(body: BareCreate, request: Request) -> dict[str, Any]:
        now = utcnow()
        task = GenerationTask(
            id=new_uuid(),
            user_id=user_id,
            kind="video",
            model=body.model,
            adapter="sora",
            status="queued",
            submit_state="pending",
            progress=0,
            tags=[],
            favorite=False,
            request_encrypted=json.dumps(body.model_dump()),
            deadline_at=now + timedelta(hours=2),
            next_poll_at=now,
            has_webhook=False,
            created_at=now,
            updated_at=now,
        )
        async with request.app.state.db.session() as db:
            db.add(task)
        return _out(task)

    @app.get("/bare/videos/{task_id}")
    async def get(task_id: str, request: Request) -> dict[str, Any]:
        async with request.app.state.db.session() as db:
            task = await db.scalar(
                select(GenerationTask).where(
                    GenerationTask.id == task_id, GenerationTask.user_id == user_id
                )
            )
        if task is None:
            raise HTTPException(404)
        return _out(task)

    return app
