"""Restart safety with real processes: `kill -9` the service while it polls, sends a create,
or downloads a result; start it again; every task reaches its right end state, none is created
upstream twice, none completes twice, quota is counted once.

The upstream is `genapi simulator` in its own process, reached over real HTTP; the service is
`genapi serve` (readiness: its /health) or `genapi worker`, against the test database.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.config import Settings
from app.core.media.storage import LocalMediaStorage
from tests.conftest import TEST_PASSWORD, empty_all_tables
from tests.core.tasks.harness import SIM_KEY, Engine, SimControl, make_settings, wait_until
from tests.core.tasks.procs import (
    Proc,
    StallingMediaProxy,
    base_env,
    free_port,
    service_env,
    wait_http_ok,
)

TASK_SECONDS = 6


class Upstream(SimControl):
    def __init__(self, proc: Proc, base_url: str) -> None:
        super().__init__(base_url)
        self.proc = proc


@pytest.fixture
async def upstream(tmp_path: Path) -> AsyncIterator[Upstream]:
    port = free_port()
    proc = Proc(
        "simulator",
        [
            "simulator",
            "--port",
            str(port),
            "--task-seconds",
            str(TASK_SECONDS),
            "--api-key",
            SIM_KEY,
        ],
        env=base_env(),
        workdir=tmp_path / "procs",
    )
    await proc.start()
    try:
        base_url = f"http://127.0.0.1:{port}"
        await wait_http_ok(f"{base_url}/health", proc)
        yield Upstream(proc, base_url)
    finally:
        await proc.ensure_dead()


@pytest.fixture
def child_settings(
    database_url: str, master_key: str, tmp_path: Path, upstream: Upstream
) -> Settings:
    return make_settings(
        database_url,
        master_key,
        tmp_path / "data",
        upstream.base_url,
        polling_interval=0.1,
        task_lease_seconds=1,
        request_timeout=30,
    )


@pytest.fixture
async def engine(child_settings: Settings, cleanup_engine: AsyncEngine) -> AsyncIterator[Engine]:
    """The test's own view of the database and media directory (its worker never runs)."""
    harness = Engine(child_settings)
    try:
        yield harness
    finally:
        await harness.close()
        await empty_all_tables(cleanup_engine)


@pytest.fixture
async def procs() -> AsyncIterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for proc in started:
        await proc.ensure_dead()


async def start_serve(settings: Settings, tmp_path: Path, procs: list[Proc], name: str) -> str:
    port = free_port()
    proc = Proc(
        name,
        ["serve", "--port", str(port), "--no-migrate"],
        env=service_env(settings),
        workdir=tmp_path / "procs",
    )
    procs.append(await proc.start())
    base_url = f"http://127.0.0.1:{port}"
    await wait_http_ok(f"{base_url}/health", proc)
    return base_url


async def start_worker(settings: Settings, tmp_path: Path, procs: list[Proc], name: str) -> Proc:
    proc = Proc(name, ["worker"], env=service_env(settings), workdir=tmp_path / "procs")
    procs.append(await proc.start())
    return proc


async def sign_up(base_url: str) -> dict[str, str]:
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        created = await http.post(
            "/api/v1/auth/register",
            json={"username": "restarter", "email": "r@example.com", "password": TEST_PASSWORD},
        )
        assert created.status_code == 201, created.text
        login = await http.post(
            "/api/v1/auth/login",
            json={"username_or_email": "restarter", "password": TEST_PASSWORD},
        )
        assert login.status_code == 200, login.text
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


