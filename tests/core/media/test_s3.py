"""The S3 media backend against a real S3-compatible server: moto in server mode, started here.

The server runs in a child process (bound to 127.0.0.1, port 0), so it speaks real HTTP to boto3
and its own memory does not count in the tracemalloc measurements of the client side. It exits
when its stdin closes, so even a killed test run leaves no server behind.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config as BotoConfig
from fastapi import FastAPI, Request
from fastapi.responses import Response

from app.core.config import Settings
from app.core.errors import install_error_handlers
from app.core.media.errors import MediaNotFound
from app.core.media.http_range import media_response
from app.core.media.s3 import (
    MIB,
    S3MediaStorage,
    S3Settings,
    S3StorageError,
)
from app.core.media.storage import InvalidStorageKey, MediaStorage
from app.core.secrets import ConfigurationError
from app.core.tasks.results import delete_keys

ACCESS_KEY = "AKIAMOTOTESTKEY00001"
SECRET_KEY = "moto-test-secret-Zq7Lw3xkP9vR2mN8"
REGION = "us-east-1"

_SERVER_SCRIPT = """
import sys
from moto.server import ThreadedMotoServer

server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()  # serve until the parent closes our stdin (or dies)
server.stop()
"""


@contextmanager
def running_moto_server(log_path: Path) -> Iterator[str]:
    """Start moto's S3-compatible server in a child process; yields its endpoint URL."""
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", _SERVER_SCRIPT],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
    assert proc.stdin is not None
    assert proc.stdout is not None
    try:
        line = proc.stdout.readline()  # returns "" if the child dies before printing its port
        if not line.strip().isdigit():
            raise RuntimeError(f"moto server did not start; see {log_path}")
        yield f"http://127.0.0.1:{int(line)}"
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        proc.stdout.close()


@functools.lru_cache
def raw_client(endpoint: str) -> Any:
    """A plain boto3 client, to look at the bucket behind the storage's back."""
    return boto3.session.Session(
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name=REGION
    ).client("s3", endpoint_url=endpoint, config=BotoConfig(s3={"addressing_style": "path"}))


def make_storage(endpoint: str, bucket: str, temp_dir: Path, **kwargs: Any) -> S3MediaStorage:
    options: dict[str, Any] = {
        "endpoint_url": endpoint,
        "region": REGION,
        "access_key_id": ACCESS_KEY,
        "secret_access_key": SECRET_KEY,
        "multipart_threshold": 5 * MIB,
        "part_size": 5 * MIB,
    }
    options.update(kwargs)
    return S3MediaStorage(bucket, temp_dir=temp_dir, **options)


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log_path = tmp_path_factory.mktemp("moto") / "server.log"
    with running_moto_server(log_path) as endpoint:
        yield endpoint


