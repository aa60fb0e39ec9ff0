"""Helpers for the task engine tests: a live simulator, the engine's parts, and DB probes.

The simulator always runs behind uvicorn on a real port (a thread of its own), so the worker
talks to it over real HTTP exactly as it would to an aggregator. An ASGI wrapper records how
many upstream requests are in flight at once, per kind, for the concurrency checks.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from sqlalchemy import func, select, update

from app.clients.http import build_http_client
from app.core.catalog import get_catalog
from app.core.config import Settings
from app.core.encryption import Encryptor
from app.core.media.storage import LocalMediaStorage, MediaStorage
from app.core.tasks import service
from app.core.tasks.runtime import TaskRuntime
from app.core.tasks.worker import TaskWorker
from app.db.session import Database
from app.models import GenerationTask, Media, User
from app.models.schemas.tasks import TaskCreate
from app.simulator import Simulator, SimulatorConfig, create_simulator_app

SIM_KEY = "sk-sim-worker-tests"

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def is_poll(method: str, path: str) -> bool:
    """A status request of any video family (not a media or content download)."""
    if method != "GET":
        return False
    if path.startswith("/v2/videos/generations/"):
        return True
    if path.startswith("/v1/video/"):
        return "/tasks/" in path
    return path.startswith("/v1/videos/") and not path.endswith("/content")


@dataclass
class InFlight:
    """Concurrent requests seen by the simulator, per kind ("poll", "create", "other")."""

    current: dict[str, int] = field(default_factory=dict)
    peak: dict[str, int] = field(default_factory=dict)

    def enter(self, kind: str) -> None:
        self.current[kind] = self.current.get(kind, 0) + 1
        self.peak[kind] = max(self.peak.get(kind, 0), self.current[kind])

    def leave(self, kind: str) -> None:
        self.current[kind] -= 1


class CountingApp:
    def __init__(self, app: Any, counter: InFlight) -> None:
        self.app = app
        self.counter = counter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        kind = "poll" if is_poll(method, path) else "create" if method == "POST" else "other"
        self.counter.enter(kind)
        try:
            await self.app(scope, receive, send)
        finally:
            self.counter.leave(kind)


def reserve_port() -> socket.socket:
    """A bound, not yet listening socket: connections to it are refused until `listen`."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


class SimControl:
    """The simulator's control surface over HTTP, like any client of it."""

    base_url: str

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    async def stats(self, prompt: str | None = None) -> dict[str, Any]:
        params = {"prompt": prompt} if prompt is not None else {}
        async with httpx.AsyncClient(base_url=self.base_url, headers=auth()) as http:
            response = await http.get("/_sim/stats", params=params)
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    async def prompt_counts(self, prompt: str) -> dict[str, int]:
        counts: dict[str, int] = (await self.stats(prompt))["by_prompt"][prompt]
        return counts

    async def requests(self, limit: int = 500) -> list[dict[str, Any]]:
        async with httpx.AsyncClient(base_url=self.base_url, headers=auth()) as http:
            response = await http.get("/_sim/requests", params={"limit": limit})
        response.raise_for_status()
        items: list[dict[str, Any]] = response.json()["requests"]
        return items

    async def configure(self, **changes: Any) -> None:
        async with httpx.AsyncClient(base_url=self.base_url, headers=auth()) as http:
            response = await http.post("/_sim/config", json=changes)
        response.raise_for_status()


class LiveASGI:
    """Any ASGI app behind uvicorn in a background thread, on a real port."""

    def __init__(self, app: Any, sock: socket.socket | None = None, **uvicorn_options: Any) -> None:
        self._socket = sock or reserve_port()
        self.port = self._socket.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", lifespan="off", **uvicorn_options)
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._socket.listen(128)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._socket.close()


class LiveSimulator(LiveASGI, SimControl):
    """The simulator behind uvicorn in a background thread, on a real port."""

    def __init__(self, config: SimulatorConfig, sock: socket.socket | None = None) -> None:
        self.app = create_simulator_app(config)
        self.simulator: Simulator = self.app.state.simulator
        self.inflight = InFlight()
        super().__init__(CountingApp(self.app, self.inflight), sock, timeout_graceful_shutdown=1)


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {SIM_KEY}"}


