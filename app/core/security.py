"""Password hashing (bcrypt), access tokens (JWT HS256) and API-key secrets."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

import bcrypt
import jwt

API_KEY_PREFIX = "gk_"
API_KEY_DISPLAY_CHARS = 11  # "gk_" + 8 characters: enough to tell keys apart, useless to attack
CSRF_COOKIE = "csrf_token"
ACCESS_COOKIE = "access_token"


def _prehash(password: str) -> bytes:
    # bcrypt reads only the first 72 bytes and rejects longer input. Hashing first (SHA-256,
    # base64: 44 bytes) keeps every character of a long passphrase significant.
    digest = hashlib.sha256(password.encode("utf-8")).digest()
    return base64.b64encode(digest)


def hash_password(password: str, rounds: int = 12) -> str:
    return bcrypt.hashpw(_prehash(password), bcrypt.gensalt(rounds=rounds)).decode("ascii")


def verify_password(password: str, password_hash: str) -> bool:
    try:
        return bcrypt.checkpw(_prehash(password), password_hash.encode("ascii"))
    except ValueError:
        return False


@lru_cache(maxsize=4)
def dummy_password_hash(rounds: int) -> str:
    """A hash to check against when the account does not exist, so timing reveals nothing."""
    return hash_password(secrets.token_urlsafe(16), rounds)


def hash_needs_upgrade(password_hash: str, rounds: int) -> bool:
    try:
        current = int(password_hash.split("$")[2])
    except (IndexError, ValueError):
        return True
    return current < rounds


@dataclass(frozen=True)
class TokenClaims:
    user_id: str
    session_id: str
    issued_at: datetime
    expires_at: datetime


class InvalidTokenError(Exception):
    pass


def create_access_token(
    *,
    user_id: str,
    session_id: str,
    secret: str,
    expires_in: timedelta,
    now: datetime | None = None,
) -> str:
    issued = now or datetime.now(UTC)
    payload = {
        "sub": user_id,
        "sid": session_id,
        "iat": int(issued.timestamp()),
        "exp": int((issued + expires_in).timestamp()),
        "typ": "access",
    }
    return jwt.encode(payload, secret, algorithm="HS256")


def decode_access_token(token: str, secret: str) -> TokenClaims:
    try:
        # The algorithm is pinned: a token claiming "none" or RS256 is rejected.
        payload = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            options={"require": ["sub", "sid", "iat", "exp"]},
        )
    except jwt.PyJWTError as exc:
        raise InvalidTokenError(str(exc)) from exc
    if payload.get("typ") != "access":
        raise InvalidTokenError("not an access token")
    return TokenClaims(
        user_id=str(payload["sub"]),
        session_id=str(payload["sid"]),
        issued_at=datetime.fromtimestamp(payload["iat"], UTC),
        expires_at=datetime.fromtimestamp(payload["exp"], UTC),
    )


def generate_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(secret: str) -> str:
    # API keys carry 256 bits of randomness, so a fast hash is enough (no brute force possible)
    # and lets every request look the key up by its hash.
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def api_key_display_prefix(secret: str) -> str:
    return secret[:API_KEY_DISPLAY_CHARS]


def looks_like_api_key(token: str) -> bool:
    return token.startswith(API_KEY_PREFIX)


def generate_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def constant_time_equals(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))
