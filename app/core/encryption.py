"""Encryption at rest: Fernet tokens under `STORAGE_MASTER_KEY`.

`STORAGE_MASTER_KEY` holds one or more comma-separated Fernet keys. The first encrypts; all of
them decrypt, so a key can be rotated in by putting the new one first and running
`genapi rotate-keys`, then dropping the old one.
"""

from __future__ import annotations

import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class DecryptionError(Exception):
    """A stored value could not be decrypted with any configured key."""


class Encryptor:
    def __init__(self, master_key: str) -> None:
        keys = [k.strip() for k in master_key.split(",") if k.strip()]
        if not keys:
            raise ValueError("STORAGE_MASTER_KEY is empty")
        self._primary = Fernet(keys[0].encode())
        self._fernet = MultiFernet([Fernet(k.encode()) for k in keys])

    def encrypt_bytes(self, data: bytes) -> str:
        return self._fernet.encrypt(data).decode("ascii")

    def decrypt_bytes(self, token: str) -> bytes:
        try:
            return self._fernet.decrypt(token.encode("ascii"))
        except (InvalidToken, ValueError, UnicodeEncodeError) as exc:
            raise DecryptionError(
                "stored value cannot be decrypted with the configured keys"
            ) from exc

    def encrypt_text(self, text: str) -> str:
        return self.encrypt_bytes(text.encode("utf-8"))

    def decrypt_text(self, token: str) -> str:
        return self.decrypt_bytes(token).decode("utf-8")

    def encrypt_json(self, value: Any) -> str:
        return self.encrypt_bytes(json.dumps(value, separators=(",", ":")).encode("utf-8"))

    def decrypt_json(self, token: str) -> Any:
        return json.loads(self.decrypt_bytes(token))

    def encrypt_optional(self, text: str | None) -> str | None:
        return None if text is None else self.encrypt_text(text)

    def decrypt_optional(self, token: str | None) -> str | None:
        return None if token is None else self.decrypt_text(token)

    def is_current(self, token: str) -> bool:
        """True when `token` is already encrypted under the primary (first) key."""
        try:
            self._primary.decrypt(token.encode("ascii"))
        except (InvalidToken, ValueError, UnicodeEncodeError):
            return False
        return True

    def rotate(self, token: str) -> str:
        """Re-encrypt `token` under the primary key (keeping its original timestamp)."""
        try:
            return self._fernet.rotate(token.encode("ascii")).decode("ascii")
        except (InvalidToken, ValueError, UnicodeEncodeError) as exc:
            raise DecryptionError(
                "stored value cannot be decrypted with the configured keys"
            ) from exc
