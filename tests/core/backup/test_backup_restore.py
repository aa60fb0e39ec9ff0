"""Backup → restore round trips on the backend under test (SQLite, or TEST_DB=postgres)."""

from __future__ import annotations

import asyncio
import hashlib
import tarfile
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.core.backup import (
    BackupCorrupt,
    BackupKeyring,
    RestoreRefused,
    create_backup,
    list_backups,
    restore_backup,
    verify_backup,
)
from app.core.backup.crypto import DecryptingReader
from app.core.media.storage import LocalMediaStorage
from app.db.migrate import head_revision
from app.models import ApiRequestLog, Media, User
from tests.core.backup.conftest import Source
from tests.core.backup.helpers import (
    DatabaseFactory,
    add_logs,
    all_rows,
    decrypt_all,
    make_settings,
    put_bytes,
    read_file,
    seed,
)


async def test_backup_restore_into_an_empty_database_matches_and_decrypts(
    source: Source, databases: DatabaseFactory, tmp_path: Path, master_key: str
) -> None:
    seeded = await seed(source.database, source.encryptor, source.storage)
    result = await create_backup(source.settings, storage=source.storage)

    manifest = result.manifest
    assert result.path.parent == source.settings.resolved_backup_dir
    assert manifest.schema_revision == head_revision()
    assert manifest.row_counts["generation_tasks"] == len(seeded.task_ids)
    assert manifest.row_counts["api_request_logs"] == len(seeded.log_ids)
    assert manifest.media_count == len(seeded.files)
    assert manifest.media_missing == []
    # Nothing readable in the file or the blob store: prompts, keys and media are encrypted.
    raw = result.path.read_bytes()
    assert b"lighthouse" not in raw
    assert b"generation_tasks" not in raw
    blob_bytes = b"".join(
        p.read_bytes() for p in (tmp_path / "source/backups/blobs").rglob("*") if p.is_file()
    )
    for content in seeded.files.values():
        assert content[:64] not in blob_bytes

    # Restore into a brand-new, blank database (no tables at all) and an empty media store.
    target_url = await databases.create(migrated=False)
    target = make_settings(target_url, tmp_path / "target", master_key)
    target_storage = LocalMediaStorage(target.media_dir)
    restored = await restore_backup(target, result.path, storage=target_storage)
    assert restored.media_restored == len(seeded.files)

    source_rows, target_rows = await all_rows(source.url), await all_rows(target_url)
    assert target_rows == source_rows
    assert len(target_rows["generation_tasks"]) == len(seeded.task_ids)
    # Every encrypted value of every task, media row, webhook and log decrypts.
    decrypted = await decrypt_all(target_url, source.encryptor)
    assert decrypted["generation_tasks"] == 3 * len(seeded.task_ids)
    assert decrypted["api_request_logs"] == 4 * len(seeded.log_ids)
    assert decrypted["media"] == 2 * len(seeded.task_ids)
    for key, content in seeded.files.items():
        assert await read_file(target_storage, key) == content
    for media in target_rows["media"]:
        if media["state"] == "stored":
            data = await read_file(target_storage, media["storage_key"])
            assert hashlib.sha256(data).hexdigest() == media["sha256"]


async def test_backup_under_write_load_is_a_consistent_snapshot(
    source: Source, databases: DatabaseFactory, tmp_path: Path, master_key: str
) -> None:
    seeded = await seed(source.database, source.encryptor, source.storage, logs_per_user=2)
    user_id = seeded.user_ids[0]
    stop = asyncio.Event()
    inserted: list[str] = []

    async def writer() -> None:
        while not stop.is_set():
            inserted.extend(await add_logs(source.database, source.encryptor, user_id, 1))
            await asyncio.sleep(0)

    async def log_count() -> int:
        async with source.database.session() as session:
            return (
                await session.execute(select(func.count()).select_from(ApiRequestLog))
            ).scalar_one()

    task = asyncio.create_task(writer())
    try:
        deadline = time.monotonic() + 10
        while len(inserted) < 20:  # the writer is demonstrably running
            assert time.monotonic() < deadline, "the concurrent writer made no progress"
            await asyncio.sleep(0.01)
        before = await log_count()
        result = await create_backup(source.settings, storage=source.storage)
        after = await log_count()
    finally:
        stop.set()
        await task
    # Rows were written while the backup ran, and the backup holds one consistent moment.
    assert after > before
    in_backup = result.manifest.row_counts["api_request_logs"]
    assert before <= in_backup <= after

    target_url = await databases.create()
    target = make_settings(target_url, tmp_path / "target", master_key)
    await restore_backup(target, result.path, storage=LocalMediaStorage(target.media_dir))
    target_rows = await all_rows(target_url)
    assert len(target_rows["api_request_logs"]) == in_backup
    source_logs = {row["id"]: row for row in (await all_rows(source.url))["api_request_logs"]}
    for row in target_rows["api_request_logs"]:
        assert row == source_logs[row["id"]]
        assert source.encryptor.decrypt_json(row["request_body_encrypted"])["prompt"]
    report = await verify_backup(source.settings, result.path)
    assert report.ok, report.checks


