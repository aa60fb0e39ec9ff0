"""Where media bytes live: a small storage interface and its local-filesystem implementation.

Content is addressed by string keys such as ``"ab/cd/<sha256>.mp4"`` (see `content_key`). The
interface is shaped so an object store fits behind it too (issue 6, S3): whole finished files
go in with `put_file` (one upload), bytes come out as ranged async streams, and downloads are
written to a local temp file first (`new_temp_path`), never buffered in memory.

All filesystem calls run in worker threads; no method blocks the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import re
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from app.core.media.errors import InvalidStorageKey, MediaNotFound

if TYPE_CHECKING:
    from app.core.config import Settings

DEFAULT_CHUNK_SIZE = 64 * 1024
TEMP_DIR_NAME = ".tmp"

_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
_EXTENSION = re.compile(r"^[a-z0-9]{1,10}$")
# A key segment never starts with a dot, so keys can reach neither `..`, hidden files nor the
# store's own temp dir.
_KEY_SEGMENT = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}$")


def content_key(sha256_hex: str, ext: str) -> str:
    """The key of content-addressed media: ``"ab/cd/<sha256>.<ext>"``.

    Two directory levels keep directories small; identical bytes share one key, so storing the
    same result twice costs one file.
    """
    digest = sha256_hex.lower()
    if not _SHA256_HEX.match(digest):
        raise InvalidStorageKey("sha256_hex must be 64 hexadecimal characters")
    extension = ext.lower().lstrip(".")
    if not _EXTENSION.match(extension):
        raise InvalidStorageKey(f"invalid file extension {ext!r}")
    return f"{digest[:2]}/{digest[2:4]}/{digest}.{extension}"


def thumbnail_key(sha256_hex: str) -> str:
    """Key of the JPEG poster made for the content with this sha256."""
    return content_key(sha256_hex, "jpg").removesuffix(".jpg") + ".thumb.jpg"


def validate_key(key: str) -> str:
    """Return `key` if it is a well-formed relative key; raise `InvalidStorageKey` otherwise."""
    if not isinstance(key, str) or not key or len(key) > 1024:
        raise InvalidStorageKey("storage keys must be non-empty strings of at most 1024 chars")
    segments = key.split("/")
    if not all(_KEY_SEGMENT.match(segment) for segment in segments):
        raise InvalidStorageKey(f"invalid storage key {key!r}")
    return key


@runtime_checkable
class MediaStorage(Protocol):
    """A store of immutable media files under string keys."""

    @property
    def temp_dir(self) -> Path:
        """Local directory for in-progress downloads (same filesystem as the store if local)."""
        ...

    def new_temp_path(self, suffix: str = "") -> Path:
        """A fresh, unused path inside `temp_dir` (the file is not created)."""
        ...

    async def put_file(self, src_path: Path, key: str) -> None:
        """Move the finished file at `src_path` to `key`, atomically: readers see the old
        content or the whole new one, never a partial file. `src_path` is consumed."""
        ...

    def open_range(
        self,
        key: str,
        start: int = 0,
        end_inclusive: int | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> AsyncIterator[bytes]:
        """Stream bytes `start..end_inclusive` (to the end when None) in chunks of at most
        `chunk_size`. Raises `MediaNotFound` on first iteration when the key is missing."""
        ...

    async def size(self, key: str) -> int:
        """Size in bytes; `MediaNotFound` when missing."""
        ...

    async def exists(self, key: str) -> bool: ...

    async def delete(self, key: str) -> None:
        """Remove the key; a missing key is not an error."""
        ...

    async def purge_temp(self, older_than_seconds: float) -> int:
        """Remove temp files left by interrupted downloads; returns how many were removed."""
        ...


class LocalMediaStorage:
    """Media stored as plain files under `root` (``settings.media_dir`` by default).

    Temp files live in ``root/.tmp`` so `put_file` is a same-filesystem rename.
    """

    def __init__(self, root: Path, *, fsync: bool = False) -> None:
        # fsync costs a full flush of every file; off by default because a kill -9 does not lose
        # the page cache, only a power cut does.
        self.root = Path(root).resolve()
        self._temp_dir = self.root / TEMP_DIR_NAME
        self._fsync = fsync
        self._temp_dir.mkdir(parents=True, exist_ok=True)

    @property
    def temp_dir(self) -> Path:
        return self._temp_dir

    def new_temp_path(self, suffix: str = "") -> Path:
        if suffix and not re.fullmatch(r"\.?[A-Za-z0-9._-]{1,20}", suffix):
            raise ValueError(f"invalid temp file suffix {suffix!r}")
        return self._temp_dir / f"{uuid.uuid4().hex}{suffix}"

    def path_for(self, key: str) -> Path:
        """The file behind `key`; refuses any key that would resolve outside the root."""
        path = (self.root / validate_key(key)).resolve()
        if not path.is_relative_to(self.root) or path == self.root:
            raise InvalidStorageKey(f"storage key {key!r} escapes the media root")
        return path

    async def put_file(self, src_path: Path, key: str) -> None:
        dest = self.path_for(key)
        await asyncio.to_thread(self._put_sync, Path(src_path), dest)

    def _put_sync(self, src: Path, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        if self._fsync:
            _fsync_path(src)
        try:
            os.replace(src, dest)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            # Source on another filesystem: copy next to the destination, then rename, so the
            # destination still appears atomically.
            part = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.part")
            try:
                shutil.copyfile(src, part)
                if self._fsync:
                    _fsync_path(part)
                os.replace(part, dest)
            except BaseException:
                part.unlink(missing_ok=True)
                raise
            src.unlink(missing_ok=True)
        if self._fsync:
            _fsync_dir(dest.parent)

    async def open_range(
        self,
        key: str,
        start: int = 0,
        end_inclusive: int | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> AsyncIterator[bytes]:
        if start < 0 or (end_inclusive is not None and end_inclusive < start) or chunk_size < 1:
            raise ValueError("invalid byte range")
        path = self.path_for(key)
        try:
            handle = await asyncio.to_thread(path.open, "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise MediaNotFound() from None
        try:
            if start:
                await asyncio.to_thread(handle.seek, start)
            remaining = None if end_inclusive is None else end_inclusive - start + 1
            while remaining is None or remaining > 0:
                want = chunk_size if remaining is None else min(chunk_size, remaining)
                data = await asyncio.to_thread(handle.read, want)
                if not data:
                    break
                if remaining is not None:
                    remaining -= len(data)
                yield data
        finally:
            # Synchronous on purpose: this also runs when the generator is finalised after a
            # client disconnect, where awaiting is not always possible.
            handle.close()

    async def size(self, key: str) -> int:
        path = self.path_for(key)
        try:
            stat = await asyncio.to_thread(path.stat)
        except (FileNotFoundError, NotADirectoryError):
            raise MediaNotFound() from None
        return stat.st_size

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self.path_for(key).is_file)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self.path_for(key).unlink, missing_ok=True)

    async def purge_temp(self, older_than_seconds: float) -> int:
        return await asyncio.to_thread(self._purge_temp_sync, older_than_seconds)

    def _purge_temp_sync(self, older_than_seconds: float) -> int:
        cutoff = time.time() - older_than_seconds
        removed = 0
        for entry in os.scandir(self._temp_dir):
            try:
                if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:
                continue
        return removed


def create_media_storage(settings: Settings) -> MediaStorage:
    """The storage `MEDIA_BACKEND` asks for: `local` (DATA_DIR/media) or `s3`."""
    from app.core.media.s3 import S3MediaStorage, S3Settings

    s3 = S3Settings()
    if s3.media_backend == "s3":
        return S3MediaStorage.from_settings(settings, s3)
    return LocalMediaStorage(settings.media_dir)


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    # Some filesystems refuse fsync on directories; the file itself is already durable.
    with contextlib.suppress(OSError):
        _fsync_path(path)
