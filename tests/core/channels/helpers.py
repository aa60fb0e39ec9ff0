"""Helpers for the channel tests: add channels through the service, read rows, drive tasks."""

from __future__ import annotations

import socket
from typing import Any

from sqlalchemy import select

from app.core.catalog import get_catalog
from app.core.channels import ChannelView
from app.core.channels import service as channels
from app.core.tasks.worker import TaskWorker
from app.models import Channel
from app.models.schemas.channels import ChannelCreate, ChannelUpdate
from app.simulator import Simulator
from tests.core.tasks.harness import Engine, wait_until

KEY_A = "sk-sim-channel-a-0123456789"
KEY_B = "sk-sim-channel-b-9876543210"


def url_of(sock: socket.socket) -> str:
    return f"http://127.0.0.1:{sock.getsockname()[1]}"


async def add_channel(engine: Engine, **fields: Any) -> ChannelView:
    body = ChannelCreate(**{"name": "channel", "type": "aggregator", **fields})
    async with engine.database.session() as db:
        view = await channels.create_channel(db, engine.encryptor, get_catalog(), body)
    engine.runtime.router.invalidate()
    return view


async def update_channel(engine: Engine, channel_id: str, **fields: Any) -> ChannelView:
    async with engine.database.session() as db:
        view = await channels.update_channel(
            db, engine.encryptor, get_catalog(), channel_id, ChannelUpdate(**fields)
        )
    engine.runtime.router.invalidate()
    return view


async def channel_row(engine: Engine, channel_id: str) -> Channel:
    async with engine.database.session() as db:
        row = await db.scalar(select(Channel).where(Channel.id == channel_id))
    assert row is not None
    return row


async def drive(
    engine: Engine, worker: TaskWorker, task_ids: list[str], within: float = 20
) -> None:
    """Run the worker round after round until every task has ended."""

    async def done() -> bool:
        await worker.run_until_idle()
        return await engine.terminal(task_ids)

    await wait_until(done, within=within)


def requests_to(simulator: Simulator, method: str | None = None) -> list[dict[str, Any]]:
    return [
        entry
        for entry in list(simulator.store.requests)
        if method is None or entry["method"] == method
    ]


def polls_of(simulator: Simulator, upstream_id: str) -> int:
    """Status requests the simulator answered for one task (any family's poll path)."""
    return sum(
        1
        for entry in list(simulator.store.requests)
        if entry["method"] == "GET" and entry["path"].endswith(upstream_id)
    )
