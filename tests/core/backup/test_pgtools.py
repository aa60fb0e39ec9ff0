"""Locating the PostgreSQL client tools and handing them the connection without argv."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.core.backup import pgtools
from app.core.backup.errors import BackupError, BackupToolMissing


def test_connection_goes_through_the_environment() -> None:
    env = pgtools.libpq_env(
        "postgresql+asyncpg://genapi:p%40ss%20word@db.internal:6543/genapi_prod?ssl=require"
    )
    assert env["PGHOST"] == "db.internal"
    assert env["PGPORT"] == "6543"
    assert env["PGUSER"] == "genapi"
    assert env["PGPASSWORD"] == "p@ss word"
    assert env["PGDATABASE"] == "genapi_prod"
    assert env["PGSSLMODE"] == "require"


def test_unix_socket_host_and_database_override() -> None:
    env = pgtools.libpq_env(
        "postgresql+asyncpg:///genapi?host=/var/run/postgresql", database="scratch"
    )
    assert env["PGHOST"] == "/var/run/postgresql"
    assert env["PGDATABASE"] == "scratch"


def test_refuses_a_non_postgres_url() -> None:
    with pytest.raises(BackupError):
        pgtools.libpq_env("sqlite+aiosqlite:///x.db")


def _fake_tool(directory: Path, name: str) -> Path:
    directory.mkdir(parents=True)
    tool = directory / name
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    return tool


def test_falls_back_to_the_newest_debian_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    root = tmp_path / "postgresql"
    _fake_tool(root / "9.6" / "bin", "pg_dump")
    newest = _fake_tool(root / "16" / "bin", "pg_dump")
    _fake_tool(root / "12" / "bin", "pg_dump")
    monkeypatch.setenv("PATH", "")
    monkeypatch.setattr(pgtools, "PG_BIN_GLOB", str(root / "*" / "bin"))
    assert pgtools.find_pg_tool("pg_dump") == str(newest)


def test_missing_tool_says_what_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", "")
    monkeypatch.setattr(pgtools, "PG_BIN_GLOB", str(tmp_path / "*" / "bin"))
    with pytest.raises(BackupToolMissing, match="postgresql-client"):
        pgtools.find_pg_tool("pg_dump")
