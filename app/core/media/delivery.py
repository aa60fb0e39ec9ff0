"""Answering a request for a stored file: a redirect to the object store, or the bytes ourselves.

With `MEDIA_BACKEND=s3` and `S3_PRESIGN=true`, a GET is answered `302 Found` to a presigned GET URL
of the object (valid S3_PRESIGN_EXPIRES_SECONDS): the client fetches the bytes, Range requests
included, straight from the store, and no API process spends its bandwidth relaying them. In
every other case (local storage, presigning off, HEAD, a conditional request we can answer with
304) the bytes are streamed by `media_response` as before.

Callers decide who may see the file *before* calling: the presigned URL is a bearer credential
for that object, so it must only ever be handed to the media's owner. It is never logged.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Literal, Protocol, runtime_checkable
from urllib.parse import urlsplit

from starlette.responses import Response

from app.core.media.errors import MediaNotFound
from app.core.media.http_range import (
    DEFAULT_CACHE_CONTROL,
    is_not_modified,
    media_response,
    quote_etag,
)
from app.core.media.storage import MediaStorage

# The redirect must not outlive the URL it points to: no cache keeps it.
REDIRECT_CACHE_CONTROL = "private, no-store"

logger = logging.getLogger(__name__)


@runtime_checkable
class PresigningStorage(Protocol):
    """A store that can hand out presigned GET URLs (`S3MediaStorage`)."""

    presign: bool

    async def presigned_url(
        self,
        key: str,
        expires: int | None = None,
        *,
        filename: str | None = None,
        content_type: str | None = None,
        disposition: Literal["inline", "attachment"] = "inline",
    ) -> str: ...


def redirects_downloads(storage: MediaStorage) -> bool:
    """True when downloads from `storage` are served by redirecting to presigned URLs."""
    return isinstance(storage, PresigningStorage) and storage.presign is True


async def redirect_origin(storage: MediaStorage) -> str | None:
    """The origin (`scheme://host[:port]`) downloads are redirected to, for the pages'
    Content-Security-Policy; None when they are served directly. Read from a signed URL, so it
    is right for path- and virtual-host-style addressing alike."""
    if not redirects_downloads(storage):
        return None
    assert isinstance(storage, PresigningStorage)
    try:
        parts = urlsplit(await storage.presigned_url("csp-origin-probe", 60))
    except Exception as exc:
        # Signing is local; failing here means no usable credentials, which the first real
        # download reports too. The pages then keep the same-origin policy.
        logger.warning("could not presign a URL to learn the media origin: %s", exc)
        return None
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else None


async def download_redirect_url(
    storage: MediaStorage,
    key: str,
    *,
    content_type: str,
    etag: str,
    request_headers: Mapping[str, str],
    filename: str | None = None,
    disposition: Literal["inline", "attachment"] = "inline",
    method: str = "GET",
) -> str | None:
    """Where to redirect this request for the file at `key`, or None to stream it ourselves.

    Raises `MediaNotFound` when the store has no such object, so a dangling row is our 404 and
    not the store's own error page.
    """
    if method.upper() != "GET" or not redirects_downloads(storage):
        # HEAD: a URL signed for GET would be refused for HEAD; answering it costs one HEAD
        # request to the store and no body anyway.
        return None
    assert isinstance(storage, PresigningStorage)
    if is_not_modified(request_headers, etag):
        return None  # the client has it: a 304 from us beats a round trip to the store
    if not await storage.exists(key):
        raise MediaNotFound()
    return await storage.presigned_url(
        key, filename=filename, content_type=content_type, disposition=disposition
    )


async def deliver_media(
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
    """The response for a file the caller may see: `302` to a presigned URL of the store when
    that is configured (see the module doc), else the file itself (`media_response`: 200, 206,
    304 or 416)."""
    url = await download_redirect_url(
        storage,
        key,
        content_type=content_type,
        etag=etag,
        request_headers=request_headers,
        filename=filename,
        disposition=disposition,
        method=method,
    )
    if url is not None:
        return Response(
            status_code=302,
            headers={"Location": url, "Cache-Control": REDIRECT_CACHE_CONTROL},
        )
    return await media_response(
        storage,
        key,
        size=size,
        content_type=content_type,
        etag=etag,
        request_headers=request_headers,
        filename=filename,
        disposition=disposition,
        method=method,
        cache_control=cache_control,
    )


def bytes_response(data: bytes, *, content_type: str, etag: str) -> Response:
    """Serve `data` held in memory (a poster made for this request but not kept)."""
    return Response(
        content=data,
        media_type=content_type,
        headers={
            "ETag": quote_etag(etag),
            "Cache-Control": DEFAULT_CACHE_CONTROL,
            "X-Content-Type-Options": "nosniff",
        },
    )
