"""What the middleware hands the writer: raw, unredacted capture of one `/api/` request.

The middleware does as little as possible on the request path (no decoding, no redaction,
no encryption); everything expensive happens in the writer, off the request path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(slots=True)
class BodyCapture:
    """The first `limit` bytes of a body, plus how much there was in total.

    Chunks are kept as received and joined only in the writer; nothing past the cap is stored,
    so a large upload costs a counter increment per chunk, not a copy.
    """

    limit: int
    chunks: list[bytes] = field(default_factory=list)
    captured: int = 0
    total: int = 0
    truncated: bool = False

    def feed(self, data: bytes) -> None:
        size = len(data)
        self.total += size
        room = self.limit - self.captured
        if room <= 0:
            if size:
                self.truncated = True
            return
        if size > room:
            self.chunks.append(data[:room])
            self.captured += room
            self.truncated = True
        elif size:
            self.chunks.append(data)
            self.captured += size

    def data(self) -> bytes:
        return b"".join(self.chunks)


@dataclass(slots=True)
class RequestLogEntry:
    request_id: str
    started_at: datetime
    method: str
    path: str
    query_string: bytes = b""
    status_code: int = 0
    duration_ms: float = 0.0
    client_ip: str | None = None
    # Raw ASGI header pairs; decoded and redacted by the writer.
    request_headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    user_id: str | None = None
    session_id: str | None = None
    api_key_id: str | None = None
    request_content_type: str | None = None
    request_body: bytes | None = None
    request_body_truncated: bool = False
    request_bytes: int = 0
    # For multipart uploads: field names and sizes instead of the bytes themselves.
    request_summary: dict[str, Any] | None = None
    response_content_type: str | None = None
    response_body: bytes | None = None
    response_body_truncated: bool = False
    response_bytes: int = 0
    note: str | None = None
