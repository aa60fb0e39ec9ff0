"""`genapi worker`: `--once` processes what is due and exits; without it the worker runs until
SIGTERM, then stops cleanly and hands its leases back."""

from __future__ import annotations

import signal
from pathlib import Path

from app.db.base import utcnow
from tests.core.tasks.harness import Engine, LiveSimulator, wait_until
from tests.core.tasks.procs import Proc, service_env


async def test_worker_once_processes_due_tasks_and_exits(
    engine: Engine, sim: LiveSimulator, user_id: str, tmp_path: Path
) -> None:
    prompt = "one pass at a time [sim:polls=1]"
    task_id = (await engine.create(user_id, prompt))[0].id
    # A long poll interval: after the submit the task is not due again during this pass.
    env = service_env(engine.settings, POLLING_INTERVAL=30)

    first = await Proc("once-1", ["worker", "--once"], env, tmp_path / "procs").start()
    assert await first.wait() == 0, first.log()
    task = await engine.task(task_id)
    assert (task.status, task.submit_state) == ("queued", "submitted")
    assert task.upstream_id
    assert task.lease_owner is None
    counts = await sim.prompt_counts(prompt)
    assert (counts["creates"], counts["polls"]) == (1, 0)

    await engine.update_task(task_id, next_poll_at=utcnow())
    second = await Proc(
        "once-2", ["worker", "--once", "--concurrency", "2"], env, tmp_path / "procs"
    ).start()
    assert await second.wait() == 0, second.log()
    task = await engine.task(task_id)
    assert task.status == "completed", second.log()
    assert [m.state for m in await engine.media(task_id)] == ["stored"]
    assert (await sim.prompt_counts(prompt))["creates"] == 1


async def test_worker_runs_until_sigterm_and_hands_leases_back(
    engine: Engine, sim: LiveSimulator, user_id: str, tmp_path: Path
) -> None:
    quick = (await engine.create(user_id, "quick [sim:polls=1]"))[0].id
    endless_prompt = "endless [sim:never][sim:poll-slow=2]"
    endless = (await engine.create(user_id, endless_prompt))[0].id
    env = service_env(engine.settings, POLLING_INTERVAL=0.1, TASK_LEASE_SECONDS=60)
    proc = await Proc("worker", ["worker", "-c", "4"], env, tmp_path / "procs").start()
    try:

        async def busy() -> bool:
            assert proc.process is not None
            assert proc.process.returncode is None, proc.log()
            done = await engine.terminal([quick])
            return done and sim.inflight.current.get("poll", 0) >= 1

        await wait_until(busy, within=30)
        # The endless task's slow poll is in flight: its 60 s lease is held right now.
        assert (await engine.task(endless)).lease_owner is not None
        assert proc.process is not None
        proc.process.send_signal(signal.SIGTERM)
        assert await proc.wait(30) == 0, proc.log()
    finally:
        await proc.ensure_dead()
    assert "stopped" in proc.log()
    assert "concurrency 4" in proc.log()
    assert (await engine.task(quick)).status == "completed"
    left = await engine.task(endless)
    assert left.status in ("queued", "in_progress")
    assert left.lease_owner is None
    assert left.lease_expires_at is None
    assert (await sim.prompt_counts(endless_prompt))["create_requests"] == 1
