"""`genapi media migrate` end to end: media rows in the real database, files in a local media
directory, a real S3-compatible server (moto in server mode), the real command."""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from typer.testing import CliRunner, Result

from app.cli import cli
from app.core.config import Settings, get_settings
from app.core.media.migrate import Outcome, migrate_media
from app.core.media.s3 import MIB, S3MediaStorage
from app.core.media.storage import LocalMediaStorage
from app.db.session import Database
from app.models import GenerationTask, Media, User
from tests.core.media.test_s3 import (
    ACCESS_KEY,
    REGION,
    SECRET_KEY,
    make_storage,
    raw_client,
    running_moto_server,
)

PREFIX = "genapi/media/"


@pytest.fixture(scope="module")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_moto_server(tmp_path_factory.mktemp("moto") / "server.log") as endpoint:
        yield endpoint


@pytest.fixture(autouse=True)
def fresh_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    # The CLI reads settings through the cached get_settings(); no `.env` from the checkout and
    # no S3_* variables from the environment the tests run in.
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("S3_") or name == "MEDIA_BACKEND":
            monkeypatch.delenv(name)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def bucket(moto_endpoint: str) -> str:
    name = f"migrate-{uuid.uuid4().hex[:12]}"
    raw_client(moto_endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture
def db(app: FastAPI) -> Database:
    database: Database = app.state.db
    return database


@pytest.fixture
def local(settings: Settings) -> LocalMediaStorage:
    return LocalMediaStorage(settings.media_dir)


@pytest.fixture
def s3(moto_endpoint: str, bucket: str, settings: Settings) -> Iterator[S3MediaStorage]:
    store = make_storage(moto_endpoint, bucket, settings.data_dir / "tmp", prefix=PREFIX)
    yield store
    store.close()


def s3_env(endpoint: str, bucket: str) -> dict[str, str]:
    return {
        "S3_BUCKET": bucket,
        "S3_ENDPOINT_URL": endpoint,
        "S3_REGION": REGION,
        "S3_ACCESS_KEY_ID": ACCESS_KEY,
        "S3_SECRET_ACCESS_KEY": SECRET_KEY,
        "S3_PREFIX": PREFIX,
        "S3_MULTIPART_THRESHOLD_BYTES": str(5 * MIB),
        "S3_MULTIPART_PART_BYTES": str(5 * MIB),
    }


async def run_cli(args: list[str], settings: Settings, env: dict[str, str]) -> Result:
    full_env = {
        "ENV": "development",
        "DATABASE_URL": settings.resolved_database_url,
        "DATA_DIR": str(settings.data_dir),
        "JWT_SECRET_KEY": settings.jwt_secret_key or "",
        "STORAGE_MASTER_KEY": settings.storage_master_key or "",
        **env,
    }
    get_settings.cache_clear()  # each invocation reads its own environment
    # The command runs its own event loop (asyncio.run), so it gets its own thread.
    result = await asyncio.to_thread(CliRunner().invoke, cli, args, env=full_env)
    assert SECRET_KEY not in result.output
    return result


async def put_bytes(storage: LocalMediaStorage, key: str, data: bytes) -> None:
    temp = storage.new_temp_path()
    await asyncio.to_thread(temp.write_bytes, data)
    await storage.put_file(temp, key)


async def seed(db: Database, local: LocalMediaStorage, videos: int = 4) -> dict[str, bytes]:
    """Stored videos with thumbnails (one bigger than the multipart threshold), a stored row
    whose file has gone missing and a row that was never stored. Returns key -> content of
    every file present."""
    files: dict[str, bytes] = {}
    async with db.session() as session:
        user = User(
            username=f"mig{uuid.uuid4().hex[:8]}",
            email=f"mig{uuid.uuid4().hex[:8]}@example.com",
            password_hash="$2b$04$" + "x" * 53,
            storage_quota_bytes=1024**3,
        )
        session.add(user)
        await session.flush()
        task = GenerationTask(
            user_id=user.id,
            kind="video",
            model="sora-2",
            adapter="sora",
            status="completed",
            request_encrypted="opaque",
            deadline_at=datetime.now(UTC) + timedelta(hours=1),
        )
        session.add(task)
        await session.flush()
        for index in range(videos):
            media_id = str(uuid.uuid4())
            key, thumb_key = f"{user.id}/{media_id}.mp4", f"{user.id}/{media_id}.thumb.jpg"
            content = os.urandom(6 * MIB if index == 0 else 30_000 + index)
            thumb = os.urandom(2_000 + index)
            await put_bytes(local, key, content)
            await put_bytes(local, thumb_key, thumb)
            files[key], files[thumb_key] = content, thumb
            session.add(
                Media(
                    id=media_id,
                    task_id=task.id,
                    user_id=user.id,
                    kind="video",
                    position=index,
                    state="stored",
                    storage_key=key,
                    thumbnail_key=thumb_key,
                    bytes=len(content),
                    thumbnail_bytes=len(thumb),
                    sha256=hashlib.sha256(content).hexdigest(),
                )
            )
        session.add(
            Media(
                task_id=task.id,
                user_id=user.id,
                kind="video",
                position=videos,
                state="stored",
                storage_key=f"{user.id}/{uuid.uuid4()}.mp4",  # its file is gone
                bytes=10,
            )
        )
        session.add(
            Media(
                task_id=task.id,
                user_id=user.id,
                kind="video",
                position=videos + 1,
                state="not_stored",
                reason="quota_exceeded",
                bytes=10,
            )
        )
    return files


def bucket_contents(endpoint: str, bucket: str) -> dict[str, bytes]:
    client = raw_client(endpoint)
    listing = client.list_objects_v2(Bucket=bucket)
    return {
        item["Key"]: client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
        for item in listing.get("Contents", [])
    }


def with_prefix(files: dict[str, bytes]) -> dict[str, bytes]:
    return {PREFIX + key: data for key, data in files.items()}


def test_help_lists_the_media_migrate_command() -> None:
    result = CliRunner().invoke(cli, ["media", "migrate", "--help"])
    assert result.exit_code == 0
    assert "--to" in result.output
    assert "--dry-run" in result.output


async def test_migrate_to_s3_copies_every_file_once(
    db: Database,
    local: LocalMediaStorage,
    s3: S3MediaStorage,
    settings: Settings,
    moto_endpoint: str,
    bucket: str,
) -> None:
    files = await seed(db, local)
    env = s3_env(moto_endpoint, bucket)
    count = len(files)

    dry = await run_cli(["media", "migrate", "--to", "s3", "--dry-run"], settings, env)
    assert dry.exit_code == 0, dry.output
    assert f"dry run: would copy {count} file(s)" in dry.stdout
    assert "1 missing at the source" in dry.stdout
    assert bucket_contents(moto_endpoint, bucket) == {}

    first = await run_cli(["media", "migrate", "--to", "s3"], settings, env)
    assert first.exit_code == 0, first.output
    assert f"copied {count} file(s)" in first.stdout
    assert "0 already present, 1 missing at the source, 0 failed" in first.stdout
    assert "set MEDIA_BACKEND=s3" in first.stdout
    assert "not in the source store" in first.stderr
    assert bucket_contents(moto_endpoint, bucket) == with_prefix(files)
    # The big one went up in parts.
    big_key = next(key for key, data in files.items() if len(data) == 6 * MIB)
    head = raw_client(moto_endpoint).head_object(Bucket=bucket, Key=PREFIX + big_key)
    assert head["ETag"].strip('"').endswith("-2")

    again = await run_cli(["media", "migrate", "--to", "s3", "--no-progress"], settings, env)
    assert again.exit_code == 0, again.output
    assert f"copied 0 file(s) (0 B), {count} already present" in again.stdout

    # Same keys: the S3 backend now serves what the rows point at; the source is untouched.
    for key, data in files.items():
        assert b"".join([chunk async for chunk in s3.open_range(key)]) == data
        assert local.path_for(key).read_bytes() == data


async def test_an_interrupted_migration_resumes(
    db: Database,
    local: LocalMediaStorage,
    s3: S3MediaStorage,
    settings: Settings,
    moto_endpoint: str,
    bucket: str,
) -> None:
    files = await seed(db, local, videos=3)
    keys = sorted(files)

    class Interrupted(Exception):
        pass

    done: list[str] = []

    def stop_after_two(key: str, outcome: Outcome) -> None:
        if outcome == "copied":
            done.append(key)
            if len(done) == 2:
                raise Interrupted  # as a Ctrl-C between two files would

    with pytest.raises(Interrupted):
        await migrate_media(local, s3, keys, concurrency=1, on_done=stop_after_two)
    assert sorted(bucket_contents(moto_endpoint, bucket)) == sorted(PREFIX + k for k in done)

    # A leftover of another kind: an object of the wrong size (say, from an older attempt) is
    # copied again rather than trusted.
    stale = next(key for key in keys if key not in done)
    raw_client(moto_endpoint).put_object(Bucket=bucket, Key=PREFIX + stale, Body=b"truncated")

    env = s3_env(moto_endpoint, bucket)
    resumed = await run_cli(["media", "migrate", "--to", "s3"], settings, env)

    assert resumed.exit_code == 0, resumed.output
    assert f"copied {len(files) - 2} file(s)" in resumed.stdout
    assert "2 already present" in resumed.stdout
    assert bucket_contents(moto_endpoint, bucket) == with_prefix(files)


async def test_migrate_back_to_local(
    db: Database,
    local: LocalMediaStorage,
    settings: Settings,
    moto_endpoint: str,
    bucket: str,
    tmp_path: Path,
) -> None:
    files = await seed(db, local, videos=2)
    env = s3_env(moto_endpoint, bucket)
    up = await run_cli(["media", "migrate", "--to", "s3"], settings, env)
    assert up.exit_code == 0, up.output

    # A second machine with an empty data directory pulls everything down.
    elsewhere = settings.model_copy(update={"data_dir": tmp_path / "other-data"})
    down = await run_cli(["media", "migrate", "--to", "local"], elsewhere, env)
    assert down.exit_code == 0, down.output
    assert f"copied {len(files)} file(s)" in down.stdout
    restored = LocalMediaStorage(elsewhere.media_dir)
    for key, data in files.items():
        assert restored.path_for(key).read_bytes() == data
    assert not any(restored.temp_dir.iterdir()), "no temp files are left behind"

    again = await run_cli(["media", "migrate", "--to", "local"], elsewhere, env)
    assert again.exit_code == 0, again.output
    assert f"copied 0 file(s) (0 B), {len(files)} already present" in again.stdout


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"S3_BUCKET": ""}, "S3_BUCKET is required"),
        ({"S3_BUCKET": "no-such-bucket-anywhere"}, "bucket 'no-such-bucket-anywhere' does not"),
        ({"S3_SECRET_ACCESS_KEY": ""}, "set both S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY"),
    ],
)
async def test_configuration_problems_exit_with_code_2(
    db: Database,
    settings: Settings,
    moto_endpoint: str,
    bucket: str,
    change: dict[str, str],
    message: str,
) -> None:
    env: dict[str, Any] = {**s3_env(moto_endpoint, bucket), **change}
    result = await run_cli(["media", "migrate", "--to", "s3"], settings, env)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert bucket_contents(moto_endpoint, bucket) == {}
