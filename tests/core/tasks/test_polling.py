"""Polling: backoff that obeys Retry-After, transient faults retried, unknown words tolerated,
deadlines swept, upstream outcomes mapped, upstream cancel called where supported."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from app.core.encryption import Encryptor
from app.core.tasks import service
from app.core.tasks.worker import TaskWorker
from app.db.base import utcnow
from app.models import GenerationTask
from tests.core.tasks.harness import Engine, LiveSimulator, is_poll, submit_only, wait_until


async def drive(engine: Engine, worker: TaskWorker, task_id: str, within: float = 20) -> None:
    async def done() -> bool:
        await worker.run_until_idle()
        return await engine.terminal([task_id])

    await wait_until(done, within=within)


def polls_of(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in requests if is_poll(r["method"], r["path"])]


async def test_429_on_poll_waits_at_least_retry_after(
    engine: Engine, sim: LiveSimulator, user_id: str
) -> None:
    prompt = "rate limited poll [sim:poll-429-n=1][sim:retry-after=2][sim:polls=1]"
    task_id = (await engine.create(user_id, prompt))[0].id
    await drive(engine, engine.worker(), task_id)
    assert (await engine.task(task_id)).status == "completed"
    polls = polls_of(await sim.requests())
    assert [p["status"] for p in polls] == [429, 200]
    gap = polls[1]["at"] - polls[0]["at"]
    assert gap >= 2.0, gap


async def test_transient_poll_failures_are_retried(
    engine: Engine, sim: LiveSimulator, user_id: str
) -> None:
    faults = ["500", "503", "html", "html-200", "malformed", "404"]
    prompt = "flaky " + "".join(f"[sim:poll-{kind}-n=1]" for kind in faults) + "[sim:polls=1]"
    task_id = (await engine.create(user_id, prompt))[0].id
    worker = engine.worker()
    seen_errors = []

    async def done() -> bool:
        await worker.run_until_idle()
        task = await engine.task(task_id)
        seen_errors.append(task.consecutive_errors)
        return task.status in ("completed", "failed", "cancelled")

    await wait_until(done, within=30)
    task = await engine.task(task_id)
    assert task.status == "completed", task.error_code
    assert max(seen_errors) >= 3  # the errors accumulated (and backed off) …
    assert task.consecutive_errors == 0  # … and a good answer reset them
    assert task.poll_attempts == len(faults) + 1
    polls = polls_of(await sim.requests())
    assert [p["status"] for p in polls] == [500, 503, 502, 200, 200, 404, 200]


async def test_unknown_status_words_keep_polling(
    engine: Engine, sim: LiveSimulator, user_id: str
) -> None:
    prompt = "odd words [sim:word-in_progress=brewing][sim:word-queued=pondering][sim:polls=4]"
    task_id = (await engine.create(user_id, prompt))[0].id
    worker = engine.worker()
    seen: list[tuple[str, str | None]] = []

    async def done() -> bool:
        await worker.run_until_idle()
        task = await engine.task(task_id)
        seen.append((task.status, task.upstream_status))
        return task.status in ("completed", "failed", "cancelled")

    await wait_until(done)
    assert seen[-1][0] == "completed"
    odd = [status for status, word in seen if word in ("brewing", "pondering")]
    assert odd
    assert set(odd) <= {"queued", "in_progress"}
    assert (await sim.prompt_counts(prompt))["polls"] == 4


@pytest.mark.parametrize(
    ("directive", "status", "code", "message"),
    [
        ("[sim:fail=the model refused]", "failed", "upstream_failed", "the model refused"),
        ("[sim:expire]", "failed", "upstream_failed", None),
        ("[sim:cancelled]", "cancelled", "upstream_cancelled", None),
        ("[sim:expired-url]", "failed", "result_expired", None),
    ],
)
async def test_upstream_outcomes(
    engine: Engine,
    user_id: str,
    directive: str,
    status: str,
    code: str,
    message: str | None,
) -> None:
    task_id = (await engine.create(user_id, f"outcome {directive}[sim:polls=2]"))[0].id
    await drive(engine, engine.worker(), task_id)
    task = await engine.task(task_id)
    assert (task.status, task.error_code) == (status, code)
    if message is not None:
        assert task.error_message_encrypted is not None
        decrypted = Encryptor(engine.settings.storage_master_key or "").decrypt_text(
            task.error_message_encrypted
        )
        assert message in decrypted
    assert await engine.used_bytes(user_id) == 0
    assert task.lease_owner is None
    assert task.next_poll_at is None


@pytest.mark.parametrize(
    ("model", "cancels_upstream"), [("sora-2-openai", True), ("sora-2", False)]
)
async def test_deadline_sweep_fails_with_timeout_and_cancels_upstream(
    engine: Engine, sim: LiveSimulator, user_id: str, model: str, cancels_upstream: bool
) -> None:
    task_id = (await engine.create(user_id, "forever [sim:never]", model=model))[0].id
    worker = engine.worker(polling_interval=30)  # submits; no poll is due afterwards
    await worker.run_until_idle()
    task = await engine.task(task_id)
    assert task.upstream_id
    assert task.status == "queued"
    # Not due for an hour, but past its deadline: the sweep takes it anyway.
    now = utcnow()
    await engine.update_task(
        task_id, deadline_at=now - timedelta(seconds=1), next_poll_at=now + timedelta(hours=1)
    )
    await worker.run_until_idle()
    task = await engine.task(task_id)
    assert (task.status, task.error_code) == ("failed", "timeout")
    deletes = [r for r in await sim.requests() if r["method"] == "DELETE"]
    if cancels_upstream:
        assert len(deletes) == 1
        assert str(task.upstream_id) in deletes[0]["path"]
    else:
        assert deletes == []


async def test_user_cancel_asks_the_upstream_to_cancel_where_supported(
    engine: Engine, sim: LiveSimulator, user_id: str
) -> None:
    task_id = (await engine.create(user_id, "stop this [sim:never]", model="sora-2-openai"))[0].id
    await submit_only(engine)
    async with engine.database.session() as db:
        task = await db.get(GenerationTask, task_id)
        assert task is not None
        assert await service.cancel_task(db, engine.runtime.context(), task)

    async def deleted_upstream() -> bool:
        return any(r["method"] == "DELETE" for r in await sim.requests())

    await wait_until(deleted_upstream)
    assert (await engine.task(task_id)).status == "cancelled"
    # The worker leaves a cancelled task alone.
    polls_before = (await sim.prompt_counts("stop this [sim:never]"))["polls"]
    await engine.worker().run_until_idle()
    assert (await sim.prompt_counts("stop this [sim:never]"))["polls"] == polls_before
