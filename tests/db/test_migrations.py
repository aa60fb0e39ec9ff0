"""Migrations are the only schema source: they must match the models and run both ways."""

from __future__ import annotations

from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection

from app.db.base import Base
from app.db.migrate import alembic_config, current_revision, head_revision
from app.db.session import create_engine


def _diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    diffs = compare_metadata(context, Base.metadata)
    # Expression indexes (lower(username)) are not reflected identically on every backend.
    return [d for d in diffs if not (isinstance(d, tuple) and "lower" in str(d[1]))]


async def test_models_match_migrations(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            diffs = await conn.run_sync(_diff)
        assert diffs == []
        assert await current_revision(engine) == head_revision()
    finally:
        await engine.dispose()


def test_downgrade_to_base_and_back(tmp_path: Any) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'roundtrip.db'}"
    config = alembic_config(url)
    command.upgrade(config, "head")
    command.downgrade(config, "base")
    command.upgrade(config, "head")
