"""Fixtures of the backup tests: a source database per test (a copy of a migrated template, on
the backend under test), its settings, media store and a handle to insert rows."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.core.config import Settings
from app.core.encryption import Encryptor
from app.core.media.storage import LocalMediaStorage
from app.db.session import Database
from tests.core.backup.helpers import DatabaseFactory, make_settings, require_pg_tools, use_postgres


@pytest.fixture(scope="session")
def backup_template(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # `database_url` first: it skips (or fails in CI) when PostgreSQL is asked for but absent.
    if use_postgres():
        require_pg_tools()
    template = DatabaseFactory.make_template(tmp_path_factory.mktemp("backup-template"))
    yield template
    DatabaseFactory.drop_template(template)


@pytest.fixture
async def databases(backup_template: str, tmp_path: Path) -> AsyncIterator[DatabaseFactory]:
    factory = DatabaseFactory(tmp_path, backup_template)
    yield factory
    await factory.cleanup()


@dataclass
class Source:
    url: str
    settings: Settings
    database: Database
    storage: LocalMediaStorage
    encryptor: Encryptor


@pytest.fixture
async def source(
    databases: DatabaseFactory, tmp_path: Path, master_key: str
) -> AsyncIterator[Source]:
    url = await databases.create()
    settings = make_settings(url, tmp_path / "source", master_key)
    database = Database(url)
    try:
        yield Source(
            url=url,
            settings=settings,
            database=database,
            storage=LocalMediaStorage(settings.media_dir),
            encryptor=Encryptor(master_key),
        )
    finally:
        await database.dispose()
