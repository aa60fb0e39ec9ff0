"""LocalMediaStorage against a real directory."""

# Tests prepare and inspect small local files directly; blocking the loop for that is harmless.
# ruff: noqa: ASYNC240

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from app.core.config import Settings
from app.core.media.errors import InvalidStorageKey, MediaNotFound
from app.core.media.storage import (
    LocalMediaStorage,
    MediaStorage,
    content_key,
    create_media_storage,
    thumbnail_key,
)

DATA = bytes(range(256)) * 1000  # 256,000 bytes
SHA = hashlib.sha256(DATA).hexdigest()


@pytest.fixture
def storage(tmp_path: Path) -> LocalMediaStorage:
    return LocalMediaStorage(tmp_path / "media")


def write_temp(storage: LocalMediaStorage, data: bytes = DATA) -> Path:
    path = storage.new_temp_path(".part")
    path.write_bytes(data)
    return path


async def collect(storage: MediaStorage, key: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([chunk async for chunk in storage.open_range(key, start, end)])


def test_local_storage_satisfies_the_protocol(storage: LocalMediaStorage) -> None:
    assert isinstance(storage, MediaStorage)
    assert storage.temp_dir.is_dir()
    assert storage.temp_dir.parent == storage.root


def test_content_key_layout() -> None:
    assert content_key(SHA, "mp4") == f"{SHA[:2]}/{SHA[2:4]}/{SHA}.mp4"
    assert content_key(SHA.upper(), ".MP4") == f"{SHA[:2]}/{SHA[2:4]}/{SHA}.mp4"
    assert thumbnail_key(SHA) == f"{SHA[:2]}/{SHA[2:4]}/{SHA}.thumb.jpg"


@pytest.mark.parametrize(("digest", "ext"), [("abc", "mp4"), ("g" * 64, "mp4"), (SHA, "m/p4")])
def test_content_key_rejects_bad_input(digest: str, ext: str) -> None:
    with pytest.raises(InvalidStorageKey):
        content_key(digest, ext)


async def test_put_read_size_exists_delete_round_trip(storage: LocalMediaStorage) -> None:
    key = content_key(SHA, "mp4")
    src = write_temp(storage)
    assert not await storage.exists(key)
    await storage.put_file(src, key)
    assert not src.exists()  # consumed: moved, not copied
    assert await storage.exists(key)
    assert await storage.size(key) == len(DATA)
    assert await collect(storage, key) == DATA
    await storage.delete(key)
    assert not await storage.exists(key)
    await storage.delete(key)  # missing is fine


@pytest.mark.parametrize(
    ("start", "end", "chunk_size"),
    [
        (0, None, 65536),
        (0, 0, 65536),
        (1, 1, 7),
        (100, 199, 64),
        (65535, 65537, 65536),
        (len(DATA) - 500, None, 100),
        (len(DATA) - 1, len(DATA) + 1000, 65536),  # past the end stops at the end
        (0, None, 1000),
    ],
)
async def test_open_range_returns_exact_slices(
    storage: LocalMediaStorage, start: int, end: int | None, chunk_size: int
) -> None:
    key = "ranges/data.bin"
    await storage.put_file(write_temp(storage), key)
    chunks = [c async for c in storage.open_range(key, start, end, chunk_size=chunk_size)]
    expected = DATA[start : None if end is None else end + 1]
    assert b"".join(chunks) == expected
    assert all(0 < len(chunk) <= chunk_size for chunk in chunks)


async def test_missing_key_raises_media_not_found(storage: LocalMediaStorage) -> None:
    with pytest.raises(MediaNotFound):
        await storage.size("no/such.mp4")
    with pytest.raises(MediaNotFound):
        await collect(storage, "no/such.mp4")


async def test_invalid_range_arguments(storage: LocalMediaStorage) -> None:
    await storage.put_file(write_temp(storage), "a.bin")
    for start, end in [(-1, None), (10, 5)]:
        with pytest.raises(ValueError, match="invalid byte range"):
            await collect(storage, "a.bin", start, end)


async def test_put_file_replaces_existing_content(storage: LocalMediaStorage) -> None:
    await storage.put_file(write_temp(storage, b"old content"), "x/y.bin")
    await storage.put_file(write_temp(storage, b"new"), "x/y.bin")
    assert await collect(storage, "x/y.bin") == b"new"


async def test_put_file_across_filesystems_falls_back_to_copy(
    storage: LocalMediaStorage,
) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(storage.root).st_dev:
        pytest.skip("needs a second filesystem (/dev/shm) to force EXDEV")
    src = shm / f"genapi-test-{os.getpid()}-{time.monotonic_ns()}.part"
    src.write_bytes(DATA)
    try:
        await storage.put_file(src, content_key(SHA, "bin"))
    finally:
        leftover = src.exists()
        src.unlink(missing_ok=True)
    assert not leftover
    assert await collect(storage, content_key(SHA, "bin")) == DATA
    # No half-copied `.part` files remain next to the destination.
    parent = storage.path_for(content_key(SHA, "bin")).parent
    assert [p.name for p in parent.iterdir()] == [f"{SHA}.bin"]


@pytest.mark.parametrize(
    "key",
    [
        "",
        "../outside.mp4",
        "a/../../outside.mp4",
        "/etc/passwd",
        "a//b.mp4",
        "a/./b.mp4",
        ".tmp/abc.part",
        ".hidden",
        "a\\..\\b",
        "a/b/",
        "ä.mp4",
        "a b.mp4",
    ],
)
async def test_keys_that_could_escape_or_hide_are_refused(
    storage: LocalMediaStorage, key: str
) -> None:
    with pytest.raises(InvalidStorageKey):
        await storage.exists(key)
    with pytest.raises(InvalidStorageKey):
        await storage.put_file(write_temp(storage), key)


async def test_symlink_out_of_the_root_is_refused(
    storage: LocalMediaStorage, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.mp4").write_bytes(b"secret")
    (storage.root / "ab").symlink_to(outside, target_is_directory=True)
    with pytest.raises(InvalidStorageKey):
        await storage.size("ab/secret.mp4")


def test_new_temp_paths_are_unique_and_inside_the_temp_dir(storage: LocalMediaStorage) -> None:
    paths = {storage.new_temp_path(".part") for _ in range(100)}
    assert len(paths) == 100
    assert all(p.parent == storage.temp_dir and p.suffix == ".part" for p in paths)
    with pytest.raises(ValueError, match="suffix"):
        storage.new_temp_path("/../../x")


async def test_purge_temp_removes_only_old_files(storage: LocalMediaStorage) -> None:
    old, fresh = write_temp(storage, b"old"), write_temp(storage, b"fresh")
    an_hour_ago = time.time() - 3600
    os.utime(old, (an_hour_ago, an_hour_ago))
    assert await storage.purge_temp(older_than_seconds=600) == 1
    assert not old.exists()
    assert fresh.exists()


def test_fsync_mode_round_trip(tmp_path: Path) -> None:
    durable = LocalMediaStorage(tmp_path / "durable", fsync=True)
    src = durable.new_temp_path()
    src.write_bytes(b"durable")
    durable._put_sync(src, durable.path_for("d/x.bin"))
    assert durable.path_for("d/x.bin").read_bytes() == b"durable"


def test_create_media_storage_uses_the_media_dir(settings: Settings) -> None:
    storage = create_media_storage(settings)
    assert isinstance(storage, LocalMediaStorage)
    assert storage.root == settings.media_dir.resolve()
    assert storage.temp_dir.is_dir()
