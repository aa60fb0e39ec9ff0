"""`genapi rotate-keys` end to end: a real database, the real command, a real exit code."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import Result
from cryptography.fernet import Fernet
from fastapi import FastAPI
from sqlalchemy import select
from typer.testing import CliRunner

from app.cli import cli
from app.core.config import get_settings
from app.core.encryption import Encryptor
from app.db.session import Database
from app.models import ApiRequestLog

KEY_A = Fernet.generate_key().decode()
KEY_B = Fernet.generate_key().decode()


@pytest.fixture(autouse=True)
def fresh_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    # The CLI reads settings through the cached get_settings(); no `.env` from the checkout.
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def db(app: FastAPI) -> Database:
    database: Database = app.state.db
    return database


async def add_log(db: Database, **encrypted: str) -> str:
    async with db.session() as session:
        row = ApiRequestLog(
            request_id=str(uuid.uuid4()),
            duration_ms=2.0,
            method="POST",
            path="/api/v1/videos",
            status_code=201,
            **encrypted,
        )
        session.add(row)
        await session.flush()
        return row.id


async def run_cli(args: list[str], *, database_url: str, master_key: str, data_dir: Path) -> Result:
    env = {
        "ENV": "development",
        "DATABASE_URL": database_url,
        "DATA_DIR": str(data_dir),
        "JWT_SECRET_KEY": "cli-test-jwt-secret-" + "y" * 40,
        "STORAGE_MASTER_KEY": master_key,
    }
    # The command runs its own event loop (asyncio.run), so it gets its own thread.
    return await asyncio.to_thread(CliRunner().invoke, cli, args, env=env)


def test_help_lists_rotate_keys_and_batch_size() -> None:
    result = CliRunner().invoke(cli, ["rotate-keys", "--help"])
    assert result.exit_code == 0
    assert "--batch-size" in result.output
    assert "rotate-keys" in CliRunner().invoke(cli, ["--help"]).output


async def test_rotate_keys_re_encrypts_every_row(
    db: Database, database_url: str, tmp_path: Path
) -> None:
    old = Encryptor(KEY_A)
    ids = [
        await add_log(
            db,
            request_body_encrypted=old.encrypt_text(f"prompt {i}"),
            note_encrypted=old.encrypt_text(f"note {i}"),
        )
        for i in range(7)
    ]

    result = await run_cli(
        ["rotate-keys", "--batch-size", "3"],
        database_url=database_url,
        master_key=f"{KEY_B},{KEY_A}",
        data_dir=tmp_path,
    )

    assert result.exit_code == 0, result.output
    assert "rotated 14 value(s), 0 already current, 0 failed (7 row(s) scanned)" in result.stdout
    only_b = Encryptor(KEY_B)
    async with db.session() as session:
        rows = {r.id: r for r in (await session.scalars(select(ApiRequestLog))).all()}
    assert sorted(rows) == sorted(ids)
    assert sorted(only_b.decrypt_text(r.request_body_encrypted or "") for r in rows.values()) == [
        f"prompt {i}" for i in range(7)
    ]

    again = await run_cli(
        ["rotate-keys"], database_url=database_url, master_key=KEY_B, data_dir=tmp_path
    )
    assert again.exit_code == 0, again.output
    assert "rotated 0 value(s), 14 already current, 0 failed" in again.stdout


async def test_rotate_keys_fails_with_per_row_errors(
    db: Database, database_url: str, tmp_path: Path
) -> None:
    good_id = await add_log(db, request_body_encrypted=Encryptor(KEY_A).encrypt_text("fine"))
    bad_id = await add_log(db, response_body_encrypted="garbage, not a token")

    result = await run_cli(
        ["rotate-keys"], database_url=database_url, master_key=f"{KEY_B},{KEY_A}", data_dir=tmp_path
    )

    assert result.exit_code == 1
    assert "rotated 1 value(s), 0 already current, 1 failed" in result.stdout
    assert f"api_request_logs row {bad_id}, column response_body_encrypted" in result.stderr
    assert good_id not in result.stderr
    async with db.session() as session:
        good = await session.get(ApiRequestLog, good_id)
    assert good is not None
    assert Encryptor(KEY_B).decrypt_text(good.request_body_encrypted or "") == "fine"


async def test_rotate_keys_on_unmigrated_database_is_a_one_line_error(tmp_path: Path) -> None:
    empty = f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    result = await run_cli(["rotate-keys"], database_url=empty, master_key=KEY_A, data_dir=tmp_path)
    assert result.exit_code == 2
    assert "genapi migrate" in result.stderr
    assert "Traceback" not in result.output
