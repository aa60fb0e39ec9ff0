"""The backup file: an encrypted tar stream of manifest, media list and database dump.

Members, in this order: ``manifest.json`` (small: format, time, schema revision, row counts,
checksums), ``media.json`` (storage key → sha256 and blob of every media file) and the database
(``database.sqlite`` or a ``pg_dump --format=custom`` file). The manifest comes first so
`genapi backup list` decrypts only the first chunk of each file. Members are read by their
known names into our own paths; nothing is ever extracted by a name taken from the archive.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import IO, Any

from app.core.backup.blobs import MediaEntry
from app.core.backup.crypto import (
    KIND_ARCHIVE,
    BackupKey,
    BackupKeyring,
    DecryptingReader,
    EncryptingWriter,
)
from app.core.backup.database import POSTGRES_DUMP_NAME, SQLITE_DUMP_NAME, Backend
from app.core.backup.errors import BackupCorrupt
from app.core.backup.progress import NullProgress, Progress

ARCHIVE_FORMAT = "genapi-backup"
ARCHIVE_VERSION = 1
MANIFEST_MEMBER = "manifest.json"
MEDIA_MEMBER = "media.json"
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
COPY_CHUNK = 1024 * 1024


def app_version() -> str:
    try:
        return metadata.version("genapi")
    except metadata.PackageNotFoundError:
        return "unknown"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(COPY_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class Manifest:
    created_at: datetime
    backend: Backend
    database_member: str
    database_size: int
    database_sha256: str
    schema_revision: str | None
    row_counts: dict[str, int]
    media_count: int
    media_bytes: int
    media_list_sha256: str
    media_missing: list[str] = field(default_factory=list)
    server_version: str | None = None
    app_version: str = field(default_factory=app_version)
    format_version: int = ARCHIVE_VERSION

    def to_json(self) -> dict[str, Any]:
        return {
            "format": ARCHIVE_FORMAT,
            "format_version": self.format_version,
            "created_at": self.created_at.isoformat(),
            "app_version": self.app_version,
            "backend": self.backend,
            "server_version": self.server_version,
            "schema_revision": self.schema_revision,
            "row_counts": self.row_counts,
            "database": {
                "member": self.database_member,
                "size": self.database_size,
                "sha256": self.database_sha256,
            },
            "media": {
                "count": self.media_count,
                "bytes": self.media_bytes,
                "list_sha256": self.media_list_sha256,
                "missing": self.media_missing,
            },
        }

    @classmethod
    def from_json(cls, data: Any) -> Manifest:
        try:
            if data["format"] != ARCHIVE_FORMAT:
                raise BackupCorrupt("not a genapi backup (manifest format)")
            version = int(data["format_version"])
            if version > ARCHIVE_VERSION:
                raise BackupCorrupt(
                    f"backup format {version} is newer than this version of genapi understands"
                )
            backend = data["backend"]
            if backend not in ("sqlite", "postgresql"):
                raise BackupCorrupt(f"unknown database kind {backend!r} in the manifest")
            database, media = data["database"], data["media"]
            expected_member = SQLITE_DUMP_NAME if backend == "sqlite" else POSTGRES_DUMP_NAME
            if database["member"] != expected_member:
                raise BackupCorrupt("unexpected database member in the manifest")
            return cls(
                created_at=datetime.fromisoformat(data["created_at"]),
                backend=backend,
                database_member=str(database["member"]),
                database_size=int(database["size"]),
                database_sha256=str(database["sha256"]),
                schema_revision=data.get("schema_revision"),
                row_counts={str(k): int(v) for k, v in data["row_counts"].items()},
                media_count=int(media["count"]),
                media_bytes=int(media["bytes"]),
                media_list_sha256=str(media["list_sha256"]),
                media_missing=[str(key) for key in media.get("missing", [])],
                server_version=data.get("server_version"),
                app_version=str(data.get("app_version", "unknown")),
                format_version=version,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise BackupCorrupt(f"backup manifest is malformed: {exc!r}") from exc


def media_list_bytes(entries: list[MediaEntry]) -> bytes:
    return json.dumps([entry.to_json() for entry in entries], separators=(",", ":")).encode()


class _ProgressReader:
    def __init__(self, handle: IO[bytes], progress: Progress) -> None:
        self._handle = handle
        self._progress = progress

    def read(self, size: int = -1) -> bytes:
        data = self._handle.read(size)
        self._progress.advance(len(data))
        return data


def _member(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = int(time.time())
    info.mode = 0o600
    return info


def write_archive(
    dest: Path,
    key: BackupKey,
    manifest: Manifest,
    media_list: bytes,
    database_file: Path,
    progress: Progress | None = None,
) -> None:
    """Write the encrypted archive to `dest` (blocking; run it in a thread)."""
    progress = progress or NullProgress()
    manifest_bytes = json.dumps(manifest.to_json(), indent=2).encode()
    progress.phase("encrypting", database_file.stat().st_size)
    with dest.open("xb") as raw:
        writer = EncryptingWriter(raw, key, KIND_ARCHIVE)
        with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
            tar.addfile(_member(MANIFEST_MEMBER, len(manifest_bytes)), io.BytesIO(manifest_bytes))
            tar.addfile(_member(MEDIA_MEMBER, len(media_list)), io.BytesIO(media_list))
            with database_file.open("rb") as handle:
                tar.addfile(
                    _member(manifest.database_member, manifest.database_size),
                    _ProgressReader(handle, progress),
                )
        writer.close()
        raw.flush()
        os.fsync(raw.fileno())
    dest.chmod(0o600)


@contextmanager
def _open_tar(path: Path, keyring: BackupKeyring) -> Iterator[tuple[tarfile.TarFile, Any]]:
    try:
        raw = path.open("rb")
    except FileNotFoundError:
        raise BackupCorrupt(f"{path} does not exist") from None
    with raw:
        reader = DecryptingReader(raw, keyring, kind=KIND_ARCHIVE)
        try:
            with tarfile.open(fileobj=reader, mode="r|") as tar:  # type: ignore[call-overload]
                yield tar, reader
        except tarfile.TarError as exc:
            raise BackupCorrupt(f"backup archive is malformed: {exc}") from exc


def _next_member(tar: tarfile.TarFile, name: str) -> tarfile.TarInfo:
    member = tar.next()
    if member is None or member.name != name or not member.isfile():
        raise BackupCorrupt(f"backup archive lacks its {name}")
    return member


def _read_small(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    if member.size > MAX_MANIFEST_BYTES and member.name == MANIFEST_MEMBER:
        raise BackupCorrupt("backup manifest is implausibly large")
    handle = tar.extractfile(member)
    if handle is None:
        raise BackupCorrupt(f"backup archive member {member.name} is unreadable")
    return handle.read()


def _parse_manifest(tar: tarfile.TarFile) -> Manifest:
    data = _read_small(tar, _next_member(tar, MANIFEST_MEMBER))
    try:
        return Manifest.from_json(json.loads(data))
    except ValueError as exc:
        raise BackupCorrupt("backup manifest is not valid JSON") from exc


def read_manifest(path: Path, keyring: BackupKeyring) -> Manifest:
    """The manifest alone (decrypts only the start of the file)."""
    with _open_tar(path, keyring) as (tar, _reader):
        return _parse_manifest(tar)


@dataclass
class ExtractedArchive:
    manifest: Manifest
    media: list[MediaEntry]
    database_file: Path


def extract_archive(
    path: Path, keyring: BackupKeyring, work_dir: Path, progress: Progress | None = None
) -> ExtractedArchive:
    """Decrypt and authenticate the whole file, write the database dump into `work_dir` and
    check it and the media list against the manifest's checksums (blocking)."""
    progress = progress or NullProgress()
    with _open_tar(path, keyring) as (tar, reader):
        manifest = _parse_manifest(tar)
        media = _parse_media(manifest, _read_small(tar, _next_member(tar, MEDIA_MEMBER)))
        member = _next_member(tar, manifest.database_member)
        handle = tar.extractfile(member)
        if handle is None:
            raise BackupCorrupt("backup database member is unreadable")
        progress.phase("decrypting", member.size)
        dest = work_dir / manifest.database_member
        digest = hashlib.sha256()
        size = 0
        with dest.open("wb") as out:
            while chunk := handle.read(COPY_CHUNK):
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
                progress.advance(len(chunk))
        reader.finish()
    if size != manifest.database_size or digest.hexdigest() != manifest.database_sha256:
        raise BackupCorrupt("database dump does not match the manifest checksum")
    return ExtractedArchive(manifest, media, dest)


def read_media_list(path: Path, keyring: BackupKeyring) -> list[MediaEntry]:
    """The media list (second member; decrypts only the start of the file)."""
    with _open_tar(path, keyring) as (tar, _reader):
        manifest = _parse_manifest(tar)
        return _parse_media(manifest, _read_small(tar, _next_member(tar, MEDIA_MEMBER)))


def _parse_media(manifest: Manifest, data: bytes) -> list[MediaEntry]:
    if hashlib.sha256(data).hexdigest() != manifest.media_list_sha256:
        raise BackupCorrupt("media list does not match the manifest checksum")
    try:
        return [MediaEntry.from_json(item) for item in json.loads(data)]
    except (KeyError, TypeError, ValueError) as exc:
        raise BackupCorrupt("backup media list is malformed") from exc
