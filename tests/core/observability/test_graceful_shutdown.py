"""Graceful shutdown of the real service: `genapi serve` as a subprocess on the test database
with the built-in simulator, stopped with SIGTERM while work is in flight.

What must hold after the process exits: the in-flight request was answered, every API request
is in api_request_logs (the writer's buffer is only flushed at shutdown here: its interval is
longer than the test), no task lost (none failed, none left `sending`) and no lease left behind.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.config import Settings
from app.models import ApiRequestLog, GenerationTask
from tests.conftest import TEST_PASSWORD, empty_all_tables
from tests.core.observability.helpers import wait_until

REPO_ROOT = Path(__file__).resolve().parents[3]
START_TIMEOUT = 60.0
EXIT_TIMEOUT = 60.0
# What a stop may take with an idle client connected (an open SSE stream): orchestrators send
# SIGKILL after their grace period (Docker: 10 s by default, Kubernetes: 30 s).
SSE_SHUTDOWN_DEADLINE = 25.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Service:
    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path
    request_ids: list[str] = field(default_factory=list)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def headers(self, token: str | None = None) -> dict[str, str]:
        request_id = f"shutdown-{uuid.uuid4().hex[:12]}"
        self.request_ids.append(request_id)
        headers = {"X-Request-ID": request_id}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    async def wait_for_log(self, text: str, within: float = 20.0) -> None:
        async def logged() -> bool:
            return text in self.log()

        try:
            await wait_until(logged, within=within, every=0.05)
        except TimeoutError:
            raise AssertionError(f"{text!r} never logged:\n{self.log()[-3000:]}") from None

    async def wait_exit(self, within: float) -> int | None:
        try:
            return await asyncio.wait_for(asyncio.to_thread(self.process.wait), timeout=within)
        except TimeoutError:
            return None


@pytest.fixture
async def service(
    settings: Settings,
    database_url: str,
    tmp_path: Path,
    cleanup_engine: AsyncEngine,
) -> AsyncIterator[Service]:
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("API_", "PROMETHEUS_"))},
        "ENV": "test",
        "DATABASE_URL": database_url,
        "DATA_DIR": str(tmp_path / "data"),
        "JWT_SECRET_KEY": settings.jwt_secret_key or "",
        "STORAGE_MASTER_KEY": settings.storage_master_key or "",
        "BCRYPT_ROUNDS": "4",
        "POLLING_INTERVAL": "0.2",
        "SIMULATOR_TASK_SECONDS": "30",
        # Longer than the test: every log row found afterwards was written by the final flush.
        "REQUEST_LOG_FLUSH_INTERVAL": "600",
        "PYTHONPATH": str(REPO_ROOT),
        "PYTHONUNBUFFERED": "1",
    }
    log_path = tmp_path / "service.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(  # noqa: ASYNC220 - returns at once; waited on in a thread
            [
                sys.executable,
                "-m",
                "app.cli",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-migrate",
            ],
            cwd=tmp_path,  # no .env from the working copy
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    service = Service(process, f"http://127.0.0.1:{port}", log_path)
    try:
        async with httpx.AsyncClient(base_url=service.base_url) as http:

            async def healthy() -> bool:
                if process.poll() is not None:
                    raise AssertionError(f"the service exited early:\n{service.log()}")
                try:
                    return (await http.get("/health")).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_until(healthy, within=START_TIMEOUT, every=0.1)
        yield service
    finally:
        if process.poll() is None:  # only our own child, by its pid
            process.kill()
            process.wait(timeout=10)
        await empty_all_tables(cleanup_engine)


async def _sign_in(http: httpx.AsyncClient, service: Service) -> str:
    registered = await http.post(
        "/api/v1/auth/register",
        json={"username": "admin", "email": "admin@example.com", "password": TEST_PASSWORD},
        headers=service.headers(),
    )
    assert registered.status_code == 201, registered.text
    login = await http.post(
        "/api/v1/auth/login",
        json={"username_or_email": "admin", "password": TEST_PASSWORD},
        headers=service.headers(),
    )
    assert login.status_code == 200, login.text
    token: str = login.json()["access_token"]
    return token


async def _create_tasks(http: httpx.AsyncClient, service: Service, token: str) -> list[str]:
    # Never finishing, with slow polls: the worker holds leases most of the time.
    prompts = ["[sim:never] [sim:poll-slow=2] harbour", "[sim:never] [sim:poll-slow=2] dunes"]
    ids = []
    for prompt in prompts:
        created = await http.post(
            "/api/v1/videos",
            json={"model": "sora-2", "prompt": prompt},
            headers=service.headers(token),
        )
        assert created.status_code == 202, created.text
        ids.append(created.json()["id"])
    return ids


async def _leases_held(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        held = await conn.scalar(
            select(func.count())
            .select_from(GenerationTask)
            .where(GenerationTask.lease_owner.is_not(None))
        )
    return int(held or 0)


async def _assert_nothing_lost(engine: AsyncEngine, service: Service, task_ids: list[str]) -> None:
    async with engine.connect() as conn:
        logged = set(
            (
                await conn.scalars(
                    select(ApiRequestLog.request_id).where(
                        ApiRequestLog.request_id.in_(service.request_ids)
                    )
                )
            ).all()
        )
        tasks = (
            await conn.execute(
                select(
                    GenerationTask.id,
                    GenerationTask.status,
                    GenerationTask.submit_state,
                    GenerationTask.lease_owner,
                    GenerationTask.error_code,
                )
            )
        ).all()
    missing = [rid for rid in service.request_ids if rid not in logged]
    assert missing == [], f"requests missing from the request log: {missing}"
    assert sorted(t.id for t in tasks) == sorted(task_ids)
    for task in tasks:
        assert task.lease_owner is None, f"task {task.id} still leased by {task.lease_owner}"
        assert task.status in ("queued", "in_progress"), (task.status, task.error_code)
        assert task.submit_state == "submitted", task.submit_state


async def test_sigterm_finishes_in_flight_work_and_loses_nothing(
    service: Service, cleanup_engine: AsyncEngine
) -> None:
    async with httpx.AsyncClient(base_url=service.base_url, timeout=60) as http:
        token = await _sign_in(http, service)
        task_ids = await _create_tasks(http, service, token)

        async def submitted_and_leased() -> bool:
            async with cleanup_engine.connect() as conn:
                pending = await conn.scalar(
                    select(func.count())
                    .select_from(GenerationTask)
                    .where(GenerationTask.submit_state != "submitted")
                )
            return pending == 0 and await _leases_held(cleanup_engine) > 0

        await wait_until(submitted_and_leased, within=30)

        # A sign-in whose body arrives in two parts: in flight until the gate opens.
        gate = asyncio.Event()
        first_part_sent = asyncio.Event()

        async def slow_body() -> AsyncIterator[bytes]:
            yield b'{"username_or_email": "admin", '
            # Resumed only once httpx has written the first part to the socket.
            first_part_sent.set()
            await gate.wait()
            yield f'"password": "{TEST_PASSWORD}"}}'.encode()

        in_flight = asyncio.create_task(
            http.post(
                "/api/v1/auth/login",
                content=slow_body(),
                headers={**service.headers(), "Content-Type": "application/json"},
            )
        )
        await asyncio.wait_for(first_part_sent.wait(), timeout=10)
        # Answered after the server has read what arrived before it: the slow request's
        # headers and first part are parsed, so uvicorn counts that request as in flight.
        assert (await http.get("/health")).status_code == 200
        service.process.send_signal(signal.SIGTERM)
        await service.wait_for_log("Waiting for connections to close")
        assert service.process.poll() is None  # still serving the in-flight request
        gate.set()
        response = await asyncio.wait_for(in_flight, timeout=30)
        assert response.status_code == 200, response.text
        assert response.json()["access_token"]

    code = await service.wait_exit(EXIT_TIMEOUT)
    assert code is not None, f"no exit after SIGTERM:\n{service.log()[-3000:]}"
    # uvicorn re-raises the signal once it has shut down cleanly.
    assert code in (0, -signal.SIGTERM), service.log()[-3000:]
    assert "Application shutdown complete" in service.log()
    await _assert_nothing_lost(cleanup_engine, service, task_ids)


async def test_sigterm_with_an_open_event_stream_still_shuts_down_in_time(
    service: Service, cleanup_engine: AsyncEngine
) -> None:
    async with httpx.AsyncClient(base_url=service.base_url, timeout=60) as http:
        token = await _sign_in(http, service)
        task_ids = await _create_tasks(http, service, token)
        async with http.stream(
            "GET", "/api/v1/tasks/events", headers=service.headers(token)
        ) as stream:
            assert stream.status_code == 200
            chunks = stream.aiter_raw()
            first: Any = await asyncio.wait_for(anext(chunks), timeout=10)
            assert b"connected" in first
            service.process.send_signal(signal.SIGTERM)
            code = await service.wait_exit(SSE_SHUTDOWN_DEADLINE)
        # Leaving the stream disconnects the client; a stuck service can finish now.
        if code is None:
            await service.wait_exit(EXIT_TIMEOUT)
    await _assert_nothing_lost(cleanup_engine, service, task_ids)
    assert code is not None, (
        f"still running {SSE_SHUTDOWN_DEADLINE:g} s after SIGTERM with an SSE client connected"
    )
