"""Claims: two workers on one database share the work; no task is worked on twice at once,
none is created upstream twice, none completes twice, quota is charged once."""

from __future__ import annotations

import asyncio
import itertools
import time

from sqlalchemy.dialects import postgresql, sqlite

from app.core.tasks.worker import TaskWorker, claim_statement
from app.db.base import utcnow
from app.models import GenerationTask
from tests.core.tasks.harness import Engine, LiveSimulator, wait_until


def test_claim_is_one_statement_with_skip_locked_on_postgres() -> None:
    statement = claim_statement()
    assert claim_statement() is statement  # built once, bound per call
    pg = str(statement.compile(dialect=postgresql.dialect()))
    assert "FOR UPDATE SKIP LOCKED" in pg
    assert pg.startswith("UPDATE generation_tasks SET lease_owner=")
    assert "RETURNING" in pg
    assert "LIMIT" in pg
    # SQLite has no row locks: the clause is left out and BEGIN IMMEDIATE serialises claims.
    lite = str(statement.compile(dialect=sqlite.dialect()))
    assert "FOR UPDATE" not in lite


async def test_concurrent_claims_are_disjoint(engine: Engine, user_id: str) -> None:
    tasks = []
    for i in range(6):
        tasks += await engine.create(user_id, f"claim race {i}", n=5)
    a, b, c = engine.worker("A"), engine.worker("B"), engine.worker("C")
    claimed = await asyncio.gather(a.claim(12), b.claim(12), c.claim(12))
    ids = [t.id for batch in claimed for t in batch]
    assert len(ids) == len(set(ids)) == 30
    assert {t.id for t in tasks} == set(ids)
    owners = {t.id: t.lease_owner for t in await engine.tasks(ids)}
    for worker, batch in zip((a, b, c), claimed, strict=True):
        assert all(owners[t.id] == worker.worker_id for t in batch)
    # Claims leave the (possibly large) request payload in the database.
    assert all(t.request_encrypted is None for batch in claimed for t in batch)
    # Leased: nobody can claim them again until the leases expire or are handed back.
    assert await a.claim(50) == []


class RecordingWorker(TaskWorker):
    """Records when it works on which task, to prove no two workers overlap on one task."""

    log: list[tuple[str, str, float, float]]

    async def _process(self, task: GenerationTask) -> None:
        started = time.monotonic()
        try:
            await super()._process(task)
        finally:
            self.log.append((task.id, self.worker_id, started, time.monotonic()))


async def test_two_workers_complete_every_task_exactly_once(
    engine: Engine, sim: LiveSimulator, user_id: str
) -> None:
    prompts = [f"shared work {i} [sim:polls=3]" for i in range(24)]
    ids = [(await engine.create(user_id, p))[0].id for p in prompts]
    log: list[tuple[str, str, float, float]] = []
    workers = [engine.worker(name, cls=RecordingWorker) for name in ("alpha", "beta")]
    for worker in workers:
        worker.log = log  # type: ignore[attr-defined]
        await worker.start()

    await wait_until(lambda: engine.terminal(ids), within=60)
    for worker in workers:
        await worker.stop()

    finals = await engine.tasks(ids)
    assert [t.status for t in finals] == ["completed"] * len(ids)
    # Both took part, and each task's steps never overlapped in time across workers.
    assert {entry[1] for entry in log} == {"alpha", "beta"}
    by_task: dict[str, list[tuple[str, str, float, float]]] = {}
    for entry in log:
        by_task.setdefault(entry[0], []).append(entry)
    for entries in by_task.values():
        entries.sort(key=lambda e: e[2])
        for earlier, later in itertools.pairwise(entries):
            assert earlier[3] <= later[2], f"overlapping work on one task: {earlier} {later}"
    # Upstream: exactly one create per task.
    for prompt in prompts:
        counts = await sim.prompt_counts(prompt)
        assert counts["create_requests"] == 1, (prompt, counts)
        assert counts["creates"] == 1
    # One stored media row per result, quota charged once.
    for task_id in ids:
        media = await engine.media(task_id)
        assert [m.state for m in media] == ["stored"]
    used = await engine.used_bytes(user_id)
    assert used > 0
    assert used == await engine.stored_bytes(user_id)
    assert engine.files_on_disk() == await engine.stored_keys()
    assert all(t.lease_owner is None for t in finals)


async def test_worker_never_runs_one_task_twice_in_one_process(
    engine: Engine, user_id: str, sim: LiveSimulator
) -> None:
    """A claim that re-leases a task whose own job still runs must not start a second job."""
    prompt = "slow poll [sim:poll-slow=1.5][sim:polls=2]"
    task_id = (await engine.create(user_id, prompt))[0].id
    worker = engine.worker("solo", task_lease_seconds=1)
    await worker.tick()  # submit
    await wait_until(lambda: _idle(worker))
    await engine.update_task(task_id, next_poll_at=utcnow())
    assert await worker.tick() == 1  # the slow poll is in flight
    # Let the lease lapse although the job runs (as if the keeper had been starved).
    await engine.update_task(task_id, lease_expires_at=utcnow())
    await worker.tick()
    assert worker.inflight_count == 1
    await wait_until(lambda: _idle(worker))
    counts = await sim.prompt_counts(prompt)
    assert counts["polls"] == 1


async def _idle(worker: TaskWorker) -> bool:
    return worker.inflight_count == 0
