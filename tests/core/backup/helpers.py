"""Shared by the backup tests (core and CLI): fresh databases on the backend under test,
realistic rows inserted through the models, and whole-database comparisons."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Table, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from app.core.backup.errors import BackupToolMissing
from app.core.backup.pgtools import find_pg_tool
from app.core.config import Settings
from app.core.encryption import Encryptor
from app.core.key_rotation import ENCRYPTED_COLUMNS
from app.core.media.storage import LocalMediaStorage
from app.db.base import Base
from app.db.migrate import upgrade_to_head
from app.db.session import Database
from app.models import (
    ApiRequestLog,
    GenerationTask,
    Media,
    User,
    WebhookDelivery,
)
from tests.conftest import DEFAULT_PG_URL, IN_CI

JWT_SECRET = "backup-test-jwt-secret-" + "z" * 40


def use_postgres() -> bool:
    return os.environ.get("TEST_DB", "sqlite").lower() in {"postgres", "postgresql", "pg"}


def admin_url() -> str:
    return os.environ.get("TEST_DATABASE_URL", DEFAULT_PG_URL)


def require_pg_tools() -> None:
    """pg_dump/pg_restore must exist for the PostgreSQL run: a failure in CI, a skip elsewhere."""
    try:
        find_pg_tool("pg_dump")
        find_pg_tool("pg_restore")
    except BackupToolMissing as exc:
        if IN_CI:
            pytest.fail(f"{exc} (CI=true: the PostgreSQL client tools are required)")
        pytest.skip(f"{exc} (skipping PostgreSQL backup tests; set CI=true to make this fail)")


async def _pg_execute(sql: str) -> None:
    engine = create_async_engine(admin_url(), poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(sql))
    finally:
        await engine.dispose()


class DatabaseFactory:
    """Fresh databases for one test: migrated (copies of a template) or blank."""

    def __init__(self, tmp_dir: Path, template: str) -> None:
        self.tmp_dir = tmp_dir
        self.template = template  # SQLite: a file path; PostgreSQL: a database name
        self.created: list[str] = []

    @classmethod
    def make_template(cls, tmp_dir: Path) -> str:
        if not use_postgres():
            path = tmp_dir / "template.db"
            upgrade_to_head(f"sqlite+aiosqlite:///{path}")
            return str(path)
        name = f"genapi_bk_tpl_{uuid.uuid4().hex[:10]}"
        asyncio.run(_pg_execute(f'CREATE DATABASE "{name}"'))
        upgrade_to_head(cls._pg_url(name))
        return name

    @classmethod
    def drop_template(cls, template: str) -> None:
        if use_postgres():
            asyncio.run(_pg_execute(f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)'))

    @staticmethod
    def _pg_url(name: str) -> str:
        return make_url(admin_url()).set(database=name).render_as_string(hide_password=False)

    async def create(self, *, migrated: bool = True) -> str:
        name = f"genapi_bk_{uuid.uuid4().hex[:10]}"
        if not use_postgres():
            path = self.tmp_dir / f"{name}.db"
            if migrated:
                shutil.copyfile(self.template, path)
            return f"sqlite+aiosqlite:///{path}"
        template = f' TEMPLATE "{self.template}"' if migrated else ""
        await _pg_execute(f'CREATE DATABASE "{name}"{template}')
        self.created.append(name)
        return self._pg_url(name)

    async def cleanup(self) -> None:
        for name in self.created:
            await _pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def make_settings(database_url: str, root: Path, master_key: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "env": "test",
        "database_url": database_url,
        "data_dir": root / "data",
        "backup_dir": root / "backups",
        "jwt_secret_key": JWT_SECRET,
        "storage_master_key": master_key,
        "bcrypt_rounds": 4,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@dataclass
class Seeded:
    user_ids: list[str] = field(default_factory=list)
    task_ids: list[str] = field(default_factory=list)
    log_ids: list[str] = field(default_factory=list)
    # storage key -> content of every file a `stored` media row points at
    files: dict[str, bytes] = field(default_factory=dict)


async def put_bytes(storage: LocalMediaStorage, key: str, data: bytes) -> None:
    temp = storage.new_temp_path()
    await asyncio.to_thread(temp.write_bytes, data)
    await storage.put_file(temp, key)


async def add_logs(database: Database, encryptor: Encryptor, user_id: str, count: int) -> list[str]:
    ids: list[str] = []
    async with database.session() as session:
        for index in range(count):
            row = ApiRequestLog(
                request_id=str(uuid.uuid4()),
                duration_ms=12.5 + index,
                method="POST",
                path="/api/v1/videos",
                status_code=201,
                user_id=user_id,
                client_ip="203.0.113.9",
                query_encrypted=encryptor.encrypt_text(f"page={index}"),
                request_headers_encrypted=encryptor.encrypt_json({"content-type": "json"}),
                request_body_encrypted=encryptor.encrypt_json({"prompt": f"log body {index}"}),
                response_body_encrypted=encryptor.encrypt_json({"id": index}),
                tags=["backup-test"],
            )
            session.add(row)
            await session.flush()
            ids.append(row.id)
    return ids


async def seed(
    database: Database,
    encryptor: Encryptor,
    storage: LocalMediaStorage,
    *,
    users: int = 2,
    tasks_per_user: int = 3,
    logs_per_user: int = 5,
) -> Seeded:
    """Users, tasks with encrypted payloads, stored media with real files (and thumbnails),
    media rows without files, webhook deliveries and request logs."""
    seeded = Seeded()
    now = datetime.now(UTC)
    async with database.session() as session:
        for u in range(users):
            user = User(
                username=f"backup{u}{uuid.uuid4().hex[:6]}",
                email=f"backup{u}{uuid.uuid4().hex[:6]}@example.com",
                password_hash="$2b$04$" + "x" * 53,
                storage_quota_bytes=1024**3,
                webhook_secret_encrypted=encryptor.encrypt_text(f"whsec_{uuid.uuid4().hex}"),
            )
            session.add(user)
            await session.flush()
            seeded.user_ids.append(user.id)
            for t in range(tasks_per_user):
                task = GenerationTask(
                    user_id=user.id,
                    kind="video",
                    model="sora-2",
                    adapter="sora",
                    status="succeeded",
                    submit_state="submitted",
                    progress=100,
                    request_encrypted=encryptor.encrypt_json(
                        {"prompt": f"a lighthouse in a storm #{u}-{t}", "seconds": 4}
                    ),
                    response_encrypted=encryptor.encrypt_json({"status": "completed"}),
                    upstream_key_encrypted=encryptor.encrypt_text("sk-upstream-secret"),
                    deadline_at=now + timedelta(hours=2),
                    tags=["storm", f"t{t}"],
                    completed_at=now,
                )
                session.add(task)
                await session.flush()
                seeded.task_ids.append(task.id)
                content = os.urandom(40_000 + 1000 * t)
                thumb = os.urandom(3_000 + t)
                key = f"{user.id}/{uuid.uuid4()}.mp4"
                thumb_key = key.removesuffix(".mp4") + ".thumb.jpg"
                await put_bytes(storage, key, content)
                await put_bytes(storage, thumb_key, thumb)
                seeded.files[key] = content
                seeded.files[thumb_key] = thumb
                session.add(
                    Media(
                        task_id=task.id,
                        user_id=user.id,
                        kind="video",
                        state="stored",
                        storage_key=key,
                        thumbnail_key=thumb_key,
                        content_type="video/mp4",
                        bytes=len(content),
                        thumbnail_bytes=len(thumb),
                        sha256=hashlib.sha256(content).hexdigest(),
                        source_encrypted=encryptor.encrypt_text("https://cdn.example/signed?x=1"),
                    )
                )
                session.add(
                    Media(
                        task_id=task.id,
                        user_id=user.id,
                        kind="video",
                        position=1,
                        state="not_stored",
                        reason="quota_exceeded",
                        bytes=123,
                        source_encrypted=encryptor.encrypt_text("https://cdn.example/other"),
                    )
                )
                session.add(
                    WebhookDelivery(
                        task_id=task.id,
                        user_id=user.id,
                        event_type="task.succeeded",
                        url_encrypted=encryptor.encrypt_text("https://hooks.example/x"),
                        payload_encrypted=encryptor.encrypt_json({"task": task.id}),
                    )
                )
    for user_id in seeded.user_ids:
        seeded.log_ids += await add_logs(database, encryptor, user_id, logs_per_user)
    return seeded


def _table(model: type[Base]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


async def all_rows(database_url: str) -> dict[str, list[dict[str, Any]]]:
    """Every row of every model table, in primary-key order."""
    engine = create_async_engine(database_url, poolclass=NullPool)
    rows: dict[str, list[dict[str, Any]]] = {}
    try:
        async with engine.connect() as conn:
            for table in Base.metadata.sorted_tables:
                result = await conn.execute(select(table).order_by(*table.primary_key.columns))
                rows[table.name] = [dict(row._mapping) for row in result]
    finally:
        await engine.dispose()
    return rows


async def decrypt_all(database_url: str, encryptor: Encryptor) -> dict[str, int]:
    """Decrypt every registered encrypted value (raises on the first failure); counts per
    table of values decrypted."""
    engine = create_async_engine(database_url, poolclass=NullPool)
    counts: dict[str, int] = {}
    try:
        async with engine.connect() as conn:
            for model, names in ENCRYPTED_COLUMNS:
                table = _table(model)
                result = await conn.execute(select(*[table.c[name] for name in names]))
                for row in result:
                    for value in row:
                        if value is not None:
                            encryptor.decrypt_bytes(value)
                            counts[table.name] = counts.get(table.name, 0) + 1
    finally:
        await engine.dispose()
    return counts


async def read_file(storage: LocalMediaStorage, key: str) -> bytes:
    return b"".join([chunk async for chunk in storage.open_range(key)])


def flip_byte(path: Path, offset: int) -> None:
    with path.open("r+b") as handle:
        handle.seek(offset)
        value = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([value[0] ^ 0x01]))
