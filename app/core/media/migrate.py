"""Copying every stored media file from one media backend to another (`genapi media migrate`).

Keys are the same in every backend, so after the copy only `MEDIA_BACKEND` changes: no database
row is touched. The copy is resumable: a key already at the destination with the source's size is
skipped, and a copy interrupted half-way leaves nothing at the destination (both backends make a
file visible only once complete), so running the command again finishes the job. Source files
are never deleted; remove them once the service runs on the new backend.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from sqlalchemy import or_, select

from app.core.media.errors import MediaNotFound
from app.core.media.s3 import S3MediaStorage
from app.core.media.storage import LocalMediaStorage, MediaStorage
from app.db.session import Database
from app.models import Media

logger = logging.getLogger(__name__)

DEFAULT_CONCURRENCY = 4
COPY_CHUNK_SIZE = 1024 * 1024

Outcome = Literal["copied", "skipped", "missing", "failed"]


class Progress(Protocol):
    """Progress hooks; called from the event loop and from transfer threads."""

    def phase(self, name: str, total: int | None, unit: str = "B") -> None: ...

    def advance(self, amount: int) -> None: ...


class NullProgress:
    def phase(self, name: str, total: int | None, unit: str = "B") -> None:
        return None

    def advance(self, amount: int) -> None:
        return None


@dataclass
class MigrationReport:
    total: int = 0
    copied: int = 0
    copied_bytes: int = 0
    skipped: int = 0
    #: Keys referenced by the database but absent from the source (listed, never fatal).
    missing: list[str] = field(default_factory=list)
    #: key -> reason, for copies that failed (the command exits non-zero).
    failed: dict[str, str] = field(default_factory=dict)
    #: With `dry_run`: the keys that would be copied, and their total size.
    planned: list[str] = field(default_factory=list)
    planned_bytes: int = 0
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        return not self.failed


@dataclass
class _Plan:
    key: str
    size: int


async def media_keys(database: Database) -> list[str]:
    """Every file key the database points at (media and thumbnails), sorted and unique."""
    async with database.session() as db:
        rows = await db.execute(
            select(Media.storage_key, Media.thumbnail_key).where(
                or_(Media.storage_key.is_not(None), Media.thumbnail_key.is_not(None))
            )
        )
        keys = {key for row in rows.all() for key in row if key}
    return sorted(keys)


async def _size_or_none(storage: MediaStorage, key: str) -> int | None:
    try:
        return await storage.size(key)
    except MediaNotFound:
        return None


async def copy_key(
    source: MediaStorage,
    dest: MediaStorage,
    key: str,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Copy one file; the destination sees it only once complete. Local → S3 uploads straight
    from the media directory; anything else goes through a temp file of the destination."""
    if isinstance(source, LocalMediaStorage) and isinstance(dest, S3MediaStorage):
        path = source.path_for(key)
        if not await asyncio.to_thread(path.is_file):
            raise MediaNotFound()
        await dest.upload_from(path, key, progress=progress)
        return
    temp = dest.new_temp_path(".part")
    try:
        if isinstance(source, S3MediaStorage):
            await source.download_to(key, temp, progress=progress)
        else:
            await _stream_to_file(source, key, temp, progress)
        await dest.put_file(temp, key)
    finally:
        await asyncio.to_thread(temp.unlink, missing_ok=True)


async def _stream_to_file(
    source: MediaStorage, key: str, dest: Path, progress: Callable[[int], None] | None
) -> None:
    handle = await asyncio.to_thread(dest.open, "wb")
    try:
        async for chunk in source.open_range(key, chunk_size=COPY_CHUNK_SIZE):
            await asyncio.to_thread(handle.write, chunk)
            if progress is not None:
                progress(len(chunk))
    finally:
        await asyncio.to_thread(handle.close)


async def _bounded(concurrency: int, jobs: Iterable[Callable[[], Awaitable[None]]]) -> None:
    """Run the coroutine factories `jobs` with at most `concurrency` at a time; the first
    exception cancels the rest and propagates as itself (not wrapped in an ExceptionGroup)."""
    queue = list(jobs)
    queue.reverse()

    async def worker() -> None:
        while queue:
            job = queue.pop()
            await job()

    tasks = [asyncio.create_task(worker()) for _ in range(max(1, min(concurrency, len(queue))))]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def migrate_media(
    source: MediaStorage,
    dest: MediaStorage,
    keys: Sequence[str],
    *,
    dry_run: bool = False,
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: Progress | None = None,
    on_done: Callable[[str, Outcome], None] | None = None,
) -> MigrationReport:
    """Copy `keys` from `source` to `dest`, skipping those already there with the same size.

    Two phases: check every key (sizes on both sides), then copy what is missing or differs.
    A failed key is recorded in the report and the others go on. `on_done(key, outcome)` is
    called in the event loop as each key is settled.
    """
    bar = progress or NullProgress()
    report = MigrationReport(total=len(keys), dry_run=dry_run)

    def settle(key: str, outcome: Outcome) -> None:
        if on_done is not None:
            on_done(key, outcome)

    plan: list[_Plan] = []

    def check(key: str) -> Callable[[], Awaitable[None]]:
        async def job() -> None:
            try:
                src_size = await _size_or_none(source, key)
                dest_size = None if src_size is None else await _size_or_none(dest, key)
            except (OSError, ValueError) as exc:
                report.failed[key] = str(exc) or type(exc).__name__
                logger.warning("could not check media file %s: %s", key, exc)
                bar.advance(1)
                settle(key, "failed")
                return
            bar.advance(1)
            if src_size is None:
                report.missing.append(key)
                settle(key, "missing")
            elif dest_size == src_size:
                report.skipped += 1
                settle(key, "skipped")
            else:
                plan.append(_Plan(key, src_size))

        return job

    bar.phase("checking", len(keys), unit="file")
    await _bounded(concurrency, (check(key) for key in keys))
    plan.sort(key=lambda item: item.key)
    report.missing.sort()

    if dry_run:
        report.planned = [item.key for item in plan]
        report.planned_bytes = sum(item.size for item in plan)
        return report

    def copy(item: _Plan) -> Callable[[], Awaitable[None]]:
        async def job() -> None:
            outcome: Outcome
            try:
                await copy_key(source, dest, item.key, bar.advance)
                copied_size = await _size_or_none(dest, item.key)
                if copied_size != item.size:
                    raise OSError(f"size after copy is {copied_size}, expected {item.size}")
            except MediaNotFound:
                # Deleted since the check (a user removed it meanwhile): nothing to move.
                report.missing.append(item.key)
                outcome = "missing"
            except (OSError, ValueError) as exc:  # S3StorageError is an OSError too
                report.failed[item.key] = str(exc) or type(exc).__name__
                logger.warning("could not copy media file %s: %s", item.key, exc)
                outcome = "failed"
            else:
                report.copied += 1
                report.copied_bytes += item.size
                outcome = "copied"
            settle(item.key, outcome)

        return job

    bar.phase("copying", sum(item.size for item in plan), unit="B")
    await _bounded(concurrency, (copy(item) for item in plan))
    report.missing.sort()
    return report
