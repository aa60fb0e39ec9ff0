"""Image posters made on first request, not when the image is stored.

A video's poster (its first frame) is made by the worker while the downloaded file is still
local: it needs the file decoded up to a frame. An image's poster is a downscaled copy, and most
images are fetched by URL and never shown in the library, so making one for every image cost a
synchronous image request about a seventh of its CPU for a file few ever read. Instead the first
thumbnail request makes it from the stored image, stores it and records it on the media row,
counted in the owner's quota like any stored byte; later requests serve the stored file.

Two requests racing for the same poster each make one under a key of their own; the first to
record it wins and the other deletes its copy and serves the winner's. When the poster does not
fit in the quota it is served once without being kept. The move journal covers a crash between
storing the file and recording it (`app.core.tasks.results`).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from sqlalchemy import Table, bindparam, select, update

from app.core.media.inspect import is_image, make_thumbnail
from app.core.media.storage import LocalMediaStorage, MediaStorage
from app.core.observability.metrics import record_quota_rejection
from app.core.quota import reserve
from app.core.tasks.results import close_move_journal, delete_keys, open_move_journal
from app.db.session import Database
from app.models import Media

_MEDIA = cast(Table, Media.__table__)
_RECORD_POSTER = (
    update(_MEDIA)
    .where(
        _MEDIA.c.id == bindparam("media_id"),
        _MEDIA.c.state == "stored",
        _MEDIA.c.thumbnail_key.is_(None),
    )
    .values(thumbnail_key=bindparam("key"), thumbnail_bytes=bindparam("size"))
    .returning(_MEDIA.c.id)
)
_CURRENT_POSTER = select(_MEDIA.c.thumbnail_key, _MEDIA.c.thumbnail_bytes).where(
    _MEDIA.c.id == bindparam("media_id")
)


def poster_on_request(media: Media) -> bool:
    """Whether `media` is a stored image without a poster yet (one is made when asked for)."""
    return (
        media.state == "stored"
        and not media.thumbnail_key
        and bool(media.storage_key)
        and is_image(media.content_type or "")
    )


def has_poster(media: Media) -> bool:
    """Whether a thumbnail can be served for `media`: stored already, or made on request."""
    return media.state == "stored" and (bool(media.thumbnail_key) or poster_on_request(media))


@dataclass(frozen=True)
class Poster:
    """A poster to serve: a stored file (`key`, `size`) or, when the owner's quota had no room
    to keep it, its bytes (`data`)."""

    key: str | None = None
    size: int = 0
    data: bytes | None = None


async def ensure_poster(database: Database, storage: MediaStorage, media: Media) -> Poster | None:
    """The poster of `media`, made now for an image that has none; None when there is none."""
    if media.thumbnail_key:
        return Poster(key=media.thumbnail_key, size=media.thumbnail_bytes)
    if not poster_on_request(media) or media.storage_key is None:
        return None
    copy = storage.new_temp_path(".src")
    poster = storage.new_temp_path(".jpg")
    try:
        original = await _local_file(storage, media.storage_key, copy)
        if not await make_thumbnail(original, media.content_type or "", poster):
            return None
        data = poster.read_bytes()
        key = f"{media.user_id}/{media.id}.{secrets.token_hex(4)}.thumb.jpg"
        journal = open_move_journal(storage, [key])
        await storage.put_file(poster, key)
        # If recording raises, whether it committed is unknown: the journal stays for recovery.
        recorded = await _record(database, media, key, len(data))
        if recorded is None or recorded.key != key:  # not kept, or another request's won
            await delete_keys(storage, [key])
        close_move_journal(journal)
        return recorded or Poster(data=data)
    finally:
        for path in (copy, poster):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


async def _local_file(storage: MediaStorage, key: str, copy: Path) -> Path:
    """A local file with the content of `key`: the stored file itself when the store is local,
    else a copy at `copy`."""
    if isinstance(storage, LocalMediaStorage):
        return storage.path_for(key)
    download_to = getattr(storage, "download_to", None)  # S3MediaStorage
    if download_to is not None:
        await download_to(key, copy)
        return copy
    with copy.open("wb") as handle:
        async for chunk in storage.open_range(key):
            await asyncio.to_thread(handle.write, chunk)
    return copy


async def _record(database: Database, media: Media, key: str, size: int) -> Poster | None:
    """Record `key` as the poster of `media` and reserve its bytes, in one transaction. Returns
    the poster the row names afterwards: ours, another request's that won the race, or None
    (the media is gone, or the quota has no room for ours)."""
    async with database.engine.begin() as conn:
        params = {"media_id": media.id, "key": key, "size": size}
        if (await conn.execute(_RECORD_POSTER, params)).one_or_none() is None:
            current = (await conn.execute(_CURRENT_POSTER, params)).one_or_none()
            if current is None or not current.thumbnail_key:
                return None
            return Poster(key=current.thumbnail_key, size=int(current.thumbnail_bytes or 0))
        if not await reserve(conn, media.user_id, size):
            record_quota_rejection()
            await conn.rollback()
            return None
    media.thumbnail_key, media.thumbnail_bytes = key, size
    return Poster(key=key, size=size)
