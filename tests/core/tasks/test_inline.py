"""Tasks created in a process whose worker runs start at once, without waiting for a claim.

They are inserted already leased to that worker and handed over after the commit. The lease
keeps every other worker off them; if the process dies before (or while) running them, the
lease expires and any worker claims them like any other task: nothing lost, nothing doubled.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import event

from app.core.quota import reserve
from app.core.tasks import worker as worker_module
from app.core.tasks.results import TransientFetchError
from app.core.tasks.service import InlineLease
from app.core.tasks.upstream import SubmitPlan
from app.core.tasks.worker import TaskWorker
from app.db.base import utcnow
from app.models import GenerationTask, Media
from tests.core.tasks.harness import Engine, LiveSimulator, wait_until


@pytest.fixture
async def running(engine: Engine) -> AsyncIterator[TaskWorker]:
    """The runtime's own worker, running (as inside `genapi serve`)."""
    await engine.runtime.start(run_worker=True)
    yield engine.runtime.worker
    await engine.runtime.stop()


def count_claims(worker: TaskWorker) -> list[str]:
    """The ids this worker's claims return (a spy on the method, not on the database)."""
    claimed: list[str] = []
    original = worker.claim

    async def claim(limit: int) -> list[GenerationTask]:
        tasks = await original(limit)
        claimed.extend(t.id for t in tasks)
        return tasks

    worker.claim = claim  # type: ignore[method-assign]
    return claimed


async def test_an_image_created_beside_a_running_worker_completes_without_a_claim(
    engine: Engine, sim: LiveSimulator, running: TaskWorker, user_id: str
) -> None:
    claimed = count_claims(running)
    prompt = "inline image"
    [created] = await engine.create(user_id, prompt, model="gpt-image-1", kind="image")
    assert created.lease_owner == running.worker_id
    assert created.lease_expires_at is not None

    await wait_until(lambda: engine.terminal([created.id]), within=20)
    task = await engine.task(created.id)
    assert task.status == "completed"
    assert task.submit_state == "submitted"
    assert task.lease_owner is None
    [media] = await engine.media(created.id)
    assert media.state == "stored"
    assert created.id not in claimed
    counts = await sim.prompt_counts(prompt)
    assert (counts["create_requests"], counts["creates"]) == (1, 1)


async def test_a_batch_larger_than_the_free_slots_queues_for_a_claim_instead(
    engine: Engine, running: TaskWorker, user_id: str
) -> None:
    running.slots = 2
    tasks = await engine.create(user_id, "too many", model="gpt-image-1", kind="image", n=3)
    assert [t.lease_owner for t in tasks] == [None, None, None]
    await wait_until(lambda: engine.terminal([t.id for t in tasks]), within=30)
    assert {(await engine.task(t.id)).status for t in tasks} == {"completed"}


async def test_no_inline_lease_without_a_running_worker(engine: Engine, user_id: str) -> None:
    assert engine.runtime.worker.inline_lease(1) is None
    [task] = await engine.create(user_id, "queued", model="gpt-image-1", kind="image")
    assert task.lease_owner is None


async def test_tasks_of_a_process_that_died_before_starting_them_are_claimed_after_the_lease(
    engine: Engine, sim: LiveSimulator, user_id: str
) -> None:
    # The creating process commits the leased rows and dies before its worker starts them.
    lease_seconds = 1.0
    dead = InlineLease("dead-process", utcnow() + timedelta(seconds=lease_seconds))
    ctx = dataclasses.replace(
        engine.runtime.context(), inline_lease=lambda n: dead, start_inline=lambda t, p: None
    )
    engine.runtime.context = lambda: ctx  # type: ignore[method-assign]
    prompt = "orphaned at birth"
    [created] = await engine.create(user_id, prompt, model="gpt-image-1", kind="image")
    assert created.lease_owner == "dead-process"

    survivor = engine.worker("survivor")
    # While the lease lives nobody else touches it.
    assert await survivor.claim(10) == []
    assert (await sim.prompt_counts(prompt))["create_requests"] == 0

    async def finished() -> bool:
        await survivor.run_until_idle()
        return await engine.terminal([created.id])

    await wait_until(finished, within=20)
    task = await engine.task(created.id)
    assert task.status == "completed"
    counts = await sim.prompt_counts(prompt)
    assert (counts["create_requests"], counts["creates"]) == (1, 1)


