"""Batched routine poll writes: "still running, here is the progress, poll again at T".

Most polls change nothing but progress, counters, `next_poll_at` and the lease. Written one
transaction each, those commits were the worker's bottleneck (about 2 ms of CPU and a WAL
flush per poll); here they are queued and written together, one statement per batch on
PostgreSQL (`UPDATE … FROM unnest(arrays) RETURNING`) and one transaction of per-row updates on
SQLite. Every row keeps the same compare-and-swap as `TaskWorker._cas` (still active, still
leased by this worker), and each caller learns whether its own row was updated, so events go
out only for rows that were, and only after the commit.

Terminal transitions never come here: they keep their own transactions (webhook outbox, media,
quota).

Until its write lands the row is still leased to this worker, so nobody (this worker included)
claims the task in between; the worker's slot need not wait for it (see
`TaskWorker._reschedule`), and a graceful stop writes the queue before handing leases back. A
write still queued when the process dies is lost like an uncommitted transaction: the task
keeps its old `next_poll_at` and is polled again once its lease expires. A batch that cannot be
written (the database is down) fails its callers the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, bindparam, column, func, update
from sqlalchemy.dialects.postgresql import ARRAY

from app.core.tasks.service import ACTIVE_STATUSES
from app.db.base import utcnow
from app.db.session import Database
from app.models import GenerationTask

logger = logging.getLogger(__name__)

# The longest a write waits for others to join its batch (the issue asks for 20-50 ms).
DEFAULT_WINDOW = 0.025
# Rows per statement at most (a bound on bind parameters: about 12 per row).
DEFAULT_MAX_ROWS = 200
# A failed batch (a dropped connection, a deadlock against a multi-row update elsewhere) is
# tried again this many times before its callers see the error.
WRITE_ATTEMPTS = 3

_TABLE = cast(Table, GenerationTask.__table__)


@dataclass(frozen=True)
class Applied:
    """The compare-and-swap held: the row was updated. `title` is the row's current title (the
    user may have renamed the task since it was claimed), for the event."""

    title: str | None


@dataclass
class _Write:
    task_id: str
    values: dict[str, Any]
    done: asyncio.Future[Applied | None]
    added: float  # loop time


class PollWrites:
    """Queue of non-terminal task updates of one worker, flushed every `window` seconds (or at
    `max_rows`) by a flusher task that runs while there is something to write."""

    def __init__(
        self,
        database: Database,
        worker_id: str,
        *,
        window: float = DEFAULT_WINDOW,
        max_rows: int = DEFAULT_MAX_ROWS,
    ) -> None:
        self.database = database
        self.worker_id = worker_id
        self.window = window
        self.max_rows = max_rows
        self._queue: list[_Write] = []
        self._now = asyncio.Event()  # set: write the queue without waiting (full, or a stop)
        self._draining = False
        self._flusher: asyncio.Task[None] | None = None
        self._row_statements: dict[tuple[str, ...], Any] = {}
        self._batch_statements: dict[tuple[str, ...], Any] = {}
        self.batches = 0  # transactions committed (tests, benchmarks)

    @property
    def pending(self) -> int:
        return len(self._queue)

    def add(self, task_id: str, values: dict[str, Any]) -> asyncio.Future[Applied | None]:
        """Queue `values` for the row of `task_id`; the future resolves after the commit, to
        `Applied` if the row was still active and ours, else None (the CAS lost: drop it)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Applied | None] = loop.create_future()
        self._queue.append(_Write(task_id, {"updated_at": utcnow(), **values}, done, loop.time()))
        if len(self._queue) >= self.max_rows:
            self._now.set()
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._run(), name=f"poll-writes-{self.worker_id}")
        return done

    async def flush(self) -> None:
        """Write everything queued now and wait for it (graceful stop)."""
        self._draining = True
        try:
            while self._queue or (self._flusher is not None and not self._flusher.done()):
                self._now.set()
                if self._flusher is None or self._flusher.done():
                    self._flusher = asyncio.get_running_loop().create_task(self._run())
                # Shielded: a stop that is itself cancelled must not abort a batch mid-write.
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._flusher)
        finally:
            self._draining = False
            if len(self._queue) < self.max_rows:
                self._now.clear()  # later writes wait for their batch again

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queue:
            wait = self._queue[0].added + self.window - loop.time()
            if wait > 0 and not self._now.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._now.wait()
            batch, self._queue = self._queue[: self.max_rows], self._queue[self.max_rows :]
            if len(self._queue) < self.max_rows and not self._draining:
                self._now.clear()
            await self._write(batch)

    async def _write(self, batch: list[_Write]) -> None:
        # One write per task (a task has one job at a time; keep the last if not).
        latest: dict[str, _Write] = {}
        for write in batch:
            previous = latest.get(write.task_id)
            if previous is not None and not previous.done.done():
                previous.done.set_result(None)
            latest[write.task_id] = write
        # Sorted by id, so that concurrent multi-row updates mostly lock rows in one order; a
        # deadlock that happens anyway aborts this transaction, which is tried again.
        writes = sorted(latest.values(), key=lambda w: w.task_id)
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                applied = await self._apply(writes)
                break
            except Exception as exc:
                if attempt == WRITE_ATTEMPTS:
                    logger.exception("writing %d poll results failed", len(writes))
                    await self._write_alone(writes, exc)
                    return
                logger.warning(
                    "writing %d poll results failed (%s); retrying",
                    len(writes),
                    type(exc).__name__,
                )
                await asyncio.sleep(0.05 * attempt)
        self.batches += 1
        for write in writes:
            if not write.done.done():  # its caller may have been cancelled meanwhile
                write.done.set_result(applied.get(write.task_id))

    async def _write_alone(self, writes: Sequence[_Write], error: Exception) -> None:
        """After a batch failed for good: each row in its own transaction, so one row the
        database refuses does not sink the others (when the database is down, all fail)."""
        for write in writes:
            if len(writes) == 1:
                outcome: Applied | Exception | None = error
            else:
                try:
                    outcome = (await self._apply([write])).get(write.task_id)
                except Exception as exc:
                    outcome = exc
            if write.done.done():
                continue
            if isinstance(outcome, Exception):
                write.done.set_exception(outcome)
            else:
                write.done.set_result(outcome)

    async def _apply(self, writes: Sequence[_Write]) -> dict[str, Applied]:
        """Write `writes` in one transaction; returns the rows the compare-and-swap updated."""
        applied: dict[str, Applied] = {}
        # A plain connection: an ORM session adds nothing to these Core statements but CPU.
        async with self.database.engine.begin() as db:
            # Writes with the same columns share a statement (in practice: one or two groups).
            groups: dict[tuple[str, ...], list[_Write]] = {}
            for write in writes:
                groups.setdefault(tuple(sorted(write.values)), []).append(write)
            for keys, group in groups.items():
                if self.database.is_sqlite:
                    statement = self._row_statement(keys)
                    for write in group:
                        params = {f"b_{k}": write.values[k] for k in keys}
                        row = (
                            await db.execute(statement, {"b_task_id": write.task_id, **params})
                        ).one_or_none()
                        if row is not None:
                            applied[row.id] = Applied(row.title)
                else:
                    arrays = {f"b_{k}": [w.values[k] for w in group] for k in keys}
                    result = await db.execute(
                        self._batch_statement(keys),
                        {"b_task_id": [w.task_id for w in group], **arrays},
                    )
                    for row in result:
                        applied[row.id] = Applied(row.title)
        return applied

    def _owned(self, task_id: Any) -> tuple[Any, ...]:
        # The same compare-and-swap as TaskWorker._owned.
        return (
            _TABLE.c.id == task_id,
            _TABLE.c.status.in_(ACTIVE_STATUSES),
            _TABLE.c.lease_owner == self.worker_id,
        )

    def _row_statement(self, keys: tuple[str, ...]) -> Any:
        """One row's CAS update with bound parameters (SQLite: built once, run per row)."""
        statement = self._row_statements.get(keys)
        if statement is None:
            statement = self._row_statements[keys] = (
                update(_TABLE)
                .where(*self._owned(bindparam("b_task_id")))
                .values({k: bindparam(f"b_{k}", type_=_TABLE.c[k].type) for k in keys})
                .returning(_TABLE.c.id, _TABLE.c.title)
            )
        return statement

    def _batch_statement(self, keys: tuple[str, ...]) -> Any:
        """`UPDATE generation_tasks SET … FROM unnest(:ids, :col, …) AS v WHERE <CAS per row>
        RETURNING …` (PostgreSQL): one array parameter per column, so the statement is the same
        whatever the batch size, built and compiled once per set of columns."""
        statement = self._batch_statements.get(keys)
        if statement is None:
            arrays = [bindparam("b_task_id", type_=ARRAY(_TABLE.c.id.type))] + [
                bindparam(f"b_{k}", type_=ARRAY(_TABLE.c[k].type)) for k in keys
            ]
            rows = (
                func.unnest(*arrays)
                .table_valued(
                    column("task_id", _TABLE.c.id.type),
                    *(column(k, _TABLE.c[k].type) for k in keys),
                )
                .render_derived(name="v")
            )
            statement = self._batch_statements[keys] = (
                update(_TABLE)
                .where(*self._owned(rows.c.task_id))
                .values({k: rows.c[k] for k in keys})
                .returning(_TABLE.c.id, _TABLE.c.title)
            )
        return statement
