"""Shared fixtures: a real database (SQLite file or a fresh PostgreSQL database), migrated with
Alembic once per run, emptied after every test, and the real app behind an async HTTP client.

Backend choice: `TEST_DB=postgres` (URL from `TEST_DATABASE_URL`, default
`postgresql+asyncpg://postgres@127.0.0.1:5432/postgres`) or SQLite (default). When PostgreSQL
is asked for but unreachable the run is skipped with a message, except under `CI=true`,
where it fails.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from cryptography.fernet import Fernet
from fastapi import FastAPI
from sqlalchemy import delete, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.core.config import Settings
from app.db.base import Base
from app.db.migrate import upgrade_to_head
from app.db.session import create_engine
from app.main import create_app

DEFAULT_PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
TEST_PASSWORD = "correct horse battery staple"


def _use_postgres() -> bool:
    return os.environ.get("TEST_DB", "sqlite").lower() in {"postgres", "postgresql", "pg"}


async def _create_pg_database(admin_url: str, name: str) -> None:
    engine = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        await engine.dispose()


async def _drop_pg_database(admin_url: str, name: str) -> None:
    engine = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not _use_postgres():
        path = tmp_path_factory.mktemp("db") / "test.db"
        url = f"sqlite+aiosqlite:///{path}"
        upgrade_to_head(url)
        yield url
        return
    admin_url = os.environ.get("TEST_DATABASE_URL", DEFAULT_PG_URL)
    name = f"genapi_test_{uuid.uuid4().hex[:12]}"
    try:
        asyncio.run(_create_pg_database(admin_url, name))
    except Exception as exc:
        message = f"PostgreSQL at {make_url(admin_url).render_as_string()} unreachable: {exc!r}"
        if IN_CI:
            pytest.fail(message + " (CI=true: PostgreSQL is required)")
        pytest.skip(message + " (skipping the PostgreSQL run; set CI=true to make this fail)")
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade_to_head(url)
        yield url
    finally:
        asyncio.run(_drop_pg_database(admin_url, name))


@pytest.fixture(scope="session")
async def cleanup_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


async def empty_all_tables(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
            await conn.execute(text(f"TRUNCATE {names} CASCADE"))
        else:
            for table in reversed(Base.metadata.sorted_tables):
                await conn.execute(delete(table))


@pytest.fixture(scope="session")
def master_key() -> str:
    return Fernet.generate_key().decode()


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Override in a test module (or parametrize) to change settings for its app."""
    return {}


@pytest.fixture
def settings(
    database_url: str,
    master_key: str,
    tmp_path: Path,
    settings_overrides: dict[str, Any],
) -> Settings:
    values: dict[str, Any] = {
        "env": "test",
        "database_url": database_url,
        "data_dir": tmp_path / "data",
        "jwt_secret_key": "test-jwt-secret-" + "x" * 40,
        "storage_master_key": master_key,
        "bcrypt_rounds": 4,
        "request_log_flush_interval": 0.05,
    }
    values.update(settings_overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
async def app(settings: Settings, cleanup_engine: AsyncEngine) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    try:
        async with LifespanManager(application, startup_timeout=30, shutdown_timeout=30):
            yield application
    finally:
        await empty_all_tables(cleanup_engine)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@dataclass
class AuthedUser:
    id: str
    username: str
    email: str
    password: str
    token: str
    session_id: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def register_and_login(
    client: httpx.AsyncClient, username: str | None = None, password: str = TEST_PASSWORD
) -> AuthedUser:
    username = username or f"user{uuid.uuid4().hex[:8]}"
    email = f"{username}@example.com"
    created = await client.post(
        "/api/v1/auth/register", json={"username": username, "email": email, "password": password}
    )
    assert created.status_code == 201, created.text
    login = await client.post(
        "/api/v1/auth/login", json={"username_or_email": username, "password": password}
    )
    assert login.status_code == 200, login.text
    body = login.json()
    return AuthedUser(
        id=created.json()["id"],
        username=username,
        email=email,
        password=password,
        token=body["access_token"],
        session_id=body["session_id"],
    )


@pytest.fixture
async def admin_user(client: httpx.AsyncClient) -> AuthedUser:
    """The first registered user, who is therefore an admin."""
    return await register_and_login(client, "admin")


@pytest.fixture
async def user(client: httpx.AsyncClient, admin_user: AuthedUser) -> AuthedUser:
    """A regular (non-admin) user; registered after the admin."""
    return await register_and_login(client, "alice")


@pytest.fixture
async def other_user(client: httpx.AsyncClient, admin_user: AuthedUser) -> AuthedUser:
    return await register_and_login(client, "mallory")
