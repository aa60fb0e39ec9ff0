"""Liveness and readiness probes (outside `/api/`, never logged to the request log)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from app.api.deps import app_database, app_settings
from app.db.migrate import current_revision, head_revision

router = APIRouter(tags=["health"])


@router.get("/health")
async def health(request: Request) -> dict[str, Any]:
    settings = app_settings(request)
    return {
        "status": "healthy",
        "simulated_upstream": settings.uses_simulator,
        "env": settings.env,
    }


@router.get("/health/ready")
async def ready(request: Request) -> JSONResponse:
    database = app_database(request)
    checks: dict[str, Any] = {}
    ok = True
    try:
        async with database.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
        current, head = await current_revision(database.engine), head_revision()
        checks["migrations"] = {"current": current, "head": head}
        ok = current == head
    except Exception as exc:  # readiness must answer, whatever the database says
        checks["database"] = f"unreachable: {type(exc).__name__}"
        ok = False
    body = {"status": "ready" if ok else "not_ready", "checks": checks}
    return JSONResponse(body, status_code=200 if ok else 503)
