"""Consistent database snapshots and their restore, for SQLite and PostgreSQL.

SQLite: the online backup API copies the live file in one step under a read transaction, so the
copy is a consistent snapshot while the service keeps writing (WAL lets writers go on).

PostgreSQL: a REPEATABLE READ transaction exports its snapshot; pg_dump runs inside that same
snapshot (`--snapshot`), and the row counts and media list of the manifest are read in it too,
so the manifest describes exactly what the dump holds.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from app.core.backup.errors import BackupError
from app.core.backup.pgtools import dump_tables, libpq_env, run_pg_tool
from app.core.backup.progress import NullProgress, Progress
from app.db.session import SQLITE_BUSY_TIMEOUT_MS, is_sqlite_url

logger = logging.getLogger(__name__)

Backend = Literal["sqlite", "postgresql"]
SQLITE_DUMP_NAME = "database.sqlite"
POSTGRES_DUMP_NAME = "database.dump"
ALEMBIC_TABLE = "alembic_version"


@dataclass(frozen=True)
class MediaRef:
    """A media file a database row points at."""

    key: str
    # Known content hash and size (from the row) let an incremental run skip reading the file.
    sha256: str | None
    size: int | None
    # Files of `stored` rows must exist; those of `pending` rows may legitimately not exist yet.
    required: bool


@dataclass
class DatabaseDescription:
    row_counts: dict[str, int]
    schema_revision: str | None
    media: list[MediaRef] = field(default_factory=list)
    server_version: str | None = None


def backend_of(database_url: str) -> Backend:
    if is_sqlite_url(database_url):
        return "sqlite"
    if make_url(database_url).drivername.startswith("postgresql"):
        return "postgresql"
    raise BackupError(f"unsupported database for backups: {make_url(database_url).drivername}")


def sqlite_path(database_url: str) -> Path:
    database = make_url(database_url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        raise BackupError("SQLite backups need a database file (DATABASE_URL names no file)")
    return Path(database)


def plain_engine(database_url: str) -> AsyncEngine:
    """An engine without the service's connection hooks (no WAL switch on a scratch copy, no
    pool to keep connections open after we are done)."""
    return create_async_engine(database_url, poolclass=NullPool)


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path.resolve()}"


def _quote(conn: AsyncConnection, name: str) -> str:
    return conn.dialect.identifier_preparer.quote(name)


async def table_names(conn: AsyncConnection) -> list[str]:
    names = await conn.run_sync(lambda sync_conn: inspect(sync_conn).get_table_names())
    return sorted(name for name in names if not name.startswith("sqlite_"))


async def count_rows(conn: AsyncConnection) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name in await table_names(conn):
        result = await conn.execute(text(f"SELECT count(*) FROM {_quote(conn, name)}"))
        counts[name] = int(result.scalar_one())
    return counts


async def _media_refs(conn: AsyncConnection) -> list[MediaRef]:
    rows = await conn.execute(
        text(
            "SELECT storage_key, thumbnail_key, sha256, bytes, thumbnail_bytes, state FROM media "
            "WHERE storage_key IS NOT NULL OR thumbnail_key IS NOT NULL"
        )
    )
    refs: dict[str, MediaRef] = {}
    for key, thumb_key, sha256, size, thumb_size, state in rows.all():
        stored = state == "stored"
        if key and key not in refs:
            refs[key] = MediaRef(
                key, sha256 if stored else None, int(size) if stored else None, stored
            )
        if thumb_key and thumb_key not in refs:
            refs[thumb_key] = MediaRef(thumb_key, None, int(thumb_size or 0) or None, stored)
    return sorted(refs.values(), key=lambda ref: ref.key)


async def describe(conn: AsyncConnection) -> DatabaseDescription:
    """Row counts, schema revision and media references, as seen by `conn`'s transaction."""
    tables = await table_names(conn)
    counts = await count_rows(conn)
    revision = None
    if ALEMBIC_TABLE in tables:
        result = await conn.execute(text(f"SELECT version_num FROM {ALEMBIC_TABLE}"))
        revision = result.scalar_one_or_none()
    media = await _media_refs(conn) if "media" in tables else []
    server_version = None
    if conn.dialect.name == "postgresql":
        server_version = str((await conn.execute(text("SHOW server_version"))).scalar_one())
    return DatabaseDescription(counts, revision, media, server_version)


