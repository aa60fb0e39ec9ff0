"""Fixtures for channel routing: two live simulators (A and B, each with its own key) behind
uvicorn on real ports, a port that refuses connections, and the task engine on the test DB.

The engine's default channel (`API_BASE_URL`) points at a second refusing port, so a create
that wrongly reached it would fail loudly instead of being served by accident.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.channels.policy import ChannelPolicy
from app.simulator import SimulatorConfig
from tests.conftest import empty_all_tables
from tests.core.channels.helpers import KEY_A, KEY_B
from tests.core.tasks.harness import Engine, LiveSimulator, make_settings, reserve_port


@pytest.fixture
def sim_a() -> Iterator[LiveSimulator]:
    server = LiveSimulator(SimulatorConfig(api_key=KEY_A, task_seconds=0.3))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def sim_b() -> Iterator[LiveSimulator]:
    server = LiveSimulator(SimulatorConfig(api_key=KEY_B, task_seconds=0.3))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def refused() -> Iterator[socket.socket]:
    """A bound socket that is not listening: connections to it are refused until `listen`."""
    sock = reserve_port()
    yield sock
    sock.close()


@pytest.fixture
def policy() -> ChannelPolicy:
    return ChannelPolicy(
        failure_threshold=2,
        cooldown_seconds=60.0,
        cooldown_max_seconds=600.0,
        probe_interval_seconds=0.1,
        cache_seconds=0.0,
    )


@pytest.fixture
def engine_overrides() -> dict[str, Any]:
    return {}


@pytest.fixture
async def engine(
    database_url: str,
    master_key: str,
    tmp_path: Path,
    policy: ChannelPolicy,
    engine_overrides: dict[str, Any],
    cleanup_engine: AsyncEngine,
) -> AsyncIterator[Engine]:
    default_down = reserve_port()
    settings = make_settings(
        database_url,
        master_key,
        tmp_path / "data",
        f"http://127.0.0.1:{default_down.getsockname()[1]}",
        **engine_overrides,
    )
    harness = Engine(settings)
    harness.runtime.router.attach_database(harness.database)
    harness.runtime.router.policy = policy
    try:
        yield harness
    finally:
        await harness.close()
        default_down.close()
        await empty_all_tables(cleanup_engine)


@pytest.fixture
async def user_id(engine: Engine) -> str:
    return await engine.add_user()
