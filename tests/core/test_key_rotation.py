"""Key rotation round trip over real rows: encrypted under key A, rotated to "B,A", readable
with B alone; resumable after an interruption; undecryptable values reported, not fatal."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from cryptography.fernet import Fernet
from fastapi import FastAPI
from sqlalchemy import select

from app.core.encryption import DecryptionError, Encryptor
from app.core.key_rotation import (
    ENCRYPTED_COLUMNS,
    RotationSummary,
    count_rows,
    rotate_all,
)
from app.db.base import Base
from app.db.session import Database
from app.models import ApiRequestLog, User

COLUMNS = [
    "query_encrypted",
    "request_headers_encrypted",
    "request_body_encrypted",
    "response_body_encrypted",
    "note_encrypted",
]

KEY_A = Fernet.generate_key().decode()
KEY_B = Fernet.generate_key().decode()


@pytest.fixture
def db(app: FastAPI) -> Database:
    database: Database = app.state.db
    return database


def plaintexts(i: int) -> dict[str, str | None]:
    # Row i leaves one column empty (None) so NULLs are exercised too.
    values: dict[str, str | None] = {
        "query_encrypted": f"q={i}",
        "request_headers_encrypted": f'{{"x-row": "{i}"}}',
        "request_body_encrypted": f'{{"prompt": "secret prompt {i}"}}',
        "response_body_encrypted": f'{{"id": "task-{i}"}}',
        "note_encrypted": f"note {i}",
    }
    values[COLUMNS[i % len(COLUMNS)]] = None
    return values


async def insert_rows(db: Database, count: int, encryptor: Encryptor) -> dict[str, dict]:
    """Rows written straight to the table, encrypted under `encryptor`; returns plaintexts."""
    written: dict[str, dict] = {}
    async with db.session() as session:
        for i in range(count):
            plain = plaintexts(i)
            row = ApiRequestLog(
                request_id=str(uuid.uuid4()),
                duration_ms=1.0,
                method="POST",
                path=f"/api/v1/things/{i}",
                status_code=200,
                **{col: encryptor.encrypt_optional(value) for col, value in plain.items()},
            )
            session.add(row)
            await session.flush()
            written[row.id] = plain
    return written


async def stored_rows(db: Database) -> dict[str, dict[str, str | None]]:
    async with db.session() as session:
        rows = (await session.execute(select(ApiRequestLog))).scalars().all()
        return {row.id: {col: getattr(row, col) for col in COLUMNS} for row in rows}


def non_null(written: dict[str, dict]) -> int:
    return sum(v is not None for plain in written.values() for v in plain.values())


def test_registry_lists_the_request_log_columns() -> None:
    registered = dict(ENCRYPTED_COLUMNS)
    assert registered[ApiRequestLog] == COLUMNS


def test_every_encrypted_column_in_the_schema_is_registered() -> None:
    # A table added with a `*_encrypted` column but not registered would be left under the
    # old key, and become unreadable once that key is dropped.
    in_schema = {
        (table.name, column.name)
        for table in Base.metadata.tables.values()
        for column in table.columns
        if column.name.endswith("_encrypted")
    }
    registered = {
        (model.__tablename__, column) for model, columns in ENCRYPTED_COLUMNS for column in columns
    }
    assert in_schema == registered


async def test_rotation_keeps_updated_at(db: Database) -> None:
    before = datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC)
    async with db.session() as session:
        user = User(
            username="rotator",
            email="rotator@example.com",
            password_hash="not-a-real-hash",
            storage_quota_bytes=1,
            webhook_secret_encrypted=Encryptor(KEY_A).encrypt_text("whsec_abc"),
            created_at=before,
            updated_at=before,
        )
        session.add(user)
        await session.flush()
        user_id = user.id

    summary = await rotate_all(db, Encryptor(f"{KEY_B},{KEY_A}"))

    assert summary.rotated == 1
    async with db.session() as session:
        stored = await session.get(User, user_id)
    assert stored is not None
    assert Encryptor(KEY_B).decrypt_text(stored.webhook_secret_encrypted or "") == "whsec_abc"
    assert stored.updated_at == before


async def test_round_trip_from_key_a_to_key_b(db: Database) -> None:
    written = await insert_rows(db, 23, Encryptor(KEY_A))
    assert await count_rows(db) == 23
    progress: list[tuple[str, int]] = []

    summary = await rotate_all(
        db,
        Encryptor(f"{KEY_B},{KEY_A}"),
        batch_size=5,
        progress=lambda t, n: progress.append((t, n)),
    )

    assert summary == RotationSummary(rotated=non_null(written), rows_scanned=23)
    assert progress == [("api_request_logs", n) for n in (5, 5, 5, 5, 3)]
    only_b, only_a = Encryptor(KEY_B), Encryptor(KEY_A)
    stored = await stored_rows(db)
    assert stored.keys() == written.keys()
    for row_id, columns in stored.items():
        for col, token in columns.items():
            assert only_b.decrypt_optional(token) == written[row_id][col]
            if token is not None:
                with pytest.raises(DecryptionError):
                    only_a.decrypt_text(token)

    again = await rotate_all(db, Encryptor(f"{KEY_B},{KEY_A}"), batch_size=5)
    assert (again.rotated, again.already_current, again.failed) == (0, non_null(written), 0)


class Interrupted(Exception):
    pass


async def test_interrupted_run_resumes_and_completes(db: Database) -> None:
    written = await insert_rows(db, 12, Encryptor(KEY_A))
    both = Encryptor(f"{KEY_B},{KEY_A}")

    def stop_after_first_batch(_table: str, _rows: int) -> None:
        raise Interrupted

    with pytest.raises(Interrupted):
        await rotate_all(db, both, batch_size=4, progress=stop_after_first_batch)

    # The first batch was committed on its own; the rest is still under key A.
    stored = await stored_rows(db)
    first_batch = sorted(stored)[:4]
    done = [t for rid in first_batch for t in stored[rid].values() if t is not None]
    assert done
    assert all(both.is_current(t) for t in done)
    pending = [t for rid in sorted(stored)[4:] for t in stored[rid].values() if t is not None]
    assert pending
    assert not any(both.is_current(t) for t in pending)

    resumed = await rotate_all(db, both, batch_size=4)
    assert resumed.already_current == len(done)
    assert resumed.rotated == len(pending)
    assert resumed.rotated + resumed.already_current == non_null(written)
    only_b = Encryptor(KEY_B)
    for row_id, columns in (await stored_rows(db)).items():
        for col, token in columns.items():
            assert only_b.decrypt_optional(token) == written[row_id][col]


async def test_undecryptable_values_are_reported_not_fatal(db: Database) -> None:
    written = await insert_rows(db, 6, Encryptor(KEY_A))
    key_c = Fernet.generate_key().decode()
    foreign = await insert_rows(db, 1, Encryptor(key_c))
    (foreign_id,) = foreign
    async with db.session() as session:
        broken = ApiRequestLog(
            request_id=str(uuid.uuid4()),
            duration_ms=1.0,
            method="GET",
            path="/api/v1/broken",
            status_code=500,
            note_encrypted="this is not a fernet token",
        )
        session.add(broken)
        await session.flush()
        broken_id = broken.id
    before = await stored_rows(db)

    summary = await rotate_all(db, Encryptor(f"{KEY_B},{KEY_A}"), batch_size=3)

    assert summary.rotated == non_null(written)
    assert summary.failed == non_null(foreign) + 1
    assert not summary.ok
    reported = {(f.row_id, f.column) for f in summary.failures}
    assert (broken_id, "note_encrypted") in reported
    assert {rid for rid, _ in reported} == {foreign_id, broken_id}
    assert all(f.table == "api_request_logs" for f in summary.failures)
    messages = [str(f) for f in summary.failures]
    assert any(
        broken_id in m and "note_encrypted" in m and "cannot be decrypted" in m for m in messages
    )
    after = await stored_rows(db)
    # Values nobody can read are left exactly as they were.
    assert after[broken_id] == before[broken_id]
    assert after[foreign_id] == before[foreign_id]
    only_b = Encryptor(KEY_B)
    for row_id, plain in written.items():
        for col, value in plain.items():
            assert only_b.decrypt_optional(after[row_id][col]) == value


async def test_empty_database_and_bad_arguments(db: Database) -> None:
    summary = await rotate_all(db, Encryptor(KEY_A))
    assert summary == RotationSummary()
    with pytest.raises(ValueError, match="batch_size"):
        await rotate_all(db, Encryptor(KEY_A), batch_size=0)
    with pytest.raises(ValueError, match="unknown encrypted column"):
        await rotate_all(db, Encryptor(KEY_A), registry=[(User, ["no_such_column"])])
