"""Start-up checks of the two service secrets, and development secrets generated on first run.

In development (the default) missing secrets are generated once and kept in
`DATA_DIR/dev-secrets.json` (mode 0600) so sessions and encrypted rows survive restarts.
In production a missing or placeholder secret stops start-up with a one-line explanation.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import secrets
from pathlib import Path

from cryptography.fernet import Fernet

from app.core.config import PLACEHOLDER_SECRETS, Settings

logger = logging.getLogger(__name__)

DEV_SECRETS_FILE = "dev-secrets.json"
MIN_JWT_SECRET_LENGTH = 32


class ConfigurationError(RuntimeError):
    """A setting makes it unsafe or impossible to start; the message says how to fix it."""


def _is_placeholder(value: str | None) -> bool:
    return value is None or value.strip().lower() in PLACEHOLDER_SECRETS


def _is_fernet_key(key: str) -> bool:
    try:
        return len(base64.urlsafe_b64decode(key.encode())) == 32
    except (binascii.Error, ValueError):
        return False


def validate_master_key(value: str) -> None:
    keys = [k.strip() for k in value.split(",") if k.strip()]
    if not keys or not all(_is_fernet_key(k) for k in keys):
        raise ConfigurationError(
            "STORAGE_MASTER_KEY must be one or more comma-separated Fernet keys; generate one "
            'with: python -c "from cryptography.fernet import Fernet; '
            'print(Fernet.generate_key().decode())"'
        )


def _check_production(settings: Settings) -> None:
    if _is_placeholder(settings.jwt_secret_key) or len(settings.jwt_secret_key or "") < (
        MIN_JWT_SECRET_LENGTH
    ):
        raise ConfigurationError(
            "JWT_SECRET_KEY is missing, a placeholder or shorter than 32 characters; set it to a "
            'random value, e.g. JWT_SECRET_KEY=$(python -c "import secrets; '
            'print(secrets.token_urlsafe(48))")'
        )
    if _is_placeholder(settings.storage_master_key):
        raise ConfigurationError(
            "STORAGE_MASTER_KEY is missing or a placeholder; set it to a Fernet key, e.g. "
            'STORAGE_MASTER_KEY=$(python -c "from cryptography.fernet import Fernet; '
            'print(Fernet.generate_key().decode())")'
        )
    validate_master_key(settings.storage_master_key or "")


def _load_or_create_dev_secrets(data_dir: Path) -> dict[str, str]:
    path = data_dir / DEV_SECRETS_FILE
    if path.exists():
        stored: dict[str, str] = json.loads(path.read_text())
        return stored
    data_dir.mkdir(parents=True, exist_ok=True)
    generated = {
        "jwt_secret_key": secrets.token_urlsafe(48),
        "storage_master_key": Fernet.generate_key().decode(),
    }
    # O_EXCL + 0600: never widen permissions, and lose a race with another process cleanly.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        existing: dict[str, str] = json.loads(path.read_text())
        return existing
    with os.fdopen(fd, "w") as handle:
        json.dump(generated, handle)
    logger.warning(
        "\n%s\n  DEVELOPMENT SECRETS GENERATED in %s (mode 0600).\n"
        "  Fine for trying the service; for production set JWT_SECRET_KEY and\n"
        "  STORAGE_MASTER_KEY and ENV=production. Losing this file makes encrypted\n"
        "  data unreadable.\n%s",
        "!" * 72,
        path,
        "!" * 72,
    )
    return generated


def ensure_secrets(settings: Settings) -> Settings:
    """Return settings whose secrets are usable, generating development ones when allowed."""
    if settings.is_production:
        _check_production(settings)
        return settings
    updates: dict[str, str] = {}
    if _is_placeholder(settings.jwt_secret_key) or _is_placeholder(settings.storage_master_key):
        dev = _load_or_create_dev_secrets(settings.data_dir)
        if _is_placeholder(settings.jwt_secret_key):
            updates["jwt_secret_key"] = dev["jwt_secret_key"]
        if _is_placeholder(settings.storage_master_key):
            updates["storage_master_key"] = dev["storage_master_key"]
        logger.warning(
            "Using development secrets from %s: do not use them in production.",
            settings.data_dir / DEV_SECRETS_FILE,
        )
    resolved = settings.model_copy(update=updates)
    validate_master_key(resolved.storage_master_key or "")
    return resolved
