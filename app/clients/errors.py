"""Typed upstream errors and the scrubbing that keeps secrets out of them.

Every failure talking to an upstream becomes one of these, never a raw httpx exception. Two flags
drive what the caller may do next:

- `retryable`: asking again later may succeed (rate limits, 5xx, timeouts, garbled bodies).
- `reached_upstream`: False only when the request provably never left this process (the
  connection was never established, or no pooled connection became free). Only then may a
  *create* be sent again without risking a duplicate generation (and a duplicate charge).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

MAX_REASON_CHARS = 500
MAX_SNIPPET_CHARS = 200
REDACTED = "***"

# Credentials that upstreams sometimes echo back ("Incorrect API key provided: sk-abc…").
_BEARER_RE = re.compile(r"(?i)(bearer\s+)[^\s\"',;]+")
_SK_RE = re.compile(r"\bsk-[A-Za-z0-9_\-]{6,}")
# A JWT (header.payload.signature, base64url): Kling's bearer token, minted from the secret key.
_JWT_RE = re.compile(r"\beyJ[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]*")
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_WHITESPACE_RE = re.compile(r"\s+")


def scrub(text: str, *secrets: str | None) -> str:
    """Remove every given secret, bearer token, JWT and `sk-…` key from `text`."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    text = _BEARER_RE.sub(r"\1" + REDACTED, text)
    text = _JWT_RE.sub(REDACTED, text)
    return _SK_RE.sub("sk-" + REDACTED, text)


def sanitize_reason(text: object, *secrets: str | None, limit: int = MAX_REASON_CHARS) -> str:
    """Upstream-supplied text made safe to store and show: one line, bounded, no secrets."""
    value = text if isinstance(text, str) else str(text)
    value = _CONTROL_RE.sub(" ", value)
    value = _WHITESPACE_RE.sub(" ", value).strip()
    # Scrub before trimming so a key cut in half by the limit can't survive as a fragment.
    value = scrub(value, *secrets)
    if len(value) > limit:
        value = value[: limit - 1].rstrip() + "…"
    return value


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """`Retry-After` as seconds (delta-seconds or an HTTP-date); None when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if seconds == seconds else None  # NaN guard
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = now or datetime.now(UTC)
    return max(0.0, (when - current).total_seconds())


class UpstreamError(Exception):
    """Base of every upstream failure. `message` is already sanitised (safe to log and show)."""

    code: str = "upstream_error"
    default_message: str = "The upstream service failed"
    default_retryable: bool = False

    def __init__(
        self,
        message: str | None = None,
        *,
        upstream: str | None = None,
        status_code: int | None = None,
        reached_upstream: bool = True,
        retryable: bool | None = None,
        body_snippet: str | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.upstream = upstream
        self.status_code = status_code
        self.reached_upstream = reached_upstream
        self.retryable = self.default_retryable if retryable is None else retryable
        self.body_snippet = body_snippet
        super().__init__(self.message)

    def __str__(self) -> str:
        prefix = f"{self.upstream}: " if self.upstream else ""
        status = f" (HTTP {self.status_code})" if self.status_code is not None else ""
        return f"{prefix}{self.message}{status}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(message={self.message!r}, upstream={self.upstream!r}, "
            f"status_code={self.status_code!r}, reached_upstream={self.reached_upstream!r}, "
            f"retryable={self.retryable!r})"
        )


class UpstreamRejected(UpstreamError):
    """The upstream refused this request (4xx other than 401/403/429, or an error envelope).

    Sending the same request again will fail the same way; `message` carries the upstream's
    reason so the user can fix the input.
    """

    code = "upstream_rejected"
    default_message = "The upstream service rejected the request"


class UpstreamAuthError(UpstreamError):
    """401/403: the API key was rejected (wrong, revoked, or without access to this model)."""

    code = "upstream_auth_failed"
    default_message = "The upstream service rejected the API key"


class UpstreamRateLimited(UpstreamError):
    """429. `retry_after` in seconds when the upstream said how long to wait."""

    code = "upstream_rate_limited"
    default_message = "The upstream service is rate limiting requests"
    default_retryable = True

    def __init__(
        self,
        message: str | None = None,
        *,
        retry_after: float | None = None,
        upstream: str | None = None,
        status_code: int | None = 429,
        body_snippet: str | None = None,
    ) -> None:
        super().__init__(
            message, upstream=upstream, status_code=status_code, body_snippet=body_snippet
        )
        self.retry_after = retry_after


class UpstreamUnavailable(UpstreamError):
    """5xx, connection failures and timeouts."""

    code = "upstream_unavailable"
    default_message = "The upstream service is unavailable"
    default_retryable = True


class UpstreamMalformed(UpstreamError):
    """A body we cannot read: not JSON, an HTML error page, or JSON without the expected fields."""

    code = "upstream_malformed"
    default_message = "The upstream service returned an unreadable response"
    default_retryable = True
