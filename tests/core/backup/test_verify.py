"""`verify_backup`: passes on a good backup, fails on every kind of damage it must catch."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

from cryptography.fernet import Fernet

from app.core.backup import BackupKeyring, create_backup, verify_backup
from app.core.backup.archive import extract_archive, media_list_bytes, write_archive
from app.core.backup.service import VerifyReport
from app.core.encryption import Encryptor
from tests.core.backup.conftest import Source
from tests.core.backup.helpers import add_logs, flip_byte, make_settings, seed


def levels(report: VerifyReport) -> dict[str, str]:
    return {check.name: check.level for check in report.checks}


async def test_good_backup_passes_every_check(source: Source) -> None:
    await seed(source.database, source.encryptor, source.storage)
    result = await create_backup(source.settings, storage=source.storage)
    report = await verify_backup(source.settings, result.path)
    assert report.ok, report.checks
    assert levels(report) == {
        "decrypt and checksums": "ok",
        "media": "ok",
        "restore": "ok",
        "row counts": "ok",
        "migrate to head": "ok",
        "encrypted columns": "ok",
    }
    encrypted = next(c for c in report.checks if c.name == "encrypted columns")
    # users 2 + tasks 6x3 + media 12 + webhooks 6x2 + logs 10x4
    assert encrypted.detail.startswith("84 value(s)")


async def test_flipped_byte_in_the_backup_fails(source: Source) -> None:
    await seed(source.database, source.encryptor, source.storage, users=1)
    result = await create_backup(source.settings, storage=source.storage)
    flip_byte(result.path, result.path.stat().st_size // 2)
    report = await verify_backup(source.settings, result.path)
    assert not report.ok
    assert levels(report) == {"decrypt and checksums": "fail"}
    assert "modified or damaged" in report.checks[0].detail


async def test_flipped_byte_in_a_media_blob_fails(source: Source) -> None:
    await seed(source.database, source.encryptor, source.storage, users=1, tasks_per_user=1)
    result = await create_backup(source.settings, storage=source.storage)
    blob = sorted((source.settings.resolved_backup_dir / "blobs").glob("*/*"))[0]
    flip_byte(blob, blob.stat().st_size - 5)
    report = await verify_backup(source.settings, result.path)
    assert not report.ok
    assert levels(report)["media"] == "fail"
    # The database side is still checked and reported.
    assert levels(report)["row counts"] == "ok"


async def test_wrong_master_key_fails(source: Source, tmp_path: Path) -> None:
    await seed(source.database, source.encryptor, source.storage, users=1)
    result = await create_backup(source.settings, storage=source.storage)
    other = make_settings(source.url, tmp_path / "other", Fernet.generate_key().decode())
    report = await verify_backup(other, result.path)
    assert not report.ok
    assert "not in STORAGE_MASTER_KEY" in report.checks[0].detail


async def test_rotated_keys_still_verify(source: Source, tmp_path: Path, master_key: str) -> None:
    await seed(source.database, source.encryptor, source.storage, users=1)
    result = await create_backup(source.settings, storage=source.storage)
    rotated_key = f"{Fernet.generate_key().decode()},{master_key}"
    rotated = make_settings(source.url, tmp_path / "rotated", rotated_key)
    report = await verify_backup(rotated, result.path)
    assert report.ok, report.checks


async def test_value_under_an_unknown_key_fails_the_decrypt_check(source: Source) -> None:
    seeded = await seed(source.database, source.encryptor, source.storage, users=1)
    stranger = Encryptor(Fernet.generate_key().decode())
    await add_logs(source.database, stranger, seeded.user_ids[0], 1)
    result = await create_backup(source.settings, storage=source.storage)
    report = await verify_backup(source.settings, result.path)
    assert not report.ok
    check = next(c for c in report.checks if c.name == "encrypted columns")
    assert check.level == "fail"
    assert check.detail.startswith("4 of ")
    assert "api_request_logs" in check.detail


async def test_row_counts_that_do_not_match_the_manifest_fail(
    source: Source, tmp_path: Path
) -> None:
    # A manifest that lies about the dump (as a buggy writer would produce) is caught.
    await seed(source.database, source.encryptor, source.storage, users=1)
    result = await create_backup(source.settings, storage=source.storage)
    keyring = BackupKeyring(source.settings.storage_master_key or "")
    work = tmp_path / "work"
    work.mkdir()
    extracted = extract_archive(result.path, keyring, work)
    counts = dict(extracted.manifest.row_counts)
    counts["generation_tasks"] += 1
    media_list = media_list_bytes(extracted.media)
    forged = replace(
        extracted.manifest,
        row_counts=counts,
        media_list_sha256=hashlib.sha256(media_list).hexdigest(),
    )
    forged_path = result.path.with_name("genapi-backup-20200101T000000Z-abcdef.gbak")
    write_archive(forged_path, keyring.primary, forged, media_list, extracted.database_file)
    report = await verify_backup(source.settings, forged_path)
    assert not report.ok
    check = next(c for c in report.checks if c.name == "row counts")
    assert check.level == "fail"
    assert "generation_tasks" in check.detail
