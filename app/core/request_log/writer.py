"""Buffered, batched writer of request-log entries.

The middleware calls `submit()` (a deque append, no I/O). A background task wakes every
`REQUEST_LOG_FLUSH_INTERVAL` seconds (or as soon as a batch is full), redacts and encrypts the
entries in a worker thread and stores each batch with one multi-row INSERT. `stop()` flushes
whatever is still buffered, so nothing is lost on a clean shutdown. Retention is not run
here: it is a once-per-fleet job (`app/core/fleet.py`), not one per process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from typing import Any, cast

from sqlalchemy import Table, insert, select
from sqlalchemy.exc import IntegrityError

from app.core.config import Settings
from app.core.encryption import Encryptor
from app.core.request_log.entry import RequestLogEntry
from app.core.request_log.redaction import (
    redact_body,
    redact_headers,
    redact_query_string,
)
from app.db.base import new_uuid
from app.db.session import Database
from app.models import ApiRequestLog, User

logger = logging.getLogger(__name__)

DEFAULT_MAX_BUFFER = 10_000
# Log the first overflow drop, then one line per this many, so a flood cannot flood the log.
DROP_WARNING_EVERY = 1000
_INSERT_LOG = insert(cast(Table, ApiRequestLog.__table__))


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _decode_body(data: bytes) -> str:
    # A cut at the byte cap may split a multi-byte character: replace it, never fail.
    return data.decode("utf-8", errors="replace")


def _body_envelope(
    data: bytes | None,
    content_type: str | None,
    *,
    truncated: bool,
    total_bytes: int,
    summary: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """What is stored (encrypted) for one body: its redacted text and how it was captured."""
    if not total_bytes and summary is None:
        return None
    if summary is not None:
        body: str | None = json.dumps(summary, separators=(",", ":"))
    elif data is not None:
        body = redact_body(_decode_body(data), content_type, complete=not truncated)
    else:
        media = _media_type(content_type) or "unknown type"
        body = f"<not captured: {media}, {total_bytes} bytes>"
    return {
        "content_type": content_type,
        "truncated": truncated,
        "size": total_bytes,
        "body": body,
    }


def _no_nul(value: str | None) -> str:
    return (value or "").replace("\x00", "%00")


def _clip(value: str | None, length: int) -> str | None:
    return None if value is None else _no_nul(value)[:length]


def build_row(entry: RequestLogEntry, encryptor: Encryptor) -> dict[str, Any]:
    """Redact, then encrypt one entry into an `api_request_logs` row (CPU only, no I/O)."""
    headers = [
        (name.decode("latin-1"), value.decode("latin-1")) for name, value in entry.request_headers
    ]
    user_agent = next((v for k, v in headers if k.lower() == "user-agent"), None)
    query = redact_query_string(entry.query_string.decode("latin-1"))
    request_body = _body_envelope(
        entry.request_body,
        entry.request_content_type,
        truncated=entry.request_body_truncated,
        total_bytes=entry.request_bytes,
        summary=entry.request_summary,
    )
    response_body = _body_envelope(
        entry.response_body,
        entry.response_content_type,
        truncated=entry.response_body_truncated,
        total_bytes=entry.response_bytes,
    )
    return {
        "id": new_uuid(),
        "request_id": entry.request_id[:36],
        "started_at": entry.started_at,
        "duration_ms": float(entry.duration_ms),
        # PostgreSQL refuses NUL in text, and one bad row would sink its whole batch.
        "method": _no_nul(entry.method)[:10],
        "path": _no_nul(entry.path)[:2048],
        "status_code": int(entry.status_code),
        "user_id": entry.user_id,
        "session_id": entry.session_id,
        "api_key_id": entry.api_key_id,
        "client_ip": _clip(entry.client_ip, 64),
        "user_agent": _clip(user_agent, 512),
        "query_encrypted": encryptor.encrypt_text(query) if query else None,
        "request_headers_encrypted": encryptor.encrypt_json(redact_headers(headers)),
        "request_body_encrypted": (
            None if request_body is None else encryptor.encrypt_json(request_body)
        ),
        "response_body_encrypted": (
            None if response_body is None else encryptor.encrypt_json(response_body)
        ),
        "note_encrypted": encryptor.encrypt_optional(entry.note),
        "request_bytes": entry.request_bytes,
        "response_bytes": entry.response_bytes,
        "category_id": None,
        "tags": [],
    }


class RequestLogWriter:
    def __init__(
        self,
        database: Database,
        encryptor: Encryptor,
        settings: Settings,
        *,
        max_buffer: int = DEFAULT_MAX_BUFFER,
    ) -> None:
        self.database = database
        self.encryptor = encryptor
        self.settings = settings
        self.max_buffer = max(1, max_buffer)
        self.batch_size = settings.request_log_batch_size
        self.flush_interval = settings.request_log_flush_interval
        self.dropped = 0
        self.written = 0
        self.failed = 0
        self._buffer: deque[dict[str, Any]] = deque()  # rows ready to insert
        self._wakeup = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def submit(self, entry: RequestLogEntry) -> None:
        """Queue an entry; never blocks, never raises. Drops the oldest entry when full.

        The row is built (and its bodies encrypted) here, once the response has gone out: a
        little CPU after every request instead of a burst per flush, which stalled whichever
        requests were in flight then (a worker thread fights the event loop for the GIL)."""
        try:
            row = build_row(entry, self.encryptor)
        except Exception:
            self.failed += 1
            logger.exception("request log entry %s could not be prepared", entry.request_id)
            return
        if len(self._buffer) >= self.max_buffer:
            self._buffer.popleft()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % DROP_WARNING_EVERY == 0:
                logger.warning(
                    "request log buffer full (%d entries): dropped the oldest, %d dropped so far",
                    self.max_buffer,
                    self.dropped,
                )
        self._buffer.append(row)
        if len(self._buffer) >= self.batch_size:
            self._wakeup.set()

    async def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name="request-log-writer")

    async def stop(self) -> None:
        """Stop the background task, then write everything still buffered."""
        self._stopping = True
        self._wakeup.set()
        task, self._task = self._task, None
        if task is not None:
            await task
        await self.flush()

    async def flush(self) -> int:
        """Write every buffered entry now; returns how many rows were stored.

        Serialised with the background flush: when this returns, everything submitted before
        the call is committed (or, on a database error, reported and dropped).
        """
        written = 0
        async with self._flush_lock:
            while self._buffer:
                count = min(self.batch_size, len(self._buffer))
                rows = [self._buffer.popleft() for _ in range(count)]
                written += await self._insert(rows)
        return written

    async def _run(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout=self.flush_interval)
            self._wakeup.clear()
            if self._stopping:
                break
            try:
                await self.flush()
            except Exception:
                # The loop must survive any one failure; the next tick retries.
                logger.exception("request log writer iteration failed")

    async def _insert(self, rows: list[dict[str, Any]]) -> int:
        if not rows:
            return 0
        try:
            await self._execute_insert(rows)
        except IntegrityError:
            # A user deleted between the request and this flush: their rows keep no owner
            # (as ON DELETE SET NULL would have done), the rest of the batch is unaffected.
            try:
                rows = await self._detach_missing_users(rows)
                await self._execute_insert(rows)
            except Exception:
                return self._report_failure(rows)
        except Exception:
            if len(rows) > 1:
                # Find the row the database refuses instead of dropping its neighbours with it.
                return sum([await self._insert([row]) for row in rows])
            return self._report_failure(rows)
        self.written += len(rows)
        return len(rows)

    async def _execute_insert(self, rows: list[dict[str, Any]]) -> None:
        # One statement executed for many rows (the driver batches them), not a multi-row
        # VALUES built per batch: each batch size was a statement of its own to compile, and
        # under load the sizes vary so much that compiling cost ~4% of the process's CPU.
        async with self.database.session() as session:
            await session.execute(_INSERT_LOG, rows)

    async def _detach_missing_users(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        user_ids = {row["user_id"] for row in rows if row["user_id"]}
        if not user_ids:
            return rows
        async with self.database.session() as session:
            existing = set(await session.scalars(select(User.id).where(User.id.in_(user_ids))))
        return [
            row
            if row["user_id"] in existing or row["user_id"] is None
            else {**row, "user_id": None}
            for row in rows
        ]

    def _report_failure(self, rows: list[dict[str, Any]]) -> int:
        self.failed += len(rows)
        logger.exception("request log: could not store %d entries; they are dropped", len(rows))
        return 0
