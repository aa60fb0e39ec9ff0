"""Submit semantics: a create is sent again only when the upstream provably did not take it.

- connection refused, 429: stays pending and is sent later (after Retry-After);
- 5xx, timeout, unreadable answer after the request went out: failed `upstream_submit_failed`,
  never resent (the simulator's create count stays 1);
- a task found `sending` (the process died mid-create): failed `submit_interrupted`, not sent.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.tasks.worker import TaskWorker
from app.db.base import utcnow
from app.simulator import SimulatorConfig
from tests.conftest import empty_all_tables
from tests.core.tasks.harness import (
    SIM_KEY,
    Engine,
    LiveSimulator,
    make_settings,
    reserve_port,
    wait_until,
)


async def drive(engine: Engine, worker: TaskWorker, task_id: str, within: float = 20) -> None:
    async def done() -> bool:
        await worker.run_until_idle()
        return await engine.terminal([task_id])

    await wait_until(done, within=within)


@pytest.mark.parametrize(
    ("directive", "code", "upstream_created"),
    [
        ("[sim:500]", "upstream_submit_failed", 0),
        ("[sim:502]", "upstream_submit_failed", 0),
        ("[sim:html]", "upstream_submit_failed", 0),
        ("[sim:html-200]", "upstream_submit_failed", 0),
        ("[sim:malformed]", "upstream_submit_failed", 0),
        ("[sim:accepted-500]", "upstream_submit_failed", 1),
        ("[sim:reject=bad prompt]", "upstream_rejected", 0),
        ("[sim:envelope-error]", "upstream_rejected", 0),
    ],
)
async def test_a_create_that_may_have_arrived_is_never_sent_again(
    engine: Engine,
    sim: LiveSimulator,
    user_id: str,
    directive: str,
    code: str,
    upstream_created: int,
) -> None:
    prompt = f"fragile {directive}[sim:fault-times=always]"
    task_id = (await engine.create(user_id, prompt))[0].id
    worker = engine.worker()
    await drive(engine, worker, task_id)
    task = await engine.task(task_id)
    assert task.status == "failed"
    assert task.error_code == code
    assert task.submit_state == "sending"
    # More rounds change nothing upstream.
    await worker.run_until_idle()
    counts = await sim.prompt_counts(prompt)
    assert counts["create_requests"] == 1
    assert counts["creates"] == upstream_created


@pytest.mark.parametrize("engine_overrides", [{"request_timeout": 0.5}])
async def test_a_create_that_timed_out_is_failed_not_resent(
    engine: Engine, sim: LiveSimulator, user_id: str
) -> None:
    prompt = "slow create [sim:slow=2]"
    task_id = (await engine.create(user_id, prompt))[0].id
    await drive(engine, engine.worker(), task_id)
    task = await engine.task(task_id)
    assert (task.status, task.error_code) == ("failed", "upstream_submit_failed")
    # The simulator finishes the request it received (it never learns the client left).
    await wait_until(lambda: _created(sim, prompt, 1))
    assert (await sim.prompt_counts(prompt))["create_requests"] == 1


async def test_429_on_create_is_resent_after_retry_after(
    engine: Engine, sim: LiveSimulator, user_id: str
) -> None:
    prompt = "busy upstream [sim:429=1]"
    task_id = (await engine.create(user_id, prompt))[0].id
    worker = engine.worker()
    before = utcnow()
    assert await worker.tick() == 1  # one round only
    await wait_until(lambda: _idle(worker))
    task = await engine.task(task_id)
    assert (task.status, task.submit_state, task.error_code) == ("queued", "pending", None)
    assert task.next_poll_at is not None
    assert task.next_poll_at >= before + timedelta(seconds=1)
    await drive(engine, worker, task_id)
    assert (await engine.task(task_id)).status == "completed"
    counts = await sim.prompt_counts(prompt)
    assert (counts["create_requests"], counts["creates"]) == (2, 1)
    posts = [r for r in await sim.requests() if r["method"] == "POST"]
    assert [r["status"] for r in posts] == [429, 200]
    assert posts[1]["at"] - posts[0]["at"] >= 1.0


async def test_429_without_retry_after_is_resent_with_backoff(
    engine: Engine, sim: LiveSimulator, user_id: str
) -> None:
    prompt = "busy, no hint [sim:429-no-retry-after][sim:fault-times=2]"
    task_id = (await engine.create(user_id, prompt))[0].id
    await drive(engine, engine.worker(), task_id)
    assert (await engine.task(task_id)).status == "completed"
    counts = await sim.prompt_counts(prompt)
    assert (counts["create_requests"], counts["creates"]) == (3, 1)


async def test_a_task_left_sending_by_a_crash_is_failed_not_resent(
    engine: Engine, sim: LiveSimulator, user_id: str
) -> None:
    prompt = "was in flight when the process died"
    task_id = (await engine.create(user_id, prompt))[0].id
    await engine.update_task(task_id, submit_state="sending")
    await drive(engine, engine.worker(), task_id)
    task = await engine.task(task_id)
    assert (task.status, task.error_code) == ("failed", "submit_interrupted")
    assert (await sim.stats())["create_requests"] == 0


async def test_a_rejected_key_fails_the_task(
    engine: Engine, sim: LiveSimulator, user_id: str
) -> None:
    task_id = (await engine.create(user_id, "wrong key", upstream_key="sk-not-this-one"))[0].id
    await drive(engine, engine.worker(), task_id)
    task = await engine.task(task_id)
    assert (task.status, task.error_code) == ("failed", "upstream_auth_failed")
    assert (await sim.stats())["creates"] == 0


# -- an upstream that is down, then comes up ------------------------------------------------


@pytest.fixture
def late_sim() -> Iterator[LiveSimulator]:
    """A simulator whose port refuses connections until the test starts it."""
    server = LiveSimulator(SimulatorConfig(api_key=SIM_KEY, task_seconds=0), sock=reserve_port())
    yield server
    server.stop()


@pytest.fixture
async def late_engine(
    database_url: str,
    master_key: str,
    tmp_path: Path,
    late_sim: LiveSimulator,
    cleanup_engine: AsyncEngine,
) -> AsyncIterator[Engine]:
    settings = make_settings(database_url, master_key, tmp_path / "data", late_sim.base_url)
    harness = Engine(settings)
    try:
        yield harness
    finally:
        await harness.close()
        await empty_all_tables(cleanup_engine)


async def test_connection_refused_keeps_the_task_pending_until_the_upstream_is_back(
    late_engine: Engine, late_sim: LiveSimulator
) -> None:
    engine = late_engine
    user_id = await engine.add_user()
    prompt = "upstream still booting"
    task_id = (await engine.create(user_id, prompt))[0].id
    worker = engine.worker(polling_interval=30)  # backoff long enough for one try per round
    for attempt in (1, 2):
        await engine.update_task(task_id, next_poll_at=utcnow())
        await worker.run_until_idle()
        task = await engine.task(task_id)
        assert (task.status, task.submit_state, task.error_code) == ("queued", "pending", None)
        assert task.consecutive_errors == attempt
    late_sim.start()
    await engine.update_task(task_id, next_poll_at=utcnow())
    await drive(engine, engine.worker(), task_id)
    assert (await engine.task(task_id)).status == "completed"
    counts = await late_sim.prompt_counts(prompt)
    assert (counts["create_requests"], counts["creates"]) == (1, 1)


async def _created(sim: LiveSimulator, prompt: str, count: int) -> bool:
    return (await sim.prompt_counts(prompt))["creates"] >= count


async def _idle(worker: TaskWorker) -> bool:
    return worker.inflight_count == 0
