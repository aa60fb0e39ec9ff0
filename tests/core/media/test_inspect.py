"""Sniffing, probing and thumbnails on real files made with PyAV and Pillow."""

from __future__ import annotations

import io
import zlib
from pathlib import Path

import pytest
from PIL import Image

from app.core.media.inspect import (
    SNIFF_BYTES,
    MediaInfo,
    extension_for,
    inspect_media,
    make_thumbnail,
    probe,
    sniff_content_type,
)
from tests.core.media.conftest import CONTENT_TYPES, Samples, make_image, make_video


@pytest.mark.parametrize("name", sorted(CONTENT_TYPES))
def test_sniffs_every_accepted_sample(samples: Samples, name: str) -> None:
    assert sniff_content_type(samples[name][:SNIFF_BYTES]) == CONTENT_TYPES[name]


def ftyp(major: bytes, *compatible: bytes) -> bytes:
    body = b"ftyp" + major + b"\x00\x00\x00\x00" + b"".join(compatible)
    return (len(body) + 4).to_bytes(4, "big") + body + b"\x00" * 32


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (ftyp(b"isom", b"isom", b"avc1"), "video/mp4"),
        (ftyp(b"mp42"), "video/mp4"),
        (ftyp(b"XYZW", b"iso6", b"mp41"), "video/mp4"),  # unknown major, known compatible brand
        (ftyp(b"qt  "), "video/quicktime"),
        (ftyp(b"heic", b"mif1", b"heic"), None),  # HEIF image
        (ftyp(b"avif", b"mif1"), None),
        (ftyp(b"M4A ", b"M4A "), None),  # audio
        (b"\x00\x00\x00\x08wide\x00\x00\x01\x00mdat" + b"\x00" * 40, "video/quicktime"),
        (b"\x1a\x45\xdf\xa3\x9fB\x82\x88matroska" + b"\x00" * 40, None),
        (b"\x1a\x45\xdf\xa3\x9fB\x82\x84webm" + b"\x00" * 40, "video/webm"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 8, "image/png"),
        (b"\xff\xd8\xff\xe0", "image/jpeg"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image/webp"),
        (b"RIFF\x00\x00\x00\x00AVI LIST", None),
        (b"GIF89a" + b"\x00" * 20, None),
        (b"<!doctype html><html>", None),
        (b"%PDF-1.7", None),
        (b"", None),
        (b"\x00\x00", None),
    ],
)
def test_sniff_table(head: bytes, expected: str | None) -> None:
    assert sniff_content_type(head) == expected


@pytest.mark.parametrize(
    ("content_type", "extension"),
    [
        ("video/mp4", ".mp4"),
        ("video/quicktime", ".mov"),
        ("video/webm", ".webm"),
        ("image/png", ".png"),
        ("image/jpeg", ".jpg"),
        ("image/webp", ".webp"),
        ("text/html", ""),
        (None, ""),
    ],
)
def test_extension_for(content_type: str | None, extension: str) -> None:
    assert extension_for(content_type) == extension


@pytest.mark.parametrize("name", ["video.mp4", "video.mov", "video.webm"])
async def test_probe_video_gives_dimensions_and_duration(
    samples: Samples, tmp_path: Path, name: str
) -> None:
    path = tmp_path / name
    path.write_bytes(samples[name])
    info = await probe(path, CONTENT_TYPES[name])
    assert (info.width, info.height) == (64, 64)
    assert info.duration_seconds is not None
    assert info.duration_seconds == pytest.approx(1.0, abs=0.15)  # 10 frames at 10 fps


async def test_probe_longer_video(tmp_path: Path) -> None:
    path = tmp_path / "long.mp4"
    path.write_bytes(make_video("mp4", "mpeg4", frames=50, fps=10))
    info = await probe(path, "video/mp4")
    assert info.duration_seconds == pytest.approx(5.0, abs=0.15)