async def create_video(base_url: str, headers: dict[str, str], prompt: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        response = await http.post(
            "/api/v1/videos", json={"model": "sora-2", "prompt": prompt}, headers=headers
        )
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_kill_9_while_polling_and_while_sending_then_restart(
    child_settings: Settings,
    engine: Engine,
    upstream: Upstream,
    procs: list[Proc],
    tmp_path: Path,
) -> None:
    first = await start_serve(child_settings, tmp_path, procs, "serve-1")
    headers = await sign_up(first)
    polled = [f"survives a crash {i}" for i in range(5)]
    ids = [(await create_video(first, headers, p))["id"] for p in polled]
    in_flight_prompt = "crash while this create is on the wire [sim:slow=10]"
    in_flight_id = (await create_video(first, headers, in_flight_prompt))["id"]

    async def mid_flight() -> bool:
        stats = (await upstream.stats())["by_prompt"]
        return stats.get(in_flight_prompt, {}).get("create_requests") == 1 and all(
            stats.get(p, {}).get("polls", 0) >= 1 for p in polled
        )

    await wait_until(mid_flight, within=20)
    await procs[0].kill9()
    before = await engine.tasks([*ids, in_flight_id])
    assert all(t.status in ("queued", "in_progress") for t in before), "killed too late"
    assert before[-1].submit_state == "sending"

    second = await start_serve(child_settings, tmp_path, procs, "serve-2")
    await wait_until(lambda: engine.terminal([*ids, in_flight_id]), within=30)

    finals = await engine.tasks(ids)
    assert [t.status for t in finals] == ["completed"] * len(ids), procs[1].log()
    crashed = await engine.task(in_flight_id)
    assert (crashed.status, crashed.error_code) == ("failed", "submit_interrupted")
    for prompt in [*polled, in_flight_prompt]:
        assert (await upstream.prompt_counts(prompt))["create_requests"] == 1, prompt
    user_id = finals[0].user_id
    for task_id in ids:
        assert [m.state for m in await engine.media(task_id)] == ["stored"]
    assert await engine.used_bytes(user_id) == await engine.stored_bytes(user_id) > 0
    assert engine.files_on_disk() == await engine.stored_keys()
    # The API of the restarted service serves the results.
    async with httpx.AsyncClient(base_url=second, timeout=10) as http:
        content = await http.get(f"/api/v1/videos/{ids[0]}/content", headers=headers)
    assert content.status_code == 200
    [media] = await engine.media(ids[0])
    assert hashlib.sha256(content.content).hexdigest() == media.sha256
    # uvicorn shuts down gracefully, then re-raises the signal it caught.
    assert await procs[1].terminate() in (0, -15)
    assert "Application shutdown complete" in procs[1].log()


async def test_kill_9_in_the_middle_of_a_download_then_restart(
    child_settings: Settings,
    engine: Engine,
    upstream: Upstream,
    procs: list[Proc],
    tmp_path: Path,
) -> None:
    proxy = StallingMediaProxy(upstream.base_url)
    await proxy.start()
    try:
        await upstream.configure(public_base_url=proxy.base_url)
        user_id = await engine.add_user()
        prompt = "cut off mid-download [sim:task-seconds=0.5]"
        task_id = (await engine.create(user_id, prompt))[0].id

        worker = await start_worker(child_settings, tmp_path, procs, "worker-1")
        await wait_until(_event_set(proxy), within=30)
        stalled = await engine.task(task_id)
        assert stalled.status == "in_progress"
        assert stalled.progress == 99
        assert stalled.lease_owner is not None
        await worker.kill9()
        assert await engine.media(task_id) == []

        restarted = await start_worker(child_settings, tmp_path, procs, "worker-2")
        await wait_until(lambda: engine.terminal([task_id]), within=30)
        assert await restarted.terminate() == 0
    finally:
        await proxy.stop()

    task = await engine.task(task_id)
    assert task.status == "completed", restarted.log()
    [media] = await engine.media(task_id)
    [served] = proxy.full_bodies
    assert media.state == "stored"
    assert media.sha256 == hashlib.sha256(served).hexdigest()
    assert media.bytes == len(served)
    assert isinstance(engine.storage, LocalMediaStorage)
    assert media.storage_key is not None
    assert engine.storage.path_for(media.storage_key).read_bytes() == served
    assert await engine.used_bytes(user_id) == media.bytes + media.thumbnail_bytes
    assert engine.files_on_disk() == await engine.stored_keys()
    counts = await upstream.prompt_counts(prompt)
    assert (counts["create_requests"], counts["creates"]) == (1, 1)
    assert proxy.requests == 2


def _event_set(proxy: StallingMediaProxy) -> Any:
    async def check() -> bool:
        return proxy.stalled.is_set()

    return check
