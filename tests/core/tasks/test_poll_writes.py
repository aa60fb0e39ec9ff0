"""Batched poll writes (`app/core/tasks/poll_writes.py`): routine "still running, poll again at
T" updates of many tasks share one transaction, each row keeps its compare-and-swap, only rows
that were updated get an event (after the commit), and a graceful stop writes what is queued."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy.exc import DBAPIError

from app.core.tasks import service
from app.core.tasks.events import TaskEvent
from app.core.tasks.poll_writes import Applied, PollWrites
from app.core.tasks.worker import TaskWorker
from app.db.base import utcnow
from app.models import GenerationTask
from tests.core.tasks.harness import Engine, submit_only


async def _claimed(engine: Engine, user_id: str, worker: TaskWorker, n: int) -> list[str]:
    """`n` submitted tasks, leased by `worker` as a claim leaves them."""
    ids = [(await engine.create(user_id, f"batched {i} [sim:never]"))[0].id for i in range(n)]
    await submit_only(engine)
    for task_id in ids:
        await engine.update_task(task_id, next_poll_at=utcnow())
    claimed = await worker.claim(n)
    assert sorted(t.id for t in claimed) == sorted(ids)
    return ids


def _drain(queue: asyncio.Queue[TaskEvent]) -> list[TaskEvent]:
    events = []
    while not queue.empty():
        events.append(queue.get_nowait())
    return events


async def test_batched_writes_are_applied_in_one_transaction(engine: Engine, user_id: str) -> None:
    worker = engine.worker("batcher")
    ids = await _claimed(engine, user_id, worker, 5)
    tasks = {t.id: t for t in await engine.tasks(ids)}
    # Renamed by its user after the claim: the event carries the current title.
    await engine.update_task(ids[0], title="renamed meanwhile")
    events = engine.runtime.events.subscribe(user_id)
    before = utcnow()

    await asyncio.gather(
        *(
            worker._reschedule(
                tasks[task_id],
                30,
                event="task.updated",
                status="in_progress",
                progress=40 + i,
                poll_attempts=7,
                consecutive_errors=0,
            )
            for i, task_id in enumerate(ids)
        )
    )

    assert worker._poll_writes.batches == 1
    for i, task in enumerate(await engine.tasks(ids)):
        assert task.status == "in_progress"
        assert task.progress == 40 + i
        assert task.poll_attempts == 7
        assert task.lease_owner is None
        assert task.lease_expires_at is None
        assert task.next_poll_at is not None
        assert timedelta(seconds=29) < task.next_poll_at - before < timedelta(seconds=60)
    published = {e.task_id: e for e in _drain(events)}
    assert set(published) == set(ids)
    assert {e.type for e in published.values()} == {"task.updated"}
    assert published[ids[3]].data["progress"] == 43
    assert published[ids[0]].data["title"] == "renamed meanwhile"


async def test_cas_losers_are_not_written_and_publish_nothing(engine: Engine, user_id: str) -> None:
    worker = engine.worker("loser")
    cancelled_id, taken_id, kept_id = await _claimed(engine, user_id, worker, 3)
    tasks = {t.id: t for t in await engine.tasks([cancelled_id, taken_id, kept_id])}
    async with engine.database.session() as db:
        row = await db.get(GenerationTask, cancelled_id)
        assert row is not None
        assert await service.cancel_task(db, engine.runtime.context(), row)
    await engine.update_task(taken_id, lease_owner="another-worker")
    events = engine.runtime.events.subscribe(user_id)

    await asyncio.gather(
        *(
            worker._reschedule(tasks[t], 5, event="task.updated", progress=60)
            for t in (cancelled_id, taken_id, kept_id)
        )
    )

    assert worker._poll_writes.batches == 1
    cancelled, taken, kept = await engine.tasks([cancelled_id, taken_id, kept_id])
    assert (cancelled.status, taken.lease_owner) == ("cancelled", "another-worker")
    assert cancelled.progress == tasks[cancelled_id].progress != 60
    assert taken.progress == tasks[taken_id].progress != 60
    assert kept.progress == 60
    assert kept.lease_owner is None
    assert [e.task_id for e in _drain(events)] == [kept_id]


async def test_under_the_claim_loop_the_job_does_not_wait_and_stop_writes_the_queue(
    engine: Engine, user_id: str
) -> None:
    worker = engine.worker("stopper")
    (task_id,) = await _claimed(engine, user_id, worker, 1)
    (task,) = await engine.tasks([task_id])
    worker._poll_writes.window = 3600.0  # never written by the timer in this test
    await worker.start()
    events = engine.runtime.events.subscribe(user_id)

    # Returns at once: the slot is free for another task while the write waits for its batch.
    await asyncio.wait_for(worker._reschedule(task, 30, event="task.updated", progress=77), 5)
    assert worker._poll_writes.pending == 1
    stored = await engine.task(task_id)
    assert stored.progress == task.progress != 77
    assert stored.lease_owner == "stopper"  # nobody else takes it meanwhile
    assert events.empty()  # nothing is announced before it is committed

    await asyncio.wait_for(worker.stop(grace_seconds=0), timeout=10)

    stored = await engine.task(task_id)
    assert (stored.progress, stored.lease_owner) == (77, None)
    assert worker._poll_writes.pending == 0
    assert [(e.task_id, e.data["progress"]) for e in _drain(events)] == [(task_id, 77)]


async def test_writes_of_different_columns_share_the_transaction(
    engine: Engine, user_id: str
) -> None:
    worker = engine.worker("mixed")
    first, second, third = await _claimed(engine, user_id, worker, 3)
    writes = PollWrites(engine.database, "mixed", window=0.05)
    later = utcnow() + timedelta(minutes=5)

    outcomes = await asyncio.gather(
        writes.add(first, {"progress": 10, "next_poll_at": later}),
        writes.add(second, {"progress": 20, "upstream_status": None, "next_poll_at": later}),
        writes.add(third, {"consecutive_errors": 3, "submit_state": "submitted"}),
        writes.add("no-such-task", {"progress": 30}),
    )

    assert writes.batches == 1
    assert [o is not None for o in outcomes] == [True, True, True, False]
    one, two, three = await engine.tasks([first, second, third])
    assert (one.progress, two.progress, two.upstream_status) == (10, 20, None)
    assert one.next_poll_at == later
    assert three.consecutive_errors == 3
    # Only the columns given were written: the leases of these rows are still the worker's.
    assert {one.lease_owner, two.lease_owner, three.lease_owner} == {"mixed"}


async def test_a_full_queue_is_written_without_waiting(engine: Engine, user_id: str) -> None:
    worker = engine.worker("full")
    ids = await _claimed(engine, user_id, worker, 4)
    writes = PollWrites(engine.database, "full", window=3600.0, max_rows=2)

    outcomes = await asyncio.wait_for(
        asyncio.gather(*(writes.add(t, {"progress": 5}) for t in ids)), timeout=10
    )

    assert all(o is not None for o in outcomes)
    assert writes.batches == 2
    assert {t.progress for t in await engine.tasks(ids)} == {5}


async def test_a_row_the_database_refuses_does_not_sink_its_batch(
    engine: Engine, user_id: str
) -> None:
    worker = engine.worker("poison")
    good, bad, other = await _claimed(engine, user_id, worker, 3)
    writes = PollWrites(engine.database, "poison", window=0.05)

    outcomes = await asyncio.gather(
        writes.add(good, {"progress": 15}),
        writes.add(bad, {"progress": None}),  # NOT NULL: the whole statement fails
        writes.add(other, {"progress": 16}),
        return_exceptions=True,
    )

    assert isinstance(outcomes[0], Applied)
    assert isinstance(outcomes[1], DBAPIError)
    assert isinstance(outcomes[2], Applied)
    assert [t.progress for t in await engine.tasks([good, other])] == [15, 16]
