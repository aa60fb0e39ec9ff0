"""`is_database_unavailable`: real failures of real engines, not hand-made exceptions only.

- a server that refuses the connection (a closed port): asyncpg raises a bare
  ConnectionRefusedError;
- a pool with no free connection within its timeout: `sqlalchemy.exc.TimeoutError`;
- a server with no slot left (a role with CONNECTION LIMIT 0): asyncpg's
  TooManyConnectionsError, wrapped by SQLAlchemy (PostgreSQL runs only);
- and what must stay a 500: constraint violations, bad SQL, a refused connection that has
  nothing to do with the database.
"""

from __future__ import annotations

import socket
import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, ProgrammingError
from sqlalchemy.ext.asyncio import create_async_engine

from app.db.errors import is_database_unavailable
from app.db.session import Database, PoolConfig, is_sqlite_url


def closed_port() -> int:
    """A local port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def _error_of(database: Database, sql: str = "SELECT 1") -> BaseException:
    try:
        async with database.session() as session:
            await session.execute(text(sql))
    except Exception as exc:
        return exc
    raise AssertionError("the query succeeded")


async def test_a_refused_connection_is_unavailable() -> None:
    database = Database(f"postgresql+asyncpg://nobody@127.0.0.1:{closed_port()}/nothing")
    try:
        error = await _error_of(database)
    finally:
        await database.dispose()
    assert isinstance(error, ConnectionRefusedError)  # what asyncpg lets through
    assert is_database_unavailable(error)


def test_a_refused_connection_elsewhere_is_not_about_the_database() -> None:
    # E.g. an upstream or webhook call: no database driver frame in the traceback.
    with pytest.raises(ConnectionRefusedError) as caught:
        raise ConnectionRefusedError(111, "Connect call failed")
    assert not is_database_unavailable(caught.value)


async def test_a_pool_timeout_is_unavailable(database_url: str) -> None:
    if is_sqlite_url(database_url):
        pytest.skip("SQLite engines keep SQLAlchemy's own pool; PoolConfig is for PostgreSQL")
    database = Database(database_url, pool=PoolConfig(size=1, max_overflow=0, timeout_seconds=0.1))
    try:
        async with database.engine.connect() as held:  # the only connection
            await held.execute(text("SELECT 1"))
            error = await _error_of(database)
    finally:
        await database.dispose()
    assert "QueuePool limit" in str(error)
    assert is_database_unavailable(error)


async def test_too_many_connections_is_unavailable(database_url: str) -> None:
    if is_sqlite_url(database_url):
        pytest.skip("PostgreSQL only")
    role = f"genapi_test_nolimit_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(database_url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            # Superusers ignore connection limits; an ordinary role with none left does not.
            await conn.execute(text(f'CREATE ROLE "{role}" LOGIN CONNECTION LIMIT 0'))
        url = make_url(database_url).set(username=role, password=None)
        database = Database(url.render_as_string(hide_password=False))
        try:
            error = await _error_of(database)
        finally:
            await database.dispose()
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP ROLE IF EXISTS "{role}"'))
        await admin.dispose()
    assert "too many connections" in str(error)
    assert is_database_unavailable(error)


async def test_other_database_errors_are_not_unavailable(database_url: str) -> None:
    database = Database(database_url)
    try:
        bad_sql = await _error_of(database, "SELECT * FROM no_such_table_here")
        duplicate = await _error_of(
            database,
            "INSERT INTO alembic_version (version_num) "
            "SELECT version_num FROM alembic_version LIMIT 1",
        )
    finally:
        await database.dispose()
    assert not isinstance(bad_sql, ConnectionError)
    assert isinstance(bad_sql, ProgrammingError) or "no such table" in str(bad_sql)
    assert isinstance(duplicate, IntegrityError)
    assert not is_database_unavailable(bad_sql)
    assert not is_database_unavailable(duplicate)
