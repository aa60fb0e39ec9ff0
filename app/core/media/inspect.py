"""Recognise media by magic bytes, read its dimensions and duration, and make JPEG posters.

The upstream's Content-Type is never trusted: `sniff_content_type` looks at the first bytes.
Decoding runs in worker threads (PyAV for video, Pillow for images) and the demuxer/decoder is
pinned to the sniffed format, so a crafted file cannot make FFmpeg open playlists, URLs or other
files. Inspection never raises on odd files: it answers with Nones or False.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

logger = logging.getLogger(__name__)

#: How many leading bytes `sniff_content_type` wants to decide reliably.
SNIFF_BYTES = 64

VIDEO_TYPES = frozenset({"video/mp4", "video/quicktime", "video/webm"})
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/webp"})
SUPPORTED_CONTENT_TYPES = VIDEO_TYPES | IMAGE_TYPES

_EXTENSIONS = {
    "video/mp4": "mp4",
    "video/quicktime": "mov",
    "video/webm": "webm",
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/webp": "webp",
}
# FFmpeg demuxer per container, and Pillow plugin per image type.
_AV_FORMATS = {"video/mp4": "mov", "video/quicktime": "mov", "video/webm": "matroska"}
_PIL_FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP"}

# ISO-BMFF brands of MP4 video. HEIF/AVIF images and M4A audio share the container and are
# deliberately absent.
_MP4_BRANDS = frozenset(
    {
        b"isom",
        b"iso2",
        b"iso3",
        b"iso4",
        b"iso5",
        b"iso6",
        b"iso7",
        b"iso8",
        b"iso9",
        b"mp41",
        b"mp42",
        b"mp71",
        b"avc1",
        b"av01",
        b"hvc1",
        b"dash",
        b"M4V ",
        b"M4VH",
        b"M4VP",
        b"f4v ",
        b"mmp4",
        b"MSNV",
        b"XAVC",
        b"3gp4",
        b"3gp5",
        b"3gp6",
        b"3g2a",
    }
)
_QUICKTIME_BRAND = b"qt  "
# Old QuickTime files may start with one of these atoms instead of `ftyp`.
_QUICKTIME_LEADING_ATOMS = frozenset({b"moov", b"mdat", b"wide", b"free", b"pnot"})

#: Images above this many pixels get no thumbnail (decoding them would cost too much memory).
THUMBNAIL_MAX_PIXELS = 50_000_000
_MAX_PACKETS_FOR_POSTER = 300


@dataclass(frozen=True)
class MediaInfo:
    width: int | None = None
    height: int | None = None
    duration_seconds: float | None = None


def sniff_content_type(head: bytes) -> str | None:
    """The content type of a file from its first bytes (`SNIFF_BYTES` are enough), or None
    when it is not one of the accepted types."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        # EBML: WebM and Matroska share it; only WebM is accepted.
        return "video/webm" if b"webm" in head[:SNIFF_BYTES] else None
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return _sniff_ftyp(head)
    if len(head) >= 8 and head[4:8] in _QUICKTIME_LEADING_ATOMS:
        box_size = int.from_bytes(head[:4], "big")
        if box_size == 1 or box_size >= 8:
            return "video/quicktime"
    return None


def _sniff_ftyp(head: bytes) -> str | None:
    box_size = int.from_bytes(head[:4], "big")
    end = min(len(head), box_size if box_size >= 16 else 16)
    major = head[8:12]
    # Layout: size, "ftyp", major brand, minor version, compatible brands...
    brands = [major] + [head[i : i + 4] for i in range(16, end - 3, 4)]
    if major == _QUICKTIME_BRAND:
        return "video/quicktime"
    if any(brand in _MP4_BRANDS for brand in brands):
        return "video/mp4"
    if _QUICKTIME_BRAND in brands:
        return "video/quicktime"
    return None


def extension_for(content_type: str | None) -> str:
    """File extension with its dot (".mp4") for an accepted content type, "" for any other
    (the same convention as `mimetypes.guess_extension`)."""
    extension = _EXTENSIONS.get(content_type or "")
    return f".{extension}" if extension else ""


def is_video(content_type: str) -> bool:
    return content_type in VIDEO_TYPES


def is_image(content_type: str) -> bool:
    return content_type in IMAGE_TYPES


async def probe(path: Path, content_type: str) -> MediaInfo:
    """Width, height and (for video) duration; Nones for whatever cannot be read."""
    return await asyncio.to_thread(_probe_quietly, Path(path), content_type)


def _probe_quietly(path: Path, content_type: str) -> MediaInfo:
    try:
        if is_video(content_type):
            return _probe_video(path, content_type)
        if is_image(content_type):
            return _probe_image(path, content_type)
    except Exception as exc:
        logger.info("media probe failed for %s: %s", content_type, type(exc).__name__)
    return MediaInfo()


