"""Compare-and-swap: a user's cancel or delete racing the worker's completion leaves one
consistent outcome. Invariant everywhere: the user's quota usage equals the bytes (and
thumbnails) of their stored media, and the media directory holds exactly those files."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from app.clients.base import UpstreamResult
from app.core.media.storage import LocalMediaStorage
from app.core.tasks import service
from app.core.tasks import worker as worker_module
from app.core.tasks.results import (
    MOVE_JOURNAL_DIR,
    open_move_journal,
    recover_interrupted_moves,
)
from app.core.tasks.worker import TaskWorker
from app.models import GenerationTask
from app.simulator import SimulatorConfig
from tests.conftest import empty_all_tables
from tests.core.tasks.harness import SIM_KEY, Engine, LiveSimulator, make_settings, wait_until

Hook = Callable[[str], Awaitable[None]]


class HookedStorage(LocalMediaStorage):
    """Local storage that runs `before_put(key)` before each file move (a race window)."""

    before_put: Hook | None = None

    async def put_file(self, src_path: Path, key: str) -> None:
        if self.before_put is not None:
            await self.before_put(key)
        await super().put_file(src_path, key)


@pytest.fixture
def sim_config() -> SimulatorConfig:
    return SimulatorConfig(api_key=SIM_KEY, task_seconds=0)


@pytest.fixture
async def engine(
    database_url: str,
    master_key: str,
    tmp_path: Path,
    sim: LiveSimulator,
    cleanup_engine: AsyncEngine,
) -> AsyncIterator[Engine]:
    settings = make_settings(database_url, master_key, tmp_path / "data", sim.base_url)
    harness = Engine(settings, storage=HookedStorage(settings.media_dir))
    try:
        yield harness
    finally:
        await harness.close()
        await empty_all_tables(cleanup_engine)


def hooked(engine: Engine) -> HookedStorage:
    assert isinstance(engine.storage, HookedStorage)
    return engine.storage


async def cancel(engine: Engine, task_id: str) -> bool:
    async with engine.database.session() as db:
        task = await db.get(GenerationTask, task_id)
        assert task is not None
        return await service.cancel_task(db, engine.runtime.context(), task)


async def delete(engine: Engine, task_id: str) -> None:
    removed: list[str] = []
    async with engine.database.session() as db:
        task = await db.get(GenerationTask, task_id)
        assert task is not None
        await service.delete_task(db, engine.runtime.context(), task, removed)
    for key in removed:
        await engine.storage.delete(key)


async def assert_consistent(engine: Engine, user_id: str) -> None:
    assert await engine.used_bytes(user_id) == await engine.stored_bytes(user_id)
    assert engine.files_on_disk() == await engine.stored_keys()
    assert journals(engine) == []  # every attempt closed its move journal


def journals(engine: Engine) -> list[Path]:
    return sorted((engine.storage.temp_dir / MOVE_JOURNAL_DIR).glob("*"))


async def run_to_end(engine: Engine, worker: TaskWorker, ids: list[str]) -> None:
    async def done() -> bool:
        await worker.run_until_idle()
        return await engine.terminal(ids)

    await wait_until(done, within=30)


async def test_cancel_while_files_move_into_storage_wins(engine: Engine, user_id: str) -> None:
    """The cancel lands while the results' files move into storage, before the transaction
    that would complete the task and write its rows: the files are removed again."""
    task_id = (await engine.create(user_id, "cancel while storing"))[0].id
    outcomes: list[bool] = []
    used_during_move: list[int] = []

    async def cancel_now(key: str) -> None:
        if not outcomes:
            outcomes.append(await cancel(engine, task_id))
            # Nothing of this attempt is written or reserved before its completion.
            used_during_move.append(await engine.used_bytes(user_id))

    hooked(engine).before_put = cancel_now
    await run_to_end(engine, engine.worker(), [task_id])

    assert outcomes == [True]
    assert used_during_move == [0]
    task = await engine.task(task_id)
    assert task.status == "cancelled"
    assert await engine.media(task_id) == []
    assert await engine.used_bytes(user_id) == 0
    await assert_consistent(engine, user_id)


async def test_cancel_before_download_is_stored_writes_nothing(
    engine: Engine, user_id: str
) -> None:
    task_id = (await engine.create(user_id, "cancel while downloading"))[0].id

    class CancelFirst(TaskWorker):
        async def _store_results(
            self, task: GenerationTask, results: list[UpstreamResult], *args: Any
        ) -> None:
            assert await cancel(engine, task.id)
            await super()._store_results(task, results, *args)

    await run_to_end(engine, engine.worker(cls=CancelFirst), [task_id])
    assert (await engine.task(task_id)).status == "cancelled"
    assert await engine.media(task_id) == []
    await assert_consistent(engine, user_id)
    assert await engine.used_bytes(user_id) == 0


async def test_delete_racing_completion_leaves_no_rows_quota_or_files(
    engine: Engine, user_id: str
) -> None:
    task_id = (await engine.create(user_id, "delete while storing"))[0].id
    deleted: list[str] = []

    async def delete_now(key: str) -> None:
        if not deleted:
            deleted.append(key)
            await delete(engine, task_id)

    hooked(engine).before_put = delete_now
    worker = engine.worker()

    async def deleted_during_store() -> bool:
        await worker.run_until_idle()
        return bool(deleted)

    await wait_until(deleted_during_store)
    async with engine.database.session() as db:
        assert await db.get(GenerationTask, task_id) is None
    assert await engine.used_bytes(user_id) == 0
    await assert_consistent(engine, user_id)


async def test_completion_that_committed_first_wins_cleanly(engine: Engine, user_id: str) -> None:
    task_id = (await engine.create(user_id, "complete then cancel"))[0].id
    await run_to_end(engine, engine.worker(), [task_id])
    assert not await cancel(engine, task_id)
    task = await engine.task(task_id)
    assert task.status == "completed"
    assert [m.state for m in await engine.media(task_id)] == ["stored"]
    assert await engine.used_bytes(user_id) > 0
    await assert_consistent(engine, user_id)


async def test_random_cancels_racing_the_worker_keep_quota_consistent(
    engine: Engine, user_id: str
) -> None:
    rng = random.Random(7)
    ids = [
        (await engine.create(user_id, f"race {i} [sim:polls={rng.randint(1, 3)}]"))[0].id
        for i in range(16)
    ]

    async def jitter(key: str) -> None:
        await asyncio.sleep(rng.uniform(0, 0.03))

    hooked(engine).before_put = jitter
    worker = engine.worker()
    await worker.start()

    async def cancel_later(task_id: str, delay: float) -> bool:
        await asyncio.sleep(delay)
        return await cancel(engine, task_id)

    cancelled = await asyncio.gather(*(cancel_later(t, rng.uniform(0, 0.4)) for t in ids[::2]))
    await wait_until(lambda: engine.terminal(ids), within=30)
    await worker.stop()

    finals = {t.id: t for t in await engine.tasks(ids)}
    for task_id, won in zip(ids[::2], cancelled, strict=True):
        assert finals[task_id].status == ("cancelled" if won else "completed")
    for task_id, task in finals.items():
        states = [m.state for m in await engine.media(task_id)]
        if task.status == "cancelled":
            assert states == [], task_id
        else:
            assert task.status == "completed"
            assert states == ["stored"], task_id
    assert {t.status for t in finals.values()} >= {"completed"}
    await assert_consistent(engine, user_id)


async def test_a_worker_that_lost_its_lease_cannot_write(engine: Engine, user_id: str) -> None:
    task_id = (await engine.create(user_id, "zombie write"))[0].id
    zombie, successor = engine.worker("zombie"), engine.worker("successor")
    [claimed] = await zombie.claim(1)
    await engine.update_task(task_id, lease_expires_at=claimed.created_at)  # expired long ago
    [taken] = await successor.claim(1)
    assert taken.lease_owner == "successor"
    late: Any = await zombie._cas(claimed, {"status": "failed", "error_code": "zombie"})
    assert late is None
    assert (await engine.task(task_id)).status == "queued"


async def _idle(worker: TaskWorker) -> bool:
    return worker.inflight_count == 0


async def test_a_commit_that_never_happens_leaves_a_journal_that_recovery_cleans(
    engine: Engine, user_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As if the process died after moving the files, before its transaction committed: the
    files are in storage with no row, and the move journal names them."""
    task_id = (await engine.create(user_id, "dies before its commit"))[0].id
    failed: list[str] = []

    async def dies(*args: Any, **kwargs: Any) -> list[str]:
        failed.append(task_id)
        raise RuntimeError("the process died here")

    # Both ways of committing a completion (one statement on PostgreSQL, the transaction).
    monkeypatch.setattr(worker_module, "complete_in_one_statement", dies)
    monkeypatch.setattr(worker_module, "record_media", dies)
    worker = engine.worker()

    async def attempted() -> bool:
        await worker.run_until_idle()
        return bool(failed)

    await wait_until(attempted)
    orphans = engine.files_on_disk() - await engine.stored_keys()
    assert orphans, "the attempt moved its files before failing"
    assert len(journals(engine)) == 1
    assert await engine.used_bytes(user_id) == 0  # nothing reserved without rows

    # A journal younger than the threshold may belong to a live attempt: left alone.
    assert (
        await recover_interrupted_moves(engine.database, engine.storage, older_than_seconds=3600)
        == 0
    )
    assert orphans <= engine.files_on_disk()

    assert await recover_interrupted_moves(
        engine.database, engine.storage, older_than_seconds=0
    ) == len(orphans)
    assert not orphans & engine.files_on_disk()
    await assert_consistent(engine, user_id)


async def test_recovery_keeps_files_whose_rows_committed(engine: Engine, user_id: str) -> None:
    """A process that died after its commit, before closing the journal: rows name the files,
    so recovery only drops the journal."""
    task_id = (await engine.create(user_id, "dies after its commit"))[0].id
    await run_to_end(engine, engine.worker(), [task_id])
    stored = await engine.stored_keys()
    assert stored
    open_move_journal(engine.storage, sorted(stored))
    assert len(journals(engine)) == 1

    deleted = await recover_interrupted_moves(engine.database, engine.storage, older_than_seconds=0)
    assert deleted == 0
    assert engine.files_on_disk() == stored
    await assert_consistent(engine, user_id)
