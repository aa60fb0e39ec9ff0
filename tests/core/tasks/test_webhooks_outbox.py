"""Webhooks leave through the outbox on their own pace: a slow receiver never holds up polling,
and each terminal state is delivered once, signed."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import pytest
from sqlalchemy import select

from app.core.webhooks import get_or_create_secret, verify
from app.models import User, WebhookDelivery
from tests.core.tasks.harness import Engine, wait_until


class SlowReceiver:
    """Records webhook POSTs; holds each answer until `release` is set."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.arrived = asyncio.Event()
        self.release = asyncio.Event()
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.release.set()
        if self._server is not None:
            self._server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readline()
            headers: dict[str, str] = {}
            while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.received.append((headers, body))
            self.arrived.set()
            await self.release.wait()
            writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


@pytest.fixture
def engine_overrides() -> dict[str, Any]:
    return {"webhook_allowed_hosts": ["127.0.0.1"]}


async def test_a_slow_webhook_receiver_does_not_hold_up_polling(
    engine: Engine, user_id: str
) -> None:
    receiver = SlowReceiver()
    await receiver.start()
    worker = engine.worker()
    await worker.start()
    try:
        url = f"http://127.0.0.1:{receiver.port}/hook"
        hooked = (await engine.create(user_id, "tell me [sim:polls=1]", webhook_url=url))[0].id
        await wait_until(_set(receiver.arrived), within=20)
        # The delivery hangs; meanwhile other tasks are created, polled and completed.
        others = [(await engine.create(user_id, f"meanwhile {i}"))[0].id for i in range(3)]
        await wait_until(lambda: engine.terminal(others), within=20)
        assert not receiver.release.is_set()
        assert len(receiver.received) == 1
        receiver.release.set()

        async def delivered() -> bool:
            async with engine.database.session() as db:
                state = await db.scalar(
                    select(WebhookDelivery.state).where(WebhookDelivery.task_id == hooked)
                )
            return state == "delivered"

        await wait_until(delivered, within=20)
    finally:
        await worker.stop()
        await receiver.stop()

    [(headers, body)] = receiver.received
    payload = json.loads(body)
    assert payload["type"] == "video.completed"
    assert payload["data"]["id"] == hooked
    async with engine.database.session() as db:
        user = await db.get(User, user_id)
        assert user is not None
        secret = await get_or_create_secret(db, engine.encryptor, user)
    assert verify(secret, headers, body)


def _set(event: asyncio.Event) -> Any:
    async def check() -> bool:
        return event.is_set()

    return check
