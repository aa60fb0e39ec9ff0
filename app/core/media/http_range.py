"""HTTP delivery of stored media: Range (for seeking), conditional requests and HEAD.

Behaviour (RFC 9110):
- One byte range is served as 206 with `Content-Range`. A request for several ranges is
  answered with the whole file (200): the RFC lets a server ignore Range, browsers never send
  multi-range requests for media, and multipart/byteranges is not worth its complexity here.
- A syntactically invalid Range (or another unit than bytes) is ignored: 200 with everything.
- A valid but unsatisfiable range is 416 with `Content-Range: bytes */size` and our JSON error
  body.
- `If-None-Match` matching the ETag (weak comparison, `*` included) is 304.
- `If-Range` applies the Range only when it equals the ETag by strong comparison; dates never
  match because media carries no Last-Modified.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from typing import Literal
from urllib.parse import quote

from starlette.datastructures import Headers
from starlette.responses import Response, StreamingResponse

from app.core.errors import error_response
from app.core.media.errors import MediaNotFound, RangeNotSatisfiable
from app.core.media.storage import MediaStorage

STREAM_CHUNK_SIZE = 256 * 1024
DEFAULT_CACHE_CONTROL = "private, max-age=3600"

_RANGE_SPEC = re.compile(r"^\s*(\d*)\s*-\s*(\d*)\s*$")
_FILENAME_UNSAFE = re.compile(r'[\x00-\x1f\x7f"\\/]')


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive byte range `(start, end)` a Range header asks for, or None for the whole
    file (no header, an invalid one, a non-bytes unit, or several ranges).

    Raises `RangeNotSatisfiable` when the single range requested lies outside a file of `size`
    bytes.
    """
    if not header:
        return None
    unit, sep, spec = header.strip().partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return None
    if "," in spec:
        return None
    match = _RANGE_SPEC.match(spec)
    if match is None:
        return None
    first, last = match.group(1), match.group(2)
    if not first and not last:
        return None
    if not first:
        # Suffix range: the last N bytes.
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable(size)
        return max(0, size - suffix), size - 1
    start = int(first)
    end = int(last) if last else None
    if end is not None and end < start:
        return None
    if start >= size:
        raise RangeNotSatisfiable(size)
    return start, size - 1 if end is None else min(end, size - 1)


def quote_etag(etag: str) -> str:
    """A strong entity tag from a bare value (e.g. a sha256 hex digest) or an already quoted
    one."""
    if etag.startswith(('"', "W/")):
        return etag
    return f'"{etag}"'


def _entity_tags(header: str) -> list[str]:
    return [tag.strip() for tag in header.split(",") if tag.strip()]


def _weak_match(header: str, etag: str) -> bool:
    opaque = etag.removeprefix("W/")
    return any(tag == "*" or tag.removeprefix("W/") == opaque for tag in _entity_tags(header))


def _strong_match(value: str, etag: str) -> bool:
    value = value.strip()
    return not value.startswith("W/") and not etag.startswith("W/") and value == etag


def is_not_modified(request_headers: Mapping[str, str], etag: str) -> bool:
    """True when the request's `If-None-Match` matches `etag` (a 304 answers it)."""
    if_none_match = _lowercase(request_headers).get("if-none-match")
    return if_none_match is not None and _weak_match(if_none_match, quote_etag(etag))


def content_disposition(disposition: Literal["inline", "attachment"], filename: str) -> str:
    """A Content-Disposition value with an ASCII fallback and an RFC 5987 UTF-8 name."""
    safe = _FILENAME_UNSAFE.sub("_", filename).strip() or "download"
    ascii_name = safe.encode("ascii", "replace").decode("ascii").replace("?", "_")
    value = f'{disposition}; filename="{ascii_name}"'
    if ascii_name != safe:
        value += f"; filename*=UTF-8''{quote(safe, safe='')}"
    return value


async def media_response(
    storage: MediaStorage,
    key: str,
    *,
    size: int | None,
    content_type: str,
    etag: str,
    request_headers: Mapping[str, str],
    filename: str | None = None,
    disposition: Literal["inline", "attachment"] = "inline",
    method: str = "GET",
    cache_control: str = DEFAULT_CACHE_CONTROL,
) -> Response:
    """Serve the stored file at `key`: 200, 206, 304 or 416, streamed from `storage`.

    `size` is the recorded size (None asks the storage); `etag` is the sha256 hex (quoted here).
    `request_headers` should be the request's headers (Starlette's are case-insensitive; a plain
    dict is lowercased). For `method="HEAD"` the same headers are sent without a body. A missing
    file raises `MediaNotFound` (rendered as 404 by the app's error handlers).
    """
    headers_in = _lowercase(request_headers)
    tag = quote_etag(etag)
    base_headers = {
        "ETag": tag,
        "Cache-Control": cache_control,
        "Accept-Ranges": "bytes",
        "X-Content-Type-Options": "nosniff",
    }
    if filename:
        base_headers["Content-Disposition"] = content_disposition(disposition, filename)

    if is_not_modified(headers_in, tag):
        return Response(status_code=304, headers=base_headers)

    if size is None:
        size = await storage.size(key)
    elif not await storage.exists(key):
        raise MediaNotFound()

    range_header = headers_in.get("range")
    if_range = headers_in.get("if-range")
    if range_header and if_range is not None and not _strong_match(if_range, tag):
        range_header = None
    try:
        byte_range = parse_range(range_header, size)
    except RangeNotSatisfiable as exc:
        return error_response(
            416,
            exc.code,
            exc.message,
            exc.details,
            headers={**(exc.headers or {}), "Accept-Ranges": "bytes", "ETag": tag},
        )

    headers = {**base_headers, "Content-Type": content_type}
    if byte_range is None:
        status, start, end = 200, 0, size - 1
    else:
        status, (start, end) = 206, byte_range
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    length = end - start + 1 if size else 0
    headers["Content-Length"] = str(length)

    if method.upper() == "HEAD" or length == 0:
        return Response(status_code=status, headers=headers)
    return StreamingResponse(
        _stream(storage, key, start, end),
        status_code=status,
        headers=headers,
        media_type=content_type,
    )


async def _stream(storage: MediaStorage, key: str, start: int, end: int) -> AsyncIterator[bytes]:
    chunks = storage.open_range(key, start, end, chunk_size=STREAM_CHUNK_SIZE)
    try:
        async for chunk in chunks:
            yield chunk
    finally:
        # Close the storage stream (file handle, object-store connection) even when the client
        # goes away mid-response.
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()


def _lowercase(headers: Mapping[str, str]) -> Mapping[str, str]:
    # Starlette's Headers already match case-insensitively; rebuilding would drop duplicates.
    if isinstance(headers, Headers):
        return headers
    return {name.lower(): value for name, value in headers.items()}
