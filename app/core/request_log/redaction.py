"""Redaction of secrets from request-log entries, applied before anything is stored.

Rules:
- headers: authorization, cookie, set-cookie, x-api-key, x-csrf-token, proxy-authorization and
  any header whose name looks sensitive (see `is_sensitive_key`) → "<redacted>";
- JSON fields, form fields and query parameters whose name looks sensitive → "<redacted>";
- long base64 blobs and `data:…;base64,` URIs → "<redacted base64 N bytes>" (they are uploads,
  useless in a log and possibly private);
- bodies that are not valid JSON (usually because they were truncated) are redacted by regex on
  `"field": value` and `field=value` patterns.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qsl, urlencode

REDACTED = "<redacted>"
BASE64_MIN_LENGTH = 256

SENSITIVE_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "x-csrf-token",
    }
)

# Substrings that make a field name sensitive wherever they appear.
_SENSITIVE_PARTS = (
    "password",
    "passwd",
    "token",
    "secret",
    "api_key",
    "apikey",
    "authorization",
    "cookie",
    "credential",
)
# "key" alone is too broad ("keyword", "monkey", "keys_count"): only the exact name or a
# `*_key` suffix (access_key, private_key, x_api_key, ...) counts.
_KEY_SUFFIX = "_key"

_BASE64_RE = re.compile(r"[A-Za-z0-9+/_\-\r\n]+={0,2}")
_DATA_URI_RE = re.compile(r"data:[\w.+\-]+/[\w.+\-]+(?:;[\w.+\-]+=[^;,]*)*;base64,", re.I)


def _normalise(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def is_sensitive_key(name: str) -> bool:
    key = _normalise(name)
    if key == "key" or key.endswith(_KEY_SUFFIX):
        return True
    return any(part in key for part in _SENSITIVE_PARTS)


def _is_count(name: str, value: Any) -> bool:
    # Token *counts* (max_tokens, prompt_tokens, ...) are numbers worth keeping; a numeric
    # password is still redacted because its name does not end in "tokens".
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and _normalise(name).endswith("tokens")
    )


def _base64_placeholder(size: int) -> str:
    return f"<redacted base64 {size} bytes>"


def _decoded_size(encoded: str) -> int:
    payload = "".join(encoded.split()).rstrip("=")
    return len(payload) * 3 // 4


def redact_string(value: str) -> str:
    """Replace a data URI or a long base64 blob; leave every other string alone."""
    match = _DATA_URI_RE.match(value)
    if match:
        return _base64_placeholder(_decoded_size(value[match.end() :]))
    if len(value) > BASE64_MIN_LENGTH and _BASE64_RE.fullmatch(value):
        return _base64_placeholder(_decoded_size(value))
    return value


def redact_json(value: Any) -> Any:
    """Redact a parsed JSON document recursively (returns a new structure)."""
    if isinstance(value, dict):
        redacted: dict[str, Any] = {}
        for key, item in value.items():
            name = str(key)
            if item is not None and is_sensitive_key(name) and not _is_count(name, item):
                redacted[name] = REDACTED
            else:
                redacted[name] = redact_json(item)
        return redacted
    if isinstance(value, list):
        return [redact_json(item) for item in value]
    if isinstance(value, str):
        return redact_string(value)
    return value


def redact_pairs(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [
        (name, REDACTED if is_sensitive_key(name) else redact_string(value))
        for name, value in pairs
    ]


def redact_query_string(query: str) -> str:
    """Redact a URL query string (or a form-urlencoded body)."""
    if not query:
        return query
    pairs = parse_qsl(query, keep_blank_values=True)
    if not pairs:
        return redact_text(query)
    # urlencode would percent-encode "<redacted>"; keep the placeholder readable.
    return urlencode(redact_pairs(pairs), safe="<> ")


def redact_headers(headers: list[tuple[str, str]]) -> dict[str, str]:
    """Merge repeated headers (comma-joined) and redact sensitive ones."""
    merged: dict[str, str] = {}
    for raw_name, value in headers:
        name = raw_name.lower()
        merged[name] = f"{merged[name]}, {value}" if name in merged else value
    return {
        name: REDACTED if name in SENSITIVE_HEADERS or is_sensitive_key(name) else value
        for name, value in merged.items()
    }


# `"name": "value"` (the value possibly cut off by truncation, hence the optional quote),
# `"name": 123` and `name=value`. Names are judged by `is_sensitive_key` in the callback.
_JSON_STRING_FIELD_RE = re.compile(r'"((?:[^"\\]|\\.){1,128})"(\s*:\s*)"(?:[^"\\]|\\.)*(?:"|\\?$)')
_JSON_SCALAR_FIELD_RE = re.compile(r'"((?:[^"\\]|\\.){1,128})"(\s*:\s*)(-?[\w.+\-]+)')
_ASSIGNMENT_RE = re.compile(r"(?<![\w\-])([A-Za-z_][\w\-]{0,127})=([^&\s;,]*)")
_JSON_BLOB_RE = re.compile(
    r'"(data:[\w.+\-]+/[\w.+\-]+(?:;[\w.+\-]+=[^;,"]*)*;base64,[A-Za-z0-9+/=_\-]*'
    rf"|[A-Za-z0-9+/_\-]{{{BASE64_MIN_LENGTH + 1},}}={{0,2}})(\"|$)",
    re.I,
)


def _string_field(match: re.Match[str]) -> str:
    name = match.group(1)
    if not is_sensitive_key(name):
        return match.group(0)
    return f'"{name}"{match.group(2)}"{REDACTED}"'


def _scalar_field(match: re.Match[str]) -> str:
    name, value = match.group(1), match.group(3)
    if value in {"null", "true", "false"} or not is_sensitive_key(name):
        return match.group(0)
    if _normalise(name).endswith("tokens") and re.fullmatch(r"-?\d+(?:\.\d+)?", value):
        return match.group(0)
    return f'"{name}"{match.group(2)}"{REDACTED}"'


def _assignment(match: re.Match[str]) -> str:
    name = match.group(1)
    return f"{name}={REDACTED}" if is_sensitive_key(name) else match.group(0)


def _blob(match: re.Match[str]) -> str:
    blob = match.group(1)
    closing = match.group(2)
    if blob.lower().startswith("data:"):
        size = _decoded_size(blob.split(",", 1)[1])
    else:
        size = _decoded_size(blob)
    return f'"{_base64_placeholder(size)}{closing}'


def redact_text(text: str) -> str:
    """Best-effort redaction for text that is not (complete) JSON."""
    text = _JSON_BLOB_RE.sub(_blob, text)
    text = _JSON_STRING_FIELD_RE.sub(_string_field, text)
    text = _JSON_SCALAR_FIELD_RE.sub(_scalar_field, text)
    return _ASSIGNMENT_RE.sub(_assignment, text)


def _is_json(content_type: str) -> bool:
    return content_type == "application/json" or content_type.endswith("+json")


def redact_body(text: str, content_type: str | None, *, complete: bool) -> str:
    """Redact a captured body according to its type.

    `complete` is False when the capture was cut at the size cap: such a body is never parsed
    as a whole, only scanned by regex.
    """
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if _is_json(media_type) and complete:
        try:
            document = json.loads(text)
        except ValueError:
            return redact_text(text)
        return json.dumps(redact_json(document), ensure_ascii=False, separators=(",", ":"))
    if media_type == "application/x-www-form-urlencoded" and complete:
        return redact_query_string(text)
    return redact_text(text)
