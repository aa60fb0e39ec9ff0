"""Fixtures for the task engine: a live simulator over real HTTP and the engine on the test DB.

Override `sim_config` or `engine_overrides` in a module to change the simulator or settings.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from app.simulator import SimulatorConfig
from tests.conftest import empty_all_tables
from tests.core.tasks.harness import SIM_KEY, Engine, LiveSimulator, make_settings


@pytest.fixture
def sim_config() -> SimulatorConfig:
    return SimulatorConfig(api_key=SIM_KEY, task_seconds=0.3)


@pytest.fixture
def sim(sim_config: SimulatorConfig) -> Iterator[LiveSimulator]:
    server = LiveSimulator(sim_config)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def engine_overrides() -> dict[str, Any]:
    return {}


@pytest.fixture
async def engine(
    database_url: str,
    master_key: str,
    tmp_path: Path,
    sim: LiveSimulator,
    engine_overrides: dict[str, Any],
    cleanup_engine: AsyncEngine,
) -> AsyncIterator[Engine]:
    settings = make_settings(
        database_url, master_key, tmp_path / "data", sim.base_url, **engine_overrides
    )
    harness = Engine(settings)
    try:
        yield harness
    finally:
        await harness.close()
        await empty_all_tables(cleanup_engine)


@pytest.fixture
async def user_id(engine: Engine) -> str:
    return await engine.add_user()
