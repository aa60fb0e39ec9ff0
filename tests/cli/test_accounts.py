"""`genapi create-admin` against the test database, through typer's CliRunner."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from typer.testing import CliRunner, Result

from app.cli import cli
from app.core.config import Settings, get_settings
from app.models import User
from tests.conftest import TEST_PASSWORD, register_and_login


@pytest.fixture
def cli_env(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """The CLI reads its settings from the environment, like in production."""
    env = {
        "ENV": "test",
        "DATABASE_URL": settings.resolved_database_url,
        "JWT_SECRET_KEY": settings.jwt_secret_key or "",
        "STORAGE_MASTER_KEY": settings.storage_master_key or "",
        "DATA_DIR": str(tmp_path / "cli-data"),
        "BCRYPT_ROUNDS": "4",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)  # no stray .env from the working copy
    get_settings.cache_clear()
    yield env
    get_settings.cache_clear()


async def _invoke(args: list[str], input: str | None = None) -> Result:
    # The command runs its own event loop (asyncio.run): give it a thread of its own.
    return await asyncio.to_thread(CliRunner().invoke, cli, args, input=input)


async def _user(app: FastAPI, username: str) -> User | None:
    async with app.state.db.session() as db:
        found: User | None = await db.scalar(select(User).where(User.username == username))
        return found


async def test_create_admin_creates_a_user_who_can_sign_in(
    app: FastAPI, client: httpx.AsyncClient, cli_env: dict[str, str]
) -> None:
    await register_and_login(client, "first")  # the first user is admin anyway: be second
    result = await _invoke(
        [
            "create-admin",
            "--username",
            "root",
            "--email",
            "root@example.com",
            "--password",
            "a strong root password",
        ]
    )
    assert result.exit_code == 0, result.output
    assert "created administrator: root <root@example.com>" in result.output
    login = await client.post(
        "/api/v1/auth/login",
        json={"username_or_email": "root", "password": "a strong root password"},
    )
    assert login.status_code == 200
    me = await client.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {login.json()['access_token']}"}
    )
    assert me.json()["is_admin"] is True
    assert me.json()["storage_quota_bytes"] == 1024**3


async def test_create_admin_prompts_for_a_hidden_confirmed_password(
    app: FastAPI, client: httpx.AsyncClient, cli_env: dict[str, str]
) -> None:
    typed = ["first password", "second password", "prompted password", "prompted password"]
    result = await _invoke(
        ["create-admin", "-u", "root", "-e", "root@example.com"], input="\n".join(typed) + "\n"
    )
    assert result.exit_code == 0, result.output
    assert "do not match" in result.output  # asked twice, and again after a mismatch
    for value in typed:
        assert value not in result.output  # hidden input is never echoed
    user = await _user(app, "root")
    assert user is not None
    assert user.is_admin is True
    login = await client.post(
        "/api/v1/auth/login",
        json={"username_or_email": "root", "password": "prompted password"},
    )
    assert login.status_code == 200


async def test_create_admin_promotes_an_existing_user(
    app: FastAPI, client: httpx.AsyncClient, cli_env: dict[str, str]
) -> None:
    await register_and_login(client, "first")
    member = await register_and_login(client, "member")
    assert (await client.get("/api/v1/auth/me", headers=member.headers)).json()["is_admin"] is False
    result = await _invoke(["create-admin", "--username", "MEMBER"])
    assert result.exit_code == 0, result.output
    assert "promoted to administrator: member" in result.output
    me = await client.get("/api/v1/auth/me", headers=member.headers)
    assert me.json()["is_admin"] is True  # promotion without a password keeps the sessions
    assert (
        await client.post(
            "/api/v1/auth/login", json={"username_or_email": "member", "password": TEST_PASSWORD}
        )
    ).status_code == 200


async def test_create_admin_with_password_resets_it_and_signs_out(
    app: FastAPI, client: httpx.AsyncClient, cli_env: dict[str, str]
) -> None:
    member = await register_and_login(client, "member")
    result = await _invoke(["create-admin", "-u", "member", "-p", "recovered password"])
    assert result.exit_code == 0, result.output
    assert (await client.get("/api/v1/auth/me", headers=member.headers)).status_code == 401
    login = await client.post(
        "/api/v1/auth/login",
        json={"username_or_email": "member", "password": "recovered password"},
    )
    assert login.status_code == 200


async def test_create_admin_rejects_bad_input(
    app: FastAPI, client: httpx.AsyncClient, cli_env: dict[str, str]
) -> None:
    short = await _invoke(["create-admin", "-u", "root", "-e", "root@example.com", "-p", "short"])
    assert short.exit_code == 2
    assert "password" in short.output
    no_email = await _invoke(["create-admin", "-u", "root", "-p", "long enough password"])
    assert no_email.exit_code == 2
    assert "--email" in no_email.output
    await register_and_login(client, "taken")
    clash = await _invoke(
        ["create-admin", "-u", "other", "-e", "taken@example.com", "-p", "long enough password"]
    )
    assert clash.exit_code == 1
    assert "already registered" in clash.output
    mismatch = await _invoke(["create-admin", "-u", "taken", "-e", "else@example.com"])
    assert mismatch.exit_code == 1
    assert await _user(app, "root") is None
    assert await _user(app, "other") is None