async def test_a_video_created_beside_a_running_worker_is_submitted_at_once(
    engine: Engine, sim: LiveSimulator, running: TaskWorker, user_id: str
) -> None:
    claimed = count_claims(running)
    prompt = "inline video [sim:task-seconds=0.3]"
    [created] = await engine.create(user_id, prompt)
    assert created.lease_owner == running.worker_id

    async def submitted() -> bool:
        return (await engine.task(created.id)).submit_state == "submitted"

    await wait_until(submitted, within=10)
    assert created.id not in claimed  # sent by the hand-over, polled later through claims
    await wait_until(lambda: engine.terminal([created.id]), within=30)
    assert (await engine.task(created.id)).status == "completed"
    assert (await sim.prompt_counts(prompt))["creates"] == 1


async def test_the_completion_event_carries_the_committed_row_and_media(
    engine: Engine, running: TaskWorker, user_id: str
) -> None:
    events = engine.runtime.events.subscribe(user_id)
    [created] = await engine.create(user_id, "outcome", model="gpt-image-1", kind="image")
    await wait_until(lambda: engine.terminal([created.id]), within=20)
    seen = []
    while not events.empty():
        seen.append(events.get_nowait())
    [completed] = [e for e in seen if e.type == "task.completed"]
    assert completed.outcome is not None
    assert completed.outcome.task.status == "completed"
    [stored] = await engine.media(created.id)
    [carried] = completed.outcome.media
    assert (carried.id, carried.state, carried.sha256) == (stored.id, "stored", stored.sha256)
    # Nothing but the completion carries one (other events are summaries only).
    assert all(e.outcome is None for e in seen if e is not completed)


@pytest.mark.parametrize("creator_waits", [False, True])
async def test_tasks_handed_over_while_the_worker_stops_are_left_for_a_claim(
    engine: Engine, sim: LiveSimulator, user_id: str, creator_waits: bool
) -> None:
    await engine.runtime.start(run_worker=True)
    worker = engine.runtime.worker
    assert worker.inline_lease(1) is not None
    # A short lease: whether the stop hands it back (if the row commits before the stop
    # releases its leases) or it has to expire, another worker gets the task soon.
    lease = InlineLease(worker.worker_id, utcnow() + timedelta(seconds=1))
    # The creating request commits while the worker is already stopping.
    ctx = dataclasses.replace(engine.runtime.context(), inline_lease=lambda n: lease)
    engine.runtime.context = lambda: ctx  # type: ignore[method-assign]
    stopping = asyncio.ensure_future(engine.runtime.stop())
    await asyncio.sleep(0)  # the stop has begun (it sets the flag before its first await)
    assert worker._stopping
    [created] = await engine.create(
        user_id, "late hand-over", model="gpt-image-1", kind="image", creator_waits=creator_waits
    )
    assert created.id not in worker._inflight
    await stopping
    # Inserted `sending` for a waiting creator, it was never sent: handed back as such (a
    # claimer would otherwise fail it as interrupted). The hand-back runs on its own, and may
    # land after the stop returned when the stop finished before the creator's commit; the
    # stopping loop's last claim may even have taken it back at once and sent it.

    async def handed_back() -> bool:
        return (await engine.task(created.id)).submit_state != "sending"

    await wait_until(handed_back, within=10)
    assert (await engine.task(created.id)).submit_state in ("pending", "submitted")
    assert (await sim.prompt_counts("late hand-over"))["create_requests"] <= 1
    survivor = engine.worker("survivor")

    async def finished() -> bool:
        await survivor.run_until_idle()
        return await engine.terminal([created.id])

    await wait_until(finished, within=20)
    assert (await engine.task(created.id)).status == "completed"
    assert (await sim.prompt_counts("late hand-over"))["creates"] == 1


