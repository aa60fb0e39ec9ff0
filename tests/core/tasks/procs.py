"""Real processes for the restart tests: `genapi serve`, `genapi worker`, `genapi simulator`,
started as `python -m app.cli …`, and a throttling media proxy to stop a download midway."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import httpx

from app.core.config import Settings
from tests.core.tasks.harness import wait_until

REPO_ROOT = Path(__file__).resolve().parents[3]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def service_env(settings: Settings, **extra: Any) -> dict[str, str]:
    """The environment that makes a child process use the same database, keys and upstream."""
    values: dict[str, Any] = {
        "ENV": "test",
        "DATABASE_URL": settings.resolved_database_url,
        "DATA_DIR": str(settings.data_dir),
        "JWT_SECRET_KEY": settings.jwt_secret_key,
        "STORAGE_MASTER_KEY": settings.storage_master_key,
        "API_BASE_URL": settings.api_base_url,
        "API_KEY": settings.api_key,
        "BCRYPT_ROUNDS": settings.bcrypt_rounds,
        "POLLING_INTERVAL": settings.polling_interval,
        "TASK_LEASE_SECONDS": settings.task_lease_seconds,
        "MAX_CONCURRENT_TASKS": settings.max_concurrent_tasks,
        "REQUEST_TIMEOUT": settings.request_timeout,
    }
    values.update(extra)
    env = base_env()
    env.update({k: str(v) for k, v in values.items() if v is not None})
    return env


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "TEST_DB"))}
    env["PYTHONPATH"] = str(REPO_ROOT)
    return env


class Proc:
    """One `python -m app.cli …` child; output goes to a log file shown when a test fails."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], workdir: Path) -> None:
        self.name = name
        self.args = args
        self.env = env
        self.workdir = workdir
        self.log_path = workdir / f"{name}.log"
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> Proc:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        try:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "app.cli",
                *self.args,
                cwd=self.workdir,  # no stray .env is read from the repository
                env=self.env,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
            )
        finally:
            log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-6000:]
        except FileNotFoundError:
            return ""

    async def kill9(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        await self.process.wait()

    async def terminate(self, within: float = 20) -> int:
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        return await self.wait(within)

    async def wait(self, within: float = 30) -> int:
        assert self.process is not None
        try:
            return await asyncio.wait_for(self.process.wait(), within)
        except TimeoutError:
            message = f"{self.name} did not exit in {within} s:\n{self.log()}"
            raise AssertionError(message) from None

    async def ensure_dead(self) -> None:
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()


async def wait_http_ok(url: str, proc: Proc, within: float = 60) -> None:
    """Readiness: poll `url` until it answers 200 (and fail fast if the process died)."""

    async def ready() -> bool:
        assert proc.process is not None
        if proc.process.returncode is not None:
            raise AssertionError(f"{proc.name} exited early:\n{proc.log()}")
        try:
            async with httpx.AsyncClient(timeout=2) as http:
                return (await http.get(url)).status_code == 200
        except httpx.TransportError:
            return False

    await wait_until(ready, within=within, interval=0.1)


class StallingMediaProxy:
    """Serves `/media/*` from the simulator. The first download gets its headers and half of
    its body, then nothing more (a download caught midway); later downloads get everything."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.requests = 0
        self.stalled = asyncio.Event()
        self.full_bodies: list[bytes] = []
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = await reader.readline()
            while await reader.readline() not in (b"\r\n", b"\n", b""):
                pass
            _, path, _ = request_line.decode("latin-1").split(" ", 2)
            async with httpx.AsyncClient() as http:
                upstream = await http.get(self.upstream + path)
            if upstream.status_code != 200:
                writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
                return
            body = upstream.content
            self.requests += 1
            head = (
                "HTTP/1.1 200 OK\r\n"
                f"Content-Type: {upstream.headers.get('content-type', 'video/mp4')}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            ).encode()
            if self.requests == 1:
                writer.write(head + body[: len(body) // 2])
                await writer.drain()
                self.stalled.set()
                await reader.read()  # until the client goes away
                return
            self.full_bodies.append(body)
            writer.write(head + body)
            await writer.drain()
        except (ConnectionError, ValueError):
            return
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