async def wait_until(
    check: Callable[[], Awaitable[bool]], within: float = 20.0, interval: float = 0.05
) -> None:
    """Poll `check` until it holds; fail with a clear message at the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(interval)


class Engine:
    """The task engine's parts over one database, with helpers to create tasks and look."""

    def __init__(self, settings: Settings, storage: MediaStorage | None = None) -> None:
        self.settings = settings
        self.database = Database(settings.resolved_database_url)
        self.encryptor = Encryptor(settings.storage_master_key or "")
        self.http = build_http_client(settings)
        self.runtime = TaskRuntime(
            settings=settings,
            database=self.database,
            encryptor=self.encryptor,
            http=self.http,
            catalog=get_catalog(),
            storage=storage,
        )
        self.storage = self.runtime.storage
        self._workers: list[TaskWorker] = []

    async def close(self) -> None:
        for worker in self._workers:
            await worker.stop(grace_seconds=0)
        await self.runtime.stop()
        await self.http.aclose()
        await self.database.dispose()

    def worker(
        self, worker_id: str | None = None, cls: type[TaskWorker] = TaskWorker, **changes: Any
    ) -> TaskWorker:
        settings = self.settings.model_copy(update=changes) if changes else self.settings
        worker = cls(
            database=self.database,
            encryptor=self.encryptor,
            settings=settings,
            http=self.http,
            storage=self.storage,
            events=self.runtime.events,
            router=self.runtime.router,
            worker_id=worker_id or f"test-{uuid.uuid4().hex[:8]}",
        )
        self._workers.append(worker)
        return worker

    async def add_user(self, quota: int = 10**9) -> str:
        user_id = str(uuid.uuid4())
        async with self.database.session() as db:
            db.add(
                User(
                    id=user_id,
                    username=f"u{user_id[:8]}",
                    email=f"u{user_id[:8]}@example.com",
                    password_hash="!",
                    storage_quota_bytes=quota,
                    storage_used_bytes=0,
                )
            )
        return user_id

    async def create(
        self,
        user_id: str,
        prompt: str,
        *,
        model: str = "sora-2",
        kind: str = "video",
        params: dict[str, Any] | None = None,
        n: int = 1,
        webhook_url: str | None = None,
        upstream_key: str | None = None,
        creator_waits: bool = False,
    ) -> list[GenerationTask]:
        body = TaskCreate(
            model=model, prompt=prompt, params=params or {}, n=n, webhook_url=webhook_url
        )
        async with self.database.session() as db:
            result = await service.create_tasks(
                db,
                self.runtime.context(),
                user_id=user_id,
                kind=kind,  # type: ignore[arg-type]
                body=body,
                upstream_key=upstream_key,
                creator_waits=creator_waits,
            )
        return result.tasks

    async def task(self, task_id: str) -> GenerationTask:
        async with self.database.session() as db:
            task = await db.get(GenerationTask, task_id)
        assert task is not None, f"task {task_id} is gone"
        return task

    async def tasks(self, ids: list[str]) -> list[GenerationTask]:
        async with self.database.session() as db:
            rows = await db.scalars(select(GenerationTask).where(GenerationTask.id.in_(ids)))
            by_id = {t.id: t for t in rows}
        return [by_id[i] for i in ids]

    async def update_task(self, task_id: str, **values: Any) -> None:
        async with self.database.session() as db:
            await db.execute(
                update(GenerationTask).where(GenerationTask.id == task_id).values(**values)
            )

    async def media(self, task_id: str) -> list[Media]:
        async with self.database.session() as db:
            rows = await db.scalars(
                select(Media).where(Media.task_id == task_id).order_by(Media.position)
            )
            return list(rows.all())

    async def used_bytes(self, user_id: str) -> int:
        async with self.database.session() as db:
            used = await db.scalar(select(User.storage_used_bytes).where(User.id == user_id))
        return int(used or 0)

    async def stored_bytes(self, user_id: str) -> int:
        """What the quota must equal: bytes and thumbnails of the user's stored media."""
        async with self.database.session() as db:
            total = await db.scalar(
                select(func.coalesce(func.sum(Media.bytes + Media.thumbnail_bytes), 0)).where(
                    Media.user_id == user_id, Media.state == "stored"
                )
            )
        return int(total or 0)

    async def stored_keys(self) -> set[str]:
        async with self.database.session() as db:
            rows = await db.execute(
                select(Media.storage_key, Media.thumbnail_key).where(Media.state == "stored")
            )
            keys: set[str] = {str(k) for pair in rows.all() for k in pair if k}
        return keys

    def files_on_disk(self) -> set[str]:
        assert isinstance(self.storage, LocalMediaStorage)
        root: Path = self.storage.root
        files: set[str] = {
            p.relative_to(root).as_posix()
            for p in root.rglob("*")
            if p.is_file() and not p.relative_to(root).as_posix().startswith(".")
        }
        return files

    async def terminal(self, ids: list[str]) -> bool:
        return all(t.status in ("completed", "failed", "cancelled") for t in await self.tasks(ids))


def make_settings(
    database_url: str, master_key: str, data_dir: Path, upstream: str, **overrides: Any
) -> Settings:
    values: dict[str, Any] = {
        "env": "test",
        "database_url": database_url,
        "data_dir": data_dir,
        "jwt_secret_key": "test-jwt-secret-" + "x" * 40,
        "storage_master_key": master_key,
        "bcrypt_rounds": 4,
        "api_base_url": upstream,
        "api_key": SIM_KEY,
        "polling_interval": 0.05,
        "task_lease_seconds": 30,
        "max_concurrent_tasks": 10,
        "request_timeout": 10,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


async def submit_only(engine: Engine) -> None:
    """Send every pending create, without polling afterwards (the next poll is far away)."""
    await engine.worker("submitter", polling_interval=30).run_until_idle()
