"""Create, list, verify, restore and prune backups.

Layout of BACKUP_DIR::

    genapi-backup-20261125T030000Z-1a2b3c.gbak   one encrypted file per backup
    blobs/xx/<name>                              encrypted media, shared by all backups
    blobs/index.gbi                              cache: storage key -> sha256 (thumbnails)
    .tmp/                                        work files (plaintext dumps live here briefly)
    .lock                                        held by whoever creates or prunes backups

A backup file is complete or absent: it is written under .tmp and renamed into place.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from sqlalchemy import Table, select
from sqlalchemy.exc import SQLAlchemyError

from app.core.backup.archive import (
    ExtractedArchive,
    Manifest,
    extract_archive,
    media_list_bytes,
    read_manifest,
    read_media_list,
    sha256_file,
    write_archive,
)
from app.core.backup.blobs import BlobStore, MediaBackupStats
from app.core.backup.crypto import BackupKeyring
from app.core.backup.database import (
    backend_of,
    database_has_rows,
    plain_engine,
    read_row_counts,
    restore_database,
    scratch_database,
    snapshot_database,
)
from app.core.backup.errors import BackupCorrupt, BackupError, RestoreRefused
from app.core.backup.locks import FileLock
from app.core.backup.progress import NullProgress, Progress
from app.core.config import Settings
from app.core.encryption import DecryptionError, Encryptor
from app.core.key_rotation import ENCRYPTED_COLUMNS
from app.core.media.storage import MediaStorage, create_media_storage
from app.db.base import Base
from app.db.migrate import head_revision, upgrade_to_head_async

logger = logging.getLogger(__name__)

BACKUP_PREFIX = "genapi-backup-"
BACKUP_SUFFIX = ".gbak"
BLOBS_DIR = "blobs"
WORK_DIR = ".tmp"
LOCK_FILE = ".lock"
DEFAULT_LOCK_TIMEOUT = 3600.0
# Unreferenced blobs and temp files younger than this survive a prune: a backup running on
# another host may have just written them.
BLOB_GRACE_SECONDS = 6 * 3600.0
DECRYPT_CHECK_BATCH = 1000
MAX_REPORTED_PROBLEMS = 20

_NAME = re.compile(
    rf"^{re.escape(BACKUP_PREFIX)}(\d{{8}}T\d{{6}})Z-[0-9a-f]{{6}}{re.escape(BACKUP_SUFFIX)}$"
)


def keyring_for(settings: Settings) -> BackupKeyring:
    try:
        return BackupKeyring(settings.storage_master_key or "")
    except ValueError as exc:
        raise BackupError(f"backups are encrypted with STORAGE_MASTER_KEY: {exc}") from exc


@dataclass(frozen=True)
class BackupLayout:
    root: Path

    @classmethod
    def for_settings(cls, settings: Settings) -> BackupLayout:
        return cls(Path(settings.resolved_backup_dir))

    @property
    def blobs_dir(self) -> Path:
        return self.root / BLOBS_DIR

    @property
    def work_dir(self) -> Path:
        return self.root / WORK_DIR

    @property
    def lock_path(self) -> Path:
        return self.root / LOCK_FILE

    def ensure(self) -> None:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.work_dir.mkdir(mode=0o700, exist_ok=True)


@asynccontextmanager
async def _exclusive(layout: BackupLayout, wait_seconds: float) -> AsyncIterator[None]:
    lock = FileLock(layout.lock_path)
    await lock.acquire(wait_seconds)
    try:
        yield
    finally:
        await lock.release()


def backup_filename(created_at: datetime) -> str:
    stamp = created_at.astimezone(UTC).strftime("%Y%m%dT%H%M%S")
    return f"{BACKUP_PREFIX}{stamp}Z-{secrets.token_hex(3)}{BACKUP_SUFFIX}"


def time_from_filename(path: Path) -> datetime | None:
    match = _NAME.match(path.name)
    if not match:
        return None
    return datetime.strptime(match.group(1), "%Y%m%dT%H%M%S").replace(tzinfo=UTC)


def backup_files(backup_dir: Path) -> list[Path]:
    """The backup files in `backup_dir`, newest name first."""
    if not backup_dir.is_dir():
        return []
    files = [path for path in backup_dir.iterdir() if _NAME.match(path.name) and path.is_file()]
    return sorted(files, key=lambda path: path.name, reverse=True)


def newest_backup_time(backup_dir: Path) -> datetime | None:
    """When the newest backup file was made, from its name alone (cheap: no decryption)."""
    files = backup_files(backup_dir)
    return time_from_filename(files[0]) if files else None


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def _work_dir(layout: BackupLayout, prefix: str) -> Iterator[Path]:
    layout.ensure()
    # ignore_cleanup_errors: a cancelled run's worker thread may still be writing in there.
    with tempfile.TemporaryDirectory(
        prefix=prefix, dir=layout.work_dir, ignore_cleanup_errors=True
    ) as directory:
        os.chmod(directory, 0o700)
        yield Path(directory)


# --- create ---------------------------------------------------------------------------------


@dataclass
class BackupResult:
    path: Path
    manifest: Manifest
    media: MediaBackupStats
    duration_seconds: float


async def create_backup(
    settings: Settings,
    *,
    storage: MediaStorage | None = None,
    keyring: BackupKeyring | None = None,
    progress: Progress | None = None,
    now: datetime | None = None,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
) -> BackupResult:
    """Back up the database and its media into a new file in BACKUP_DIR."""
    started = time.monotonic()
    keyring = keyring or keyring_for(settings)
    storage = storage or create_media_storage(settings)
    progress = progress or NullProgress()
    layout = BackupLayout.for_settings(settings)
    database_url = settings.resolved_database_url
    backend = backend_of(database_url)
    await asyncio.to_thread(layout.ensure)
    async with _exclusive(layout, lock_timeout):
        with _work_dir(layout, "create-") as work:
            dump, description = await snapshot_database(database_url, work, progress)
            blobs = BlobStore(layout.blobs_dir, keyring)
            entries, stats = await blobs.backup_media(storage, description.media, progress)
            media_list = media_list_bytes(entries)
            created_at = (now or datetime.now(UTC)).astimezone(UTC)
            manifest = Manifest(
                created_at=created_at,
                backend=backend,
                database_member=dump.name,
                database_size=dump.stat().st_size,
                database_sha256=await asyncio.to_thread(sha256_file, dump),
                schema_revision=description.schema_revision,
                row_counts=description.row_counts,
                media_count=len(entries),
                media_bytes=sum(entry.size for entry in entries),
                media_list_sha256=hashlib.sha256(media_list).hexdigest(),
                media_missing=stats.missing,
                server_version=description.server_version,
            )
            final = layout.root / backup_filename(created_at)
            partial = work / (final.name + ".part")
            await asyncio.to_thread(
                write_archive, partial, keyring.primary, manifest, media_list, dump, progress
            )
            os.replace(partial, final)
            await asyncio.to_thread(_fsync_dir, layout.root)
    duration = time.monotonic() - started
    logger.info(
        "backup %s written: %d table(s), %d media file(s) (%d new), %.1fs",
        final.name,
        len(manifest.row_counts),
        manifest.media_count,
        stats.copied,
        duration,
    )
    return BackupResult(final, manifest, stats, duration)


# --- list -----------------------------------------------------------------------------------


@dataclass
class BackupInfo:
    path: Path
    size: int
    created_at: datetime | None
    manifest: Manifest | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.manifest is not None


def list_backups(backup_dir: Path, keyring: BackupKeyring) -> list[BackupInfo]:
    """Every backup file with its manifest (or why it cannot be read), newest first.
    Blocking: decrypts the start of each file."""
    infos: list[BackupInfo] = []
    for path in backup_files(backup_dir):
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            continue  # pruned meanwhile
        try:
            manifest = read_manifest(path, keyring)
        except BackupError as exc:
            infos.append(BackupInfo(path, size, time_from_filename(path), None, str(exc)))
            continue
        infos.append(BackupInfo(path, size, manifest.created_at, manifest))
    epoch = datetime.min.replace(tzinfo=UTC)
    infos.sort(key=lambda info: (info.created_at or epoch, info.path.name), reverse=True)
    return infos


# --- verify ---------------------------------------------------------------------------------

CheckLevel = Literal["ok", "warn", "fail"]


@dataclass
class VerifyCheck:
    name: str
    level: CheckLevel
    detail: str


@dataclass
class VerifyReport:
    path: Path
    manifest: Manifest | None = None
    checks: list[VerifyCheck] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(check.level != "fail" for check in self.checks)

    def add(self, name: str, level: CheckLevel, detail: str) -> None:
        self.checks.append(VerifyCheck(name, level, detail))


@dataclass
class DecryptCheckResult:
    values: int = 0
    failed: int = 0
    problems: list[str] = field(default_factory=list)


def _table(model: type[Base]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


async def check_encrypted_columns(
    database_url: str,
    encryptor: Encryptor,
    registry: list[tuple[type[Base], list[str]]] | None = None,
) -> DecryptCheckResult:
    """Decrypt every value of every registered encrypted column (keyset pages, read-only)."""
    result = DecryptCheckResult()
    engine = plain_engine(database_url)
    try:
        async with engine.connect() as conn:
            for model, names in registry or ENCRYPTED_COLUMNS:
                table = _table(model)
                (pk,) = list(table.primary_key.columns)
                columns = [table.c[name] for name in names]
                last_id = None
                while True:
                    query = select(pk, *columns).order_by(pk).limit(DECRYPT_CHECK_BATCH)
                    if last_id is not None:
                        query = query.where(pk > last_id)
                    rows = (await conn.execute(query)).all()
                    for row in rows:
                        for name, value in zip(names, row[1:], strict=True):
                            if value is None:
                                continue
                            result.values += 1
                            try:
                                encryptor.decrypt_bytes(value)
                            except DecryptionError:
                                result.failed += 1
                                if len(result.problems) < MAX_REPORTED_PROBLEMS:
                                    result.problems.append(f"{table.name} {row[0]} {name}")
                    if len(rows) < DECRYPT_CHECK_BATCH:
                        break
                    last_id = rows[-1][0]
    finally:
        await engine.dispose()
    return result


def _problems(items: list[str], total: int) -> str:
    shown = ", ".join(items[:MAX_REPORTED_PROBLEMS])
    more = f" (and {total - len(items[:MAX_REPORTED_PROBLEMS])} more)" if total > len(items) else ""
    return shown + more


async def verify_backup(
    settings: Settings,
    path: Path,
    *,
    keyring: BackupKeyring | None = None,
    encryptor: Encryptor | None = None,
    blob_dir: Path | None = None,
    progress: Progress | None = None,
) -> VerifyReport:
    """Decrypt and check the file and its media, restore it into a scratch database, compare
    row counts with the manifest and decrypt every encrypted column with the configured keys."""
    report = VerifyReport(Path(path))
    progress = progress or NullProgress()
    keyring = keyring or keyring_for(settings)
    encryptor = encryptor or Encryptor(settings.storage_master_key or "")
    layout = BackupLayout.for_settings(settings)
    with _work_dir(layout, "verify-") as work:
        try:
            extracted = await asyncio.to_thread(
                extract_archive, Path(path), keyring, work, progress
            )
        except BackupError as exc:
            report.add("decrypt and checksums", "fail", str(exc))
            return report
        manifest = report.manifest = extracted.manifest
        report.add(
            "decrypt and checksums",
            "ok",
            f"authenticated; {manifest.backend} dump of {manifest.database_size} bytes matches "
            "its sha256",
        )
        await _verify_media(
            report, extracted, BlobStore(blob_dir or _default_blobs(path), keyring), progress
        )
        await _verify_database(report, settings, extracted, encryptor, work, progress)
    return report


def _default_blobs(path: Path) -> Path:
    return Path(path).resolve().parent / BLOBS_DIR


async def _verify_media(
    report: VerifyReport, extracted: ExtractedArchive, blobs: BlobStore, progress: Progress
) -> None:
    manifest = extracted.manifest
    progress.phase("checking media", manifest.media_bytes)
    problems: list[str] = []
    failed = 0
    for entry in extracted.media:
        problem = await blobs.check(entry, progress)
        if problem:
            failed += 1
            problems.append(problem)
    if failed:
        report.add(
            "media",
            "fail",
            f"{failed} of {len(extracted.media)} file(s) bad: {_problems(problems, failed)}",
        )
    else:
        report.add(
            "media",
            "ok",
            f"{len(extracted.media)} file(s), {manifest.media_bytes} bytes: all decrypt and "
            "match their sha256",
        )
    missing = manifest.media_missing
    if missing:
        report.add(
            "media completeness",
            "warn",
            f"{len(missing)} file(s) were already missing from the media store when the backup "
            f"ran: {_problems(missing, len(missing))}",
        )


async def _verify_database(
    report: VerifyReport,
    settings: Settings,
    extracted: ExtractedArchive,
    encryptor: Encryptor,
    work: Path,
    progress: Progress,
) -> None:
    manifest = extracted.manifest
    like_url = settings.resolved_database_url
    if manifest.backend == "sqlite":
        like_url = "sqlite+aiosqlite:///scratch.db"
    elif backend_of(like_url) != "postgresql":
        report.add(
            "restore",
            "fail",
            "this is a PostgreSQL backup: set DATABASE_URL to a PostgreSQL server to verify it",
        )
        return
    progress.phase("restoring into a scratch database", None)
    try:
        async with scratch_database(like_url, work) as scratch_url:
            try:
                await restore_database(extracted.database_file, manifest.backend, scratch_url)
            except BackupError as exc:
                report.add("restore", "fail", str(exc))
                return
            report.add("restore", "ok", "restored into a scratch database")
            counts = await read_row_counts(scratch_url)
            mismatched = [
                f"{table}: manifest {expected}, restored {counts.get(table)}"
                for table, expected in sorted(manifest.row_counts.items())
                if counts.get(table) != expected
            ]
            extra = sorted(set(counts) - set(manifest.row_counts))
            if mismatched or extra:
                detail = "; ".join(
                    mismatched + [f"{table}: not in the manifest" for table in extra]
                )
                report.add("row counts", "fail", detail)
            else:
                total = sum(counts.values())
                report.add("row counts", "ok", f"{len(counts)} table(s), {total} row(s) match")
            head = head_revision()
            try:
                await upgrade_to_head_async(scratch_url)
            except Exception as exc:  # an Alembic failure of any kind is the finding here
                report.add("migrate to head", "fail", f"{type(exc).__name__}: {exc}")
                return
            report.add(
                "migrate to head", "ok", f"schema {manifest.schema_revision or 'none'} -> {head}"
            )
            checked = await check_encrypted_columns(scratch_url, encryptor)
            if checked.failed:
                report.add(
                    "encrypted columns",
                    "fail",
                    f"{checked.failed} of {checked.values} value(s) do not decrypt with "
                    f"STORAGE_MASTER_KEY: {_problems(checked.problems, checked.failed)}",
                )
            else:
                report.add(
                    "encrypted columns", "ok", f"{checked.values} value(s) decrypt with the keys"
                )
    except (BackupError, SQLAlchemyError) as exc:
        report.add("restore", "fail", str(exc).splitlines()[0] if str(exc) else repr(exc))


# --- restore --------------------------------------------------------------------------------


@dataclass
class RestoreResult:
    manifest: Manifest
    media_restored: int
    media_skipped: bool


async def restore_backup(
    settings: Settings,
    path: Path,
    *,
    force: bool = False,
    restore_media: bool = True,
    storage: MediaStorage | None = None,
    keyring: BackupKeyring | None = None,
    blob_dir: Path | None = None,
    progress: Progress | None = None,
) -> RestoreResult:
    """Replace the configured database (and put the media files back) from a backup, then
    migrate it to head. Refuses a database that holds data unless `force`.

    Stop the service first: a running service keeps writing into the database being replaced.
    """
    progress = progress or NullProgress()
    keyring = keyring or keyring_for(settings)
    target_url = settings.resolved_database_url
    target_backend = backend_of(target_url)
    if not force and await database_has_rows(target_url):
        raise RestoreRefused(
            "the target database already holds data; pass --force to replace it with the backup"
        )
    if target_backend == "sqlite":
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    layout = BackupLayout.for_settings(settings)
    blobs = BlobStore(blob_dir or _default_blobs(path), keyring)
    with _work_dir(layout, "restore-") as work:
        extracted = await asyncio.to_thread(extract_archive, Path(path), keyring, work, progress)
        manifest = extracted.manifest
        if manifest.backend != target_backend:
            raise BackupError(
                f"this backup holds a {manifest.backend} database and DATABASE_URL is "
                f"{target_backend}; restore into the same kind of database"
            )
        if restore_media:
            absent = [entry.key for entry in extracted.media if not blobs.exists(entry.blob)]
            if absent:
                raise BackupCorrupt(
                    f"{len(absent)} media file(s) of this backup are missing from {blobs.root} "
                    "(pass the blob directory, or restore without media)"
                )
        progress.phase("restoring database", None)
        await restore_database(extracted.database_file, manifest.backend, target_url)
    progress.phase("migrating", None)
    await upgrade_to_head_async(target_url)
    restored = 0
    if restore_media:
        storage = storage or create_media_storage(settings)
        progress.phase("restoring media", manifest.media_bytes)
        for entry in extracted.media:
            await blobs.restore(storage, entry, progress)
            restored += 1
    logger.info("restored %s (%d media file(s))", Path(path).name, restored)
    return RestoreResult(manifest, restored, not restore_media)


# --- retention ------------------------------------------------------------------------------


@dataclass
class RetentionResult:
    deleted: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)
    blobs_deleted: int = 0


def apply_retention(
    backup_dir: Path,
    keyring: BackupKeyring,
    retention_days: float,
    *,
    now: datetime | None = None,
    keep_last: int = 1,
    blob_grace_seconds: float = BLOB_GRACE_SECONDS,
) -> RetentionResult:
    """Delete backups older than `retention_days`, except the newest `keep_last` good
    (readable) ones, then the media blobs no remaining backup references. Blocking.

    Call it only after a successful backup: a failing run must never thin out the good ones.
    """
    now = now or datetime.now(UTC)
    cutoff = now - timedelta(days=retention_days)
    infos = list_backups(backup_dir, keyring)
    protected = {info.path for info in [i for i in infos if i.ok][: max(keep_last, 1)]}
    result = RetentionResult()
    for info in infos:
        expired = info.created_at is not None and info.created_at < cutoff
        if expired and info.path not in protected:
            info.path.unlink(missing_ok=True)
            result.deleted.append(info.path)
            logger.info("backup retention: deleted %s", info.path.name)
        else:
            result.kept.append(info.path)
    referenced: set[str] = set()
    for path in result.kept:
        try:
            referenced.update(entry.blob for entry in read_media_list(path, keyring))
        except BackupError:
            # Cannot tell what this backup needs: keep every blob rather than break it.
            logger.warning("backup retention: %s unreadable; media clean-up skipped", path.name)
            return result
    blobs = BlobStore(backup_dir / BLOBS_DIR, keyring)
    result.blobs_deleted = blobs.collect_garbage(referenced, blob_grace_seconds)
    return result


async def prune_backups(
    settings: Settings,
    *,
    keyring: BackupKeyring | None = None,
    now: datetime | None = None,
    keep_last: int = 1,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
) -> RetentionResult:
    """`apply_retention` under the backup-directory lock, with BACKUP_RETENTION_DAYS; the
    newest `keep_last` good backups are kept whatever their age."""
    keyring = keyring or keyring_for(settings)
    layout = BackupLayout.for_settings(settings)
    await asyncio.to_thread(layout.ensure)
    async with _exclusive(layout, lock_timeout):
        return await asyncio.to_thread(
            apply_retention,
            layout.root,
            keyring,
            settings.backup_retention_days,
            now=now,
            keep_last=keep_last,
        )


def describe_manifest(manifest: Manifest) -> dict[str, object]:
    """A JSON-friendly summary (for `genapi backup list --json` and logs)."""
    return json.loads(json.dumps(manifest.to_json()))
