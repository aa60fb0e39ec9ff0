"""Streaming authenticated encryption of backup files and media blobs.

Keys: every Fernet key in `STORAGE_MASTER_KEY` yields a backup key by HKDF-SHA256, so a backup
made before a key rotation still opens while the old key stays configured. New files are always
written under the first (primary) key; the header names the key by an 8-byte id (an HMAC of the
derived key, which reveals nothing about it).

File layout (all integers big-endian)::

    header  = magic "GENAPIBK" | version u8 | kind u8 | key id 8B | salt 16B | chunk size u32
    record* = length u32 | AES-256-GCM ciphertext of one chunk (with its 16-byte tag)

Each file gets its own AES key, HKDF(backup key, salt), so nonces never repeat across files.
The nonce of chunk i is i (11 bytes) followed by a flag byte that is 1 only on the last chunk,
and the header is the associated data of every chunk (the "STREAM" construction): reordering,
dropping, truncating or appending chunks, or editing the header, all fail authentication.
Memory use is one chunk, whatever the size of the file.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import io
import os
import struct
from dataclasses import dataclass
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from app.core.backup.errors import BackupCorrupt, BackupKeyError

MAGIC = b"GENAPIBK"
FORMAT_VERSION = 1
KIND_ARCHIVE = 1
KIND_BLOB = 2
KIND_INDEX = 3

DEFAULT_CHUNK_SIZE = 1024 * 1024
# A tampered header must not make the reader allocate gigabytes.
MAX_CHUNK_SIZE = 64 * 1024 * 1024
TAG_SIZE = 16
SALT_SIZE = 16

_HEADER = struct.Struct(">8sBB8s16sI")
_LENGTH = struct.Struct(">I")
HEADER_SIZE = _HEADER.size

_MASTER_SALT = b"genapi-backup"
_MASTER_INFO = b"genapi backup key v1"
_FILE_INFO = b"genapi backup file key v1"
_NAME_INFO = b"genapi backup blob names v1"
_KEY_ID_LABEL = b"genapi backup key id"


def _hkdf(secret: bytes, *, salt: bytes | None, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(secret)


@dataclass(frozen=True)
class BackupKey:
    """The backup key derived from one Fernet key of STORAGE_MASTER_KEY."""

    key_id: bytes
    secret: bytes

    @classmethod
    def from_fernet_key(cls, fernet_key: str) -> BackupKey:
        try:
            raw = base64.urlsafe_b64decode(fernet_key.strip().encode("ascii"))
        except (binascii.Error, ValueError, UnicodeEncodeError) as exc:
            raise ValueError("STORAGE_MASTER_KEY holds a value that is not a Fernet key") from exc
        if len(raw) != 32:
            raise ValueError("STORAGE_MASTER_KEY holds a value that is not a Fernet key")
        secret = _hkdf(raw, salt=_MASTER_SALT, info=_MASTER_INFO)
        key_id = hmac.new(secret, _KEY_ID_LABEL, hashlib.sha256).digest()[:8]
        return cls(key_id=key_id, secret=secret)

    def file_cipher(self, salt: bytes) -> AESGCM:
        return AESGCM(_hkdf(self.secret, salt=salt, info=_FILE_INFO))

    def blob_name(self, sha256_hex: str) -> str:
        """Name of the blob holding content with this sha256. Keyed, so a copy of the backup
        directory does not tell which known files a user had."""
        name_key = _hkdf(self.secret, salt=None, info=_NAME_INFO)
        return hmac.new(name_key, sha256_hex.lower().encode("ascii"), hashlib.sha256).hexdigest()

    def __repr__(self) -> str:  # never print the secret
        return f"BackupKey(key_id={self.key_id.hex()})"


class BackupKeyring:
    """All backup keys derived from STORAGE_MASTER_KEY; the first encrypts, all decrypt."""

    def __init__(self, master_key: str) -> None:
        keys = [k.strip() for k in master_key.split(",") if k.strip()]
        if not keys:
            raise ValueError("STORAGE_MASTER_KEY is empty")
        self._keys = [BackupKey.from_fernet_key(k) for k in keys]
        self._by_id = {key.key_id: key for key in self._keys}

    @property
    def primary(self) -> BackupKey:
        return self._keys[0]

    @property
    def keys(self) -> list[BackupKey]:
        return list(self._keys)

    def find(self, key_id: bytes) -> BackupKey:
        try:
            return self._by_id[key_id]
        except KeyError:
            raise BackupKeyError(
                "this file was encrypted with a key that is not in STORAGE_MASTER_KEY "
                "(wrong key, or the key was rotated out)"
            ) from None


def _nonce(counter: int, final: bool) -> bytes:
    return counter.to_bytes(11, "big") + (b"\x01" if final else b"\x00")


class EncryptingWriter:
    """A write-only file object that encrypts into `raw`. `close()` writes the final chunk
    (it does not close `raw`). Also hashes the plaintext (`sha256`) and counts it (`size`)."""

    def __init__(
        self,
        raw: BinaryIO,
        key: BackupKey,
        kind: int,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
            raise ValueError("invalid chunk size")
        salt = os.urandom(SALT_SIZE)
        self._header = _HEADER.pack(MAGIC, FORMAT_VERSION, kind, key.key_id, salt, chunk_size)
        self._raw = raw
        self._cipher = key.file_cipher(salt)
        self._chunk_size = chunk_size
        self._buffer = bytearray()
        self._counter = 0
        self._closed = False
        self._digest = hashlib.sha256()
        self.size = 0
        raw.write(self._header)

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()

    @property
    def closed(self) -> bool:
        return self._closed

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self._closed:
            raise ValueError("write to a closed EncryptingWriter")
        view = memoryview(data)
        self._digest.update(view)
        self.size += len(view)
        self._buffer += view
        # Keep the last full chunk buffered: only close() knows which chunk is final.
        while len(self._buffer) > self._chunk_size:
            chunk = bytes(self._buffer[: self._chunk_size])
            del self._buffer[: self._chunk_size]
            self._emit(chunk, final=False)
        return len(view)

    def flush(self) -> None:
        return None

    def _emit(self, chunk: bytes, *, final: bool) -> None:
        sealed = self._cipher.encrypt(_nonce(self._counter, final), chunk, self._header)
        self._raw.write(_LENGTH.pack(len(sealed)))
        self._raw.write(sealed)
        self._counter += 1

    def close(self) -> None:
        if self._closed:
            return
        self._emit(bytes(self._buffer), final=True)
        self._buffer.clear()
        self._closed = True


class DecryptingReader:
    """A read-only file object over an encrypted stream. Every byte returned has been
    authenticated; `BackupCorrupt` is raised on any tampering or truncation, `BackupKeyError`
    when no configured key matches. `finish()` checks that the stream ended properly."""

    def __init__(self, raw: BinaryIO, keyring: BackupKeyring, *, kind: int | None = None) -> None:
        header = raw.read(HEADER_SIZE)
        if len(header) < HEADER_SIZE or not header.startswith(MAGIC):
            raise BackupCorrupt("not a genapi backup file (bad header)")
        _, version, file_kind, key_id, salt, chunk_size = _HEADER.unpack(header)
        if version != FORMAT_VERSION:
            raise BackupCorrupt(f"unsupported backup format version {version}")
        if kind is not None and file_kind != kind:
            raise BackupCorrupt("unexpected kind of backup file")
        if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
            raise BackupCorrupt("not a genapi backup file (bad chunk size)")
        key = keyring.find(key_id)
        self._raw = raw
        self._header = header
        self._cipher = key.file_cipher(salt)
        self._chunk_size = chunk_size
        self._counter = 0
        self._final_seen = False
        self._buffer = bytearray()
        self.kind = file_kind

    def readable(self) -> bool:
        return True

    def _next_chunk(self) -> bool:
        """Decrypt the next record into the buffer; False at the (verified) end."""
        if self._final_seen:
            return False
        length_bytes = self._raw.read(_LENGTH.size)
        if len(length_bytes) < _LENGTH.size:
            raise BackupCorrupt("backup file is truncated")
        (length,) = _LENGTH.unpack(length_bytes)
        if not TAG_SIZE <= length <= self._chunk_size + TAG_SIZE:
            raise BackupCorrupt("backup file is damaged (bad record length)")
        sealed = self._raw.read(length)
        if len(sealed) < length:
            raise BackupCorrupt("backup file is truncated")
        for final in (False, True):
            try:
                plain = self._cipher.decrypt(_nonce(self._counter, final), sealed, self._header)
            except InvalidTag:
                continue
            self._counter += 1
            self._buffer += plain
            if final:
                self._final_seen = True
                if self._raw.read(1):
                    raise BackupCorrupt("backup file has data after its end")
            return True
        raise BackupCorrupt("backup file failed authentication: it was modified or damaged")

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            while self._next_chunk():
                pass
            data = bytes(self._buffer)
            self._buffer.clear()
            return data
        while len(self._buffer) < size and self._next_chunk():
            pass
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def finish(self) -> None:
        """Read (and authenticate) whatever is left, discarding it."""
        while self._next_chunk():
            self._buffer.clear()
        self._buffer.clear()


def encrypt_bytes(key: BackupKey, data: bytes, kind: int) -> bytes:
    out = io.BytesIO()
    writer = EncryptingWriter(out, key, kind)
    writer.write(data)
    writer.close()
    return out.getvalue()


def decrypt_bytes(keyring: BackupKeyring, data: bytes, kind: int | None = None) -> bytes:
    reader = DecryptingReader(io.BytesIO(data), keyring, kind=kind)
    return reader.read()