# -- a creator that waits (the synchronous OpenAI images routes) ------------------------------


def count_task_updates(engine: Engine) -> list[tuple[str, str]]:
    """Every statement that updates generation_tasks from now on: (statement, parameters)."""
    sent: list[tuple[str, str]] = []

    def on_execute(
        conn: object, cursor: object, statement: str, params: object, *_: object
    ) -> None:
        # (On PostgreSQL the completion is one `WITH … UPDATE generation_tasks …` statement.)
        if "UPDATE GENERATION_TASKS" in statement.upper():
            sent.append((statement, repr(params)))

    event.listen(engine.database.engine.sync_engine, "before_cursor_execute", on_execute)
    return sent


async def test_a_task_whose_creator_waits_is_inserted_sending_and_recorded_with_its_outcome(
    engine: Engine, sim: LiveSimulator, running: TaskWorker, user_id: str
) -> None:
    updates = count_task_updates(engine)
    prompt = "waited for"
    [created] = await engine.create(
        user_id, prompt, model="gpt-image-1", kind="image", creator_waits=True
    )
    assert (created.submit_state, created.lease_owner) == ("sending", running.worker_id)

    await wait_until(lambda: engine.terminal([created.id]), within=20)
    task = await engine.task(created.id)
    assert (task.status, task.submit_state, task.progress) == ("completed", "submitted", 100)
    assert task.submitted_at is not None
    assert task.lease_owner is None
    [media] = await engine.media(created.id)
    assert media.state == "stored"
    # One write of the task after its insert: the completion, which also records the
    # submission, reserves quota and writes the media rows in its transaction.
    # (Claims of the running loop, which name no task, are not writes of this one.)
    own = [statement for statement, params in updates if created.id in params]
    assert len(own) == 1, own
    counts = await sim.prompt_counts(prompt)
    assert (counts["create_requests"], counts["creates"]) == (1, 1)


