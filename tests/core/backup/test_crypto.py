"""The streaming encryption of backup files: round trips, tampering, truncation, keys."""

from __future__ import annotations

import io
import os

import pytest
from cryptography.fernet import Fernet

from app.core.backup.crypto import (
    HEADER_SIZE,
    KIND_ARCHIVE,
    KIND_BLOB,
    BackupKeyring,
    DecryptingReader,
    EncryptingWriter,
    decrypt_bytes,
    encrypt_bytes,
)
from app.core.backup.errors import BackupCorrupt, BackupKeyError

KEY_A = Fernet.generate_key().decode()
KEY_B = Fernet.generate_key().decode()


def _encrypt(data: bytes, keyring: BackupKeyring, chunk_size: int, pieces: int = 7) -> bytes:
    out = io.BytesIO()
    writer = EncryptingWriter(out, keyring.primary, KIND_ARCHIVE, chunk_size=chunk_size)
    step = max(1, len(data) // pieces)
    for offset in range(0, len(data), step):
        writer.write(data[offset : offset + step])
    writer.close()
    assert writer.size == len(data)
    return out.getvalue()


@pytest.mark.parametrize("size", [0, 1, 4096, 4097, 8192, 50_000])
def test_round_trip_across_chunk_boundaries(size: int) -> None:
    keyring = BackupKeyring(KEY_A)
    data = os.urandom(size)
    sealed = _encrypt(data, keyring, chunk_size=4096)
    reader = DecryptingReader(io.BytesIO(sealed), keyring)
    # Read in odd sizes, as tarfile does.
    parts = []
    while piece := reader.read(1000):
        parts.append(piece)
    assert b"".join(parts) == data
    if size >= 4096:
        assert data[:64] not in sealed


def test_ciphertext_differs_each_time_and_hides_plaintext() -> None:
    keyring = BackupKeyring(KEY_A)
    data = b"secret prompt " * 100
    first = encrypt_bytes(keyring.primary, data, KIND_BLOB)
    second = encrypt_bytes(keyring.primary, data, KIND_BLOB)
    assert first != second
    assert b"secret prompt" not in first


def test_every_flipped_byte_is_detected() -> None:
    keyring = BackupKeyring(KEY_A)
    sealed = _encrypt(os.urandom(10_000), keyring, chunk_size=4096)
    # Header, record lengths, ciphertext and tags: any change must be refused.
    for offset in [0, 9, 10, HEADER_SIZE - 1, HEADER_SIZE, HEADER_SIZE + 4, len(sealed) - 1]:
        tampered = bytearray(sealed)
        tampered[offset] ^= 0x01
        with pytest.raises((BackupCorrupt, BackupKeyError)):
            DecryptingReader(io.BytesIO(bytes(tampered)), keyring).read()


def test_truncation_and_appended_data_are_detected() -> None:
    keyring = BackupKeyring(KEY_A)
    sealed = _encrypt(os.urandom(10_000), keyring, chunk_size=4096)
    first_record_end = HEADER_SIZE + 4 + 4096 + 16
    for cut in [first_record_end, len(sealed) - 1, HEADER_SIZE + 2]:
        with pytest.raises(BackupCorrupt, match="truncated"):
            DecryptingReader(io.BytesIO(sealed[:cut]), keyring).read()
    with pytest.raises(BackupCorrupt, match="after its end"):
        DecryptingReader(io.BytesIO(sealed + b"\x00"), keyring).read()


def test_dropping_a_middle_chunk_is_detected() -> None:
    keyring = BackupKeyring(KEY_A)
    sealed = _encrypt(os.urandom(12_000), keyring, chunk_size=4096)
    record = 4 + 4096 + 16
    spliced = sealed[: HEADER_SIZE + record] + sealed[HEADER_SIZE + 2 * record :]
    with pytest.raises(BackupCorrupt):
        DecryptingReader(io.BytesIO(spliced), keyring).read()


def test_wrong_key_is_reported_as_a_key_problem() -> None:
    sealed = encrypt_bytes(BackupKeyring(KEY_A).primary, b"data", KIND_BLOB)
    with pytest.raises(BackupKeyError, match="not in STORAGE_MASTER_KEY"):
        decrypt_bytes(BackupKeyring(KEY_B), sealed)


def test_old_key_still_decrypts_after_rotation() -> None:
    sealed = encrypt_bytes(BackupKeyring(KEY_A).primary, b"before rotation", KIND_BLOB)
    rotated = BackupKeyring(f"{KEY_B},{KEY_A}")
    assert decrypt_bytes(rotated, sealed) == b"before rotation"
    assert rotated.primary.key_id != BackupKeyring(KEY_A).primary.key_id


def test_not_a_backup_file() -> None:
    with pytest.raises(BackupCorrupt, match="not a genapi backup"):
        decrypt_bytes(BackupKeyring(KEY_A), b"PK\x03\x04 a zip file")


def test_kind_mismatch_is_refused() -> None:
    keyring = BackupKeyring(KEY_A)
    sealed = encrypt_bytes(keyring.primary, b"x", KIND_BLOB)
    with pytest.raises(BackupCorrupt, match="kind"):
        decrypt_bytes(keyring, sealed, KIND_ARCHIVE)


def test_blob_names_are_keyed() -> None:
    digest = "ab" * 32
    name_a = BackupKeyring(KEY_A).primary.blob_name(digest)
    assert name_a == BackupKeyring(KEY_A).primary.blob_name(digest)
    assert name_a != BackupKeyring(KEY_B).primary.blob_name(digest)
    assert digest not in name_a


def test_invalid_master_key() -> None:
    with pytest.raises(ValueError, match="Fernet"):
        BackupKeyring("not-a-key")
    with pytest.raises(ValueError, match="empty"):
        BackupKeyring(" , ")
