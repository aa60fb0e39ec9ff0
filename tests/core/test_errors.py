"""A request that finds no database connection answers 503 `database_unavailable` with
`Retry-After: 2` (our error body under /api, OpenAI's under /v1), never a 500.

The real app with a real engine swapped in: one pointed at a closed port (the server refuses),
and on PostgreSQL one whose only pooled connection is held elsewhere (the pool times out).
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from app.db.session import Database, PoolConfig, is_sqlite_url
from tests.conftest import AuthedUser


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@contextmanager
def database_swapped(app: FastAPI, database: Database) -> Iterator[None]:
    real = app.state.db
    app.state.db = database
    try:
        yield
    finally:
        app.state.db = real


@asynccontextmanager
async def refusing_database(app: FastAPI) -> AsyncIterator[None]:
    database = Database(f"postgresql+asyncpg://nobody@127.0.0.1:{closed_port()}/nothing")
    try:
        with database_swapped(app, database):
            yield
    finally:
        await database.dispose()


@pytest.fixture
async def api_key(client: httpx.AsyncClient, user: AuthedUser) -> str:
    created = await client.post("/api/v1/keys", json={"name": "db-down"}, headers=user.headers)
    assert created.status_code == 201, created.text
    key: str = created.json()["key"]
    return key


def assert_database_unavailable(response: httpx.Response) -> dict[str, object]:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "2"
    error: dict[str, object] = response.json()["error"]
    assert error["code"] == "database_unavailable"
    assert error["message"]
    return error


async def test_api_answers_503_when_the_database_refuses(
    app: FastAPI, client: httpx.AsyncClient, user: AuthedUser
) -> None:
    async with refusing_database(app):
        response = await client.get("/api/v1/auth/me", headers=user.headers)
        listing = await client.get("/api/v1/videos", headers=user.headers)
    error = assert_database_unavailable(response)
    assert set(error) == {"code", "message", "details"}
    assert_database_unavailable(listing)
    # And back to normal once the database answers again.
    assert (await client.get("/api/v1/auth/me", headers=user.headers)).status_code == 200


async def test_openai_routes_answer_503_in_openai_shape(
    app: FastAPI, client: httpx.AsyncClient, api_key: str
) -> None:
    headers = {"Authorization": f"Bearer {api_key}"}
    async with refusing_database(app):
        response = await client.get("/v1/videos", headers=headers)
    error = assert_database_unavailable(response)
    assert error["type"] == "server_error"
    assert set(error) >= {"message", "type", "code"}
    assert "details" not in error


async def test_api_answers_503_when_the_pool_times_out(
    app: FastAPI, client: httpx.AsyncClient, user: AuthedUser, database_url: str, api_key: str
) -> None:
    if is_sqlite_url(database_url):
        pytest.skip("SQLite engines keep SQLAlchemy's own pool; PoolConfig is for PostgreSQL")
    tiny = Database(database_url, pool=PoolConfig(size=1, max_overflow=0, timeout_seconds=0.2))
    try:
        with database_swapped(app, tiny):
            async with tiny.engine.connect() as held:  # the pool's only connection
                await held.execute(text("SELECT 1"))
                response = await client.get("/api/v1/auth/me", headers=user.headers)
                openai = await client.get(
                    "/v1/videos", headers={"Authorization": f"Bearer {api_key}"}
                )
            # The connection is back: the same pool serves again.
            recovered = await client.get("/api/v1/auth/me", headers=user.headers)
    finally:
        await tiny.dispose()
    assert_database_unavailable(response)
    assert assert_database_unavailable(openai)["type"] == "server_error"
    assert recovered.status_code == 200, recovered.text
