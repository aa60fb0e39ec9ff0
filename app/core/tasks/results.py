"""Copying upstream results into our media storage, counted against the user's quota.

Files are streamed to a temp file (never held in memory), checked by magic bytes, measured and
thumbnailed; then moved into storage under fresh keys; then one transaction completes the task
(a compare-and-swap), reserves quota and writes the media rows. A row therefore never names a
missing file, and quota is reserved only by the transaction that writes the rows holding it.

A move journal covers the one gap: before moving, the keys about to be written are recorded in
a small local file, removed once the transaction has committed or the files are deleted. A
process that dies in between leaves the journal behind, and `recover_interrupted_moves` (worker
maintenance) later deletes the keys no media row names.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx
from sqlalchemy import Table, bindparam, delete, insert, or_, select, update

from app.clients.base import UpstreamResult
from app.core.config import Settings
from app.core.encryption import Encryptor
from app.core.media.download import (
    DownloadedFile,
    DownloadPolicy,
    download_to_temp,
    write_base64_to_temp,
)
from app.core.media.errors import (
    MediaError,
    MediaExpired,
    MediaForbiddenHost,
    MediaTooLarge,
    MediaTypeRejected,
)
from app.core.media.inspect import extension_for, inspect_media, is_video, probe
from app.core.media.storage import MediaStorage
from app.core.observability.metrics import record_quota_rejection
from app.core.quota import Executor, release, reserve
from app.db.base import new_uuid, utcnow
from app.db.session import Database
from app.models import Media

logger = logging.getLogger(__name__)

# Media states whose bytes are counted in the owner's quota.
QUOTA_STATES = ("pending", "stored")
_MEDIA_TABLE = cast(Table, Media.__table__)
_MEDIA_COLUMNS = tuple(column.name for column in _MEDIA_TABLE.columns)


@dataclass
class FetchedResult:
    """One result after download: a local file ready to store, or why there is none."""

    position: int
    source: UpstreamResult
    file: DownloadedFile | None = None
    content_type: str | None = None
    width: int | None = None
    height: int | None = None
    duration_seconds: float | None = None
    thumbnail_path: Path | None = None
    thumbnail_bytes: int = 0
    failure_reason: str | None = None
    failure_message: str | None = None
    temp_paths: list[Path] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return (self.file.size if self.file else 0) + self.thumbnail_bytes


class TransientFetchError(Exception):
    """Downloading failed in a way worth retrying later (the task is rescheduled)."""


def _failure_reason(exc: MediaError) -> str:
    if isinstance(exc, MediaExpired):
        return "expired"
    if isinstance(exc, MediaTooLarge):
        return "too_large"
    if isinstance(exc, MediaTypeRejected):
        return "unsupported_type"
    if isinstance(exc, MediaForbiddenHost):
        return "forbidden_host"
    return "download_failed"


async def fetch_result(
    http: httpx.AsyncClient,
    storage: MediaStorage,
    settings: Settings,
    policy: DownloadPolicy,
    source: UpstreamResult,
    position: int,
    *,
    auth_header: dict[str, str] | None = None,
    transient_is_final: bool = False,
) -> FetchedResult:
    """Download (or decode) one result into a temp file and probe it; a video also gets its
    poster (first frame) now, while the file is local."""
    fetched = FetchedResult(position=position, source=source)
    dest = storage.new_temp_path(".part")
    fetched.temp_paths.append(dest)
    try:
        if source.b64_data is not None:
            fetched.file = await write_base64_to_temp(
                source.b64_data, dest, max_bytes=settings.media_max_bytes
            )
        elif source.url:
            fetched.file = await download_to_temp(
                http,
                source.url,
                dest=dest,
                max_bytes=settings.media_max_bytes,
                headers=auth_header if getattr(source, "requires_auth", False) else None,
                policy=policy,
            )
        else:
            fetched.failure_reason, fetched.failure_message = "missing", "no result location"
            return fetched
    except MediaError as exc:
        if exc.transient and not isinstance(exc, MediaExpired) and not transient_is_final:
            discard_temp(fetched)
            raise TransientFetchError(str(exc)) from exc
        fetched.failure_reason = _failure_reason(exc)
        fetched.failure_message = str(exc)[:500]
        return fetched
    fetched.content_type = fetched.file.sniffed_type
    if not is_video(fetched.content_type):
        # An image's poster is made when first asked for (`app.core.tasks.posters`).
        info = await probe(fetched.file.path, fetched.content_type)
        fetched.width, fetched.height = info.width, info.height
        fetched.duration_seconds = info.duration_seconds
        return fetched
    thumb = storage.new_temp_path(".jpg")
    fetched.temp_paths.append(thumb)
    info, poster_made = await inspect_media(fetched.file.path, fetched.content_type, thumb)
    fetched.width, fetched.height = info.width, info.height
    fetched.duration_seconds = info.duration_seconds
    if poster_made:
        fetched.thumbnail_path = thumb
        fetched.thumbnail_bytes = thumb.stat().st_size
    return fetched


def discard_temp(fetched: FetchedResult) -> None:
    for path in fetched.temp_paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


async def _delete_rows(db: Executor, condition: Any, user_id: str) -> list[str]:
    """Delete media rows, give back the quota of those that held it; returns their keys."""
    rows = await db.execute(
        delete(Media)
        .where(condition)
        .returning(
            Media.state, Media.bytes, Media.thumbnail_bytes, Media.storage_key, Media.thumbnail_key
        )
        .execution_options(synchronize_session=False)
    )
    released, keys = 0, list[str]()
    for state, nbytes, thumb_bytes, key, thumb_key in rows.all():
        if state in QUOTA_STATES:
            released += int(nbytes or 0) + int(thumb_bytes or 0)
        keys.extend(k for k in (key, thumb_key) if k)
    if released:
        await release(db, user_id, released)
    return keys


async def release_task_media(db: Executor, task_id: str, user_id: str) -> list[str]:
    """Drop every media row of a task, giving back the quota they held; returns their keys.

    For a deleted task that is all its media; for a still-active (or just cancelled) one they
    are rows left by an interrupted attempt (rows become final only with the completion)."""
    return await _delete_rows(db, Media.task_id == task_id, user_id)


def plan_media(
    encryptor: Encryptor,
    *,
    task_id: str,
    user_id: str,
    kind: str,
    fetched: Sequence[FetchedResult],
) -> list[Media]:
    """A media row for each result, not written yet: `pending` with its storage keys for a file
    to store (`record_media` decides `stored` or `not_stored`), `failed` with the reason."""
    rows: list[Media] = []
    now = utcnow()
    for item in fetched:
        media_id = new_uuid()
        source_encrypted = encryptor.encrypt_text(item.source.url) if item.source.url else None
        # Every column set here (Core inserts them; the objects stay detached, for the caller).
        media = Media(
            id=media_id,
            task_id=task_id,
            user_id=user_id,
            kind=kind,
            position=item.position,
            source_encrypted=source_encrypted,
            reason=None,
            reason_message=None,
            storage_key=None,
            thumbnail_key=None,
            content_type=None,
            bytes=0,
            thumbnail_bytes=0,
            sha256=None,
            width=None,
            height=None,
            duration_seconds=None,
            created_at=now,
        )
        if item.file is None:
            media.state = "failed"
            media.reason = item.failure_reason
            media.reason_message = item.failure_message
        else:
            ext = extension_for(item.content_type or "") or ""
            media.state = "pending"
            media.storage_key = f"{user_id}/{media_id}{ext}"
            media.thumbnail_key = f"{user_id}/{media_id}.thumb.jpg" if item.thumbnail_path else None
            media.bytes = item.file.size
            media.thumbnail_bytes = item.thumbnail_bytes
            media.content_type = item.content_type
            media.sha256 = item.file.sha256
            media.width, media.height = item.width, item.height
            media.duration_seconds = item.duration_seconds
        rows.append(media)
    return rows


def planned_keys(rows: Sequence[Media]) -> list[str]:
    """The storage keys `move_into_storage` writes for `rows` (those of `pending` rows)."""
    return [
        key
        for media in rows
        if media.state == "pending"
        for key in (media.storage_key, media.thumbnail_key)
        if key
    ]


def _quota_message(nbytes: int) -> str:
    return (
        f"storing {nbytes} bytes would exceed your storage quota; free space and fetch it "
        "again while the upstream link lives"
    )


_MARK_NOT_KEPT = (
    update(_MEDIA_TABLE)
    .where(_MEDIA_TABLE.c.id == bindparam("media_id"))
    .values(
        state="not_stored",
        reason="quota_exceeded",
        reason_message=bindparam("message"),
        storage_key=None,
        thumbnail_key=None,
        thumbnail_bytes=0,
    )
)


async def record_media(db: Executor, user_id: str, rows: Sequence[Media]) -> list[str]:
    """Write every row and reserve quota for the planned `pending` ones, inside the caller's
    transaction: `stored` when its bytes fit the quota, else `not_stored` (the file, already
    moved, is not kept). Returns the keys of files to delete once this commits.

    The reservation comes last, so the owner's row (which every completion of theirs updates)
    stays locked only until the commit right after it: under load, each statement issued
    while holding it made every other completion of the same user wait for this one."""
    pending = [m for m in rows if m.state == "pending"]
    for media in pending:
        media.state = "stored"  # as written below; corrected if the quota has no room
    if rows:
        await db.execute(
            insert(_MEDIA_TABLE),
            [{name: getattr(m, name) for name in _MEDIA_COLUMNS} for m in rows],
        )
    total = sum(m.bytes + m.thumbnail_bytes for m in pending)
    if not pending or await reserve(db, user_id, total):
        return []
    # Not all of them fit: keep them in order while they do.
    unkept: list[str] = []
    refused: list[dict[str, Any]] = []
    for media in pending:
        nbytes = media.bytes + media.thumbnail_bytes
        if await reserve(db, user_id, nbytes):
            continue
        record_quota_rejection()
        unkept.extend(k for k in (media.storage_key, media.thumbnail_key) if k)
        media.state, media.reason = "not_stored", "quota_exceeded"
        media.reason_message = _quota_message(nbytes)
        media.storage_key = media.thumbnail_key = None
        media.thumbnail_bytes = 0
        refused.append({"media_id": media.id, "message": media.reason_message})
    if refused:  # (none if others' releases made room meanwhile)
        await db.execute(_MARK_NOT_KEPT, refused)
    return unkept


async def move_into_storage(
    storage: MediaStorage, fetched: Sequence[FetchedResult], rows: Sequence[Media]
) -> None:
    by_position = {item.position: item for item in fetched}
    for media in rows:
        item = by_position[media.position]
        if media.state != "pending" or item.file is None or media.storage_key is None:
            continue
        await storage.put_file(item.file.path, media.storage_key)
        if media.thumbnail_key and item.thumbnail_path is not None:
            await storage.put_file(item.thumbnail_path, media.thumbnail_key)


async def delete_keys(storage: MediaStorage, keys: Sequence[str]) -> None:
    for key in keys:
        try:
            await storage.delete(key)
        except OSError:  # an orphan file is harmless; a failed request is not
            logger.warning("could not delete media file %s", key)


# ----------------------------------------------------------------------------- move journal

MOVE_JOURNAL_DIR = "moves"


def _journal_dir(storage: MediaStorage) -> Path:
    # Under the temp dir (always local, S3 included), in a folder of its own: `purge_temp`
    # removes only plain files at the top of the temp dir.
    return storage.temp_dir / MOVE_JOURNAL_DIR


def open_move_journal(storage: MediaStorage, keys: Sequence[str]) -> Path | None:
    """Record `keys` before moving files to them; `close_move_journal` once they are either
    named by committed rows or deleted. Written in the loop's thread on purpose: a few hundred
    bytes to local disk cost less than a trip to a worker thread."""
    if not keys:
        return None
    path = _journal_dir(storage) / f"{new_uuid()}.json"
    data = json.dumps(list(keys))
    try:
        path.write_text(data)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(data)
    return path


def close_move_journal(path: Path | None) -> None:
    if path is not None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _old_journals(folder: Path, older_than_seconds: float) -> list[tuple[Path, list[str]]]:
    cutoff = time.time() - older_than_seconds
    found: list[tuple[Path, list[str]]] = []
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return found
    for entry in entries:
        try:
            if not entry.is_file(follow_symlinks=False) or entry.stat().st_mtime > cutoff:
                continue
            keys = json.loads(Path(entry.path).read_text())
        except FileNotFoundError:
            continue
        except (OSError, ValueError):
            keys = []  # unreadable: nothing it names can be recovered
        if not isinstance(keys, list):
            keys = []
        found.append((Path(entry.path), [k for k in keys if isinstance(k, str)]))
    return found


async def recover_interrupted_moves(
    database: Database, storage: MediaStorage, *, older_than_seconds: float
) -> int:
    """Delete the files of attempts that moved them into storage and then never committed
    (the process died in between): the keys of journals older than `older_than_seconds` that no
    media row names. Returns how many keys were deleted."""
    deleted = 0
    for path, keys in await asyncio.to_thread(
        _old_journals, _journal_dir(storage), older_than_seconds
    ):
        if keys:
            async with database.engine.connect() as conn:
                named = await conn.execute(
                    select(_MEDIA_TABLE.c.storage_key, _MEDIA_TABLE.c.thumbnail_key).where(
                        or_(
                            _MEDIA_TABLE.c.storage_key.in_(keys),
                            _MEDIA_TABLE.c.thumbnail_key.in_(keys),
                        )
                    )
                )
                kept = {key for row in named for key in row if key}
            orphans = [key for key in keys if key not in kept]
            await delete_keys(storage, orphans)
            deleted += len(orphans)
            if orphans:
                logger.warning(
                    "deleted %d media file(s) left by an attempt interrupted before its commit",
                    len(orphans),
                )
        close_move_journal(path)
    return deleted
