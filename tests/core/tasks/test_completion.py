"""Storing a completion: on PostgreSQL one statement (compare-and-swap, quota, media rows) for
the common case, the transaction for the rest; on SQLite always the transaction. Either way the
outcome is all or nothing and the quota never overshoots."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app.core.tasks.completion import Completion, complete_in_one_statement
from app.db.base import new_uuid, utcnow
from app.models import GenerationTask, Media
from tests.core.tasks.harness import Engine, wait_until


async def _run(engine: Engine, task_ids: list[str]) -> None:
    worker = engine.worker()

    async def done() -> bool:
        await worker.run_until_idle()
        return await engine.terminal(task_ids)

    await wait_until(done, within=30)


async def test_a_result_that_does_not_fit_the_quota_is_recorded_but_not_kept(
    engine: Engine,
) -> None:
    user_id = await engine.add_user(quota=10)  # no image fits in 10 bytes
    [task] = await engine.create(user_id, "too big", model="gpt-image-1", kind="image")
    await _run(engine, [task.id])

    finished = await engine.task(task.id)
    assert finished.status == "completed"
    [media] = await engine.media(task.id)
    assert media.state == "not_stored"
    assert media.reason == "quota_exceeded"
    assert media.storage_key is None
    assert media.bytes > 10
    assert await engine.used_bytes(user_id) == 0
    assert engine.files_on_disk() == set()  # the moved file was removed again


async def test_results_that_fit_are_stored_and_counted(engine: Engine) -> None:
    user_id = await engine.add_user()
    tasks = await engine.create(user_id, "fits", model="gpt-image-1", kind="image", n=3)
    await _run(engine, [t.id for t in tasks])

    stored = [m for t in tasks for m in await engine.media(t.id)]
    assert [m.state for m in stored] == ["stored"] * 3
    assert await engine.used_bytes(user_id) == sum(m.bytes + m.thumbnail_bytes for m in stored)
    assert engine.files_on_disk() == await engine.stored_keys()


async def test_one_statement_writes_nothing_for_a_task_that_is_not_ours(engine: Engine) -> None:
    if engine.database.is_sqlite:
        pytest.skip("the one-statement completion is PostgreSQL's (SQLite uses the transaction)")
    user_id = await engine.add_user()
    [task] = await engine.create(user_id, "leased elsewhere", model="gpt-image-1", kind="image")
    await engine.update_task(task.id, lease_owner="someone-else", lease_expires_at=utcnow())
    rows = _planned(user_id, task.id)

    outcome, row = await _complete(engine, task.id, user_id, rows)
    assert (outcome, row) == (Completion.NOT_OURS, None)
    assert (await engine.task(task.id)).status == "queued"
    assert await engine.media(task.id) == []
    assert await engine.used_bytes(user_id) == 0


async def test_one_statement_is_all_or_nothing_when_the_quota_is_short(engine: Engine) -> None:
    if engine.database.is_sqlite:
        pytest.skip("the one-statement completion is PostgreSQL's (SQLite uses the transaction)")
    user_id = await engine.add_user(quota=1500)
    [task] = await engine.create(user_id, "two do not fit", model="gpt-image-1", kind="image")
    await engine.update_task(task.id, lease_owner="me", lease_expires_at=utcnow())
    rows = _planned(user_id, task.id, count=2, size=1000)  # 2000 bytes > 1500

    outcome, row = await _complete(engine, task.id, user_id, rows)
    assert (outcome, row) == (Completion.FALLBACK, None)
    assert (await engine.task(task.id)).status == "queued"
    async with engine.database.session() as db:
        assert await db.scalar(select(func.count()).select_from(Media)) == 0
    assert await engine.used_bytes(user_id) == 0

    rows = _planned(user_id, task.id, count=1, size=1000)
    outcome, row = await _complete(engine, task.id, user_id, rows)
    assert outcome is Completion.DONE
    assert row is not None
    assert row.status == "completed"
    assert [m.state for m in await engine.media(task.id)] == ["stored"]
    assert await engine.used_bytes(user_id) == 1000


async def _complete(
    engine: Engine, task_id: str, user_id: str, rows: list[Media]
) -> tuple[Completion, GenerationTask | None]:
    """Complete `task_id` as worker "me" with `rows`, in one statement."""
    return await complete_in_one_statement(
        engine.database.engine,
        task_id=task_id,
        worker_id="me",
        user_id=user_id,
        values={"status": "completed", "progress": 100},
        rows=rows,
    )


def _planned(user_id: str, task_id: str, *, count: int = 1, size: int = 100) -> list[Media]:
    """Planned `pending` rows as `plan_media` makes them, without downloading anything."""
    now = utcnow()
    return [
        Media(
            id=new_uuid(),
            task_id=task_id,
            user_id=user_id,
            kind="image",
            position=position,
            state="pending",
            reason=None,
            reason_message=None,
            storage_key=f"{user_id}/{new_uuid()}.png",
            thumbnail_key=None,
            content_type="image/png",
            bytes=size,
            thumbnail_bytes=0,
            sha256="0" * 64,
            width=1,
            height=1,
            duration_seconds=None,
            source_encrypted=None,
            created_at=now,
        )
        for position in range(count)
    ]
