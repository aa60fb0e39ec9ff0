"""Retention: old backups go, the newest good one always stays, unreferenced media goes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import delete

from app.core.backup import BackupKeyring, apply_retention, create_backup, list_backups
from app.core.backup.archive import read_media_list
from app.models import Media
from tests.core.backup.conftest import Source
from tests.core.backup.helpers import flip_byte, seed

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def days_ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def keyring(source: Source) -> BackupKeyring:
    return BackupKeyring(source.settings.storage_master_key or "")


async def test_deletes_expired_backups_and_keeps_recent_ones(source: Source) -> None:
    await seed(source.database, source.encryptor, source.storage, users=1, tasks_per_user=1)
    old = [await create_backup(source.settings, now=days_ago(d)) for d in (10, 9)]
    recent = [await create_backup(source.settings, now=days_ago(d)) for d in (3, 1)]
    result = apply_retention(source.settings.resolved_backup_dir, keyring(source), 7, now=NOW)
    assert sorted(result.deleted) == sorted(r.path for r in old)
    assert all(not r.path.exists() for r in old)
    assert all(r.path.exists() for r in recent)


async def test_never_deletes_the_newest_good_backup(source: Source) -> None:
    await seed(source.database, source.encryptor, source.storage, users=1, tasks_per_user=1)
    oldest = await create_backup(source.settings, now=days_ago(30))
    good = await create_backup(source.settings, now=days_ago(20))
    damaged = await create_backup(source.settings, now=days_ago(10))
    flip_byte(damaged.path, 60)  # its manifest no longer decrypts: not a good backup

    result = apply_retention(source.settings.resolved_backup_dir, keyring(source), 7, now=NOW)
    # Everything is past retention, yet the newest *good* backup survives.
    assert good.path.exists()
    assert sorted(result.deleted) == sorted([oldest.path, damaged.path])
    infos = list_backups(source.settings.resolved_backup_dir, keyring(source))
    assert [info.path for info in infos] == [good.path]


async def test_media_only_referenced_by_deleted_backups_is_removed(source: Source) -> None:
    seeded = await seed(
        source.database, source.encryptor, source.storage, users=1, tasks_per_user=1
    )
    old = await create_backup(source.settings, now=days_ago(10))
    # The media is deleted (the task was removed) before the next backup.
    for key in seeded.files:
        await source.storage.delete(key)
    async with source.database.session() as session:
        await session.execute(delete(Media))
    new = await create_backup(source.settings, now=days_ago(1))
    assert new.manifest.media_count == 0
    old_blobs = {entry.blob for entry in read_media_list(old.path, keyring(source))}
    blob_dir = source.settings.resolved_backup_dir / "blobs"
    assert {p.name for p in blob_dir.glob("*/*")} == old_blobs

    result = apply_retention(
        source.settings.resolved_backup_dir, keyring(source), 7, now=NOW, blob_grace_seconds=0
    )
    assert result.deleted == [old.path]
    assert result.blobs_deleted == len(old_blobs)
    assert list(blob_dir.glob("*/*")) == []


async def test_blobs_still_referenced_are_kept(source: Source) -> None:
    await seed(source.database, source.encryptor, source.storage, users=1, tasks_per_user=2)
    await create_backup(source.settings, now=days_ago(10))
    kept = await create_backup(source.settings, now=days_ago(1))
    result = apply_retention(
        source.settings.resolved_backup_dir, keyring(source), 7, now=NOW, blob_grace_seconds=0
    )
    assert len(result.deleted) == 1
    assert result.blobs_deleted == 0
    blob_dir = source.settings.resolved_backup_dir / "blobs"
    referenced = {entry.blob for entry in read_media_list(kept.path, keyring(source))}
    assert referenced
    assert referenced <= {p.name for p in blob_dir.glob("*/*")}


async def test_keep_last_keeps_a_minimum_number_of_good_backups(source: Source) -> None:
    await seed(source.database, source.encryptor, source.storage, users=1, tasks_per_user=1)
    made = [await create_backup(source.settings, now=days_ago(d)) for d in (40, 30, 20)]
    result = apply_retention(
        source.settings.resolved_backup_dir, keyring(source), 7, now=NOW, keep_last=2
    )
    assert result.deleted == [made[0].path]
    assert sorted(result.kept) == sorted([made[1].path, made[2].path])
