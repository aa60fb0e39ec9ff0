"""The contract between the task engine and the upstream adapters.

Every upstream family (Sora via aggregator, Veo, Seedance, OpenAI-style images, OpenAI Sora
official, …) is one module in `app/clients/` exposing a class that satisfies `UpstreamAdapter`.
Adapters never touch the database; they turn a validated `GenerationRequest` into HTTP calls and
upstream answers into `UpstreamStatus` (via the one normaliser in `app/clients/normalize.py`).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal, Protocol, runtime_checkable

MediaKind = Literal["video", "image"]


class TaskStatus(StrEnum):
    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED)


@dataclass(frozen=True)
class UpstreamCredentials:
    """Where and as whom to call. `api_key` may be a per-request override (bring your own key)."""

    base_url: str
    api_key: str

    def __repr__(self) -> str:  # never print the key
        return f"UpstreamCredentials(base_url={self.base_url!r}, api_key='<redacted>')"


@dataclass(frozen=True)
class InputImage:
    """A reference image: an http(s) URL, a data URI, or raw bytes (from a multipart upload)."""

    url: str | None = None
    data: bytes | None = field(default=None, repr=False)
    content_type: str | None = None
    filename: str | None = None
    role: str | None = None  # e.g. "first_frame", "last_frame", "reference", "mask"

    @property
    def is_data_uri(self) -> bool:
        return bool(self.url and self.url[:5].lower() == "data:")

    def as_data_uri(self) -> str | None:
        """For JSON bodies: raw bytes become a data URI; a URL (http(s) or data:) is kept as is."""
        if self.data is not None:
            encoded = base64.b64encode(self.data).decode("ascii")
            return f"data:{self.content_type or guess_image_type(self.data)};base64,{encoded}"
        return self.url

    def as_file(self, default_name: str = "image") -> tuple[str, bytes, str] | None:
        """For multipart bodies: (filename, bytes, content type), decoding a data URI if needed.

        None for an http(s) URL: there are no bytes to send, the caller decides what to do.
        """
        if self.data is not None:
            content_type = self.content_type or guess_image_type(self.data)
            data = self.data
        elif self.url and self.is_data_uri:
            decoded = decode_data_uri(self.url)
            if decoded is None:
                return None
            data, uri_type = decoded
            content_type = self.content_type or uri_type or guess_image_type(data)
        else:
            return None
        filename = self.filename or f"{default_name}{_EXTENSIONS.get(content_type, '')}"
        return filename, data, content_type


_EXTENSIONS = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/webp": ".webp",
    "image/gif": ".gif",
    "video/mp4": ".mp4",
}


def guess_image_type(data: bytes, default: str = "application/octet-stream") -> str:
    """Content type from magic bytes (the few formats upstreams accept or return)."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[4:8] == b"ftyp":
        return "video/mp4"
    return default


def decode_data_uri(uri: str) -> tuple[bytes, str | None] | None:
    """`data:<type>;base64,<payload>` -> (bytes, type); None when it is not a base64 data URI."""
    if uri[:5].lower() != "data:" or "," not in uri:
        return None
    header, _, payload = uri[5:].partition(",")
    parts = header.split(";")
    if "base64" not in (p.strip().lower() for p in parts[1:]):
        return None
    try:
        data = base64.b64decode(payload, validate=False)
    except (binascii.Error, ValueError):
        return None
    return data, (parts[0].strip().lower() or None)


@dataclass(frozen=True)
class GenerationRequest:
    """A request already validated against the model catalog."""

    kind: MediaKind
    model: str  # the upstream's model name (catalog may map ours to theirs)
    prompt: str
    params: dict[str, Any] = field(default_factory=dict)
    images: tuple[InputImage, ...] = ()
    mask: InputImage | None = None
    n: int = 1
    callback_url: str | None = None


@dataclass(frozen=True)
class UpstreamResult:
    """One produced file: a URL to fetch, or inline base64."""

    url: str | None = None
    b64_data: str | None = None
    content_type: str | None = None
    # True when fetching `url` needs the upstream's credentials (OpenAI `/v1/videos/{id}/content`,
    # Gemini file downloads): the media downloader then sends the adapter's
    # `download_headers(credentials)`, and only to that URL's origin.
    requires_auth: bool = False


@dataclass(frozen=True)
class UpstreamFailure:
    code: str
    message: str


@dataclass(frozen=True)
class UpstreamStatus:
    status: TaskStatus
    progress: int | None = None
    results: tuple[UpstreamResult, ...] = ()
    error: UpstreamFailure | None = None
    upstream_status: str | None = None  # the raw word, for logs only; never shown to clients
    submitted_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    raw: dict[str, Any] | None = None


@dataclass(frozen=True)
class UpstreamSubmission:
    """The upstream accepted the request. Synchronous upstreams (images) also return `status`."""

    upstream_id: str | None
    status: UpstreamStatus | None = None
    raw: dict[str, Any] | None = None


@runtime_checkable
class UpstreamAdapter(Protocol):
    """One upstream family.

    `synchronous` adapters (images) answer `submit` with the finished result in
    `UpstreamSubmission.status`; there is nothing to poll. `supports_cancel` False means the
    upstream has no cancel endpoint: `cancel` is then a no-op and the engine just stops polling.
    """

    name: str
    supports_cancel: bool
    synchronous: bool

    async def submit(
        self, request: GenerationRequest, credentials: UpstreamCredentials
    ) -> UpstreamSubmission: ...

    async def poll(
        self,
        upstream_id: str,
        credentials: UpstreamCredentials,
        *,
        kind: MediaKind = "video",
        previous: TaskStatus | None = None,
    ) -> UpstreamStatus:
        """`previous` (the last status seen) is kept when the upstream answers an unknown word."""
        ...

    async def cancel(self, upstream_id: str, credentials: UpstreamCredentials) -> None: ...
