"""Fixtures and helpers for the end-to-end task tests (videos, images, tasks, webhooks, content).

- `live_server`: the very app of the `app` fixture (lifespan already run by it) served by uvicorn
  on 127.0.0.1, port 0, in the test's event loop. SSE needs real HTTP: httpx's ASGITransport
  buffers a whole response before returning it.
- `webhook_receiver`: a tiny ASGI app behind uvicorn that records each request and answers with
  scripted status codes.
- Helpers that talk to the in-process simulator through the app's own HTTP client (the same
  route the worker takes), read raw database rows, and wait for task states with a deadline.

None of these fixtures overrides `settings_overrides`: each test module sets its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import socket
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy import select, text

from app.clients.http import simulator_base_url
from app.core.tasks.upstream import SIMULATOR_KEY
from app.db.base import Base
from app.models import GenerationTask, Media
from app.simulator import Simulator

TERMINAL = frozenset({"completed", "failed", "cancelled"})
DEFAULT_TIMEOUT = 30.0
POLL_EVERY = 0.02

# Settings that make simulated tasks finish in a fraction of a second.
FAST_TASKS: dict[str, Any] = {"polling_interval": 0.05, "simulator_task_seconds": 0.3}


# ----------------------------------------------------------------------------- servers


@contextlib.asynccontextmanager
async def serve_asgi(asgi_app: Any) -> AsyncIterator[str]:
    """Serve `asgi_app` over real HTTP on 127.0.0.1 (a free port) in this event loop.

    `lifespan="off"`: for the service, the `app` fixture already ran the lifespan, so the
    server shares its database, worker and event bus with the ASGITransport client.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    # Listening before uvicorn starts: early connections wait in the backlog, none is refused.
    sock.listen(128)
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        asgi_app,
        lifespan="off",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=3,
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(serving, timeout=10)
        sock.close()


@pytest.fixture
async def live_server(app: FastAPI) -> AsyncIterator[str]:
    async with serve_asgi(app) as base_url:
        yield base_url


@dataclass
class ReceivedHook:
    headers: dict[str, str]
    body: bytes
    status: int

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class WebhookReceiver:
    """Records every POST; answers with `statuses` in order, then 200."""

    url: str = ""
    received: list[ReceivedHook] = field(default_factory=list)
    statuses: deque[int] = field(default_factory=deque)
    # While set to an unset Event, requests are recorded but not answered until it is set.
    hold: asyncio.Event | None = None
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        status = self.statuses.popleft() if self.statuses else 200
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        async with self._changed:
            self.received.append(ReceivedHook(headers, b"".join(chunks), status))
            self._changed.notify_all()
        if self.hold is not None:
            await self.hold.wait()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"text/plain")],
            }
        )
        await send({"type": "http.response.body", "body": b"ok" if status < 300 else b"no"})

    async def wait_for(self, count: int, within: float = DEFAULT_TIMEOUT) -> list[ReceivedHook]:
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(lambda: len(self.received) >= count)
        return list(self.received)


@pytest.fixture
async def webhook_receiver() -> AsyncIterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    async with serve_asgi(receiver) as base_url:
        receiver.url = f"{base_url}/hooks"
        try:
            yield receiver
        finally:
            if receiver.hold is not None:
                receiver.hold.set()  # let held requests finish so the server can stop


# ----------------------------------------------------------------------------- simulator


def simulator_of(app: FastAPI) -> Simulator:
    sim_app = app.state.simulator
    assert sim_app is not None, "these tests need the built-in simulator (no API_KEY set)"
    simulator: Simulator = sim_app.state.simulator
    return simulator


@pytest.fixture
def sim(app: FastAPI) -> Simulator:
    return simulator_of(app)


async def sim_call(
    app: FastAPI, method: str, path: str, json_body: Any = None, key: str = SIMULATOR_KEY
) -> httpx.Response:
    """A request to the simulator through the app's shared client (the worker's route)."""
    http: httpx.AsyncClient = app.state.http
    return await http.request(
        method,
        simulator_base_url() + path,
        json=json_body,
        headers={"Authorization": f"Bearer {key}"},
    )


