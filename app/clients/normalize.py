"""The one normaliser: every upstream answer shape becomes an `UpstreamStatus`.

Aggregators sitting at the same base URL answer the same endpoint in different shapes (see
`upstream-apis.md`, section 2). Everything about reading them lives here so adapters stay thin:

- envelopes `{code, message, data}` (any nesting of `data` objects is searched),
- task ids (`task_id`, `taskId`, `id`, the same under `data`, or `data` itself as a string),
- status words (case-insensitive) mapped onto `TaskStatus`; unknown words keep polling,
- progress as a number or `"45%"`, clamped to 0-100,
- results as URLs or inline base64 in every listed place,
- error reasons, and times as epoch seconds, epoch milliseconds or ISO strings,
- Gemini long-running operations `{name, done, error?, response}` and OpenAI video objects.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from app.clients.base import (
    MediaKind,
    TaskStatus,
    UpstreamFailure,
    UpstreamResult,
    UpstreamStatus,
    decode_data_uri,
    guess_image_type,
)
from app.clients.errors import UpstreamMalformed, UpstreamRejected, sanitize_reason

logger = logging.getLogger(__name__)

_STATUS_WORDS: dict[TaskStatus, tuple[str, ...]] = {
    TaskStatus.QUEUED: ("queued", "pending", "submitted", "not_start", "preparing", "waiting"),
    TaskStatus.IN_PROGRESS: ("processing", "in_progress", "running", "generating", "started"),
    TaskStatus.COMPLETED: (
        "completed",
        "success",
        "succeeded",
        "succeed",
        "ok",
        "done",
        "finished",
    ),
    TaskStatus.FAILED: ("failed", "failure", "fail", "error", "timeout", "expired", "rejected"),
    TaskStatus.CANCELLED: ("cancelled", "canceled"),
}
STATUS_WORDS: dict[str, TaskStatus] = {
    word: status for status, words in _STATUS_WORDS.items() for word in words
}

# Envelope codes meaning "no error"; compared as lower-case strings.
SUCCESS_CODES = frozenset({"success", "0", "200"})

_STATUS_KEYS = ("status", "task_status", "state")
_ID_KEYS = ("task_id", "taskId", "id")
_URL_KEYS = ("video_url", "videoUrl", "result_url", "url")
_INLINE_KEYS = ("video_base64", "b64_json")
_ERROR_KEYS = ("fail_reason", "error", "task_status_msg", "detail", "message", "msg")
_SUBMITTED_KEYS = ("submit_time", "submitted_at", "created_at", "created")
_STARTED_KEYS = ("start_time", "started_at")
_FINISHED_KEYS = ("finish_time", "finished_at", "completed_at")
# Words an envelope puts in `message` on success; never a failure reason.
_NON_REASONS = frozenset({"", "success", "ok", "succeed", "succeeded", "null", "none"})

_MAX_DEPTH = 4  # data.data.data: an aggregator wrapping a provider's own envelope
_MS_THRESHOLD = 100_000_000_000  # 1e11 s is the year 5138; anything larger is milliseconds
_MAX_RAW_STRING = 1024
_MAX_WORD_LOG = 64


# --------------------------------------------------------------------------------------------
# Public API


def normalize_status(
    payload: Any,
    *,
    kind: MediaKind = "video",
    previous: TaskStatus | None = None,
    require_results: bool = True,
    secret: str | None = None,
) -> UpstreamStatus:
    """Read one poll (or synchronous) answer.

    - An error envelope becomes a `failed` status carrying the envelope's message.
    - An unknown status word keeps polling: `previous` when it is non-terminal, else
      `in_progress` when some progress is reported, else `queued`.
    - A result URL together with progress >= 100 means `completed`, whatever the word.
    - `completed` without any result becomes `failed` (code `no_result`) unless
      `require_results` is False (OpenAI serves the file from a fixed `/content` URL).
    - `secret` (the API key) is scrubbed from every reason text.

    Raises `UpstreamMalformed` for a payload that is not a JSON object.
    """
    if not isinstance(payload, Mapping):
        raise UpstreamMalformed(
            f"expected a JSON object, got {_type_name(payload)}", body_snippet=None
        )
    raw = compact_raw(payload)

    envelope_error = _envelope_error(payload, secret)
    if envelope_error is not None:
        return UpstreamStatus(
            status=TaskStatus.FAILED, error=envelope_error, upstream_status=None, raw=raw
        )

    task = _unwrap(payload)
    layers = list(_layers(task))

    if _is_gemini_operation(task):
        return _gemini_status(task, layers, kind=kind, raw=raw, secret=secret)

    word, status = _status_word(layers)
    progress = _progress(layers)
    results = _results(layers, kind)
    error: UpstreamFailure | None = None

    if results and progress is not None and progress >= 100:
        status = TaskStatus.COMPLETED
    elif status is None:
        if word is not None:
            logger.info(
                "upstream status word %r not recognised; still polling",
                sanitize_reason(word, secret, limit=_MAX_WORD_LOG),
            )
        if results:
            # Synchronous answers (images) carry results and no status word at all.
            status = TaskStatus.COMPLETED
        elif word is None and _has_error(layers):
            status = TaskStatus.FAILED
        elif previous is not None and not previous.is_terminal:
            status = previous
        elif progress:
            status = TaskStatus.IN_PROGRESS
        else:
            status = TaskStatus.QUEUED

    if status is TaskStatus.COMPLETED and not results:
        # Some aggregators put the result URL in `fail_reason` (new-api does for video tasks).
        results = _url_from_reason(layers, kind)
        if not results and require_results:
            status = TaskStatus.FAILED
            error = UpstreamFailure("no_result", "upstream reported completion without a result")

    if status is TaskStatus.FAILED and error is None:
        error = _error(layers, default_code=word or "failed", secret=secret)
    if status is TaskStatus.COMPLETED:
        progress = 100

    return UpstreamStatus(
        status=status,
        progress=progress,
        results=results if status is TaskStatus.COMPLETED else (),
        error=error,
        upstream_status=word,
        submitted_at=_time(layers, _SUBMITTED_KEYS),
        started_at=_time(layers, _STARTED_KEYS),
        finished_at=_time(layers, _FINISHED_KEYS),
        raw=raw,
    )


def extract_task_id(payload: Any, *, secret: str | None = None) -> str:
    """The upstream's id for a created task.

    Raises `UpstreamRejected` for an error envelope (the create was refused) and
    `UpstreamMalformed` when the answer holds no id at all.
    """
    task_id = find_task_id(payload, secret=secret)
    if task_id is None:
        raise UpstreamMalformed("the upstream accepted the request but returned no task id")
    return task_id


def find_task_id(payload: Any, *, secret: str | None = None) -> str | None:
    """Like `extract_task_id` but None when there is no id (synchronous answers)."""
    if not isinstance(payload, Mapping):
        raise UpstreamMalformed(f"expected a JSON object, got {_type_name(payload)}")
    envelope_error = _envelope_error(payload, secret)
    if envelope_error is not None:
        raise UpstreamRejected(envelope_error.message)
    for layer in _layers(payload):
        for key in _ID_KEYS:
            value = _id_value(layer.get(key))
            if value is not None:
                return value
        data = layer.get("data")
        if isinstance(data, str | int) and not isinstance(data, bool):
            # new-api style: {"code": "success", "data": "task_abc"}
            value = _id_value(data)
            if value is not None:
                return value
    if _is_gemini_operation(payload):
        return _id_value(payload.get("name"))
    return None


def normalize_word(word: str) -> TaskStatus | None:
    """`TaskStatus` for a status word (case-insensitive, `-`/space read as `_`); None if unknown."""
    key = word.strip().lower().replace("-", "_").replace(" ", "_")
    return STATUS_WORDS.get(key)


def parse_progress(value: Any) -> int | None:
    """45, 45.6, "45", "45%", " 45.5 % " -> an int clamped to 0-100; None when unreadable."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        text = value.strip().rstrip("%").strip()
        if not text:
            return None
        try:
            number = float(text)
        except ValueError:
            return None
    else:
        return None
    if number != number:  # NaN
        return None
    return int(min(100.0, max(0.0, number)))


