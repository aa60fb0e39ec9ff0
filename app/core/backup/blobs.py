"""The incremental, encrypted, content-addressed media store of the backups.

Every media file is kept once, encrypted, under ``BACKUP_DIR/blobs/<xx>/<name>``, where the name
is a keyed hash of the file's sha256: identical content is stored once however many rows or
backups point at it, and each run copies only content no earlier run has copied. A backup's
media list maps each storage key to its sha256 and blob, so a restore puts every file back at
its key and checks it byte for byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from app.core.backup.crypto import (
    KIND_BLOB,
    KIND_INDEX,
    BackupKeyring,
    DecryptingReader,
    EncryptingWriter,
    decrypt_bytes,
    encrypt_bytes,
)
from app.core.backup.database import MediaRef
from app.core.backup.errors import BackupCorrupt, BackupError
from app.core.backup.progress import NullProgress, Progress
from app.core.media.errors import MediaNotFound
from app.core.media.storage import MediaStorage

logger = logging.getLogger(__name__)

INDEX_FILE = "index.gbi"
TEMP_DIR = ".tmp"
READ_CHUNK = 1024 * 1024
_BLOB_NAME = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class MediaEntry:
    """One media file of a backup: where it goes back, what it must hash to, where it is."""

    key: str
    sha256: str
    size: int
    blob: str

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "sha256": self.sha256, "size": self.size, "blob": self.blob}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MediaEntry:
        blob = str(data["blob"])
        if not _BLOB_NAME.match(blob):
            raise BackupCorrupt("media list names an invalid blob")
        return cls(str(data["key"]), str(data["sha256"]), int(data["size"]), blob)


@dataclass
class MediaBackupStats:
    reused: int = 0
    copied: int = 0
    copied_bytes: int = 0
    # Files rows of `stored` media point at but the media store does not have.
    missing: list[str] = field(default_factory=list)


def _open_private(path: Path) -> BinaryIO:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    return os.fdopen(fd, "wb")


class BlobStore:
    def __init__(self, root: Path, keyring: BackupKeyring) -> None:
        self.root = Path(root)
        self.keyring = keyring
        self.temp_dir = self.root / TEMP_DIR

    def ensure_dirs(self) -> None:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.temp_dir.mkdir(mode=0o700, exist_ok=True)

    def path_for(self, blob: str) -> Path:
        if not _BLOB_NAME.match(blob):
            raise BackupCorrupt(f"invalid blob name {blob!r}")
        return self.root / blob[:2] / blob

    def exists(self, blob: str) -> bool:
        return self.path_for(blob).is_file()

    def _reuse(self, blob: str) -> bool:
        """True when the blob exists; refreshes its mtime so a concurrent clean-up, which
        spares young blobs, cannot delete it before this run's manifest references it."""
        try:
            os.utime(self.path_for(blob))
        except FileNotFoundError:
            return False
        return True

    # --- the key -> sha256 cache of files whose row carries no hash (thumbnails) -----------

    def load_index(self) -> dict[str, dict[str, Any]]:
        path = self.root / INDEX_FILE
        if not path.is_file():
            return {}
        try:
            loaded = json.loads(decrypt_bytes(self.keyring, path.read_bytes(), KIND_INDEX))
        except (BackupError, ValueError):
            # Only a cache: rebuilding it costs one read of the files it covered.
            logger.warning("backup blob index unreadable; rebuilding it")
            return {}
        return loaded if isinstance(loaded, dict) else {}

    def save_index(self, index: dict[str, dict[str, Any]]) -> None:
        data = encrypt_bytes(
            self.keyring.primary, json.dumps(index, separators=(",", ":")).encode(), KIND_INDEX
        )
        temp = self.temp_dir / f"index-{uuid.uuid4().hex}"
        with _open_private(temp) as handle:
            handle.write(data)
        os.replace(temp, self.root / INDEX_FILE)

    # --- backup ------------------------------------------------------------------------------

    def _known(self, ref: MediaRef, index: dict[str, dict[str, Any]]) -> MediaEntry | None:
        """The entry for `ref` when its content is already in the store (no file read)."""
        primary = self.keyring.primary
        if ref.sha256 and ref.size is not None:
            blob = primary.blob_name(ref.sha256)
            if self._reuse(blob):
                return MediaEntry(ref.key, ref.sha256.lower(), ref.size, blob)
            return None
        cached = index.get(ref.key)
        if cached and (ref.size is None or cached.get("size") == ref.size):
            blob = primary.blob_name(str(cached["sha256"]))
            if self._reuse(blob):
                return MediaEntry(ref.key, str(cached["sha256"]), int(cached["size"]), blob)
        return None

    async def backup_media(
        self, storage: MediaStorage, refs: Sequence[MediaRef], progress: Progress | None = None
    ) -> tuple[list[MediaEntry], MediaBackupStats]:
        progress = progress or NullProgress()
        await asyncio.to_thread(self.ensure_dirs)
        index = await asyncio.to_thread(self.load_index)
        stats = MediaBackupStats()
        entries: list[MediaEntry] = []
        to_copy: list[MediaRef] = []
        # One thread hop for all the stat calls, not one per file.
        known_entries = await asyncio.to_thread(lambda: [self._known(ref, index) for ref in refs])
        for ref, known in zip(refs, known_entries, strict=True):
            if known is None:
                to_copy.append(ref)
            else:
                entries.append(known)
                stats.reused += 1
        progress.phase("media", sum(ref.size or 0 for ref in to_copy))
        for ref in to_copy:
            try:
                entry = await self._copy(storage, ref.key, progress)
            except MediaNotFound:
                if ref.required:
                    stats.missing.append(ref.key)
                    logger.warning("media file %s is missing from the media store", ref.key)
                continue
            if ref.sha256 and ref.sha256.lower() != entry.sha256:
                logger.warning("media file %s does not match the sha256 of its row", ref.key)
            index[ref.key] = {"sha256": entry.sha256, "size": entry.size}
            entries.append(entry)
            stats.copied += 1
            stats.copied_bytes += entry.size
        await asyncio.to_thread(self.save_index, index)
        entries.sort(key=lambda entry: entry.key)
        return entries, stats

    async def _copy(self, storage: MediaStorage, key: str, progress: Progress) -> MediaEntry:
        temp = self.temp_dir / f"blob-{uuid.uuid4().hex}"
        raw = await asyncio.to_thread(_open_private, temp)
        try:
            writer = EncryptingWriter(raw, self.keyring.primary, KIND_BLOB)
            async for chunk in storage.open_range(key, chunk_size=READ_CHUNK):
                await asyncio.to_thread(writer.write, chunk)
                progress.advance(len(chunk))
            await asyncio.to_thread(writer.close)
            await asyncio.to_thread(raw.close)
            blob = self.keyring.primary.blob_name(writer.sha256)
            await asyncio.to_thread(self._install, temp, blob)
            return MediaEntry(key, writer.sha256, writer.size, blob)
        finally:
            raw.close()
            temp.unlink(missing_ok=True)

    def _install(self, temp: Path, blob: str) -> None:
        dest = self.path_for(blob)
        if dest.is_file():  # same content copied meanwhile (or by an earlier key): keep it
            return
        dest.parent.mkdir(mode=0o700, exist_ok=True)
        os.replace(temp, dest)

    # --- restore and checks --------------------------------------------------------------------

    def _decrypt_to(self, entry: MediaEntry, dest: Path | None, progress: Progress) -> None:
        path = self.path_for(entry.blob)
        try:
            raw = path.open("rb")
        except FileNotFoundError:
            raise BackupCorrupt(f"media blob of {entry.key} is missing from {self.root}") from None
        digest = hashlib.sha256()
        size = 0
        with raw, dest.open("wb") if dest else contextlib.nullcontext() as out:
            reader = DecryptingReader(raw, self.keyring, kind=KIND_BLOB)
            while chunk := reader.read(READ_CHUNK):
                digest.update(chunk)
                size += len(chunk)
                if out is not None:
                    out.write(chunk)
                progress.advance(len(chunk))
        if digest.hexdigest() != entry.sha256 or size != entry.size:
            raise BackupCorrupt(f"media blob of {entry.key} does not match its checksum")

    async def check(self, entry: MediaEntry, progress: Progress | None = None) -> str | None:
        """None when the blob decrypts to exactly the recorded content, else the problem."""
        try:
            await asyncio.to_thread(self._decrypt_to, entry, None, progress or NullProgress())
        except BackupError as exc:
            return str(exc)
        return None

    async def restore(
        self, storage: MediaStorage, entry: MediaEntry, progress: Progress | None = None
    ) -> None:
        temp = storage.new_temp_path()
        try:
            await asyncio.to_thread(self._decrypt_to, entry, temp, progress or NullProgress())
            await storage.put_file(temp, entry.key)
        finally:
            temp.unlink(missing_ok=True)

    # --- clean-up ------------------------------------------------------------------------------

    def collect_garbage(self, referenced: set[str], older_than_seconds: float) -> int:
        """Delete blobs no kept backup references (and stale temp files); returns how many
        blobs were removed. Young files are spared: a backup running elsewhere may have just
        copied them and not yet written the manifest that references them."""
        if not self.root.is_dir():
            return 0
        cutoff = time.time() - older_than_seconds
        removed = 0
        for shard in self.root.iterdir():
            if not shard.is_dir() or shard.name == TEMP_DIR:
                continue
            for path in shard.iterdir():
                if path.name in referenced or not _BLOB_NAME.match(path.name):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    if path.stat().st_mtime < cutoff:
                        path.unlink()
                        removed += 1
        if self.temp_dir.is_dir():
            for path in self.temp_dir.iterdir():
                with contextlib.suppress(FileNotFoundError):
                    if path.stat().st_mtime < cutoff:
                        path.unlink()
        return removed
