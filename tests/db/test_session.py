"""Connection pool settings: DATABASE_POOL_SIZE / DATABASE_MAX_OVERFLOW /
DATABASE_POOL_RECYCLE_SECONDS reach PostgreSQL engines; SQLite engines keep their own pool."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from app.core.config import Settings
from app.db.session import Database, PoolConfig, create_engine

PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"


def _settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


def test_defaults() -> None:
    settings = _settings()
    assert settings.database_pool_size == 20
    assert settings.database_max_overflow == 10
    assert settings.database_pool_recycle_seconds == 1800
    assert PoolConfig.from_settings(settings) == PoolConfig()


def test_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_POOL_SIZE", "7")
    monkeypatch.setenv("DATABASE_MAX_OVERFLOW", "0")
    monkeypatch.setenv("DATABASE_POOL_RECYCLE_SECONDS", "600")
    pool = PoolConfig.from_settings(_settings())
    assert (pool.size, pool.max_overflow, pool.recycle_seconds) == (7, 0, 600)


@pytest.mark.parametrize(
    "values",
    [
        {"database_pool_size": 0},
        {"database_max_overflow": -1},
        {"database_pool_recycle_seconds": 0},
    ],
)
def test_out_of_range_values_are_refused(values: dict[str, int]) -> None:
    with pytest.raises(ValidationError):
        _settings(**values)


async def test_postgres_engine_uses_the_configured_pool() -> None:
    # Creating an engine does not connect, so this needs no server.
    settings = _settings(
        database_url=PG_URL,
        database_pool_size=3,
        database_max_overflow=2,
        database_pool_recycle_seconds=900,
    )
    database = Database.for_settings(settings)
    try:
        pool = database.engine.sync_engine.pool
        assert pool.size() == 3  # type: ignore[attr-defined]
        assert pool._max_overflow == 2  # type: ignore[attr-defined]
        assert pool._recycle == 900
        assert pool._timeout == PoolConfig().timeout_seconds  # type: ignore[attr-defined]
    finally:
        await database.dispose()


async def test_postgres_engine_defaults_without_settings() -> None:
    engine = create_engine(PG_URL)
    try:
        pool = engine.sync_engine.pool
        assert pool.size() == 20  # type: ignore[attr-defined]
        assert pool._max_overflow == 10  # type: ignore[attr-defined]
        assert pool._recycle == 1800
    finally:
        await engine.dispose()


async def test_sqlite_engine_ignores_the_pool_settings(tmp_path: Path) -> None:
    settings = _settings(data_dir=tmp_path, database_pool_size=1, database_max_overflow=0)
    database = Database.for_settings(settings)
    try:
        assert database.is_sqlite
        pool = database.engine.sync_engine.pool
        # SQLAlchemy's own choice for file databases, not ours.
        assert getattr(pool, "_max_overflow", None) != 0
        assert pool._recycle == -1
    finally:
        await database.dispose()