async def test_media_store_is_incremental_and_deduplicated(source: Source) -> None:
    seeded = await seed(source.database, source.encryptor, source.storage, users=1)
    blobs = source.settings.resolved_backup_dir / "blobs"

    def blob_count() -> int:
        return len([p for p in blobs.glob("*/*") if p.is_file()])

    first = await create_backup(source.settings, storage=source.storage)
    assert first.media.copied == len(seeded.files)
    assert blob_count() == len(seeded.files)

    second = await create_backup(source.settings, storage=source.storage)
    assert second.media.copied == 0
    assert second.media.reused == len(seeded.files)
    assert second.manifest.media_count == len(seeded.files)

    # Another row whose file has the same content as an existing one adds no blob.
    key, content = sorted((k, v) for k, v in seeded.files.items() if k.endswith(".mp4"))[0]
    copy_key = f"{seeded.user_ids[0]}/copy-of-{key.split('/')[-1]}"
    await put_bytes(source.storage, copy_key, content)
    async with source.database.session() as session:
        session.add(
            Media(
                task_id=seeded.task_ids[0],
                user_id=seeded.user_ids[0],
                kind="video",
                position=5,
                state="stored",
                storage_key=copy_key,
                bytes=len(content),
                sha256=hashlib.sha256(content).hexdigest(),
            )
        )
    third = await create_backup(source.settings, storage=source.storage)
    assert third.media.copied == 0
    assert third.manifest.media_count == len(seeded.files) + 1
    assert blob_count() == len(seeded.files)

    # New content: only the new files are copied.
    await seed(source.database, source.encryptor, source.storage, users=1, tasks_per_user=1)
    fourth = await create_backup(source.settings, storage=source.storage)
    assert fourth.media.copied == 2  # the new video and its thumbnail
    assert fourth.media.reused == len(seeded.files) + 1
    assert blob_count() == len(seeded.files) + 2
    keyring = BackupKeyring(source.settings.storage_master_key or "")
    assert len(list_backups(blobs.parent, keyring)) == 4


async def test_restore_refuses_a_non_empty_database_without_force(source: Source) -> None:
    seeded = await seed(source.database, source.encryptor, source.storage, users=1)
    result = await create_backup(source.settings, storage=source.storage)
    at_backup = await all_rows(source.url)
    # Changes after the backup: a restore with --force must take them back.
    await add_logs(source.database, source.encryptor, seeded.user_ids[0], 3)
    async with source.database.session() as session:
        user = await session.get(User, seeded.user_ids[0])
        assert user is not None
        user.username = "renamed-after-backup"
    changed = await all_rows(source.url)

    with pytest.raises(RestoreRefused, match="--force"):
        await restore_backup(source.settings, result.path, storage=source.storage)
    assert await all_rows(source.url) == changed  # untouched

    await source.database.dispose()  # the service is stopped during a restore
    await restore_backup(source.settings, result.path, storage=source.storage, force=True)
    assert await all_rows(source.url) == at_backup


async def test_restore_into_a_migrated_empty_database_is_allowed(
    source: Source, databases: DatabaseFactory, tmp_path: Path, master_key: str
) -> None:
    await seed(source.database, source.encryptor, source.storage, users=1)
    result = await create_backup(source.settings, storage=source.storage)
    target_url = await databases.create(migrated=True)  # tables, no rows: `genapi migrate` only
    target = make_settings(target_url, tmp_path / "target", master_key)
    await restore_backup(target, result.path, storage=LocalMediaStorage(target.media_dir))
    assert await all_rows(target_url) == await all_rows(source.url)


async def test_restore_without_media_and_missing_blobs(
    source: Source, databases: DatabaseFactory, tmp_path: Path, master_key: str
) -> None:
    await seed(source.database, source.encryptor, source.storage, users=1, tasks_per_user=1)
    result = await create_backup(source.settings, storage=source.storage)
    elsewhere = tmp_path / "copied" / result.path.name
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(result.path.read_bytes())  # the file alone, without its blobs

    target_url = await databases.create(migrated=False)
    target = make_settings(target_url, tmp_path / "target", master_key)
    storage = LocalMediaStorage(target.media_dir)
    with pytest.raises(BackupCorrupt, match="missing"):
        await restore_backup(target, elsewhere, storage=storage)
    restored = await restore_backup(target, elsewhere, storage=storage, restore_media=False)
    assert restored.media_skipped
    assert restored.media_restored == 0
    assert (await all_rows(target_url))["generation_tasks"]
    # Pointing at the blob directory brings the files back too.
    blobs = source.settings.resolved_backup_dir / "blobs"
    again = await restore_backup(target, elsewhere, storage=storage, blob_dir=blobs, force=True)
    assert again.media_restored == 2


async def test_missing_media_file_is_recorded_not_fatal(source: Source) -> None:
    seeded = await seed(
        source.database, source.encryptor, source.storage, users=1, tasks_per_user=2
    )
    lost = sorted(seeded.files)[0]
    await source.storage.delete(lost)
    result = await create_backup(source.settings, storage=source.storage)
    assert result.manifest.media_missing == [lost]
    assert result.manifest.media_count == len(seeded.files) - 1
    report = await verify_backup(source.settings, result.path)
    assert report.ok
    assert [c.level for c in report.checks if c.name == "media completeness"] == ["warn"]


async def test_archive_is_a_tar_of_manifest_media_list_and_dump(source: Source) -> None:
    await seed(source.database, source.encryptor, source.storage, users=1, tasks_per_user=1)
    result = await create_backup(source.settings, storage=source.storage)
    keyring = BackupKeyring(source.settings.storage_master_key or "")
    with result.path.open("rb") as raw:
        reader = DecryptingReader(raw, keyring)
        with tarfile.open(fileobj=reader, mode="r|") as tar:  # type: ignore[call-overload]
            names = [member.name for member in tar]
    dump = "database.sqlite" if result.manifest.backend == "sqlite" else "database.dump"
    assert names == ["manifest.json", "media.json", dump]
    assert oct(result.path.stat().st_mode & 0o777) == oct(0o600)