# --- snapshot -------------------------------------------------------------------------------


def _sqlite_copy(source: Path, dest: Path) -> None:
    if not source.is_file():
        raise BackupError(f"SQLite database {source} does not exist")
    # mode=rw: never create an empty database where the real one was expected.
    src = sqlite3.connect(
        f"file:{source.resolve()}?mode=rw", uri=True, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000
    )
    try:
        dst = sqlite3.connect(dest)
        try:
            # pages=-1: one step under one read transaction. A step-wise copy restarts whenever
            # another connection writes, so under steady load it could never finish.
            src.backup(dst, pages=-1)
            # A self-contained file: no -wal/-shm companions needed to read the copy.
            dst.execute("PRAGMA journal_mode=DELETE")
        finally:
            dst.close()
    finally:
        src.close()


async def _snapshot_sqlite(
    database_url: str, work_dir: Path, progress: Progress
) -> tuple[Path, DatabaseDescription]:
    source = sqlite_path(database_url)
    dest = work_dir / SQLITE_DUMP_NAME
    progress.phase("database snapshot", None)
    await asyncio.to_thread(_sqlite_copy, source, dest)
    progress.advance(dest.stat().st_size)
    engine = plain_engine(sqlite_url(dest))
    try:
        async with engine.connect() as conn:
            description = await describe(conn)
    finally:
        await engine.dispose()
    return dest, description


async def _snapshot_postgres(
    database_url: str, work_dir: Path, progress: Progress
) -> tuple[Path, DatabaseDescription]:
    dest = work_dir / POSTGRES_DUMP_NAME
    env = libpq_env(database_url)
    engine = plain_engine(database_url)
    progress.phase("database dump", None)
    try:
        async with engine.connect() as conn:
            await conn.execution_options(
                isolation_level="REPEATABLE READ", postgresql_readonly=True
            )
            snapshot = (await conn.execute(text("SELECT pg_export_snapshot()"))).scalar_one()
            description = await describe(conn)
            # The exporting transaction stays open until pg_dump has finished with the snapshot.
            await run_pg_tool(
                "pg_dump",
                [
                    "--format=custom",
                    f"--snapshot={snapshot}",
                    "--no-password",
                    f"--file={dest}",
                ],
                env,
            )
            await conn.rollback()
    except SQLAlchemyError as exc:
        raise BackupError(f"cannot read the database: {_first_line(exc)}") from exc
    finally:
        await engine.dispose()
    progress.advance(dest.stat().st_size)
    return dest, description


async def snapshot_database(
    database_url: str, work_dir: Path, progress: Progress | None = None
) -> tuple[Path, DatabaseDescription]:
    """Write a consistent copy of the database into `work_dir` and describe what it holds."""
    progress = progress or NullProgress()
    if backend_of(database_url) == "sqlite":
        return await _snapshot_sqlite(database_url, work_dir, progress)
    return await _snapshot_postgres(database_url, work_dir, progress)


# --- restore --------------------------------------------------------------------------------


def _first_line(exc: BaseException) -> str:
    message = str(exc)
    return message.splitlines()[0] if message else type(exc).__name__


