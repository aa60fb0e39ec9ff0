from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from app.core.encryption import DecryptionError, Encryptor


@pytest.fixture
def key_a() -> str:
    return Fernet.generate_key().decode()


@pytest.fixture
def key_b() -> str:
    return Fernet.generate_key().decode()


def test_text_json_bytes_round_trip(key_a: str) -> None:
    enc = Encryptor(key_a)
    secret = "a prompt: ünïcødé 🎬"
    token = enc.encrypt_text(secret)
    assert secret not in token
    assert enc.decrypt_text(token) == secret
    value = {"prompt": "cat", "n": [1, 2.5, None], "nested": {"ok": True}}
    assert enc.decrypt_json(enc.encrypt_json(value)) == value
    assert enc.decrypt_bytes(enc.encrypt_bytes(b"\x00\xff")) == b"\x00\xff"
    assert enc.encrypt_optional(None) is None
    assert enc.decrypt_optional(None) is None
    assert enc.decrypt_optional(enc.encrypt_optional("x")) == "x"


def test_same_plaintext_gives_different_tokens(key_a: str) -> None:
    enc = Encryptor(key_a)
    assert enc.encrypt_text("same") != enc.encrypt_text("same")


def test_old_key_still_decrypts_new_key_encrypts(key_a: str, key_b: str) -> None:
    old = Encryptor(key_a)
    rotated = Encryptor(f"{key_b}, {key_a}")
    old_token = old.encrypt_text("written before rotation")
    assert rotated.decrypt_text(old_token) == "written before rotation"
    assert not rotated.is_current(old_token)

    new_token = rotated.encrypt_text("written after")
    assert rotated.is_current(new_token)
    assert Encryptor(key_b).decrypt_text(new_token) == "written after"
    with pytest.raises(DecryptionError):
        old.decrypt_text(new_token)


def test_rotate_moves_a_token_to_the_primary_key(key_a: str, key_b: str) -> None:
    old_token = Encryptor(key_a).encrypt_text("payload")
    new_token = Encryptor(f"{key_b},{key_a}").rotate(old_token)
    assert Encryptor(key_b).decrypt_text(new_token) == "payload"


@pytest.mark.parametrize("garbage", ["", "not a token", "gAAAAA" + "x" * 80, "ü-non-ascii"])
def test_garbage_raises_decryption_error(key_a: str, garbage: str) -> None:
    enc = Encryptor(key_a)
    with pytest.raises(DecryptionError):
        enc.decrypt_text(garbage)
    with pytest.raises(DecryptionError):
        enc.rotate(garbage)
    assert enc.is_current(garbage) is False


def test_wrong_key_raises_decryption_error_without_leaking(key_a: str, key_b: str) -> None:
    token = Encryptor(key_a).encrypt_text("top secret prompt")
    with pytest.raises(DecryptionError) as caught:
        Encryptor(key_b).decrypt_text(token)
    assert "top secret" not in str(caught.value)
    assert key_a not in str(caught.value)
    assert key_b not in str(caught.value)


def test_empty_master_key_is_rejected() -> None:
    with pytest.raises(ValueError, match="empty"):
        Encryptor(" , ")
