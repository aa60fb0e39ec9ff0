"""Typed errors, their classification of httpx failures, and secret scrubbing."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from app.clients.errors import (
    UpstreamAuthError,
    UpstreamError,
    UpstreamMalformed,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamUnavailable,
    parse_retry_after,
    sanitize_reason,
    scrub,
)
from app.clients.http import response_error, transport_error

NOW = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
SECRET = "my-upstream-key-123456"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("garbage", None),
        ("0", 0.0),
        ("7", 7.0),
        ("1.5", 1.5),
        ("-3", 0.0),
        ("Wed, 01 Jan 2025 12:00:30 GMT", 30.0),
        ("Wed, 01 Jan 2025 11:00:00 GMT", 0.0),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected


def test_scrub_removes_key_bearer_and_sk_keys() -> None:
    text = f"key={SECRET} auth=Bearer abc.def-ghi other=sk-proj-ABCDEF123456 ok"
    cleaned = scrub(text, SECRET)
    assert SECRET not in cleaned
    assert "abc.def-ghi" not in cleaned
    assert "ABCDEF123456" not in cleaned
    assert cleaned.endswith("ok")


def test_sanitize_reason_is_one_bounded_line_without_secrets() -> None:
    reason = sanitize_reason("line one\n\tline\x00two " + "x" * 1000 + SECRET, SECRET)
    assert "\n" not in reason
    assert "\x00" not in reason
    assert len(reason) <= 500
    assert reason.startswith("line one line two")
    # A key straddling the cut must not survive in part either.
    cut = sanitize_reason("y" * 490 + SECRET, SECRET)
    assert SECRET[:8] not in cut


@pytest.mark.parametrize(
    ("exc", "reached", "retryable"),
    [
        (httpx.ConnectError("refused"), False, True),
        (httpx.ConnectTimeout("slow connect"), False, True),
        (httpx.PoolTimeout("pool"), False, True),
        (httpx.ReadTimeout("slow read"), True, True),
        (httpx.WriteTimeout("slow write"), True, True),
        (httpx.ReadError("reset"), True, True),
        (httpx.RemoteProtocolError("garbled"), True, True),
        (httpx.UnsupportedProtocol("ftp"), False, False),
        (httpx.LocalProtocolError(f"Illegal header value b'Bearer {SECRET}\\n'"), False, False),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else str(v),
)
def test_transport_error_classification(exc: Exception, reached: bool, retryable: bool) -> None:
    error = transport_error(exc, upstream="sora")
    assert isinstance(error, UpstreamUnavailable)
    assert error.reached_upstream is reached
    assert error.retryable is retryable
    assert SECRET not in str(error)
    assert SECRET not in repr(error)


def _response(
    status: int, *, json: object = None, text: str | None = None, **headers: str
) -> httpx.Response:
    request = httpx.Request("GET", "http://upstream.test/x")
    if json is not None:
        return httpx.Response(status, json=json, headers=headers, request=request)
    return httpx.Response(status, text=text or "", headers=headers, request=request)


@pytest.mark.parametrize(
    ("response", "error_type", "retryable"),
    [
        (_response(400, json={"error": {"message": "bad size"}}), UpstreamRejected, False),
        (_response(404, text="not found"), UpstreamRejected, False),
        (_response(422, json={"detail": [{"msg": "duration invalid"}]}), UpstreamRejected, False),
        (_response(401, json={"error": "invalid key"}), UpstreamAuthError, False),
        (_response(403, text="forbidden"), UpstreamAuthError, False),
        (_response(429, json={}), UpstreamRateLimited, True),
        (_response(408, text="timeout"), UpstreamUnavailable, True),
        (_response(500, json={"message": "db down"}), UpstreamUnavailable, True),
        (
            _response(503, text="<html><title>Service Unavailable</title></html>"),
            UpstreamUnavailable,
            True,
        ),
        (_response(302, text="", location="http://elsewhere"), UpstreamMalformed, True),
    ],
    ids=["400", "404", "422", "401", "403", "429", "408", "500", "503-html", "302"],
)
def test_response_error_mapping(
    response: httpx.Response, error_type: type[UpstreamError], retryable: bool
) -> None:
    error = response_error(response, upstream="veo", secret=SECRET)
    assert type(error) is error_type
    assert error.retryable is retryable
    assert error.status_code == response.status_code
    assert error.reached_upstream is True
    assert error.upstream == "veo"


def test_response_error_keeps_reason_and_drops_html() -> None:
    rejected = response_error(
        _response(400, json={"error": {"message": f"size invalid for {SECRET}"}}),
        upstream="images",
        secret=SECRET,
    )
    html = response_error(
        _response(
            502,
            text="<!DOCTYPE html><html><head><title>Bad Gateway</title></head>"
            "<body><script>x()</script></body></html>",
        ),
        upstream="images",
        secret=SECRET,
    )
    assert rejected.message.startswith("size invalid for ***")
    assert "Bad Gateway" in html.message
    assert "<" not in html.message
    assert html.body_snippet == "Bad Gateway"


def test_rate_limited_retry_after_from_header() -> None:
    error = response_error(
        _response(429, json={}, **{"Retry-After": "12"}), upstream="s", secret="k"
    )
    assert isinstance(error, UpstreamRateLimited)
    assert error.retry_after == 12.0
    missing = response_error(_response(429, json={}), upstream="s", secret="k")
    assert isinstance(missing, UpstreamRateLimited)
    assert missing.retry_after is None


def test_error_str_and_repr() -> None:
    error = UpstreamRejected("bad prompt", upstream="sora", status_code=400)
    assert str(error) == "sora: bad prompt (HTTP 400)"
    assert "UpstreamRejected" in repr(error)
    assert "reached_upstream=True" in repr(error)
    assert error.code == "upstream_rejected"
    assert UpstreamAuthError().message