def _open_video(path: Path, content_type: str) -> Any:
    import av  # Imported lazily: loading FFmpeg is slow and only media work needs it.

    return av.open(str(path), mode="r", format=_AV_FORMATS[content_type])


def _probe_video(path: Path, content_type: str) -> MediaInfo:
    with _open_video(path, content_type) as container:
        streams = container.streams.video
        duration: float | None = None
        if container.duration is not None and container.duration > 0:
            # Container duration is in microseconds (AV_TIME_BASE).
            duration = container.duration / 1_000_000
        if not streams:
            return MediaInfo(duration_seconds=duration)
        stream = streams[0]
        if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
            duration = float(stream.duration * stream.time_base)
        width = stream.codec_context.width or None
        height = stream.codec_context.height or None
        return MediaInfo(width=width, height=height, duration_seconds=duration)


def _probe_image(path: Path, content_type: str) -> MediaInfo:
    with Image.open(path, formats=[_PIL_FORMATS[content_type]]) as image:
        width, height = image.size
        duration: float | None = None
        # Animated WebP reports per-frame durations in milliseconds; still images have none.
        if getattr(image, "is_animated", False):
            total_ms = 0
            for index in range(getattr(image, "n_frames", 1)):
                image.seek(index)
                total_ms += int(image.info.get("duration", 0) or 0)
            duration = total_ms / 1000 if total_ms else None
        return MediaInfo(width=width, height=height, duration_seconds=duration)


async def make_thumbnail(path: Path, content_type: str, dest: Path, max_side: int = 320) -> bool:
    """Write a JPEG poster of at most `max_side` pixels per side to `dest`.

    Videos get their first decodable frame, images a downscaled copy (never upscaled). Returns
    False, leaving no file at `dest`, when nothing could be decoded.
    """
    if max_side < 1:
        raise ValueError("max_side must be positive")
    return await asyncio.to_thread(
        _thumbnail_quietly, Path(path), content_type, Path(dest), max_side
    )


async def inspect_media(
    path: Path, content_type: str, poster: Path, max_side: int = 320
) -> tuple[MediaInfo, bool]:
    """`probe` and `make_thumbnail` (to `poster`) in one trip to a worker thread: for a small
    image the trips cost more than the work."""
    if max_side < 1:
        raise ValueError("max_side must be positive")

    def both() -> tuple[MediaInfo, bool]:
        return (
            _probe_quietly(Path(path), content_type),
            _thumbnail_quietly(Path(path), content_type, Path(poster), max_side),
        )

    return await asyncio.to_thread(both)


def _thumbnail_quietly(path: Path, content_type: str, dest: Path, max_side: int) -> bool:
    try:
        if is_video(content_type):
            if _thumbnail_video(path, content_type, dest, max_side):
                return True
        elif is_image(content_type) and _thumbnail_image(path, content_type, dest, max_side):
            return True
    except Exception as exc:
        logger.info("thumbnail failed for %s: %s", content_type, type(exc).__name__)
    _remove_quietly(dest)
    return False


def _remove_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


def _save_poster(image: Image.Image, dest: Path, max_side: int) -> bool:
    if image.mode not in ("RGB", "L"):
        # Flatten transparency onto white rather than letting JPEG turn it black.
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        image = background
    # reducing_gap=1.0: box-reduce by the largest whole factor first, then Lanczos for the
    # rest. Half the CPU of Lanczos from full size (which dominated a synchronous image
    # request), and no visible difference at poster size.
    image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS, reducing_gap=1.0)
    dest.parent.mkdir(parents=True, exist_ok=True)
    image.save(dest, format="JPEG", quality=82)
    return True


def _thumbnail_video(path: Path, content_type: str, dest: Path, max_side: int) -> bool:
    import av

    with _open_video(path, content_type) as container:
        if not container.streams.video:
            return False
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for index, packet in enumerate(container.demux(stream)):
            if index >= _MAX_PACKETS_FOR_POSTER:
                break
            try:
                frames = packet.decode()
            except av.error.InvalidDataError:
                # A corrupt packet does not end the search for a usable frame.
                continue
            if frames:
                return _save_poster(frames[0].to_image(), dest, max_side)
    return False


def _thumbnail_image(path: Path, content_type: str, dest: Path, max_side: int) -> bool:
    with Image.open(path, formats=[_PIL_FORMATS[content_type]]) as image:
        width, height = image.size
        if width * height > THUMBNAIL_MAX_PIXELS:
            return False
        # JPEG can decode at a reduced scale directly, which is much cheaper than a full decode.
        image.draft("RGB", (max_side, max_side))
        image.load()
        return _save_poster(image, dest, max_side)
