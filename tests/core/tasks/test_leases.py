"""Leases: a crashed worker's tasks are taken over once its lease expires, a live worker keeps
its in-flight leases fresh, and a graceful stop hands them back at once."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from app.db.base import utcnow
from tests.core.tasks.harness import Engine, LiveSimulator, submit_only, wait_until


@pytest.fixture
def engine_overrides() -> dict[str, Any]:
    return {"task_lease_seconds": 1}


async def test_tasks_of_a_crashed_worker_are_taken_over_after_the_lease(
    engine: Engine, sim: LiveSimulator, user_id: str
) -> None:
    prompts = [f"orphaned {i} [sim:polls=2]" for i in range(3)]
    ids = [(await engine.create(user_id, p))[0].id for p in prompts]
    crashed = engine.worker("crashed")
    claimed = await crashed.claim(10)
    assert {t.id for t in claimed} == set(ids)
    # ... and it never does anything with them again.
    heir = engine.worker("heir")
    assert await heir.claim(10) == []
    loop = asyncio.get_running_loop()
    started = loop.time()

    async def taken_over() -> bool:
        return await heir.tick() > 0

    await wait_until(taken_over, within=10)
    assert loop.time() - started >= 0.5  # not before the lease ran out

    async def finished() -> bool:
        await heir.run_until_idle()
        return await engine.terminal(ids)

    await wait_until(finished, within=20)
    assert [t.status for t in await engine.tasks(ids)] == ["completed"] * 3
    for prompt in prompts:
        assert (await sim.prompt_counts(prompt))["create_requests"] == 1


async def test_in_flight_leases_are_kept_fresh(
    engine: Engine, sim: LiveSimulator, user_id: str
) -> None:
    """A poll that outlasts the lease several times over is never taken over meanwhile."""
    prompt = "slow upstream [sim:poll-slow=3][sim:polls=1]"
    task_id = (await engine.create(user_id, prompt))[0].id
    owner, other = engine.worker("owner"), engine.worker("other")
    await submit_only(engine)
    await engine.update_task(task_id, next_poll_at=utcnow())
    await owner.start()
    await wait_until(lambda: _poll_in_flight(sim))
    loop = asyncio.get_running_loop()
    started = loop.time()
    checks = 0
    while sim.inflight.current.get("poll", 0):
        assert await other.claim(5) == [], "a live worker's task was taken over"
        checks += 1
        await asyncio.sleep(0.1)
    assert loop.time() - started > 2 * 1  # the poll outlived two lease durations
    assert checks > 10
    await wait_until(lambda: engine.terminal([task_id]))
    await owner.stop()
    assert (await engine.task(task_id)).status == "completed"
    assert (await sim.prompt_counts(prompt))["polls"] == 1


async def test_graceful_stop_hands_leases_back(
    engine: Engine, sim: LiveSimulator, user_id: str
) -> None:
    ids = [
        (await engine.create(user_id, f"stop me {i} [sim:poll-slow=5][sim:polls=1]"))[0].id
        for i in range(4)
    ]
    first = engine.worker("first", task_lease_seconds=60)
    await first.start()
    await wait_until(lambda: _poll_in_flight(sim, 4))
    assert {t.lease_owner for t in await engine.tasks(ids)} == {"first"}
    await first.stop(grace_seconds=0.1)
    finals = await engine.tasks(ids)
    assert {t.lease_owner for t in finals} == {None}
    assert {t.status for t in finals} <= {"queued", "in_progress"}
    # Another worker continues at once, without waiting for the 60 s leases.
    second = engine.worker("second")
    assert {t.id for t in await second.claim(10)} == set(ids)


async def test_stop_lets_in_flight_work_finish_within_the_grace(
    engine: Engine, sim: LiveSimulator, user_id: str
) -> None:
    ids = [
        (await engine.create(user_id, f"finish me {i} [sim:poll-slow=0.5][sim:polls=1]"))[0].id
        for i in range(3)
    ]
    worker = engine.worker("graceful")
    await submit_only(engine)
    for task_id in ids:
        await engine.update_task(task_id, next_poll_at=utcnow())
    await worker.start()
    await wait_until(lambda: _poll_in_flight(sim, 3))
    await worker.stop(grace_seconds=10)
    finals = await engine.tasks(ids)
    assert [t.status for t in finals] == ["completed"] * 3
    assert {t.lease_owner for t in finals} == {None}


async def _poll_in_flight(sim: LiveSimulator, count: int = 1) -> bool:
    return sim.inflight.current.get("poll", 0) >= count
