"""The batched writer: redaction and encryption before storage, batching, shutdown, retention."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import delete, event, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.config import Settings
from app.core.encryption import Encryptor
from app.core.request_log.retention import purge_expired_logs
from app.core.request_log.writer import RequestLogWriter
from app.db.session import Database
from app.models import ApiRequestLog
from tests.core.request_log.helpers import make_entry, raw_log_rows, wait_until


@pytest.fixture
async def database(settings: Settings, cleanup_engine: AsyncEngine) -> AsyncIterator[Database]:
    db = Database(settings.resolved_database_url)
    try:
        yield db
    finally:
        await db.dispose()
        async with cleanup_engine.begin() as conn:
            await conn.execute(delete(ApiRequestLog))


@pytest.fixture
def encryptor(settings: Settings) -> Encryptor:
    return Encryptor(settings.storage_master_key or "")


def _settings(settings: Settings, **changes: Any) -> Settings:
    return settings.model_copy(update=changes)


async def _count(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(ApiRequestLog)) or 0)


async def test_stop_flushes_everything(
    database: Database, encryptor: Encryptor, settings: Settings, cleanup_engine: AsyncEngine
) -> None:
    # An interval far longer than the test: only stop() can have written these rows.
    writer = RequestLogWriter(
        database,
        encryptor,
        _settings(settings, request_log_flush_interval=3600, request_log_batch_size=1000),
    )
    await writer.start()
    for _ in range(37):
        writer.submit(make_entry())
    assert await _count(cleanup_engine) == 0
    await writer.stop()
    assert await _count(cleanup_engine) == 37
    assert writer.pending == 0
    assert writer.written == 37


async def test_one_executemany_insert_per_batch(
    database: Database, encryptor: Encryptor, settings: Settings
) -> None:
    statements: list[tuple[str, bool]] = []

    def record(
        _conn: Any, _cursor: Any, statement: str, _params: Any, _ctx: Any, many: bool
    ) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO API_REQUEST_LOGS"):
            statements.append((statement, many))

    event.listen(database.engine.sync_engine, "before_cursor_execute", record)
    writer = RequestLogWriter(database, encryptor, _settings(settings, request_log_batch_size=10))
    for _ in range(25):
        writer.submit(make_entry())
    assert await writer.flush() == 25
    # One cached statement, executed for all the rows of a batch (25 entries, batches of 10).
    assert len(statements) == 3
    assert all(many for _, many in statements)
    assert len({statement for statement, _ in statements}) == 1


async def test_background_flush(
    database: Database, encryptor: Encryptor, settings: Settings, cleanup_engine: AsyncEngine
) -> None:
    writer = RequestLogWriter(database, encryptor, settings)
    await writer.start()
    try:
        writer.submit(make_entry())

        async def stored() -> bool:
            return await _count(cleanup_engine) == 1

        await wait_until(stored)
    finally:
        await writer.stop()


async def test_overflow_drops_oldest_with_warning(
    database: Database,
    encryptor: Encryptor,
    settings: Settings,
    cleanup_engine: AsyncEngine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    writer = RequestLogWriter(database, encryptor, settings, max_buffer=5)
    entries = [make_entry() for _ in range(8)]
    with caplog.at_level(logging.WARNING, logger="app.core.request_log.writer"):
        for entry in entries:
            writer.submit(entry)
    assert writer.pending == 5
    assert writer.dropped == 3
    assert any("buffer full" in record.getMessage() for record in caplog.records)
    await writer.flush()
    stored = {row["request_id"] for row in await raw_log_rows(cleanup_engine)}
    assert stored == {entry.request_id for entry in entries[3:]}


async def test_redacted_and_encrypted_before_storage(
    database: Database, encryptor: Encryptor, settings: Settings, cleanup_engine: AsyncEngine
) -> None:
    writer = RequestLogWriter(database, encryptor, settings)
    body = b'{"username": "alice", "password": "pw-hunter2-pw"}'
    writer.submit(
        make_entry(
            method="POST",
            query_string=b"token=qs-secret-value&page=1",
            request_content_type="application/json",
            request_body=body,
            request_bytes=len(body),
            response_content_type="application/json",
            response_body=b'{"access_token": "resp-secret-token"}',
            response_bytes=37,
        )
    )
    await writer.flush()
    (row,) = await raw_log_rows(cleanup_engine)
    raw = repr(row)
    for secret in ("pw-hunter2-pw", "qs-secret-value", "resp-secret-token", "s3cr3t", "alice"):
        assert secret not in raw
    assert encryptor.decrypt_text(row["query_encrypted"]) == "token=<redacted>&page=1"
    headers = encryptor.decrypt_json(row["request_headers_encrypted"])
    assert headers == {"user-agent": "pytest", "authorization": "<redacted>"}
    request = encryptor.decrypt_json(row["request_body_encrypted"])
    assert request["truncated"] is False
    assert '"password":"<redacted>"' in request["body"]
    assert '"username":"alice"' in request["body"]
    response = encryptor.decrypt_json(row["response_body_encrypted"])
    assert response["body"] == '{"access_token":"<redacted>"}'
    assert row["user_agent"] == "pytest"


async def test_entry_of_deleted_user_is_kept_without_owner(
    database: Database, encryptor: Encryptor, settings: Settings, cleanup_engine: AsyncEngine
) -> None:
    writer = RequestLogWriter(database, encryptor, settings)
    ghost = make_entry(user_id=str(uuid.uuid4()))
    anonymous = make_entry()
    writer.submit(ghost)
    writer.submit(anonymous)
    assert await writer.flush() == 2
    rows = {row["request_id"]: row for row in await raw_log_rows(cleanup_engine)}
    assert set(rows) == {ghost.request_id, anonymous.request_id}
    assert rows[ghost.request_id]["user_id"] is None


async def test_long_fields_are_clipped_to_columns(
    database: Database, encryptor: Encryptor, settings: Settings, cleanup_engine: AsyncEngine
) -> None:
    writer = RequestLogWriter(database, encryptor, settings)
    writer.submit(
        make_entry(
            path="/api/" + "p" * 5000,
            request_headers=[(b"user-agent", b"u" * 2000)],
        )
    )
    assert await writer.flush() == 1
    (row,) = await raw_log_rows(cleanup_engine)
    assert len(row["path"]) == 2048
    assert len(row["user_agent"]) == 512


async def test_purge_expired_logs_in_batches(
    database: Database, encryptor: Encryptor, settings: Settings, cleanup_engine: AsyncEngine
) -> None:
    now = datetime.now(UTC)
    writer = RequestLogWriter(database, encryptor, settings)
    old = [make_entry(started_at=now - timedelta(days=31, minutes=i)) for i in range(5)]
    recent = [make_entry(started_at=now - timedelta(days=29)), make_entry(started_at=now)]
    for entry in old + recent:
        writer.submit(entry)
    await writer.flush()

    assert await purge_expired_logs(database, 30, batch_size=2) == 5
    remaining = {row["request_id"] for row in await raw_log_rows(cleanup_engine)}
    assert remaining == {entry.request_id for entry in recent}
    assert await purge_expired_logs(database, 30, batch_size=2) == 0


async def test_purge_rejects_nonsense(database: Database) -> None:
    with pytest.raises(ValueError, match="retention_days"):
        await purge_expired_logs(database, 0)


class _BrokenEncryptor(Encryptor):
    """Fails on one marked note, as a broken entry would."""

    def encrypt_optional(self, text: str | None) -> str | None:
        if text == "unencryptable":
            raise ValueError("cannot encrypt this entry")
        return super().encrypt_optional(text)


async def test_an_entry_that_cannot_be_prepared_is_counted_and_the_rest_written(
    database: Database, settings: Settings, cleanup_engine: AsyncEngine
) -> None:
    writer = RequestLogWriter(
        database, _BrokenEncryptor(settings.storage_master_key or ""), settings
    )
    writer.submit(make_entry())
    broken = make_entry()
    broken.note = "unencryptable"
    writer.submit(broken)  # never raises into the request that logged it
    writer.submit(make_entry())
    # Rows are prepared (encrypted) as entries arrive, not in the flush.
    assert (writer.pending, writer.failed) == (2, 1)
    assert await writer.flush() == 2
    assert await _count(cleanup_engine) == 2
