"""A live server for the browser tests: uvicorn serving `create_app(settings)` on 127.0.0.1
with a free port, in a background thread, against a freshly migrated database and the
built-in simulator.

`python -m tests.e2e.server` runs one in the foreground (handy while working on the pages).
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from cryptography.fernet import Fernet
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from app.core.config import Settings
from app.db.migrate import upgrade_to_head
from app.main import create_app

DEFAULT_PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class LiveServer:
    base_url: str
    settings: Settings


async def _pg(admin_url: str, statement: str) -> None:
    engine = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(statement))
    finally:
        await engine.dispose()


@contextmanager
def database(tmp_path: Path) -> Iterator[str]:
    """A migrated database: SQLite in `tmp_path`, or a fresh PostgreSQL database when
    TEST_DB=postgres (dropped afterwards)."""
    if os.environ.get("TEST_DB", "sqlite").lower() not in {"postgres", "postgresql", "pg"}:
        url = f"sqlite+aiosqlite:///{tmp_path / 'e2e.db'}"
        upgrade_to_head(url)
        yield url
        return
    admin_url = os.environ.get("TEST_DATABASE_URL", DEFAULT_PG_URL)
    name = f"genapi_e2e_{uuid.uuid4().hex[:12]}"
    asyncio.run(_pg(admin_url, f'CREATE DATABASE "{name}"'))
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade_to_head(url)
        yield url
    finally:
        asyncio.run(_pg(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def e2e_settings(database_url: str, data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "env": "test",
        "database_url": database_url,
        "data_dir": data_dir,
        "jwt_secret_key": "e2e-jwt-secret-" + "x" * 40,
        "storage_master_key": Fernet.generate_key().decode(),
        "bcrypt_rounds": 4,
        "simulator_task_seconds": 1.5,
        "polling_interval": 0.2,
        "request_log_flush_interval": 0.1,
        # Many sign-ins from one address in one run must not trip the throttle.
        "login_max_failures_per_ip": 1000,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


def build_app(settings: Settings) -> FastAPI:
    app = create_app(settings)
    paths = {getattr(route, "path", None) for route in app.router.routes}
    if "/api/v1/admin/stats" not in paths:
        # Until app/api/v1/router.py mounts the stats router (see the report), mount it here.
        from app.api.v1 import stats

        app.include_router(stats.router, prefix="/api/v1/admin", tags=["admin"])
    return app


@contextmanager
def live_server(settings: Settings) -> Iterator[LiveServer]:
    port = free_port()
    config = uvicorn.Config(
        build_app(settings),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
        # The browser keeps an SSE stream open; don't wait for it on shutdown.
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="e2e-uvicorn", daemon=True)
    thread.start()
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(base_url + "/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or not thread.is_alive():
            server.should_exit = True
            raise RuntimeError("the e2e server did not start")
        time.sleep(0.05)
    try:
        yield LiveServer(base_url=base_url, settings=settings)
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def main() -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        with database(tmp_path) as url:
            port = int(os.environ.get("E2E_PORT", "0"))
            settings = e2e_settings(url, tmp_path / "data")
            if port:
                uvicorn.run(build_app(settings), host="127.0.0.1", port=port, log_level="info")
                return
            with live_server(settings) as server:
                print(f"serving on {server.base_url} (Ctrl-C to stop)", flush=True)
                try:
                    while True:
                        time.sleep(3600)
                except KeyboardInterrupt:
                    pass


if __name__ == "__main__":
    main()
