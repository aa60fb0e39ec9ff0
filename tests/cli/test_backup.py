"""`genapi backup [create|list|verify|prune]` and `genapi restore` end to end: a real database
of the backend under test, real files, the real commands and their exit codes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import Result
from cryptography.fernet import Fernet
from typer.testing import CliRunner

from app.cli import cli
from app.core.config import get_settings
from app.core.encryption import Encryptor
from app.core.media.storage import LocalMediaStorage
from app.db.session import Database
from tests.core.backup.helpers import (
    JWT_SECRET,
    DatabaseFactory,
    all_rows,
    decrypt_all,
    flip_byte,
    read_file,
    require_pg_tools,
    seed,
    use_postgres,
)


@pytest.fixture(scope="module")
def template(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if use_postgres():
        require_pg_tools()
    name = DatabaseFactory.make_template(tmp_path_factory.mktemp("cli-backup-template"))
    yield name
    DatabaseFactory.drop_template(name)


@pytest.fixture(autouse=True)
def isolated_cwd(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    monkeypatch.chdir(tmp_path)  # no `.env` from the checkout
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
async def databases(template: str, tmp_path: Path) -> AsyncIterator[DatabaseFactory]:
    factory = DatabaseFactory(tmp_path, template)
    yield factory
    await factory.cleanup()


@dataclass
class Site:
    """One installation as the CLI sees it: its environment variables."""

    url: str
    data_dir: Path
    master_key: str

    @property
    def backup_dir(self) -> Path:
        return self.data_dir / "backups"

    @property
    def env(self) -> dict[str, str]:
        return {
            "ENV": "test",
            "DATABASE_URL": self.url,
            "DATA_DIR": str(self.data_dir),
            "JWT_SECRET_KEY": JWT_SECRET,
            "STORAGE_MASTER_KEY": self.master_key,
        }

    async def run(self, *args: str) -> Result:
        def invoke() -> Result:
            get_settings.cache_clear()
            return CliRunner().invoke(cli, list(args), env=self.env)

        # The commands run their own event loop (asyncio.run), so they get their own thread.
        return await asyncio.to_thread(invoke)


@pytest.fixture
async def site(databases: DatabaseFactory, tmp_path: Path, master_key: str) -> Site:
    url = await databases.create()
    site = Site(url, tmp_path / "site", master_key)
    database = Database(url)
    try:
        await seed(
            database,
            Encryptor(master_key),
            LocalMediaStorage(site.data_dir / "media"),
            users=1,
            tasks_per_user=2,
        )
    finally:
        await database.dispose()
    return site


def test_help_lists_the_commands() -> None:
    top = CliRunner().invoke(cli, ["--help"])
    assert "backup" in top.output
    assert "restore" in top.output
    sub = CliRunner().invoke(cli, ["backup", "--help"])
    for command in ("create", "list", "verify", "prune"):
        assert command in sub.output
    assert "--force" in CliRunner().invoke(cli, ["restore", "--help"]).output


async def test_backup_list_verify_restore(
    site: Site, databases: DatabaseFactory, tmp_path: Path
) -> None:
    created = await site.run("backup")
    assert created.exit_code == 0, created.output
    assert "backup written:" in created.stdout
    assert "encrypting" in created.stderr  # the progress bar
    (path,) = site.backup_dir.glob("genapi-backup-*.gbak")
    assert str(path) in created.stdout

    listed = await site.run("backup", "list")
    assert listed.exit_code == 0, listed.output
    assert path.name in listed.stdout
    assert listed.stdout.splitlines()[1].rstrip().endswith("ok")
    as_json = json.loads((await site.run("backup", "list", "--json")).stdout)
    assert as_json[0]["ok"] is True
    assert as_json[0]["manifest"]["row_counts"]["generation_tasks"] == 2

    verified = await site.run("backup", "verify", "--no-progress", str(path))
    assert verified.exit_code == 0, verified.output
    assert "backup is good" in verified.stdout
    assert "[FAIL]" not in verified.stdout

    refused = await site.run("restore", "--no-progress", str(path))
    assert refused.exit_code == 1
    assert "--force" in refused.stderr

    forced = await site.run("restore", "--force", "--no-progress", str(path))
    assert forced.exit_code == 0, forced.output
    assert "4 media file(s) restored" in forced.stdout

    # A second installation, blank database and empty media dir, restored from the file.
    target = Site(await databases.create(migrated=False), tmp_path / "target", site.master_key)
    restored = await target.run("restore", "--no-progress", str(path))
    assert restored.exit_code == 0, restored.output
    assert await all_rows(target.url) == await all_rows(site.url)
    decrypted = await decrypt_all(target.url, Encryptor(site.master_key))
    assert decrypted["generation_tasks"] == 6
    storage = LocalMediaStorage(target.data_dir / "media")
    for media in (await all_rows(target.url))["media"]:
        if media["state"] == "stored":
            source_storage = LocalMediaStorage(site.data_dir / "media")
            expected = await read_file(source_storage, media["storage_key"])
            assert await read_file(storage, media["storage_key"]) == expected


async def test_verify_fails_on_a_tampered_file_and_a_wrong_key(site: Site) -> None:
    assert (await site.run("backup", "create", "--no-progress")).exit_code == 0
    (path,) = site.backup_dir.glob("*.gbak")

    stranger = Site(site.url, site.data_dir, Fernet.generate_key().decode())
    wrong_key = await stranger.run("backup", "verify", "--no-progress", str(path))
    assert wrong_key.exit_code == 1
    assert "not in STORAGE_MASTER_KEY" in wrong_key.stdout
    listed = await stranger.run("backup", "list")
    assert "not in STORAGE_MASTER_KEY" in listed.stdout

    flip_byte(path, path.stat().st_size // 2)
    tampered = await site.run("backup", "verify", "--no-progress", str(path))
    assert tampered.exit_code == 1
    assert "[FAIL] decrypt and checksums" in tampered.stdout
    assert "FAILED verification" in tampered.stdout

    restore = await site.run("restore", "--force", "--no-progress", str(path))
    assert restore.exit_code == 1
    assert "restore failed" in restore.stderr


async def test_prune_keeps_the_newest_good_backup(site: Site) -> None:
    for _ in range(2):
        assert (await site.run("backup", "create", "--no-progress")).exit_code == 0
    # Both are recent: nothing to prune.
    pruned = await site.run("backup", "prune")
    assert pruned.exit_code == 0, pruned.output
    assert "deleted 0 backup(s), kept 2" in pruned.stdout


async def test_backup_without_a_database_fails_cleanly(tmp_path: Path, master_key: str) -> None:
    missing = Site(f"sqlite+aiosqlite:///{tmp_path / 'nope.db'}", tmp_path / "x", master_key)
    result = await missing.run("backup", "create", "--no-progress")
    assert result.exit_code == 1
    assert "backup failed" in result.stderr
    assert "does not exist" in result.stderr
