"""`write_base64_to_temp`: chunked decoding with the same checks as downloads."""

# Assertions read small local files directly; blocking the loop for that is harmless.
# ruff: noqa: ASYNC240

from __future__ import annotations

import base64
import hashlib
import tracemalloc
from pathlib import Path

import pytest

from app.core.media.download import write_base64_to_temp
from app.core.media.errors import MediaDownloadError, MediaTooLarge, MediaTypeRejected
from tests.core.media.conftest import BIG_HEAD, Samples

MAX = 10 * 1024 * 1024


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    return tmp_path / "tmp" / "b64.part"


def encodings(data: bytes, mime: str) -> dict[str, str]:
    plain = base64.b64encode(data).decode()
    return {
        "plain": plain,
        "data-uri": f"data:{mime};base64,{plain}",
        "data-uri-upper": f"DATA:{mime.upper()};BASE64,{plain}",
        "mime-lines": base64.encodebytes(data).decode(),  # 76-char lines with newlines
        "urlsafe-unpadded": base64.urlsafe_b64encode(data).decode().rstrip("="),
    }


@pytest.mark.parametrize(
    "variant", ["plain", "data-uri", "data-uri-upper", "mime-lines", "urlsafe-unpadded"]
)
@pytest.mark.parametrize(("name", "mime"), [("image.png", "image/png"), ("video.mp4", "video/mp4")])
async def test_decodes_every_variant(
    samples: Samples, dest: Path, variant: str, name: str, mime: str
) -> None:
    data = samples[name]
    result = await write_base64_to_temp(encodings(data, mime)[variant], dest, MAX)
    assert dest.read_bytes() == data
    assert result.size == len(data)
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    assert result.sniffed_type == mime


async def test_multi_chunk_input_with_line_breaks_across_chunk_boundaries(dest: Path) -> None:
    # ~3 MiB decoded: several 256 Ki-char chunks, with newlines falling anywhere in them.
    data = BIG_HEAD + bytes(range(251)) * 12_000
    result = await write_base64_to_temp(base64.encodebytes(data).decode(), dest, MAX)
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    assert result.sniffed_type == "video/mp4"


@pytest.mark.parametrize(
    "payload",
    [
        "not base64 at all!",
        "iVBORw0KGgo=AAAA",  # data after padding
        "A",  # truncated quantum
        "data:image/png,iVBORw0KGgo",  # a data URI that is not base64
        "data:image/png;base64",  # no comma
        "iVBORw0KGgoé",  # non-ASCII
        "",
    ],
)
async def test_invalid_base64_is_refused_and_removed(dest: Path, payload: str) -> None:
    with pytest.raises(MediaDownloadError) as info:
        await write_base64_to_temp(payload, dest, MAX)
    assert info.value.code == "media_invalid_base64"
    assert info.value.transient is False
    assert not dest.exists()


async def test_padding_in_the_middle_across_chunks_is_refused(samples: Samples, dest: Path) -> None:
    first = base64.b64encode(samples["image.png"] + b"x").decode()  # ends with "=="
    assert first.endswith("=")
    payload = first + " " * (256 * 1024) + "AAAA"
    with pytest.raises(MediaDownloadError, match="after padding"):
        await write_base64_to_temp(payload, dest, MAX)


async def test_non_media_content_is_rejected(dest: Path) -> None:
    html = base64.b64encode(b"<html><body>" + b"x" * 100 + b"</body></html>").decode()
    with pytest.raises(MediaTypeRejected):
        await write_base64_to_temp(html, dest, MAX)
    assert not dest.exists()


async def test_size_limit_is_exact(samples: Samples, dest: Path) -> None:
    data = samples["image.png"]
    encoded = base64.b64encode(data).decode()
    assert (await write_base64_to_temp(encoded, dest, len(data))).size == len(data)
    with pytest.raises(MediaTooLarge):
        await write_base64_to_temp(encoded, dest, len(data) - 1)
    assert not dest.exists()


async def test_grossly_oversized_input_is_refused_before_decoding(dest: Path) -> None:
    with pytest.raises(MediaTooLarge):
        await write_base64_to_temp("A" * 4_000_000, dest, max_bytes=1_000_000)
    assert not dest.exists()


async def test_decoding_does_not_copy_the_payload(dest: Path) -> None:
    data = BIG_HEAD + bytes(range(256)) * (80 * 1024)  # 20 MiB
    encoded = base64.b64encode(data).decode()
    expected = hashlib.sha256(data).hexdigest()
    del data
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        result = await write_base64_to_temp(encoded, dest, 64 * 1024 * 1024)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.sha256 == expected
    assert peak < 4 * 1024 * 1024, f"peak traced memory {peak} bytes"


async def test_local_write_failure_is_a_transient_media_error(
    samples: Samples, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_bytes(b"")
    encoded = base64.b64encode(samples["image.png"]).decode()
    with pytest.raises(MediaDownloadError) as info:
        await write_base64_to_temp(encoded, blocker / "x.part", MAX)
    assert info.value.code == "media_write_failed"
    assert info.value.transient is True
