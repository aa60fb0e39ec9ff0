"""Typed errors of the media layer.

They are `AppError`s, so a route that lets one escape renders the usual error body; the task
engine records `code` and `message` on the failed media. Messages never carry request headers
or URL query strings (presigned URLs put their signatures there).
"""

from __future__ import annotations

from typing import Any

from app.core.errors import AppError, NotFound


class MediaError(AppError):
    """Base of every media failure."""

    status_code = 502
    code = "media_error"
    message = "Media could not be processed"
    #: True when trying again later may succeed (network trouble that outlived the retries,
    #: DNS failure, overall timeout); False when the same input will fail the same way.
    transient: bool = False

    def __init__(self, message: str | None = None, *, transient: bool | None = None, **kwargs: Any):
        super().__init__(message, **kwargs)
        if transient is not None:
            self.transient = transient


class MediaDownloadError(MediaError):
    """The result could not be fetched (network failure, unexpected status, bad data)."""

    status_code = 502
    code = "media_download_failed"
    message = "The result could not be downloaded"


class MediaExpired(MediaDownloadError):
    """The upstream answered 404/410: its result URL is gone and will not come back."""

    status_code = 410
    code = "media_expired"
    message = "The upstream result URL has expired"


class MediaTooLarge(MediaError):
    status_code = 413
    code = "media_too_large"
    message = "The media is larger than the configured limit"

    def __init__(self, message: str | None = None, *, max_bytes: int, **kwargs: Any) -> None:
        kwargs.setdefault("details", {"max_bytes": max_bytes})
        super().__init__(message, **kwargs)
        self.max_bytes = max_bytes


class MediaTypeRejected(MediaError):
    """The bytes are not one of the accepted containers (checked by magic bytes)."""

    status_code = 415
    code = "media_type_rejected"
    message = "The media type is not accepted (mp4, mov, webm, png, jpeg or webp only)"


class MediaForbiddenHost(MediaError):
    """The URL's scheme or host is refused by the SSRF policy."""

    status_code = 422
    code = "forbidden_url"
    message = "This URL is not allowed"


class MediaNotFound(NotFound):
    code = "media_not_found"
    message = "The media file does not exist"


class InvalidStorageKey(ValueError):
    """A storage key that is malformed or would escape the store's root (a programming error)."""


class RangeNotSatisfiable(AppError):
    status_code = 416
    code = "range_not_satisfiable"
    message = "The requested range is not satisfiable"

    def __init__(self, size: int, message: str | None = None) -> None:
        super().__init__(
            message,
            details={"size": size},
            headers={"Content-Range": f"bytes */{size}"},
        )
        self.size = size
