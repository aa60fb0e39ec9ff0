"""Engine and session factory, plus the request-scoped session dependency's unit of work."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

if TYPE_CHECKING:
    from app.core.config import Settings

SQLITE_BUSY_TIMEOUT_MS = 30_000
AFTER_COMMIT = "after_commit"


def after_commit(session: AsyncSession, callback: Callable[[], None]) -> None:
    """Run `callback` once the session's current unit of work has committed."""
    session.info.setdefault(AFTER_COMMIT, []).append(callback)


def run_after_commit(session: AsyncSession) -> None:
    for callback in session.info.pop(AFTER_COMMIT, []):
        callback()


async def commit(session: AsyncSession) -> None:
    """Commit now and run the after-commit callbacks (before a long wait, for instance)."""
    await session.commit()
    run_after_commit(session)


def is_sqlite_url(url: str) -> bool:
    return url.startswith("sqlite")


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # WAL lets readers proceed during a write; busy_timeout queues writers instead of
        # failing with "database is locked" under concurrency.
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        # BEGIN IMMEDIATE takes the write lock up front, so read-then-write transactions
        # cannot deadlock into SQLITE_BUSY on upgrade (pysqlite's deferred BEGIN would).
        conn.exec_driver_sql("BEGIN IMMEDIATE")


@dataclass(frozen=True)
class PoolConfig:
    """Connection pool of a PostgreSQL engine (SQLite engines keep SQLAlchemy's own pool).

    One per process: a fleet of N processes may hold N x (size + max_overflow) connections, which
    must stay below the server's `max_connections` (README, "Several processes").
    """

    size: int = 20
    max_overflow: int = 10
    # No pre-ping (a round trip per checkout); recycling bounds connection age instead.
    recycle_seconds: int = 1800
    # How long a checkout waits for a free connection before `sqlalchemy.exc.TimeoutError`
    # (answered as 503 database_unavailable); SQLAlchemy's default.
    timeout_seconds: float = 30.0

    @classmethod
    def from_settings(cls, settings: Settings) -> PoolConfig:
        return cls(
            size=settings.database_pool_size,
            max_overflow=settings.database_max_overflow,
            recycle_seconds=settings.database_pool_recycle_seconds,
        )


def create_engine(url: str, *, echo: bool = False, pool: PoolConfig | None = None) -> AsyncEngine:
    """The service's engine for `url`; `pool` sizes PostgreSQL's pool (defaults: `PoolConfig`)."""
    kwargs: dict[str, Any]
    if is_sqlite_url(url):
        kwargs = {"echo": echo, "connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}}
    else:
        pool = pool or PoolConfig()
        kwargs = {
            "echo": echo,
            "pool_size": pool.size,
            "max_overflow": pool.max_overflow,
            "pool_recycle": pool.recycle_seconds,
            "pool_timeout": pool.timeout_seconds,
        }
    engine = create_async_engine(url, **kwargs)
    if is_sqlite_url(url):
        # Hand transaction control to our "begin" hook (see _on_begin).
        @event.listens_for(engine.sync_engine, "connect")
        def _disable_pysqlite_begin(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None

        _configure_sqlite(engine)
    return engine


class Database:
    """Owns the engine and hands out sessions; one per process, created in the lifespan."""

    def __init__(self, url: str, *, echo: bool = False, pool: PoolConfig | None = None) -> None:
        self.url = url
        self.engine = create_engine(url, echo=echo, pool=pool)
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)

    @classmethod
    def for_settings(cls, settings: Settings) -> Database:
        """The configured database (DATABASE_URL) with the configured pool (DATABASE_POOL_*)."""
        return cls(settings.resolved_database_url, pool=PoolConfig.from_settings(settings))

    @property
    def is_sqlite(self) -> bool:
        return is_sqlite_url(self.url)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A unit of work: commits on success, rolls back on error, then runs the callbacks
        registered with `after_commit` (events and wake-ups must not announce uncommitted rows).
        """
        async with self.sessionmaker() as session:
            try:
                yield session
                await session.commit()
            except BaseException:
                await session.rollback()
                session.info.pop(AFTER_COMMIT, None)
                raise
            run_after_commit(session)

    async def dispose(self) -> None:
        await self.engine.dispose()
