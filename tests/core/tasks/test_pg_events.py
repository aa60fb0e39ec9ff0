"""Task events across processes: two instances of the service on one PostgreSQL database.

Instance A is the `app` fixture (with its worker and built-in simulator); instance B is a second
`create_app` on the same database with its own lifespan and no worker, i.e. what a web process
looks like when the work happens elsewhere. On SQLite there is no relay (one host; the SSE
streams' database recheck covers it) and the cross-process tests are skipped.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from app.api.v1 import tasks as tasks_api
from app.core.config import Settings
from app.core.tasks.events import TaskEvent
from app.core.tasks.pg_events import (
    MAX_PAYLOAD_BYTES,
    PgEventRelay,
    asyncpg_connect_args,
    decode_event,
    encode_event,
)
from app.main import create_app
from tests.api.v1.conftest import FAST_TASKS, SSEEvent, serve_asgi, sse_events
from tests.conftest import AuthedUser

DEADLINE = 15.0


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return dict(FAST_TASKS)


@pytest.fixture
def postgres_only(database_url: str) -> None:
    if database_url.startswith("sqlite"):
        pytest.skip("LISTEN/NOTIFY needs PostgreSQL (SQLite runs on one host, without a relay)")


@pytest.fixture
async def app_b(
    postgres_only: None, settings: Settings, app: FastAPI, tmp_path: Path
) -> AsyncIterator[FastAPI]:
    other = create_app(
        settings.model_copy(update={"run_worker": False, "data_dir": tmp_path / "data-b"})
    )
    async with LifespanManager(other, startup_timeout=30, shutdown_timeout=30):
        yield other


def relay_of(app: FastAPI) -> PgEventRelay:
    relay = app.state.tasks.relay
    assert isinstance(relay, PgEventRelay)
    return relay


async def both_connected(*apps: FastAPI) -> None:
    for instance in apps:
        assert await relay_of(instance).wait_connected(DEADLINE), "relay never connected"


async def eventually(condition: Callable[[], Awaitable[bool] | bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not within {DEADLINE} s: {what}")


async def next_for(queue: asyncio.Queue[TaskEvent], task_id: str) -> TaskEvent:
    async with asyncio.timeout(DEADLINE):
        while True:
            event = await queue.get()
            if event.task_id == task_id:
                return event


def sample_event(user_id: str, task_id: str, **data: Any) -> TaskEvent:
    return TaskEvent(
        user_id=user_id,
        task_id=task_id,
        type="task.updated",
        data={
            "id": task_id,
            "object": "video",
            "model": "sora-2",
            "status": "in_progress",
            "progress": 42,
            "title": "t",
            "error_code": None,
            "updated_at": "2030-01-01T00:00:00+00:00",
            **data,
        },
    )


async def terminate_backend(database_url: str, pid: int) -> None:
    engine = create_async_engine(database_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            killed = await conn.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        assert killed is True
    finally:
        await engine.dispose()


# ----------------------------------------------------------------------------- payloads


def test_payload_round_trips_and_stays_under_the_notify_limit() -> None:
    event = sample_event("u1", "t1", title="é" * 200)
    origin, decoded = decode_event(encode_event(event, "host:1:ab")) or ("", None)
    assert origin == "host:1:ab"
    assert decoded == event

    # An oversized summary keeps the fields a stream needs and fits PostgreSQL's limit.
    huge = sample_event("u1", "t1", title="x" * 20_000, extra="y" * 20_000)
    payload = encode_event(huge, "host:1:ab")
    assert len(payload.encode()) < MAX_PAYLOAD_BYTES
    _, slim = decode_event(payload) or ("", None)
    assert slim is not None
    assert slim.data["status"] == "in_progress"
    assert slim.data["progress"] == 42
    assert slim.data["updated_at"] == "2030-01-01T00:00:00+00:00"
    assert "title" not in slim.data

    for junk in ("", "not json", "[]", json.dumps({"o": "x"}), json.dumps({"o": 1, "u": 2})):
        assert decode_event(junk) is None


def test_asyncpg_dsn_is_the_database_url_without_the_driver() -> None:
    dsn, kwargs = asyncpg_connect_args(
        "postgresql+asyncpg://app:s3cret@db.example:5433/genapi?ssl=require"
    )
    assert dsn == "postgresql://app:s3cret@db.example:5433/genapi"
    assert kwargs == {
        "ssl": "require",
        "server_settings": {"application_name": "genapi task events"},
    }


async def test_sqlite_has_no_relay(app: FastAPI, database_url: str) -> None:
    if not database_url.startswith("sqlite"):
        assert isinstance(app.state.tasks.relay, PgEventRelay)
        return
    assert app.state.tasks.relay is None
    assert not app.state.tasks.events.forwarding


# ----------------------------------------------------------------------------- across processes


async def test_a_task_run_by_one_instance_streams_live_from_another(
    client: httpx.AsyncClient,
    app: FastAPI,
    app_b: FastAPI,
    user: AuthedUser,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # With the relay up, B's streams would re-read the database only after an hour: whatever
    # B shows within the deadline came by NOTIFY.
    monkeypatch.setattr(tasks_api, "DB_RECHECK_SECONDS_RELAYED", 3600.0)
    await both_connected(app, app_b)
    async with (
        serve_asgi(app_b) as b_url,
        httpx.AsyncClient(base_url=b_url, timeout=DEADLINE) as http_b,
        http_b.stream("GET", "/api/v1/tasks/events", headers=user.headers) as stream,
    ):
        assert stream.status_code == 200
        events = sse_events(stream)
        created = await client.post(
            "/api/v1/videos",
            json={"model": "sora-2", "prompt": "relayed across processes", "title": "R"},
            headers=user.headers,
        )
        assert created.status_code == 202, created.text
        task_id = created.json()["id"]
        seen: list[SSEEvent] = []
        async with asyncio.timeout(DEADLINE):
            async for event in events:
                if event.data.get("id") == task_id:
                    seen.append(event)
                if event.event == "task.completed" and event.data.get("id") == task_id:
                    break
    types = [e.event for e in seen]
    assert types[0] == "task.created", types
    assert types[-1] == "task.completed", types
    assert seen[-1].data["status"] == "completed"
    assert seen[-1].data["progress"] == 100
    assert seen[-1].data["title"] == "R"
    assert relay_of(app_b).received >= len(seen)
    assert relay_of(app).sent >= len(seen)


async def test_a_wait_on_one_task_hears_it_from_another_instance(
    app: FastAPI, app_b: FastAPI
) -> None:
    # A request in B waiting on a task a worker in A runs: B has no subscriber of the user,
    # only of the task, and must still take the notification.
    await both_connected(app, app_b)
    bus_a, bus_b = app.state.tasks.events, app_b.state.tasks.events
    waiting = bus_b.subscribe_tasks(["waited-on"])
    try:
        bus_a.publish(sample_event("u-wait", "not-this-one"))
        bus_a.publish(sample_event("u-wait", "waited-on", status="completed"))
        heard = await next_for(waiting, "waited-on")
        assert heard.data["status"] == "completed"
        assert waiting.empty()
    finally:
        bus_b.unsubscribe_tasks(["waited-on"], waiting)


async def test_an_instance_does_not_hear_its_own_events_twice(app: FastAPI, app_b: FastAPI) -> None:
    await both_connected(app, app_b)
    bus_a, bus_b = app.state.tasks.events, app_b.state.tasks.events
    mine = bus_a.subscribe("u-echo")
    try:
        bus_a.publish(sample_event("u-echo", "from-a"))
        # B answers only after it heard A; PostgreSQL delivers notifications in commit order,
        # so an echo of A's event would reach A before B's answer does.
        heard = bus_b.subscribe("u-echo")
        try:
            bus_a.publish(sample_event("u-echo", "from-a-2"))
            await next_for(heard, "from-a-2")
        finally:
            bus_b.unsubscribe("u-echo", heard)
        bus_b.publish(sample_event("u-echo", "from-b"))
        received = [await next_for(mine, "from-a")]
        async with asyncio.timeout(DEADLINE):
            while received[-1].task_id != "from-b":
                received.append(await mine.get())
        assert [e.task_id for e in received] == ["from-a", "from-a-2", "from-b"]
        assert mine.empty()
    finally:
        bus_a.unsubscribe("u-echo", mine)


async def test_the_relay_reconnects_after_its_connection_is_terminated(
    app: FastAPI, app_b: FastAPI, database_url: str
) -> None:
    await both_connected(app, app_b)
    relay_a, relay_b = relay_of(app), relay_of(app_b)
    queue = app_b.state.tasks.events.subscribe("u-reconnect")
    try:
        # The listener's connection dies: it reconnects and hears A again.
        pid_b = relay_b.server_pid
        assert pid_b is not None
        await terminate_backend(database_url, pid_b)
        await eventually(lambda: relay_b.connections >= 2 and relay_b.connected, "B reconnects")
        assert relay_b.server_pid not in (None, pid_b)
        app.state.tasks.events.publish(sample_event("u-reconnect", "after-b-reconnect"))
        assert (await next_for(queue, "after-b-reconnect")).data["progress"] == 42

        # The sender's connection dies: what it publishes meanwhile waits in its outbox and
        # goes out once it is back.
        pid_a = relay_a.server_pid
        assert pid_a is not None
        await terminate_backend(database_url, pid_a)
        app.state.tasks.events.publish(sample_event("u-reconnect", "while-a-down"))
        event = await next_for(queue, "while-a-down")
        assert event.type == "task.updated"
        await eventually(lambda: relay_a.connections >= 2 and relay_a.connected, "A reconnects")
        assert relay_a.server_pid != pid_a
    finally:
        app_b.state.tasks.events.unsubscribe("u-reconnect", queue)
