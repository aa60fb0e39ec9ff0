"""Production refuses weak secrets (library and CLI); development generates and keeps its own."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from typer.testing import CliRunner

from app.cli import cli
from app.core.config import Settings, get_settings
from app.core.secrets import DEV_SECRETS_FILE, ConfigurationError, ensure_secrets
from app.main import create_app

GOOD_JWT = "j" * 48
GOOD_KEY = Fernet.generate_key().decode()
SECRET_ENV = ("JWT_SECRET_KEY", "STORAGE_MASTER_KEY", "ENV", "DATA_DIR", "DATABASE_URL")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for name in SECRET_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no `.env` from the checkout
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def make_settings(tmp_path: Path, **values: Any) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path / "data", **values)  # type: ignore[call-arg]


BAD_PRODUCTION = [
    pytest.param({"storage_master_key": GOOD_KEY}, "JWT_SECRET_KEY", id="jwt-missing"),
    pytest.param(
        {"jwt_secret_key": "changeme", "storage_master_key": GOOD_KEY},
        "JWT_SECRET_KEY",
        id="jwt-placeholder",
    ),
    pytest.param(
        {"jwt_secret_key": "short-but-random", "storage_master_key": GOOD_KEY},
        "JWT_SECRET_KEY",
        id="jwt-short",
    ),
    pytest.param({"jwt_secret_key": GOOD_JWT}, "STORAGE_MASTER_KEY", id="key-missing"),
    pytest.param(
        {"jwt_secret_key": GOOD_JWT, "storage_master_key": "changeme"},
        "STORAGE_MASTER_KEY",
        id="key-placeholder",
    ),
    pytest.param(
        {"jwt_secret_key": GOOD_JWT, "storage_master_key": "not-a-fernet-key"},
        "STORAGE_MASTER_KEY",
        id="key-invalid",
    ),
    pytest.param(
        {"jwt_secret_key": GOOD_JWT, "storage_master_key": f"{GOOD_KEY},broken"},
        "STORAGE_MASTER_KEY",
        id="key-one-of-several-invalid",
    ),
]


@pytest.mark.parametrize(("values", "names"), BAD_PRODUCTION)
def test_production_refuses_weak_secrets(
    tmp_path: Path, values: dict[str, str], names: str
) -> None:
    settings = make_settings(tmp_path, env="production", **values)
    with pytest.raises(ConfigurationError) as caught:
        ensure_secrets(settings)
    message = str(caught.value)
    assert names in message
    assert "\n" not in message
    assert "e.g." in message or "generate" in message  # says how to fix it
    # Nothing was generated behind the operator's back.
    assert not (tmp_path / "data" / DEV_SECRETS_FILE).exists()


@pytest.mark.parametrize(("values", "names"), BAD_PRODUCTION[:1] + BAD_PRODUCTION[3:4])
def test_create_app_refuses_to_build_in_production(
    tmp_path: Path, values: dict[str, str], names: str
) -> None:
    with pytest.raises(ConfigurationError, match=names):
        create_app(make_settings(tmp_path, env="production", **values))


def test_production_accepts_strong_secrets(tmp_path: Path) -> None:
    rotated = f"{GOOD_KEY},{Fernet.generate_key().decode()}"
    settings = make_settings(
        tmp_path, env="production", jwt_secret_key=GOOD_JWT, storage_master_key=rotated
    )
    assert ensure_secrets(settings) is settings
    assert not (tmp_path / "data" / DEV_SECRETS_FILE).exists()


@pytest.mark.parametrize("command", [["migrate"], ["serve"], ["rotate-keys"]])
@pytest.mark.parametrize(
    "env",
    [
        {},
        {"JWT_SECRET_KEY": "changeme", "STORAGE_MASTER_KEY": GOOD_KEY},
        {"JWT_SECRET_KEY": GOOD_JWT, "STORAGE_MASTER_KEY": "changeme"},
    ],
    ids=["missing", "jwt-placeholder", "key-placeholder"],
)
def test_cli_in_production_exits_2_with_one_line(
    tmp_path: Path, command: list[str], env: dict[str, str]
) -> None:
    data_dir = tmp_path / "prod-data"
    full_env = {"ENV": "production", "DATA_DIR": str(data_dir), **env}
    result = CliRunner().invoke(cli, command, env=full_env)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("genapi: configuration error:")
    assert "JWT_SECRET_KEY" in lines[0] or "STORAGE_MASTER_KEY" in lines[0]
    assert "Traceback" not in result.output
    # It stopped before touching anything: no database, no generated secrets.
    assert not data_dir.exists()


def test_development_generates_secrets_once_with_mode_0600(tmp_path: Path) -> None:
    first = ensure_secrets(make_settings(tmp_path, env="development"))
    path = tmp_path / "data" / DEV_SECRETS_FILE
    assert path.exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert first.jwt_secret_key is not None
    assert len(first.jwt_secret_key) >= 32
    Fernet(first.storage_master_key or "")  # a usable Fernet key
    stored = json.loads(path.read_text())
    assert stored == {
        "jwt_secret_key": first.jwt_secret_key,
        "storage_master_key": first.storage_master_key,
    }

    second = ensure_secrets(make_settings(tmp_path, env="development"))
    assert (second.jwt_secret_key, second.storage_master_key) == (
        first.jwt_secret_key,
        first.storage_master_key,
    )


def test_development_keeps_configured_secrets(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, env="development", jwt_secret_key=GOOD_JWT, storage_master_key=GOOD_KEY
    )
    resolved = ensure_secrets(settings)
    assert (resolved.jwt_secret_key, resolved.storage_master_key) == (GOOD_JWT, GOOD_KEY)
    assert not (tmp_path / "data" / DEV_SECRETS_FILE).exists()


def test_development_fills_only_the_missing_secret(tmp_path: Path) -> None:
    resolved = ensure_secrets(make_settings(tmp_path, env="development", jwt_secret_key=GOOD_JWT))
    assert resolved.jwt_secret_key == GOOD_JWT
    stored = json.loads((tmp_path / "data" / DEV_SECRETS_FILE).read_text())
    assert resolved.storage_master_key == stored["storage_master_key"]


def test_development_still_rejects_an_invalid_master_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="STORAGE_MASTER_KEY"):
        ensure_secrets(make_settings(tmp_path, env="development", storage_master_key="nope"))


def test_development_app_starts_with_generated_secrets(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path, env="development"))
    assert app.state.settings.jwt_secret_key
    assert (tmp_path / "data" / DEV_SECRETS_FILE).exists()
