"""Copying upstream results into our media storage, counted against the user's quota.

Files are streamed to a temp file (never held in memory), checked by magic bytes, measured and
thumbnailed; then, in one transaction, quota is reserved and the media rows are written as
`pending`; the files are moved into storage; a second transaction marks them `stored` together
with the task's transition to `completed` (a compare-and-swap). A crash between the two leaves
`pending` rows whose bytes the next attempt releases before trying again: quota is never
leaked and never charged twice.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx
from sqlalchemy import Table, delete, insert

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
from app.core.media.inspect import extension_for, inspect_media
from app.core.media.storage import MediaStorage
from app.core.observability.metrics import record_quota_rejection
from app.core.quota import Executor, release, reserve
from app.db.base import new_uuid, utcnow
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
    """Download (or decode) one result into a temp file, probe it and make its thumbnail."""
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


async def discard_attempt(db: Executor, media_ids: Sequence[str], user_id: str) -> list[str]:
    """Drop the rows of one attempt whose task ended elsewhere (cancelled, deleted, taken
    over). Rows already removed by whoever ended it are simply not found: no double release."""
    if not media_ids:
        return []
    return await _delete_rows(db, Media.id.in_(list(media_ids)), user_id)


async def reserve_and_record(
    db: Executor,
    encryptor: Encryptor,
    *,
    task_id: str,
    user_id: str,
    kind: str,
    fetched: Sequence[FetchedResult],
) -> list[Media]:
    """Reserve quota and write a media row for each result (`pending`, `not_stored`, `failed`)."""
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
        elif await reserve(db, user_id, item.total_bytes):
            ext = extension_for(item.content_type or "") or ""
            media.state = "pending"
            media.storage_key = f"{user_id}/{media_id}{ext}"
            media.thumbnail_key = f"{user_id}/{media_id}.thumb.jpg" if item.thumbnail_path else None
            media.bytes = item.file.size
            media.thumbnail_bytes = item.thumbnail_bytes
        else:
            record_quota_rejection()
            media.state = "not_stored"
            media.reason = "quota_exceeded"
            media.reason_message = (
                f"storing {item.total_bytes} bytes would exceed your storage quota; free space "
                "and fetch it again while the upstream link lives"
            )
            media.bytes = item.file.size
        if item.file is not None:
            media.content_type = item.content_type
            media.sha256 = item.file.sha256
            media.width, media.height = item.width, item.height
            media.duration_seconds = item.duration_seconds
        rows.append(media)
    if rows:
        await db.execute(
            insert(_MEDIA_TABLE),
            [{name: getattr(m, name) for name in _MEDIA_COLUMNS} for m in rows],
        )
    return rows


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