def parse_time(value: Any) -> datetime | None:
    """Epoch seconds, epoch milliseconds (told apart by magnitude) or ISO 8601, as UTC."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            value = float(text)
        except ValueError:
            try:
                parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                return None
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    if not isinstance(value, int | float) or value <= 0 or value != value:
        return None
    seconds = value / 1000 if value >= _MS_THRESHOLD else value
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def reason_from_body(payload: Any, *, secret: str | None = None) -> str | None:
    """The human reason in an error body (`{"error": {"message"}}`, `detail`, `message`, …)."""
    if not isinstance(payload, Mapping):
        return None
    layers = list(_layers(payload))
    failure = _error(layers, default_code="", secret=secret, fallback=None)
    return failure.message if failure else None


def compact_raw(payload: Mapping[str, Any]) -> dict[str, Any]:
    """A copy safe to keep for diagnostics: base64 blobs and other huge strings summarised."""
    result = _compact(payload)
    return result if isinstance(result, dict) else {}


# --------------------------------------------------------------------------------------------
# Envelope and layers


def _envelope_error(payload: Mapping[str, Any], secret: str | None) -> UpstreamFailure | None:
    code = payload.get("code")
    if code is None or isinstance(code, Mapping | list):
        return None
    code_text = str(code).strip().lower()
    if code_text in SUCCESS_CODES:
        return None
    reason = None
    for key in ("message", "msg", "error", "detail"):
        text = _reason_text(payload.get(key))
        if text and text.strip().lower() not in _NON_REASONS:
            reason = text
            break
    message = sanitize_reason(reason or f"upstream error code {code}", secret)
    return UpstreamFailure(code=sanitize_reason(code_text, secret, limit=64), message=message)


def _unwrap(payload: Mapping[str, Any]) -> Mapping[str, Any]:
    if payload.get("code") is not None and isinstance(payload.get("data"), Mapping):
        return payload["data"]
    return payload


def _layers(task: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """The task object and every nested `data` object under it, outermost first."""
    layer: Any = task
    for _ in range(_MAX_DEPTH):
        if not isinstance(layer, Mapping):
            return
        yield layer
        layer = layer.get("data")


# --------------------------------------------------------------------------------------------
# Status, progress, times


def _status_word(layers: list[Mapping[str, Any]]) -> tuple[str | None, TaskStatus | None]:
    for layer in layers:
        for key in _STATUS_KEYS:
            value = layer.get(key)
            if isinstance(value, str | int) and not isinstance(value, bool):
                word = str(value).strip()
                if word:
                    return word[:_MAX_WORD_LOG], normalize_word(word)
    return None, None


def _progress(layers: list[Mapping[str, Any]]) -> int | None:
    for layer in layers:
        value = parse_progress(layer.get("progress"))
        if value is not None:
            return value
    return None


def _time(layers: list[Mapping[str, Any]], keys: tuple[str, ...]) -> datetime | None:
    for layer in layers:
        for key in keys:
            value = parse_time(layer.get(key))
            if value is not None:
                return value
    return None


# --------------------------------------------------------------------------------------------
# Results


def _results(layers: list[Mapping[str, Any]], kind: MediaKind) -> tuple[UpstreamResult, ...]:
    for layer in layers:
        found = _results_in(layer, kind)
        if found:
            return _dedupe(found)
    return ()


def _results_in(layer: Mapping[str, Any], kind: MediaKind) -> list[UpstreamResult]:
    for key in _URL_KEYS:
        found = _from_value(layer.get(key), kind)
        if found:
            return found
    output = layer.get("output")
    found = _from_value(output, kind, object_keys=("url", "video_url", "image_url"))
    if found:
        return found
    content = layer.get("content")
    if isinstance(content, Mapping):  # ByteDance Ark
        found = _from_value(content.get("video_url"), kind) or _from_value(
            content.get("image_url"), kind
        )
        if found:
            return found
    found = _gemini_samples(layer, kind)
    if found:
        return found
    task_result = layer.get("task_result")
    if isinstance(task_result, Mapping):  # Kling
        for key in ("videos", "images"):
            found = _from_value(task_result.get(key), kind, object_keys=("url",))
            if found:
                return found
    data = layer.get("data")
    if isinstance(data, list):  # OpenAI images: data[].url / data[].b64_json
        found = _from_value(data, kind, object_keys=("url", "b64_json"))
        if found:
            return found
    for key in _INLINE_KEYS:
        value = layer.get(key)
        if isinstance(value, str) and value.strip():
            return [_inline(value, kind)]
    return []


def _from_value(
    value: Any, kind: MediaKind, *, object_keys: tuple[str, ...] = ()
) -> list[UpstreamResult]:
    """A URL string, a list of them, or objects holding one under `object_keys`."""
    if isinstance(value, str):
        result = _url_result(value, kind)
        return [result] if result else []
    if isinstance(value, Mapping):
        for key in object_keys:
            item = value.get(key)
            if isinstance(item, str) and item.strip():
                result = _inline(item, kind) if key == "b64_json" else _url_result(item, kind)
                if result:
                    return [result]
        return []
    if isinstance(value, list):
        results: list[UpstreamResult] = []
        for item in value:
            results.extend(_from_value(item, kind, object_keys=object_keys))
        return results
    return []


def _url_result(value: str, kind: MediaKind) -> UpstreamResult | None:
    url = value.strip()
    lowered = url[:8].lower()
    if lowered.startswith(("http://", "https://")):
        return UpstreamResult(url=url)
    if lowered.startswith("data:"):
        decoded = decode_data_uri(url)
        if decoded is None:
            return None
        data, content_type = decoded
        encoded = url.partition(",")[2].strip()
        return UpstreamResult(b64_data=encoded, content_type=content_type or _sniff(data, kind))
    return None


def _inline(value: str, kind: MediaKind) -> UpstreamResult:
    text = value.strip()
    if text[:5].lower() == "data:":
        result = _url_result(text, kind)
        if result:
            return result
    try:
        head = base64.b64decode(text[:64] + "=" * (-len(text[:64]) % 4), validate=False)
    except (binascii.Error, ValueError):
        head = b""
    return UpstreamResult(b64_data=text, content_type=_sniff(head, kind))


def _sniff(head: bytes, kind: MediaKind) -> str:
    default = "video/mp4" if kind == "video" else "image/png"
    return guess_image_type(head, default=default)


def _dedupe(results: list[UpstreamResult]) -> tuple[UpstreamResult, ...]:
    seen: set[tuple[str | None, str | None]] = set()
    unique: list[UpstreamResult] = []
    for result in results:
        key = (result.url, result.b64_data)
        if key not in seen:
            seen.add(key)
            unique.append(result)
    return tuple(unique)


def _url_from_reason(
    layers: list[Mapping[str, Any]], kind: MediaKind
) -> tuple[UpstreamResult, ...]:
    for layer in layers:
        value = layer.get("fail_reason")
        if isinstance(value, str) and value.strip().lower().startswith(("http://", "https://")):
            result = _url_result(value, kind)
            if result:
                return (result,)
    return ()


# --------------------------------------------------------------------------------------------
# Errors


def _reason_text(value: Any) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, Mapping):
        for key in ("message", "msg", "detail", "reason", "error"):
            text = _reason_text(value.get(key))
            if text:
                return text
        return None
    if isinstance(value, list):
        # FastAPI-style `detail: [{"msg": ...}, ...]`
        texts = [text for item in value if (text := _reason_text(item))]
        return "; ".join(texts) or None
    return str(value)


def _error_code(value: Any) -> str | None:
    if isinstance(value, Mapping):
        code = value.get("code") or value.get("type")
        if code is not None and not isinstance(code, Mapping | list):
            return str(code)
    return None


def _has_error(layers: list[Mapping[str, Any]]) -> bool:
    for layer in layers:
        for key in ("error", "fail_reason", "detail"):
            if _reason_text(layer.get(key)):
                return True
    return False


def _error(
    layers: list[Mapping[str, Any]],
    *,
    default_code: str,
    secret: str | None,
    fallback: str | None = "the upstream reported a failure",
) -> UpstreamFailure | None:
    for layer in layers:
        for key in _ERROR_KEYS:
            value = layer.get(key)
            text = _reason_text(value)
            if not text or text.lower() in _NON_REASONS:
                continue
            if key == "fail_reason" and text.lower().startswith(("http://", "https://")):
                continue
            code = _error_code(value) or default_code
            return UpstreamFailure(
                code=sanitize_reason(code, secret, limit=64) or "failed",
                message=sanitize_reason(text, secret),
            )
    if fallback is None:
        return None
    return UpstreamFailure(code=sanitize_reason(default_code, secret, limit=64), message=fallback)


# --------------------------------------------------------------------------------------------
# Gemini long-running operations


def _is_gemini_operation(task: Mapping[str, Any]) -> bool:
    if isinstance(task.get("done"), bool):
        return True
    name = task.get("name")
    return isinstance(name, str) and (name.startswith("operations/") or "/operations/" in name)


def _gemini_samples(layer: Mapping[str, Any], kind: MediaKind) -> list[UpstreamResult]:
    response = layer.get("response")
    if not isinstance(response, Mapping):
        return []
    video_response = response.get("generateVideoResponse")
    if not isinstance(video_response, Mapping):
        return []
    samples = video_response.get("generatedSamples")
    if not isinstance(samples, list):
        return []
    results: list[UpstreamResult] = []
    for sample in samples:
        video = sample.get("video") if isinstance(sample, Mapping) else None
        if isinstance(video, Mapping):
            uri = video.get("uri")
            if isinstance(uri, str):
                result = _url_result(uri, kind)
                if result:
                    results.append(result)
    return results


def _gemini_status(
    task: Mapping[str, Any],
    layers: list[Mapping[str, Any]],
    *,
    kind: MediaKind,
    raw: dict[str, Any],
    secret: str | None,
) -> UpstreamStatus:
    if not task.get("done"):
        return UpstreamStatus(status=TaskStatus.IN_PROGRESS, upstream_status="running", raw=raw)
    error = task.get("error")
    if error:
        failure = UpstreamFailure(
            code=sanitize_reason(_error_code(error) or "failed", secret, limit=64),
            message=sanitize_reason(_reason_text(error) or "the operation failed", secret),
        )
        return UpstreamStatus(
            status=TaskStatus.FAILED, error=failure, upstream_status="error", raw=raw
        )
    results = _results(layers, kind)
    if results:
        return UpstreamStatus(
            status=TaskStatus.COMPLETED,
            progress=100,
            results=results,
            upstream_status="done",
            raw=raw,
        )
    # Done without samples: the safety filter dropped every video (it says why, if anything).
    reasons: Any = None
    response = task.get("response")
    if isinstance(response, Mapping):
        video_response = response.get("generateVideoResponse")
        if isinstance(video_response, Mapping):
            reasons = video_response.get("raiMediaFilteredReasons")
    text = _reason_text(reasons)
    failure = (
        UpstreamFailure("content_filtered", sanitize_reason(text, secret))
        if text
        else UpstreamFailure("no_result", "upstream reported completion without a result")
    )
    return UpstreamStatus(status=TaskStatus.FAILED, error=failure, upstream_status="done", raw=raw)


# --------------------------------------------------------------------------------------------
# Helpers


def _id_value(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return type(value).__name__


def _compact(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(key): _compact(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_compact(item) for item in value]
    if isinstance(value, str) and len(value) > _MAX_RAW_STRING:
        return f"<{len(value)} characters omitted>"
    return value