async def database_has_rows(database_url: str) -> bool:
    """True when any table but Alembic's holds a row (a freshly migrated database is empty)."""
    if backend_of(database_url) == "sqlite" and not sqlite_path(database_url).exists():
        return False
    engine = plain_engine(database_url)
    try:
        async with engine.connect() as conn:
            for name in await table_names(conn):
                if name == ALEMBIC_TABLE:
                    continue
                query = text(f"SELECT 1 FROM {_quote(conn, name)} LIMIT 1")
                if (await conn.execute(query)).first() is not None:
                    return True
        return False
    except SQLAlchemyError as exc:
        raise BackupError(f"cannot inspect the target database: {_first_line(exc)}") from exc
    finally:
        await engine.dispose()


def _sqlite_restore(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    src = sqlite3.connect(f"file:{source.resolve()}?mode=ro", uri=True)
    try:
        dst = sqlite3.connect(target, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000)
        try:
            # The backup API replaces the target's content page by page inside one transaction:
            # a failure leaves the old database intact. Rollback-journal mode first, because a
            # WAL target refuses a copy whose page size differs.
            dst.execute("PRAGMA journal_mode=DELETE")
            src.backup(dst, pages=-1)
        finally:
            dst.close()
    finally:
        src.close()


async def _restore_postgres(dump_file: Path, target_url: str) -> None:
    env = libpq_env(target_url)
    dumped = await dump_tables(dump_file, env)
    engine = plain_engine(target_url)
    try:
        async with engine.begin() as conn:
            # Tables the dump does not know (a newer schema in the target) would survive
            # --clean and then block the migration to head.
            extras = [name for name in await table_names(conn) if name not in dumped]
            for name in extras:
                await conn.execute(text(f"DROP TABLE IF EXISTS {_quote(conn, name)} CASCADE"))
    except SQLAlchemyError as exc:
        raise BackupError(f"cannot prepare the target database: {_first_line(exc)}") from exc
    finally:
        await engine.dispose()
    database = make_url(target_url).database or ""
    await run_pg_tool(
        "pg_restore",
        [
            "--clean",
            "--if-exists",
            "--no-owner",
            "--no-privileges",
            "--single-transaction",
            "--exit-on-error",
            "--no-password",
            f"--dbname={database}",
            str(dump_file),
        ],
        env,
    )


async def restore_database(dump_file: Path, backend: Backend, target_url: str) -> None:
    """Replace the target's content with the dump's. The caller has checked it may."""
    target_backend = backend_of(target_url)
    if target_backend != backend:
        raise BackupError(
            f"this backup holds a {backend} database and DATABASE_URL is {target_backend}; "
            "restore into the same kind of database"
        )
    if backend == "sqlite":
        try:
            await asyncio.to_thread(_sqlite_restore, dump_file, sqlite_path(target_url))
        except sqlite3.Error as exc:
            raise BackupError(f"SQLite restore failed: {exc}") from exc
    else:
        await _restore_postgres(dump_file, target_url)


async def read_row_counts(database_url: str) -> dict[str, int]:
    engine = plain_engine(database_url)
    try:
        async with engine.connect() as conn:
            return await count_rows(conn)
    finally:
        await engine.dispose()


@asynccontextmanager
async def scratch_database(like_url: str, work_dir: Path) -> AsyncIterator[str]:
    """A new, empty database of the same kind as `like_url`, dropped afterwards.

    PostgreSQL: created on the same server (the configured role needs CREATEDB).
    """
    if backend_of(like_url) == "sqlite":
        with tempfile.TemporaryDirectory(prefix="verify-", dir=work_dir) as directory:
            yield sqlite_url(Path(directory) / "scratch.db")
        return
    name = f"genapi_verify_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(like_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
    except SQLAlchemyError as exc:
        await admin.dispose()
        raise BackupError(
            f"cannot create a scratch database to verify into (the database role needs "
            f"CREATEDB): {_first_line(exc)}"
        ) from exc
    try:
        yield make_url(like_url).set(database=name).render_as_string(hide_password=False)
    finally:
        try:
            async with admin.connect() as conn:
                await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        except SQLAlchemyError:
            logger.warning("could not drop the scratch database %s; drop it by hand", name)
        finally:
            await admin.dispose()