@pytest.fixture
def bucket(s3_endpoint: str) -> str:
    name = f"media-{uuid.uuid4().hex[:12]}"
    raw_client(s3_endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture
def storage(s3_endpoint: str, bucket: str, tmp_path: Path) -> Iterator[S3MediaStorage]:
    store = make_storage(s3_endpoint, bucket, tmp_path / "tmp", prefix="genapi/media")
    yield store
    store.close()


PATTERN = bytes(range(256)) * 16  # 4 KiB, so offsets are easy to check


def pattern_bytes(size: int) -> bytes:
    return (PATTERN * (size // len(PATTERN) + 1))[:size]


async def write_temp(storage: MediaStorage, data: bytes, suffix: str = "") -> Path:
    path = storage.new_temp_path(suffix)
    await asyncio.to_thread(path.write_bytes, data)
    return path


def write_big_file(path: Path, size: int) -> str:
    """`size` pseudo-random bytes written 1 MiB at a time; returns their sha256."""
    digest = hashlib.sha256()
    with path.open("wb") as handle:
        remaining = size
        while remaining:
            block = os.urandom(min(MIB, remaining))
            digest.update(block)
            handle.write(block)
            remaining -= len(block)
    return digest.hexdigest()


async def read_all(
    storage: MediaStorage, key: str, start: int = 0, end: int | None = None
) -> bytes:
    return b"".join([chunk async for chunk in storage.open_range(key, start, end)])


# -- the protocol -----------------------------------------------------------------------------


def test_implements_the_media_storage_protocol(storage: S3MediaStorage) -> None:
    assert isinstance(storage, MediaStorage)


async def test_put_file_uploads_under_the_prefix_and_consumes_the_source(
    storage: S3MediaStorage, s3_endpoint: str, bucket: str
) -> None:
    data = pattern_bytes(10_000)
    src = await write_temp(storage, data, ".part")
    assert src.parent == storage.temp_dir

    await storage.put_file(src, "user-1/clip.mp4")

    assert not src.exists()
    assert await storage.exists("user-1/clip.mp4")
    assert await storage.size("user-1/clip.mp4") == len(data)
    assert await read_all(storage, "user-1/clip.mp4") == data
    head = raw_client(s3_endpoint).head_object(Bucket=bucket, Key="genapi/media/user-1/clip.mp4")
    assert head["ContentLength"] == len(data)
    assert head["ContentType"] == "video/mp4"


async def test_put_file_overwrites_an_existing_key(storage: S3MediaStorage) -> None:
    await storage.put_file(await write_temp(storage, b"old content"), "u/thumb.thumb.jpg")
    await storage.put_file(await write_temp(storage, b"the new one!"), "u/thumb.thumb.jpg")
    assert await read_all(storage, "u/thumb.thumb.jpg") == b"the new one!"


async def test_large_file_goes_up_as_a_multipart_upload(
    storage: S3MediaStorage, s3_endpoint: str, bucket: str, tmp_path: Path
) -> None:
    size = 12 * MIB  # threshold and parts are 5 MiB: three parts (5 + 5 + 2)
    src = storage.new_temp_path(".part")
    expected = await asyncio.to_thread(write_big_file, src, size)

    await storage.put_file(src, "big/video.mp4")

    head = raw_client(s3_endpoint).head_object(Bucket=bucket, Key="genapi/media/big/video.mp4")
    # A multipart object's ETag is "<md5 of part md5s>-<part count>".
    assert head["ETag"].strip('"').endswith("-3")
    assert await storage.size("big/video.mp4") == size
    digest = hashlib.sha256()
    async for chunk in storage.open_range("big/video.mp4", chunk_size=MIB):
        assert len(chunk) <= MIB
        digest.update(chunk)
    assert digest.hexdigest() == expected


async def test_open_range_serves_exact_byte_ranges(storage: S3MediaStorage) -> None:
    data = pattern_bytes(50_000)
    await storage.put_file(await write_temp(storage, data), "r/file.webm")

    assert await read_all(storage, "r/file.webm", 100, 199) == data[100:200]
    assert await read_all(storage, "r/file.webm", 0, 0) == data[:1]
    # Open-ended (what a suffix range becomes once the size is known): the last 500 bytes.
    assert await read_all(storage, "r/file.webm", len(data) - 500) == data[-500:]
    # An end past the object is clamped by the store.
    assert await read_all(storage, "r/file.webm", 49_990, 99_999) == data[49_990:]
    # Starting past the end reads nothing, as a local file would.
    assert await read_all(storage, "r/file.webm", len(data) + 10) == b""

    chunks = [c async for c in storage.open_range("r/file.webm", 10, 10_009, chunk_size=3000)]
    assert [len(c) for c in chunks] == [3000, 3000, 3000, 1000]
    assert b"".join(chunks) == data[10:10_010]


async def test_open_range_rejects_invalid_ranges_and_keys(storage: S3MediaStorage) -> None:
    with pytest.raises(ValueError, match="invalid byte range"):
        await read_all(storage, "r/x.mp4", 10, 5)
    with pytest.raises(InvalidStorageKey):
        await read_all(storage, "../escape.mp4")
    with pytest.raises(InvalidStorageKey):
        await storage.exists("a/../../b")


async def test_missing_key(storage: S3MediaStorage) -> None:
    with pytest.raises(MediaNotFound):
        await read_all(storage, "nobody/nothing.mp4")
    with pytest.raises(MediaNotFound):
        await storage.size("nobody/nothing.mp4")
    assert await storage.exists("nobody/nothing.mp4") is False
    await storage.delete("nobody/nothing.mp4")  # not an error


async def test_delete_removes_the_object(storage: S3MediaStorage) -> None:
    await storage.put_file(await write_temp(storage, b"short-lived"), "d/gone.png")
    assert await storage.exists("d/gone.png")

    await storage.delete("d/gone.png")

    assert not await storage.exists("d/gone.png")
    with pytest.raises(MediaNotFound):
        await read_all(storage, "d/gone.png")


async def test_closing_the_stream_early_releases_it(storage: S3MediaStorage) -> None:
    data = pattern_bytes(2 * MIB)
    await storage.put_file(await write_temp(storage, data), "c/partial.mp4")
    stream = storage.open_range("c/partial.mp4", chunk_size=64 * 1024)
    first = await anext(stream)
    await stream.aclose()  # type: ignore[attr-defined]
    assert first == data[: 64 * 1024]
    # The pool still works afterwards (the half-read connection was dropped, not reused).
    assert await read_all(storage, "c/partial.mp4", 5, 9) == data[5:10]


async def test_purge_temp_removes_only_old_files(storage: S3MediaStorage) -> None:
    old = await write_temp(storage, b"old")
    young = await write_temp(storage, b"young")
    os.utime(old, (1_000_000, 1_000_000))

    assert await storage.purge_temp(older_than_seconds=3600) == 1

    assert not old.exists()
    assert young.exists()


# -- serving over HTTP ------------------------------------------------------------------------


@pytest.fixture
async def media_client(storage: S3MediaStorage) -> AsyncIterator[httpx.AsyncClient]:
    api = FastAPI()
    install_error_handlers(api)

    @api.api_route("/media/{key:path}", methods=["GET", "HEAD"])
    async def serve(key: str, request: Request) -> Response:
        return await media_response(
            storage,
            key,
            size=None,
            content_type="video/mp4",
            etag="a" * 64,
            request_headers=request.headers,
            method=request.method,
        )

    transport = httpx.ASGITransport(app=api)
    async with httpx.AsyncClient(transport=transport, base_url="http://genapi.test") as client:
        yield client


async def test_media_response_serves_ranges_from_s3(
    storage: S3MediaStorage, media_client: httpx.AsyncClient
) -> None:
    data = pattern_bytes(1_000_000)
    await storage.put_file(await write_temp(storage, data), "h/video.mp4")

    partial = await media_client.get("/media/h/video.mp4", headers={"Range": "bytes=100-199"})
    assert partial.status_code == 206
    assert partial.headers["content-range"] == f"bytes 100-199/{len(data)}"
    assert partial.headers["content-length"] == "100"
    assert partial.content == data[100:200]

    suffix = await media_client.get("/media/h/video.mp4", headers={"Range": "bytes=-1000"})
    assert suffix.status_code == 206
    assert (
        suffix.headers["content-range"] == f"bytes {len(data) - 1000}-{len(data) - 1}/{len(data)}"
    )
    assert suffix.content == data[-1000:]

    whole = await media_client.get("/media/h/video.mp4")
    assert whole.status_code == 200
    assert whole.content == data

    head = await media_client.head("/media/h/video.mp4")
    assert head.status_code == 200
    assert head.headers["content-length"] == str(len(data))

    unsatisfiable = await media_client.get(
        "/media/h/video.mp4", headers={"Range": f"bytes={len(data)}-"}
    )
    assert unsatisfiable.status_code == 416
    assert unsatisfiable.headers["content-range"] == f"bytes */{len(data)}"


async def test_media_response_for_a_missing_object_is_404(
    media_client: httpx.AsyncClient,
) -> None:
    response = await media_client.get("/media/h/missing.mp4", headers={"Range": "bytes=0-9"})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "media_not_found"


# -- presigned URLs ---------------------------------------------------------------------------


async def test_presigned_url_downloads_over_plain_http(storage: S3MediaStorage) -> None:
    data = pattern_bytes(20_000)
    await storage.put_file(await write_temp(storage, data), "p/clip.mp4")

    url = await storage.presigned_url("p/clip.mp4", 120, filename="My clip.mp4")

    assert "X-Amz-Signature=" in url
    assert "X-Amz-Expires=120" in url
    assert SECRET_KEY not in url
    async with httpx.AsyncClient(trust_env=False) as http:
        whole = await http.get(url)
        ranged = await http.get(url, headers={"Range": "bytes=100-199"})
        tampered = await http.get(url.replace("p/clip.mp4", "p/other.mp4"))
    assert whole.status_code == 200
    assert whole.content == data
    assert whole.headers["content-type"] == "video/mp4"
    assert whole.headers["content-disposition"] == 'inline; filename="My clip.mp4"'
    assert ranged.status_code == 206
    assert ranged.content == data[100:200]
    assert tampered.status_code == 403


async def test_presigned_url_expiry_is_bounded(storage: S3MediaStorage) -> None:
    assert "X-Amz-Expires=300" in await storage.presigned_url("p/clip.mp4")
    with pytest.raises(ValueError, match="expire"):
        await storage.presigned_url("p/clip.mp4", 8 * 24 * 3600)
    with pytest.raises(ValueError, match="expire"):
        await storage.presigned_url("p/clip.mp4", 0)


# -- memory -----------------------------------------------------------------------------------


async def test_fifty_megabytes_stream_through_in_little_memory(
    storage: S3MediaStorage, tmp_path: Path
) -> None:
    import tracemalloc

    size = 50 * MIB
    src = storage.new_temp_path(".part")
    expected = await asyncio.to_thread(write_big_file, src, size)
    limit = size // 5

    tracemalloc.start()
    try:
        await storage.put_file(src, "mem/big.mp4")
        _, upload_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        digest = hashlib.sha256()
        received = 0
        async for chunk in storage.open_range("mem/big.mp4", chunk_size=256 * 1024):
            digest.update(chunk)
            received += len(chunk)
        _, download_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert received == size
    assert digest.hexdigest() == expected
    assert upload_peak < limit, f"upload peaked at {upload_peak} bytes"
    assert download_peak < limit, f"download peaked at {download_peak} bytes"


# -- failures and secrets ---------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_store_failures_are_typed_and_never_show_the_secret(
    s3_endpoint: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # botocore logs every request at DEBUG
    no_bucket = make_storage(s3_endpoint, "no-such-bucket-here", tmp_path / "tmp")
    unreachable = make_storage(
        f"http://127.0.0.1:{closed_port()}",
        "media",
        tmp_path / "tmp",
        max_attempts=1,
        connect_timeout=2,
    )
    errors: list[S3StorageError] = []
    try:
        src = await write_temp(no_bucket, b"payload")
        with pytest.raises(S3StorageError) as put_error:
            await no_bucket.put_file(src, "u/a.mp4")
        errors.append(put_error.value)
        assert src.exists(), "a failed upload must leave the source for a retry"
        assert put_error.value.details["store_code"] == "NoSuchBucket"
        assert put_error.value.transient is False

        with pytest.raises(S3StorageError) as check_error:
            await no_bucket.check()
        errors.append(check_error.value)
        assert "does not exist" in str(check_error.value)

        with pytest.raises(S3StorageError) as read_error:
            await read_all(no_bucket, "u/a.mp4")
        errors.append(read_error.value)

        with pytest.raises(S3StorageError) as down_error:
            await unreachable.size("u/a.mp4")
        errors.append(down_error.value)
        assert down_error.value.transient is True
        assert isinstance(down_error.value, OSError)
        assert down_error.value.status_code == 503

        # Deleting leftovers treats a store failure like a filesystem one: logged, not raised.
        await delete_keys(unreachable, ["u/a.mp4"])
        assert "could not delete media file u/a.mp4" in caplog.text
    finally:
        no_bucket.close()
        unreachable.close()

    assert "Signature" in caplog.text  # the requests really were logged at DEBUG
    for error in errors:
        assert error.code == "media_store_error"
        assert SECRET_KEY not in str(error)
        assert SECRET_KEY not in repr(error.details)
        assert error.__cause__ is None
        assert error.__suppress_context__
    assert SECRET_KEY not in caplog.text
    assert SECRET_KEY not in repr(no_bucket)


async def test_delete_keys_removes_objects(storage: S3MediaStorage) -> None:
    for name in ("k/one.mp4", "k/one.thumb.jpg"):
        await storage.put_file(await write_temp(storage, b"x" * 10), name)
    await delete_keys(storage, ["k/one.mp4", "k/one.thumb.jpg"])
    assert not await storage.exists("k/one.mp4")
    assert not await storage.exists("k/one.thumb.jpg")


# -- settings ---------------------------------------------------------------------------------


def test_settings_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, s3_endpoint: str, bucket: str
) -> None:
    monkeypatch.chdir(tmp_path)  # no `.env` of the checkout
    for name, value in {
        "MEDIA_BACKEND": "s3",
        "S3_BUCKET": bucket,
        "S3_ENDPOINT_URL": s3_endpoint,
        "S3_REGION": REGION,
        "S3_ACCESS_KEY_ID": ACCESS_KEY,
        "S3_SECRET_ACCESS_KEY": SECRET_KEY,
        "S3_PREFIX": "/team-a/media/",
        "S3_PRESIGN": "true",
        "S3_PRESIGN_EXPIRES_SECONDS": "600",
    }.items():
        monkeypatch.setenv(name, value)

    s3 = S3Settings()
    assert s3.media_backend == "s3"
    assert s3.s3_presign is True
    assert SECRET_KEY not in repr(s3)
    assert SECRET_KEY not in str(s3.model_dump())

    settings = Settings(_env_file=None, data_dir=tmp_path / "data")
    store = S3MediaStorage.from_settings(settings, s3)
    try:
        assert store.bucket == bucket
        assert store.prefix == "team-a/media/"
        assert store.object_key("u/v.mp4") == "team-a/media/u/v.mp4"
        assert store.presign is True
        assert store.presign_expires == 600
        assert store.temp_dir == (tmp_path / "data" / "tmp").resolve()
        assert store.temp_dir.is_dir()
    finally:
        store.close()


def test_settings_default_to_the_local_backend(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("MEDIA_BACKEND", "S3_BUCKET", "S3_PRESIGN"):
        monkeypatch.delenv(name, raising=False)
    s3 = S3Settings()
    assert s3.media_backend == "local"
    assert s3.s3_presign is False


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"s3_bucket": None}, "S3_BUCKET is required"),
        ({"s3_secret_access_key": None}, "set both S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY"),
        ({"s3_prefix": "a/../b"}, "S3_PREFIX"),
    ],
)
def test_bad_settings_are_configuration_errors(
    tmp_path: Path, overrides: dict[str, Any], message: str
) -> None:
    values: dict[str, Any] = {
        "media_backend": "s3",
        "s3_bucket": "media",
        "s3_access_key_id": ACCESS_KEY,
        "s3_secret_access_key": SECRET_KEY,
    }
    values.update(overrides)
    s3 = S3Settings(_env_file=None, **values)
    settings = Settings(_env_file=None, data_dir=tmp_path)
    with pytest.raises(ConfigurationError, match=message) as error:
        S3MediaStorage.from_settings(settings, s3)
    assert SECRET_KEY not in str(error.value)
