"""`genapi doctor` through typer's CliRunner, reading its settings from the environment like in
production: a good setup passes, each broken part fails with what to fix, secrets never print."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from typer.testing import CliRunner, Result

from app.cli import cli
from app.core.config import Settings, get_settings
from app.core.observability.logging import get_observability_settings
from app.db.migrate import head_revision
from app.db.session import create_engine
from app.simulator import SimulatorConfig, create_simulator_app
from tests.core.observability.helpers import logging_restored, serve

GOOD_UPSTREAM_KEY = "sk-doctor-good-key-123456"
WRONG_UPSTREAM_KEY = "sk-doctor-wrong-key-654321"


@pytest.fixture(autouse=True)
def _keep_logging() -> Iterator[None]:
    # The command configures logging for the process; leave the test run's as it was.
    with logging_restored():
        yield


@pytest.fixture
def cli_env(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """A healthy setup: the migrated test database, fresh data dir, real secrets."""
    env = {
        "ENV": "test",
        "DATABASE_URL": settings.resolved_database_url,
        "JWT_SECRET_KEY": settings.jwt_secret_key or "",
        "STORAGE_MASTER_KEY": settings.storage_master_key or "",
        "DATA_DIR": str(tmp_path / "doctor-data"),
    }
    for name in ("API_KEY", "API_BASE_URL", "COOKIE_SECURE", "METRICS_TOKEN", "LOG_LEVEL"):
        monkeypatch.delenv(name, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)  # no stray .env from the working copy
    get_settings.cache_clear()
    get_observability_settings.cache_clear()
    yield env
    get_settings.cache_clear()
    get_observability_settings.cache_clear()


def use(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    get_observability_settings.cache_clear()


async def doctor(*args: str) -> Result:
    # The command runs its own event loop (asyncio.run): give it a thread of its own.
    return await asyncio.to_thread(CliRunner().invoke, cli, ["doctor", *args])


async def doctor_json(*args: str) -> tuple[int, dict[str, list[dict[str, Any]]]]:
    result = await doctor("--json", *args)
    return result.exit_code, json.loads(result.output)


def levels(report: dict[str, Any], name: str) -> list[str]:
    return [c["level"] for c in report["checks"] if c["name"] == name]


def check(report: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [c for c in report["checks"] if c["name"] == name]
    return found


def make_media_dir(data_dir: str, *, as_file: bool = False) -> Path:
    media = Path(data_dir) / "media"
    media.parent.mkdir(parents=True, exist_ok=True)
    if as_file:
        media.write_text("a file where the media directory should be")
    else:
        media.mkdir()
    return media


def leftovers(media: Path) -> list[Path]:
    return [p for p in media.rglob("*") if p.is_file()]


async def test_a_good_setup_passes(cli_env: dict[str, str]) -> None:
    media = make_media_dir(cli_env["DATA_DIR"])  # as a started service leaves it
    result = await doctor("--offline")
    assert result.exit_code == 0, result.output
    assert "[ok  ] database" in result.output
    assert "[ok  ] migrations" in result.output
    assert "[ok  ] media store" in result.output
    assert "[ok  ] disk" in result.output
    assert "[FAIL]" not in result.output
    assert cli_env["STORAGE_MASTER_KEY"] not in result.output
    assert cli_env["JWT_SECRET_KEY"] not in result.output
    assert "wrote, read and deleted a test file" in result.output
    assert leftovers(media) == []  # the write test cleaned up after itself


async def test_an_unreachable_database_fails_without_printing_its_password(
    cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    use(monkeypatch, DATABASE_URL="postgresql+asyncpg://genapi:hunter2-secret@127.0.0.1:1/genapi")
    result = await doctor("--offline")
    assert result.exit_code == 1
    assert "[FAIL] database" in result.output
    assert "cannot connect to postgresql+asyncpg://genapi:***@127.0.0.1:1/genapi" in result.output
    assert "fix: check DATABASE_URL" in result.output
    assert "hunter2-secret" not in result.output
    assert "migrations" not in result.output  # nothing to ask an unreachable database


async def test_a_media_store_that_cannot_be_written_fails(
    cli_env: dict[str, str],
) -> None:
    make_media_dir(cli_env["DATA_DIR"], as_file=True)
    code, report = await doctor_json("--offline")
    assert code == 1
    assert report["ok"] is False
    media = check(report, "media store")
    assert media["level"] == "fail"
    assert "not a directory" in media["detail"]
    assert media["fix"]
    assert levels(report, "database") == ["ok"]


async def test_an_empty_database_and_an_unknown_revision_are_reported(
    cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    use(monkeypatch, DATABASE_URL=f"sqlite+aiosqlite:///{empty}")
    code, report = await doctor_json("--offline")
    assert code == 0
    assert check(report, "migrations")["level"] == "warn"
    assert "genapi migrate" in check(report, "migrations")["fix"]

    future = tmp_path / "future.db"
    with sqlite3.connect(future) as conn:
        conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
        conn.execute("INSERT INTO alembic_version VALUES ('ffffffffffff')")
    use(monkeypatch, DATABASE_URL=f"sqlite+aiosqlite:///{future}")
    code, report = await doctor_json("--offline")
    assert code == 1
    migrations = check(report, "migrations")
    assert migrations["level"] == "fail"
    assert "ffffffffffff" in migrations["detail"]
    assert str(head_revision()) in migrations["detail"]


async def test_a_missing_sqlite_file_is_not_created(
    cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    target = tmp_path / "not-yet" / "genapi.db"
    use(monkeypatch, DATABASE_URL=f"sqlite+aiosqlite:///{target}")
    code, report = await doctor_json("--offline")
    assert code == 0
    assert check(report, "database")["level"] == "warn"
    assert not target.exists()
    assert not target.parent.exists()


async def test_production_flags_and_weak_secrets_are_caught(
    cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    use(monkeypatch, ENV="production", JWT_SECRET_KEY="too-short", METRICS_TOKEN="abc")
    code, report = await doctor_json("--offline")
    assert code == 1
    assert check(report, "cookies")["level"] == "fail"
    assert "COOKIE_SECURE=true" in check(report, "cookies")["fix"]
    assert "fail" in levels(report, "secrets")
    assert levels(report, "metrics") == ["warn"]
    assert levels(report, "backups") == ["warn"]
    assert "too-short" not in json.dumps(report)

    use(monkeypatch, COOKIE_SECURE="true", JWT_SECRET_KEY="j" * 48, BACKUP_ENABLED="false")
    code, report = await doctor_json("--offline")
    assert levels(report, "cookies") == []
    assert levels(report, "secrets") == ["ok"]


async def test_invalid_settings_fail_with_the_setting_named(
    cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    use(monkeypatch, CORS_ORIGINS="*")
    result = await doctor("--offline")
    assert result.exit_code == 1
    assert "[FAIL] settings" in result.output
    assert "CORS_ORIGINS" in result.output


async def test_the_upstream_key_is_checked_against_a_real_server(
    cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    simulator = create_simulator_app(SimulatorConfig(api_key=GOOD_UPSTREAM_KEY))
    async with serve(simulator) as base_url:
        use(monkeypatch, API_BASE_URL=base_url, API_KEY=WRONG_UPSTREAM_KEY)
        rejected = await doctor()
        use(monkeypatch, API_KEY=GOOD_UPSTREAM_KEY)
        accepted = await doctor()
    assert rejected.exit_code == 1
    assert "[ok  ] upstream " in rejected.output
    assert "[FAIL] upstream key" in rejected.output
    assert "rejected API_KEY" in rejected.output
    assert WRONG_UPSTREAM_KEY not in rejected.output
    assert accepted.exit_code == 0, accepted.output
    assert "[ok  ] upstream key  API_KEY accepted" in accepted.output
    assert GOOD_UPSTREAM_KEY not in accepted.output


async def test_an_unreachable_upstream_fails(
    cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    use(monkeypatch, API_BASE_URL="http://127.0.0.1:1", API_KEY=GOOD_UPSTREAM_KEY)
    code, report = await doctor_json("--timeout", "5")
    assert code == 1
    upstream = check(report, "upstream")
    assert upstream["level"] == "fail"
    assert "cannot reach http://127.0.0.1:1" in upstream["detail"]
    # --offline skips it entirely.
    code, report = await doctor_json("--offline")
    assert code == 0
    assert levels(report, "upstream") == []


async def test_the_simulator_is_a_warning_not_a_failure(cli_env: dict[str, str]) -> None:
    code, report = await doctor_json()
    assert code == 0
    assert check(report, "upstream")["level"] == "warn"
    assert "simulator" in check(report, "upstream")["detail"]


async def test_a_database_at_head_is_confirmed_on_the_test_backend(
    cli_env: dict[str, str],
) -> None:
    engine = create_engine(cli_env["DATABASE_URL"])
    try:
        async with engine.connect() as conn:
            stored = await conn.scalar(text("SELECT version_num FROM alembic_version"))
    finally:
        await engine.dispose()
    code, report = await doctor_json("--offline")
    assert code == 0
    assert stored in check(report, "migrations")["detail"]