@pytest.mark.parametrize("name", ["image.png", "image.jpg", "image.webp"])
async def test_probe_image_gives_size(samples: Samples, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(samples[name])
    assert await probe(path, CONTENT_TYPES[name]) == MediaInfo(96, 48, None)


async def test_probe_never_raises_on_garbage(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"\x00\x00\x00\x18ftypisom" + b"\xde\xad\xbe\xef" * 100)
    for content_type in ["video/mp4", "video/webm", "image/png", "image/jpeg", "text/plain"]:
        assert await probe(garbage, content_type) == MediaInfo()
    assert await probe(tmp_path / "missing.mp4", "video/mp4") == MediaInfo()


async def test_image_parsed_with_the_sniffed_format_only(samples: Samples, tmp_path: Path) -> None:
    # A PNG labelled as JPEG is not decoded by another Pillow plugin behind our back.
    path = tmp_path / "image.png"
    path.write_bytes(samples["image.png"])
    assert await probe(path, "image/jpeg") == MediaInfo()


def open_jpeg(path: Path) -> Image.Image:
    image = Image.open(io.BytesIO(path.read_bytes()))
    assert image.format == "JPEG"
    image.load()
    return image


@pytest.mark.parametrize("name", ["video.mp4", "video.mov", "video.webm"])
async def test_video_thumbnail_is_a_jpeg_of_the_first_frame(
    samples: Samples, tmp_path: Path, name: str
) -> None:
    src, dest = tmp_path / name, tmp_path / "thumbs" / "poster.jpg"
    src.write_bytes(samples[name])
    assert await make_thumbnail(src, CONTENT_TYPES[name], dest) is True
    poster = open_jpeg(dest)
    assert poster.size == (64, 64)  # never upscaled
    # The first frame is (0, 120, 200) in RGB; lossy codecs get close.
    red, green, blue = poster.convert("RGB").getpixel((32, 32))  # type: ignore[misc]
    assert red < 40
    assert abs(green - 120) < 30
    assert abs(blue - 200) < 30


@pytest.mark.parametrize(
    ("fmt", "content_type", "mode"),
    [
        ("PNG", "image/png", "RGBA"),
        ("JPEG", "image/jpeg", "RGB"),
        ("WEBP", "image/webp", "RGBA"),
    ],
)
async def test_image_thumbnail_is_downscaled_jpeg(
    tmp_path: Path, fmt: str, content_type: str, mode: str
) -> None:
    src, dest = tmp_path / f"big.{fmt.lower()}", tmp_path / "thumb.jpg"
    src.write_bytes(make_image(fmt, size=(1000, 500), mode=mode))
    assert await make_thumbnail(src, content_type, dest, max_side=320) is True
    thumb = open_jpeg(dest)
    assert thumb.size == (320, 160)


async def test_thumbnail_of_garbage_is_false_and_leaves_no_file(tmp_path: Path) -> None:
    src, dest = tmp_path / "bad.mp4", tmp_path / "thumb.jpg"
    src.write_bytes(b"\x00\x00\x00\x18ftypisom" + b"\x00" * 4000)
    for content_type in ["video/mp4", "image/png", "image/webp", "application/pdf"]:
        assert await make_thumbnail(src, content_type, dest) is False
        assert not dest.exists()


async def test_inspect_media_probes_and_makes_the_poster_in_one_call(tmp_path: Path) -> None:
    src, dest = tmp_path / "wide.png", tmp_path / "thumb.jpg"
    src.write_bytes(make_image("PNG", size=(1000, 500), mode="RGB"))
    info, made = await inspect_media(src, "image/png", dest, max_side=320)
    assert info == MediaInfo(1000, 500, None)
    assert made is True
    assert open_jpeg(dest).size == (320, 160)


async def test_inspect_media_of_garbage_answers_nothing_and_leaves_no_poster(
    tmp_path: Path,
) -> None:
    src, dest = tmp_path / "bad.png", tmp_path / "thumb.jpg"
    src.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100)
    assert await inspect_media(src, "image/png", dest) == (MediaInfo(), False)
    assert not dest.exists()


async def test_huge_image_gets_no_thumbnail(tmp_path: Path) -> None:
    src, dest = tmp_path / "huge.png", tmp_path / "thumb.jpg"
    # A tiny file whose header declares 10000x6000 pixels: refused before any decoding.
    png = bytearray(make_image("PNG", size=(8, 8)))
    assert png[12:16] == b"IHDR"
    png[16:24] = (10000).to_bytes(4, "big") + (6000).to_bytes(4, "big")
    png[29:33] = zlib.crc32(bytes(png[12:29])).to_bytes(4, "big")
    src.write_bytes(bytes(png))
    assert await probe(src, "image/png") == MediaInfo(10000, 6000, None)
    assert await make_thumbnail(src, "image/png", dest) is False
    assert not dest.exists()


async def test_thumbnail_to_an_unwritable_place_is_false(samples: Samples, tmp_path: Path) -> None:
    src, blocker = tmp_path / "image.png", tmp_path / "blocker"
    src.write_bytes(samples["image.png"])
    blocker.write_bytes(b"")
    assert await make_thumbnail(src, "image/png", blocker / "thumb.jpg") is False
