"""Redaction rules, applied to everything the request log stores."""

from __future__ import annotations

import base64
import json
import os

import pytest

from app.core.request_log.redaction import (
    REDACTED,
    is_sensitive_key,
    redact_body,
    redact_headers,
    redact_json,
    redact_query_string,
    redact_string,
    redact_text,
)

BLOB = base64.b64encode(os.urandom(600)).decode()


@pytest.mark.parametrize(
    "name",
    [
        "password",
        "new_password",
        "Current-Password",
        "access_token",
        "csrf_token",
        "client_secret",
        "api_key",
        "X-Api-Key",
        "apiKey",
        "Authorization",
        "cookie",
        "key",
        "private_key",
        "credentials",
    ],
)
def test_sensitive_names(name: str) -> None:
    assert is_sensitive_key(name)


@pytest.mark.parametrize(
    "name", ["name", "prompt", "keyword", "keys", "monkey", "key_count", "model", "username"]
)
def test_harmless_names(name: str) -> None:
    assert not is_sensitive_key(name)


def test_json_fields_redacted_recursively() -> None:
    document = {
        "username": "alice",
        "password": "hunter2",
        "nested": {"Refresh_Token": "abc", "items": [{"api_key": "gk_1"}, {"ok": 1}]},
        "secret": {"deep": "value"},
        "key": "gk_secret",
        "max_tokens": 256,
        "session_token": None,
    }
    redacted = redact_json(document)
    assert redacted == {
        "username": "alice",
        "password": REDACTED,
        "nested": {"Refresh_Token": REDACTED, "items": [{"api_key": REDACTED}, {"ok": 1}]},
        "secret": REDACTED,
        "key": REDACTED,
        "max_tokens": 256,
        "session_token": None,
    }
    # The input is left alone.
    assert document["password"] == "hunter2"


def test_numeric_password_is_redacted() -> None:
    assert redact_json({"password": 12345678}) == {"password": REDACTED}


def test_base64_blobs_and_data_uris() -> None:
    assert redact_string(BLOB) == "<redacted base64 600 bytes>"
    assert redact_string(f"data:image/png;base64,{BLOB}") == "<redacted base64 600 bytes>"
    # Short data URIs are redacted too: any inline upload is.
    assert redact_string("data:image/gif;base64,R0lGOD==").startswith("<redacted base64")
    # Long prose and URLs are not base64.
    prose = "a cat surfing a wave at sunset, " * 20
    assert redact_string(prose) == prose
    url = "https://example.com/" + "a" * 300 + "?x=1"
    assert redact_string(url) == url
    assert redact_json({"image": BLOB, "images": [BLOB]}) == {
        "image": "<redacted base64 600 bytes>",
        "images": ["<redacted base64 600 bytes>"],
    }


def test_headers() -> None:
    headers = [
        ("Authorization", "Bearer eyJ.secret"),
        ("cookie", "access_token=abc"),
        ("x-api-key", "gk_abc"),
        ("X-CSRF-Token", "csrf"),
        ("proxy-authorization", "Basic abc"),
        ("x-upstream-token", "tok"),
        ("accept", "application/json"),
        ("accept", "text/plain"),
        ("user-agent", "pytest"),
    ]
    assert redact_headers(headers) == {
        "authorization": REDACTED,
        "cookie": REDACTED,
        "x-api-key": REDACTED,
        "x-csrf-token": REDACTED,
        "proxy-authorization": REDACTED,
        "x-upstream-token": REDACTED,
        "accept": "application/json, text/plain",
        "user-agent": "pytest",
    }


def test_query_string() -> None:
    redacted = redact_query_string("page=2&token=abc%20def&API_KEY=gk_x&q=cats+dogs")
    assert redacted == "page=2&token=<redacted>&API_KEY=<redacted>&q=cats+dogs"
    assert redact_query_string("") == ""


def test_form_body() -> None:
    body = "username=alice&password=hunter2"
    assert redact_body(body, "application/x-www-form-urlencoded", complete=True) == (
        "username=alice&password=<redacted>"
    )


def test_complete_json_body() -> None:
    body = json.dumps({"password": "hunter2", "prompt": "a cat", "image": BLOB})
    result = json.loads(redact_body(body, "application/json; charset=utf-8", complete=True))
    assert result == {
        "password": REDACTED,
        "prompt": "a cat",
        "image": "<redacted base64 600 bytes>",
    }


def test_truncated_json_is_redacted_by_pattern() -> None:
    full = json.dumps(
        {"prompt": "x", "password": "hunter2", "pin": 1234, "token": 98765, "image": BLOB}
    )
    # Cut inside the base64 value: not valid JSON any more.
    cut = full[: full.index(BLOB) + 300]
    result = redact_body(cut, "application/json", complete=False)
    assert "hunter2" not in result
    assert "98765" not in result
    assert BLOB[:300] not in result
    assert '"password": "<redacted>"' in result
    assert '"token": "<redacted>"' in result
    assert '"pin": 1234' in result
    assert '"prompt": "x"' in result


def test_truncated_inside_secret_value() -> None:
    cut = '{"name": "k", "api_key": "gk_abcdefgh'
    result = redact_text(cut)
    assert "gk_abcdefgh" not in result
    assert '"api_key": "<redacted>"' in result


def test_escaped_quotes_in_secret() -> None:
    text = '{"password": "a\\"b\\"c-tail", "x": 1'
    result = redact_text(text)
    assert "tail" not in result
    assert '"x": 1' in result


def test_plain_text_assignments() -> None:
    text = "retry with password=hunter2 and token=abc; name=alice"
    assert redact_body(text, "text/plain", complete=True) == (
        "retry with password=<redacted> and token=<redacted>; name=alice"
    )
