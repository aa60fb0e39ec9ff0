"""Shared helpers for request-log tests: flushing the writer and reading raw rows."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.request_log.entry import RequestLogEntry
from app.core.request_log.writer import RequestLogWriter
from app.models import ApiRequestLog


async def flush_logs(app: FastAPI) -> None:
    """Everything submitted so far is committed when this returns (no sleeping)."""
    writer: RequestLogWriter = app.state.request_log_writer
    await writer.flush()


async def raw_log_rows(engine: AsyncEngine, **where: Any) -> list[dict[str, Any]]:
    """Rows exactly as stored, read through an engine other than the app's."""
    query = select(ApiRequestLog.__table__).order_by(ApiRequestLog.started_at)
    for name, value in where.items():
        query = query.where(ApiRequestLog.__table__.c[name] == value)
    async with engine.connect() as conn:
        result = await conn.execute(query)
        return [dict(row._mapping) for row in result]


async def wait_until(
    condition: Callable[[], Awaitable[bool]], *, deadline_s: float = 10.0, interval: float = 0.02
) -> None:
    """Poll `condition` until it holds; fail after `deadline_s` seconds."""
    deadline = time.monotonic() + deadline_s
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {deadline_s}s")
        await asyncio.sleep(interval)


def make_entry(**overrides: Any) -> RequestLogEntry:
    values: dict[str, Any] = {
        "request_id": str(uuid.uuid4()),
        "started_at": datetime.now(UTC),
        "method": "GET",
        "path": "/api/v1/things",
        "status_code": 200,
        "duration_ms": 1.5,
        "client_ip": "198.51.100.1",
        "request_headers": [(b"user-agent", b"pytest"), (b"authorization", b"Bearer s3cr3t")],
    }
    values.update(overrides)
    return RequestLogEntry(**values)