async def sim_stats(app: FastAPI, prompt: str) -> dict[str, int]:
    response = await app.state.http.get(
        simulator_base_url() + "/_sim/stats",
        params={"prompt": prompt},
        headers={"Authorization": f"Bearer {SIMULATOR_KEY}"},
    )
    assert response.status_code == 200, response.text
    counts: dict[str, int] = response.json()["by_prompt"][prompt]
    return counts


# ----------------------------------------------------------------------------- database


async def task_row(app: FastAPI, task_id: str) -> GenerationTask:
    async with app.state.db.session() as db:
        row = await db.get(GenerationTask, task_id)
    assert row is not None, task_id
    return row


async def media_rows(app: FastAPI, task_id: str) -> list[Media]:
    async with app.state.db.session() as db:
        rows = await db.scalars(
            select(Media).where(Media.task_id == task_id).order_by(Media.position)
        )
        return list(rows.all())


async def raw_database_text(app: FastAPI) -> str:
    """Every row of every table, as the text a person with the database file would see."""
    parts: list[str] = []
    async with app.state.db.session() as db:
        for table in Base.metadata.sorted_tables:
            rows = await db.execute(text(f'SELECT * FROM "{table.name}"'))
            for row in rows.all():
                parts.append(f"{table.name}: " + " | ".join(str(value) for value in row))
    return "\n".join(parts)


# ----------------------------------------------------------------------------- tasks


async def wait_for_task(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    task_id: str,
    statuses: Iterable[str] = TERMINAL,
    within: float = DEFAULT_TIMEOUT,
) -> dict[str, Any]:
    """Poll `GET /api/v1/tasks/{id}` until its status is one of `statuses` (or fail)."""
    wanted = set(statuses)
    last: dict[str, Any] = {}
    try:
        async with asyncio.timeout(within):
            while True:
                response = await client.get(f"/api/v1/tasks/{task_id}", headers=headers)
                assert response.status_code == 200, response.text
                last = response.json()
                if last["status"] in wanted:
                    return last
                await asyncio.sleep(POLL_EVERY)
    except TimeoutError:
        raise AssertionError(f"task {task_id} never reached {sorted(wanted)}: {last}") from None


async def create(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    body: dict[str, Any],
    *,
    kind: str = "videos",
    wait: float | None = None,
    expect: int | None = None,
    extra_headers: dict[str, str] | None = None,
) -> Any:
    url = f"/api/v1/{kind}" + (f"?wait={wait:g}" if wait is not None else "")
    response = await client.post(url, json=body, headers={**headers, **(extra_headers or {})})
    wanted = expect if expect is not None else (200 if wait is not None else 202)
    assert response.status_code == wanted, response.text
    return response.json()


async def upstream_bytes(app: FastAPI, media_id: str) -> bytes:
    """The bytes the simulator serves for a stored media item, fetched again from the URL the
    service downloaded it from (or, for inline base64 results, re-rendered by the simulator)."""
    async with app.state.db.session() as db:
        media = await db.get(Media, media_id)
    assert media is not None
    if media.source_encrypted:
        url = app.state.encryptor.decrypt_text(media.source_encrypted)
        response = await app.state.http.get(
            url, headers={"Authorization": f"Bearer {SIMULATOR_KEY}"}
        )
        assert response.status_code == 200, (url, response.status_code)
        return response.content
    # Inline (b64_json) result: the simulator renders each media spec deterministically;
    # find the one whose bytes we stored.
    simulator = simulator_of(app)
    for spec in list(simulator.store.media.values()):
        data = await simulator._media_bytes(spec)
        if hashlib.sha256(data).hexdigest() == media.sha256:
            return data
    raise AssertionError(f"no simulator media has the bytes of media {media_id}")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ----------------------------------------------------------------------------- SSE


@dataclass
class SSEEvent:
    event: str
    data: dict[str, Any]
    id: str | None = None


async def sse_events(response: httpx.Response) -> AsyncIterator[SSEEvent]:
    """Parse a text/event-stream body into events (comments and `retry:` are skipped)."""
    event, data, event_id = "message", "", None
    async for line in response.aiter_lines():
        if line == "":
            if data:
                yield SSEEvent(event, json.loads(data), event_id)
            event, data, event_id = "message", "", None
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "data":
            data = f"{data}\n{value}" if data else value
        elif name == "id":
            event_id = value
