"""Concurrency: one worker polls many tasks at once, never more than MAX_CONCURRENT_TASKS."""

from __future__ import annotations

from typing import Any

import pytest

from tests.core.tasks.harness import Engine, LiveSimulator, is_poll, wait_until

BOUND = 5
POLL_SECONDS = 0.3
TASKS = 20


@pytest.fixture
def engine_overrides() -> dict[str, Any]:
    return {"max_concurrent_tasks": BOUND}


async def test_polls_run_concurrently_within_the_bound(
    engine: Engine, sim: LiveSimulator, user_id: str
) -> None:
    ids = [
        (await engine.create(user_id, f"crowd {i} [sim:poll-slow={POLL_SECONDS}][sim:polls=1]"))[
            0
        ].id
        for i in range(TASKS)
    ]
    worker = engine.worker()
    await worker.start()
    await wait_until(lambda: engine.terminal(ids), within=30)
    await worker.stop()

    assert [t.status for t in await engine.tasks(ids)] == ["completed"] * TASKS
    peak = sim.inflight.peak
    assert 1 < peak["poll"] <= BOUND, peak
    assert peak["create"] <= BOUND, peak
    # As seen by the simulator: twenty 0.3 s polls took far less than twenty in a row.
    polls = [r for r in await sim.requests() if is_poll(r["method"], r["path"])]
    assert len(polls) == TASKS
    answered = sorted(float(r["at"]) for r in polls)
    assert answered[-1] - answered[0] < TASKS * POLL_SECONDS / 2