async def test_a_waited_for_task_whose_download_fails_records_its_submission_for_the_retry(
    engine: Engine,
    sim: LiveSimulator,
    running: TaskWorker,
    user_id: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = worker_module.fetch_result
    calls = 0

    async def flaky_fetch(*args: object, **kwargs: object) -> object:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise TransientFetchError("connection reset")
        return await original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(worker_module, "fetch_result", flaky_fetch)
    prompt = "download fails once"
    [created] = await engine.create(
        user_id, prompt, model="gpt-image-1", kind="image", creator_waits=True
    )

    async def rescheduled() -> bool:
        task = await engine.task(created.id)
        return task.submit_state != "sending" or task.status != "queued"

    await wait_until(rescheduled, within=20)
    # Written with the retry: where the results are, so whoever retries downloads them
    # instead of failing the task as interrupted (or asking the upstream again).
    task = await engine.task(created.id)
    if task.status != "completed":
        assert task.submit_state == "submitted"
        assert task.consecutive_errors == 1
        assert task.response_encrypted is not None
        pending = engine.runtime.encryptor.decrypt_json(task.response_encrypted)
        assert pending["pending_results"]

    await wait_until(lambda: engine.terminal([created.id]), within=30)
    task = await engine.task(created.id)
    assert task.status == "completed", task.error_code
    assert calls == 2
    counts = await sim.prompt_counts(prompt)
    assert (counts["create_requests"], counts["creates"]) == (1, 1)


async def test_a_waited_for_task_of_a_process_that_died_before_sending_it_fails_unsent(
    engine: Engine, sim: LiveSimulator, user_id: str
) -> None:
    dead = InlineLease("dead-process", utcnow() + timedelta(seconds=1.0))
    ctx = dataclasses.replace(
        engine.runtime.context(), inline_lease=lambda n: dead, start_inline=lambda t, p: None
    )
    engine.runtime.context = lambda: ctx  # type: ignore[method-assign]
    prompt = "its client is gone"
    [created] = await engine.create(
        user_id, prompt, model="gpt-image-1", kind="image", creator_waits=True
    )
    survivor = engine.worker("survivor")

    async def finished() -> bool:
        await survivor.run_until_idle()
        return await engine.terminal([created.id])

    await wait_until(finished, within=20)
    task = await engine.task(created.id)
    # Its client saw the connection drop and may already have asked again: never sent later.
    assert (task.status, task.error_code) == ("failed", "submit_interrupted")
    assert (await sim.prompt_counts(prompt))["create_requests"] == 0


async def test_rows_an_interrupted_attempt_left_are_cleared_and_their_quota_given_back(
    engine: Engine, sim: LiveSimulator, user_id: str
) -> None:
    [created] = await engine.create(user_id, "second attempt", model="gpt-image-1", kind="image")
    # What a process killed between reserving quota and completing leaves: a `pending` row
    # that holds quota, its file maybe half-moved.
    async with engine.database.session() as db:
        db.add(
            Media(
                id="stale-attempt",
                task_id=created.id,
                user_id=user_id,
                kind="image",
                position=0,
                state="pending",
                bytes=1234,
                thumbnail_bytes=0,
                storage_key=f"{user_id}/stale-attempt.png",
            )
        )
        await reserve(db, user_id, 1234)
    assert await engine.used_bytes(user_id) == 1234

    await engine.worker("second").run_until_idle()
    assert (await engine.task(created.id)).status == "completed"
    [media] = await engine.media(created.id)
    assert media.id != "stale-attempt"
    assert media.state == "stored"
    assert await engine.used_bytes(user_id) == media.bytes + media.thumbnail_bytes


@pytest.mark.parametrize("first_plan", ["raises", "every_channel_cools_down"])
async def test_a_waited_for_task_that_goes_back_to_the_queue_before_its_send_is_still_sent(
    engine: Engine, sim: LiveSimulator, running: TaskWorker, user_id: str, first_plan: str
) -> None:
    original = running.router.plan
    calls = 0

    async def plan_once_unusable(task: GenerationTask, payload: object) -> SubmitPlan:
        nonlocal calls
        calls += 1
        if calls == 1:
            if first_plan == "raises":
                raise RuntimeError("the channel table could not be read")
            return SubmitPlan([], retry_at=utcnow() + timedelta(seconds=0.2))
        return await original(task, payload)  # type: ignore[arg-type]

    running.router.plan = plan_once_unusable  # type: ignore[method-assign]
    prompt = f"not sent the first time ({first_plan})"
    [created] = await engine.create(
        user_id, prompt, model="gpt-image-1", kind="image", creator_waits=True
    )
    await wait_until(lambda: engine.terminal([created.id]), within=30)
    task = await engine.task(created.id)
    # Back in the queue as `pending`, not `sending`: claimed again and sent, not failed as
    # interrupted.
    assert task.status == "completed", task.error_code
    assert calls >= 2
    counts = await sim.prompt_counts(prompt)
    assert (counts["create_requests"], counts["creates"]) == (1, 1)


async def test_a_wait_does_not_reread_tasks_this_process_is_running(
    engine: Engine, sim: LiveSimulator, running: TaskWorker, user_id: str
) -> None:
    """Past the first second a waiting request re-reads its tasks' status, for workers in other
    processes; a task this process's own worker runs ends with an event here, so it is not read
    (nor, afterwards, its outcome)."""
    reads: list[str] = []

    def on_execute(
        conn: object, cursor: object, statement: str, params: object, *_: object
    ) -> None:
        text = statement.lstrip().upper()
        if text.startswith("SELECT GENERATION_TASKS."):  # (the re-read, not a maintenance join)
            reads.append(statement)

    event.listen(engine.database.engine.sync_engine, "before_cursor_execute", on_execute)
    # The upstream takes longer than the re-read interval (WAIT_RECHECK_SECONDS = 1).
    [created] = await engine.create(
        user_id,
        "slow upstream [sim:slow=1.6]",
        model="gpt-image-1",
        kind="image",
        creator_waits=True,
    )
    assert created.lease_owner == running.worker_id  # handed over to this process's worker
    outcomes = await engine.runtime.wait_for([created.id], 20, just_created=True)
    assert outcomes[created.id].task.status == "completed"
    assert reads == []
