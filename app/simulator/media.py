"""Real media, made on the fly: tiny H.264 MP4s (PyAV) and PNG/JPEG/WebP images (Pillow).

Everything is generated in a worker thread (encoding is CPU work) and cached, so ten thousand
downloads of the same clip cost one encode.
"""

from __future__ import annotations

import io
import re
from collections.abc import AsyncIterator
from functools import lru_cache

import anyio.to_thread
from PIL import Image, ImageDraw
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

CONTENT_TYPES = {
    "mp4": "video/mp4",
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
}
IMAGE_FORMATS = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "webp": "WEBP"}

_PALETTE = (
    ((18, 32, 64), (240, 128, 32)),
    ((24, 64, 40), (250, 220, 60)),
    ((64, 20, 48), (80, 200, 240)),
    ((40, 40, 40), (230, 60, 90)),
)
_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")
_CHUNK = 8192


def _colours(seed: int) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    return _PALETTE[seed % len(_PALETTE)]


@lru_cache(maxsize=64)
def render_video(width: int, height: int, frames: int, fps: int, seed: int = 0) -> bytes:
    """An H.264 MP4 of a block sliding across a plain background (every frame decodable)."""
    import av

    # yuv420p needs even dimensions.
    width, height = max(2, width - width % 2), max(2, height - height % 2)
    background, block_colour = _colours(seed)
    block = max(2, min(width, height) // 3)
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width = width
        stream.height = height
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast", "tune": "zerolatency"}
        top = (height - block) // 2
        for index in range(frames):
            image = Image.new("RGB", (width, height), background)
            left = index * (width - block) // max(1, frames - 1)
            ImageDraw.Draw(image).rectangle(
                (left, top, left + block - 1, top + block - 1), fill=block_colour
            )
            for packet in stream.encode(av.VideoFrame.from_image(image)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


@lru_cache(maxsize=256)
def render_image(width: int, height: int, fmt: str, seed: int = 0) -> bytes:
    """A plain image with a diagonal band and a disc, so it is visibly not blank."""
    background, accent = _colours(seed)
    image = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(image)
    band = max(1, min(width, height) // 8)
    draw.line((0, height, width, 0), fill=accent, width=band)
    radius = max(1, min(width, height) // 5)
    centre_x, centre_y = width // 3, height // 3
    draw.ellipse(
        (centre_x - radius, centre_y - radius, centre_x + radius, centre_y + radius),
        fill=(255 - accent[0], 255 - accent[1], 255 - accent[2]),
    )
    buffer = io.BytesIO()
    image.save(buffer, format=IMAGE_FORMATS[fmt], quality=85)
    return buffer.getvalue()


async def video_bytes(width: int, height: int, frames: int, fps: int, seed: int = 0) -> bytes:
    return await anyio.to_thread.run_sync(render_video, width, height, frames, fps, seed)


async def image_bytes(width: int, height: int, fmt: str, seed: int = 0) -> bytes:
    return await anyio.to_thread.run_sync(render_image, width, height, fmt, seed)


def probe_image(data: bytes) -> tuple[int, int] | None:
    """(width, height) of an uploaded image, or None when Pillow cannot read it."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
            return image.size
    except Exception:
        return None


def fit_size(width: int, height: int, cap: int) -> tuple[int, int]:
    """Scale (width, height) down so neither side exceeds `cap`, keeping the aspect ratio."""
    width, height = max(1, width), max(1, height)
    scale = min(1.0, cap / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _parse_range(header: str, length: int) -> tuple[int, int] | None:
    """Inclusive (start, end) for one `bytes=` range, or None when unsatisfiable."""
    match = _RANGE_RE.match(header.strip())
    if match is None or (not match.group(1) and not match.group(2)):
        return None
    first, last = match.group(1), match.group(2)
    if not first:  # suffix range: the last N bytes
        count = int(last)
        if count == 0:
            return None
        return max(0, length - count), length - 1
    start = int(first)
    end = min(int(last), length - 1) if last else length - 1
    if start >= length or end < start:
        return None
    return start, end


def media_response(request: Request, data: bytes, content_type: str, *, chunked: bool) -> Response:
    """Serve `data` honouring a single `Range`; chunked transfer when asked and no range."""
    headers = {"Accept-Ranges": "bytes"}
    range_header = request.headers.get("range")
    if range_header:
        span = _parse_range(range_header, len(data))
        if span is None:
            return Response(
                status_code=416,
                headers={**headers, "Content-Range": f"bytes */{len(data)}"},
            )
        start, end = span
        headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        body = b"" if request.method == "HEAD" else data[start : end + 1]
        response = Response(body, status_code=206, media_type=content_type, headers=headers)
        response.headers["Content-Length"] = str(end - start + 1)
        return response
    if chunked and request.method != "HEAD":
        # No Content-Length: the server falls back to Transfer-Encoding: chunked.
        async def chunks() -> AsyncIterator[bytes]:
            for offset in range(0, len(data), _CHUNK):
                yield data[offset : offset + _CHUNK]

        return StreamingResponse(chunks(), media_type=content_type, headers=headers)
    body = b"" if request.method == "HEAD" else data
    response = Response(body, media_type=content_type, headers=headers)
    response.headers["Content-Length"] = str(len(data))
    return response
