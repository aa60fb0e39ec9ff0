"""The normaliser, table-driven: one row per variant listed in upstream-apis.md section 2/3."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from app.clients.base import TaskStatus
from app.clients.errors import UpstreamMalformed, UpstreamRejected
from app.clients.normalize import (
    STATUS_WORDS,
    extract_task_id,
    find_task_id,
    normalize_status,
    parse_progress,
    parse_time,
)

PNG_B64 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
    "+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
JPEG_B64 = "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAgGBgcGBQgHBwcJCQgKDBQNDAsLDBkSEw8UHR8eHR"
MP4_B64 = "AAAAIGZ0eXBpc29tAAACAGlzb21pc28yYXZjMW1wNDEAAAAIZnJlZQ=="
V = "https://cdn.example/v.mp4"
T0 = datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)  # 1700000000


@dataclass
class Case:
    id: str
    payload: Any
    status: TaskStatus
    progress: int | str | None = "any"
    urls: tuple[str, ...] | None = None
    b64_types: tuple[str, ...] | None = None
    error_code: str | None = None
    error_contains: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    times: dict[str, datetime] = field(default_factory=dict)
    word: str | bool | None = False  # False: not checked


STATUS_CASES = [
    # ---------------------------------------------------------------- every listed word
    *[
        Case(f"word-{word}", {"status": word, "video_url": V}, status)
        for word, status in STATUS_WORDS.items()
        if status is not TaskStatus.COMPLETED
    ],
    *[
        Case(f"word-{word}", {"status": word, "video_url": V}, TaskStatus.COMPLETED, urls=(V,))
        for word, status in STATUS_WORDS.items()
        if status is TaskStatus.COMPLETED
    ],
    # case-insensitive, separators
    Case("upper-IN_PROGRESS", {"status": "IN_PROGRESS"}, TaskStatus.IN_PROGRESS),
    Case("mixed-Succeeded", {"status": "Succeeded", "url": V}, TaskStatus.COMPLETED, urls=(V,)),
    Case("NOT_START", {"status": "NOT_START"}, TaskStatus.QUEUED),
    Case("in-progress-dash", {"status": "in-progress"}, TaskStatus.IN_PROGRESS),
    Case("CANCELED", {"status": "CANCELED"}, TaskStatus.CANCELLED),
    Case("status-key-task_status", {"task_status": "processing"}, TaskStatus.IN_PROGRESS),
    Case("status-key-state", {"state": "RUNNING"}, TaskStatus.IN_PROGRESS),
    # ---------------------------------------------------------------- unknown words
    Case("unknown-no-progress", {"status": "warming_up"}, TaskStatus.QUEUED, word="warming_up"),
    Case("unknown-with-progress", {"status": "rendering", "progress": 30}, TaskStatus.IN_PROGRESS),
    Case(
        "unknown-keeps-previous-queued",
        {"status": "mystery", "progress": 40},
        TaskStatus.QUEUED,
        kwargs={"previous": TaskStatus.QUEUED},
    ),
    Case(
        "unknown-keeps-previous-in-progress",
        {"status": "mystery"},
        TaskStatus.IN_PROGRESS,
        kwargs={"previous": TaskStatus.IN_PROGRESS},
    ),
    Case(
        "unknown-ignores-terminal-previous",
        {"status": "mystery"},
        TaskStatus.QUEUED,
        kwargs={"previous": TaskStatus.COMPLETED},
    ),
    Case("numeric-status-word", {"status": 3}, TaskStatus.QUEUED, word="3"),
    # ---------------------------------------------------------------- URL + 100% wins
    Case(
        "url-and-100-beats-unknown-word",
        {"status": "postprocessing", "progress": 100, "video_url": V},
        TaskStatus.COMPLETED,
        urls=(V,),
    ),
    Case(
        "url-and-100pct-beats-processing",
        {"status": "processing", "progress": "100%", "video_url": V},
        TaskStatus.COMPLETED,
        urls=(V,),
    ),
    Case(
        "url-and-100-beats-failed-word",
        {"status": "failed", "progress": 100, "url": V},
        TaskStatus.COMPLETED,
        urls=(V,),
    ),
    Case(
        "url-below-100-keeps-word",
        {"status": "processing", "progress": 99, "video_url": V},
        TaskStatus.IN_PROGRESS,
        progress=99,
    ),
    # ---------------------------------------------------------------- progress
    Case("progress-int", {"status": "processing", "progress": 45}, TaskStatus.IN_PROGRESS, 45),
    Case("progress-float", {"status": "processing", "progress": 45.7}, TaskStatus.IN_PROGRESS, 45),
    Case("progress-pct", {"status": "processing", "progress": "45%"}, TaskStatus.IN_PROGRESS, 45),
    Case("progress-str", {"status": "processing", "progress": "45"}, TaskStatus.IN_PROGRESS, 45),
    Case("progress-over", {"status": "processing", "progress": 250}, TaskStatus.IN_PROGRESS, 100),
    Case("progress-neg", {"status": "processing", "progress": -5}, TaskStatus.IN_PROGRESS, 0),
    Case(
        "progress-junk", {"status": "processing", "progress": "n/a"}, TaskStatus.IN_PROGRESS, None
    ),
    Case(
        "completed-sets-100",
        {"status": "success", "url": V, "progress": 90},
        TaskStatus.COMPLETED,
        100,
    ),
    # ---------------------------------------------------------------- result places
    Case(
        "result-video_url", {"status": "success", "video_url": V}, TaskStatus.COMPLETED, urls=(V,)
    ),
    Case("result-videoUrl", {"status": "success", "videoUrl": V}, TaskStatus.COMPLETED, urls=(V,)),
    Case("result-url", {"status": "success", "url": V}, TaskStatus.COMPLETED, urls=(V,)),
    Case(
        "result-result_url", {"status": "success", "result_url": V}, TaskStatus.COMPLETED, urls=(V,)
    ),
    Case("result-output-str", {"status": "success", "output": V}, TaskStatus.COMPLETED, urls=(V,)),
    Case(
        "result-output-obj-url",
        {"status": "success", "output": {"url": V}},
        TaskStatus.COMPLETED,
        urls=(V,),
    ),
    Case(
        "result-output-obj-video_url",
        {"status": "success", "output": {"video_url": V}},
        TaskStatus.COMPLETED,
        urls=(V,),
    ),
    Case(
        "result-output-list",
        {"status": "success", "output": [V, V + "?2"]},
        TaskStatus.COMPLETED,
        urls=(V, V + "?2"),
    ),
    Case(
        "result-data-video_url",
        {"task_id": "t", "data": {"status": "SUCCESS", "video_url": V}},
        TaskStatus.COMPLETED,
        urls=(V,),
    ),
    Case(
        "result-data-output",
        {"status": "SUCCESS", "data": {"output": V}},
        TaskStatus.COMPLETED,
        urls=(V,),
    ),
    Case(
        "result-data-output-obj",
        {"status": "SUCCESS", "data": {"output": {"video_url": V}}},
        TaskStatus.COMPLETED,
        urls=(V,),
    ),
    Case(
        "result-ark-content",
        {"id": "cgt-1", "status": "succeeded", "content": {"video_url": V}},
        TaskStatus.COMPLETED,
        urls=(V,),
    ),
    Case(
        "result-kling",
        {
            "code": 0,
            "message": "SUCCEED",
            "data": {
                "task_id": "k1",
                "task_status": "succeed",
                "task_result": {"videos": [{"id": "v", "url": V, "duration": "5"}]},
            },
        },
        TaskStatus.COMPLETED,
        urls=(V,),
    ),
    Case(
        "result-images-data-url",
        {"created": 1700000000, "data": [{"url": "https://i/a.png"}, {"url": "https://i/b.png"}]},
        TaskStatus.COMPLETED,
        urls=("https://i/a.png", "https://i/b.png"),
        kwargs={"kind": "image"},
        times={"submitted_at": T0},
    ),
    Case(
        "result-images-b64_json",
        {"created": 1700000000, "data": [{"b64_json": PNG_B64}, {"b64_json": JPEG_B64}]},
        TaskStatus.COMPLETED,
        urls=(),
        b64_types=("image/png", "image/jpeg"),
        kwargs={"kind": "image"},
    ),
    Case(
        "result-video_base64",
        {"status": "completed", "video_base64": MP4_B64},
        TaskStatus.COMPLETED,
        urls=(),
        b64_types=("video/mp4",),
    ),
    Case(
        "result-top-b64_json",
        {"status": "completed", "b64_json": PNG_B64},
        TaskStatus.COMPLETED,
        b64_types=("image/png",),
        kwargs={"kind": "image"},
    ),
    Case(
        "result-data-uri-url",
        {"status": "completed", "url": f"data:image/png;base64,{PNG_B64}"},
        TaskStatus.COMPLETED,
        urls=(),
        b64_types=("image/png",),
        kwargs={"kind": "image"},
    ),
    Case(
        "result-new-api-nested",
        {
            "code": "success",
            "message": "",
            "data": {
                "task_id": "t",
                "status": "SUCCESS",
                "progress": "100%",
                "fail_reason": "",
                "data": {"status": "completed", "video_url": V},
            },
        },
        TaskStatus.COMPLETED,
        urls=(V,),
        word="SUCCESS",
    ),
    Case(
        "result-url-in-fail_reason",
        {"status": "SUCCESS", "progress": "100%", "fail_reason": V},
        TaskStatus.COMPLETED,
        urls=(V,),
    ),
    Case(
        "result-dedup",
        {"status": "success", "output": [V, V]},
        TaskStatus.COMPLETED,
        urls=(V,),
    ),
    Case(
        "relative-url-ignored",
        {"status": "success", "url": "/files/v.mp4"},
        TaskStatus.FAILED,
        error_code="no_result",
    ),
    Case("no-word-no-result", {"task_id": "t"}, TaskStatus.QUEUED),
    Case(
        "completed-without-result",
        {"status": "succeeded"},
        TaskStatus.FAILED,
        error_code="no_result",
    ),
    Case(
        "completed-without-result-allowed",
        {"status": "completed"},
        TaskStatus.COMPLETED,
        urls=(),
        kwargs={"require_results": False},
    ),
    # ---------------------------------------------------------------- envelopes
    *[
        Case(
            f"envelope-ok-code-{code!r}",
            {"code": code, "message": "ok", "data": {"status": "processing", "progress": 5}},
            TaskStatus.IN_PROGRESS,
            progress=5,
        )
        for code in ("success", "SUCCESS", 0, "0", 200, "200")
    ],
    *[
        Case(
            f"envelope-error-code-{code!r}",
            {"code": code, "message": "task not found", "data": None},
            TaskStatus.FAILED,
            error_contains="task not found",
            word=None,
        )
        for code in ("error", 1, "500", 40001, "invalid_request")
    ],
    Case(
        "envelope-error-without-message",
        {"code": 1234},
        TaskStatus.FAILED,
        error_code="1234",
        error_contains="1234",
    ),
    # ---------------------------------------------------------------- error fields
    Case(
        "error-fail_reason",
        {"status": "FAILURE", "fail_reason": "content policy"},
        TaskStatus.FAILED,
        error_contains="content policy",
        error_code="FAILURE",
    ),
    Case(
        "error-error-string",
        {"status": "failed", "error": "out of credits"},
        TaskStatus.FAILED,
        error_contains="out of credits",
    ),
    Case(
        "error-error-object",
        {"status": "failed", "error": {"code": "moderation_blocked", "message": "blocked"}},
        TaskStatus.FAILED,
        error_code="moderation_blocked",
        error_contains="blocked",
    ),
    Case(
        "error-message",
        {"status": "error", "message": "bad prompt"},
        TaskStatus.FAILED,
        error_contains="bad prompt",
    ),
    Case(
        "error-detail",
        {"status": "failed", "detail": "invalid duration"},
        TaskStatus.FAILED,
        error_contains="invalid duration",
    ),
    Case(
        "error-detail-list",
        {"status": "failed", "detail": [{"msg": "field a"}, {"msg": "field b"}]},
        TaskStatus.FAILED,
        error_contains="field a; field b",
    ),
    Case(
        "error-task_status_msg",
        {"code": 0, "data": {"task_status": "failed", "task_status_msg": "risk control"}},
        TaskStatus.FAILED,
        error_contains="risk control",
    ),
    Case(
        "error-none-given",
        {"status": "failed"},
        TaskStatus.FAILED,
        error_code="failed",
        error_contains="reported a failure",
    ),
    Case(
        "error-expired",
        {"status": "expired"},
        TaskStatus.FAILED,
        error_code="expired",
    ),
    Case(
        "error-timeout",
        {"status": "TIMEOUT", "fail_reason": "took too long"},
        TaskStatus.FAILED,
        error_code="TIMEOUT",
        error_contains="took too long",
    ),
    Case(
        "error-without-word",
        {"id": "t", "error": {"code": "bad", "message": "broken"}},
        TaskStatus.FAILED,
        error_code="bad",
        error_contains="broken",
    ),
    Case(
        "error-null-not-failure",
        {"status": "processing", "error": None, "fail_reason": ""},
        TaskStatus.IN_PROGRESS,
    ),
    Case(
        "error-envelope-success-message-not-reason",
        {"code": "success", "message": "success", "data": {"status": "failed"}},
        TaskStatus.FAILED,
        error_contains="reported a failure",
    ),
    Case(
        "error-secret-scrubbed",
        {"status": "failed", "error": "key sk-live-abcdef123456 and SECRET-K3Y rejected"},
        TaskStatus.FAILED,
        error_contains="key sk-*** and *** rejected",
        kwargs={"secret": "SECRET-K3Y"},
    ),
    # ---------------------------------------------------------------- times
    Case(
        "times-seconds",
        {"status": "queued", "submit_time": 1700000000, "start_time": 1700000010},
        TaskStatus.QUEUED,
        times={"submitted_at": T0, "started_at": datetime(2023, 11, 14, 22, 13, 30, tzinfo=UTC)},
    ),
    Case(
        "times-milliseconds",
        {"status": "success", "url": V, "submit_time": 1700000000000, "finish_time": 1700000060000},
        TaskStatus.COMPLETED,
        times={"submitted_at": T0, "finished_at": datetime(2023, 11, 14, 22, 14, 20, tzinfo=UTC)},
    ),
    Case(
        "times-created_at-iso",
        {"status": "queued", "created_at": "2023-11-14T22:13:20Z"},
        TaskStatus.QUEUED,
        times={"submitted_at": T0},
    ),
    Case(
        "times-under-data-ms-string",
        {"code": "success", "data": {"status": "queued", "submit_time": "1700000000000"}},
        TaskStatus.QUEUED,
        times={"submitted_at": T0},
    ),
    Case(
        "times-zero-ignored",
        {"status": "queued", "submit_time": 0, "start_time": 0},
        TaskStatus.QUEUED,
        times={},
    ),
    # ---------------------------------------------------------------- Gemini operations
    Case(
        "gemini-running",
        {"name": "models/veo-3/operations/abc", "done": False},
        TaskStatus.IN_PROGRESS,
    ),
    Case(
        "gemini-no-done-field",
        {"name": "operations/abc", "metadata": {}},
        TaskStatus.IN_PROGRESS,
    ),
    Case(
        "gemini-done-samples",
        {
            "name": "operations/abc",
            "done": True,
            "response": {
                "generateVideoResponse": {
                    "generatedSamples": [
                        {"video": {"uri": "https://gen.googleapis.com/v1beta/files/a:download"}},
                        {"video": {"uri": "https://gen.googleapis.com/v1beta/files/b:download"}},
                    ]
                }
            },
        },
        TaskStatus.COMPLETED,
        progress=100,
        urls=(
            "https://gen.googleapis.com/v1beta/files/a:download",
            "https://gen.googleapis.com/v1beta/files/b:download",
        ),
    ),
    Case(
        "gemini-done-error",
        {"name": "operations/abc", "done": True, "error": {"code": 3, "message": "bad prompt"}},
        TaskStatus.FAILED,
        error_code="3",
        error_contains="bad prompt",
    ),
    Case(
        "gemini-done-filtered",
        {
            "name": "operations/abc",
            "done": True,
            "response": {"generateVideoResponse": {"raiMediaFilteredReasons": ["unsafe content"]}},
        },
        TaskStatus.FAILED,
        error_code="content_filtered",
        error_contains="unsafe content",
    ),
    Case(
        "gemini-done-empty",
        {"name": "operations/abc", "done": True, "response": {}},
        TaskStatus.FAILED,
        error_code="no_result",
    ),
    # ---------------------------------------------------------------- OpenAI video object
    Case(
        "openai-queued",
        {"id": "video_1", "object": "video", "status": "queued", "progress": 0},
        TaskStatus.QUEUED,
        progress=0,
    ),
    Case(
        "openai-in-progress",
        {"id": "video_1", "object": "video", "status": "in_progress", "progress": 33},
        TaskStatus.IN_PROGRESS,
        progress=33,
    ),
    Case(
        "openai-completed",
        {
            "id": "video_1",
            "object": "video",
            "status": "completed",
            "progress": 100,
            "created_at": 1700000000,
            "completed_at": 1700000060,
            "error": None,
        },
        TaskStatus.COMPLETED,
        urls=(),
        kwargs={"require_results": False},
        times={
            "submitted_at": T0,
            "finished_at": datetime(2023, 11, 14, 22, 14, 20, tzinfo=UTC),
        },
    ),
    Case(
        "openai-failed",
        {
            "id": "video_1",
            "object": "video",
            "status": "failed",
            "error": {"code": "moderation_blocked", "message": "The prompt was blocked"},
        },
        TaskStatus.FAILED,
        error_code="moderation_blocked",
        error_contains="The prompt was blocked",
    ),
    # ---------------------------------------------------------------- Ark task object
    Case(
        "ark-running",
        {"id": "cgt-1", "model": "seedance", "status": "running", "created_at": 1700000000},
        TaskStatus.IN_PROGRESS,
        times={"submitted_at": T0},
    ),
    Case(
        "ark-expired",
        {"id": "cgt-1", "status": "expired", "error": {"code": "Expired", "message": "expired"}},
        TaskStatus.FAILED,
        error_code="Expired",
    ),
    Case("ark-cancelled", {"id": "cgt-1", "status": "cancelled"}, TaskStatus.CANCELLED),
]


@pytest.mark.parametrize("case", STATUS_CASES, ids=[c.id for c in STATUS_CASES])
def test_normalize_status(case: Case) -> None:
    result = normalize_status(case.payload, **case.kwargs)

    assert result.status is case.status
    if case.progress != "any":
        assert result.progress == case.progress
    if case.urls is not None:
        assert tuple(r.url for r in result.results if r.url) == case.urls
    if case.b64_types is not None:
        inline = [r for r in result.results if r.b64_data]
        assert tuple(r.content_type for r in inline) == case.b64_types
    if case.status is TaskStatus.COMPLETED:
        assert result.progress == 100
        assert result.error is None
    else:
        assert result.results == ()
    if case.status is TaskStatus.FAILED:
        assert result.error is not None
        if case.error_code is not None:
            assert result.error.code == case.error_code
        if case.error_contains is not None:
            assert case.error_contains in result.error.message
    else:
        assert result.error is None
    for name, expected in case.times.items():
        assert getattr(result, name) == expected, name
    if not case.times and case.id == "times-zero-ignored":
        assert result.submitted_at is None
        assert result.started_at is None
    if case.word is not False:
        assert result.upstream_status == case.word


def test_every_listed_word_is_mapped() -> None:
    expected = {
        TaskStatus.QUEUED: "queued pending submitted not_start preparing waiting",
        TaskStatus.IN_PROGRESS: "processing in_progress running generating started",
        TaskStatus.COMPLETED: "completed success succeeded succeed ok done finished",
        TaskStatus.FAILED: "failed failure fail error timeout expired rejected",
        TaskStatus.CANCELLED: "cancelled canceled",
    }
    for status, words in expected.items():
        for word in words.split():
            for variant in (word, word.upper(), word.title()):
                assert normalize_status({"status": variant, "url": V}).status is status, variant


def test_unknown_word_is_logged_at_info(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="app.clients.normalize"):
        normalize_status({"status": "Quantum_Flux"})
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert any("Quantum_Flux" in m for m in messages)


def test_known_word_is_not_logged_as_unknown(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="app.clients.normalize"):
        normalize_status({"status": "running"})
    assert not [r for r in caplog.records if "not recognised" in r.getMessage()]


def test_raw_is_compacted() -> None:
    big = "A" * 5000
    result = normalize_status({"created": 1, "data": [{"b64_json": big}]}, kind="image")
    assert result.results[0].b64_data == big
    assert result.raw is not None
    assert result.raw["data"][0]["b64_json"] == "<5000 characters omitted>"


@pytest.mark.parametrize("payload", [None, [], [{"status": "ok"}], "completed", 42, True], ids=repr)
def test_non_object_payloads_are_malformed(payload: Any) -> None:
    with pytest.raises(UpstreamMalformed) as info:
        normalize_status(payload)
    assert info.value.retryable is True
    with pytest.raises(UpstreamMalformed):
        find_task_id(payload)


ID_CASES = [
    ({"task_id": "abc"}, "abc"),
    ({"taskId": "abc"}, "abc"),
    ({"id": "abc"}, "abc"),
    ({"id": 12345}, "12345"),
    ({"data": {"task_id": "abc"}}, "abc"),
    ({"data": {"id": "abc"}}, "abc"),
    ({"code": "success", "message": "", "data": {"task_id": "abc"}}, "abc"),
    ({"code": 0, "message": "SUCCEED", "data": {"task_id": "kling-1"}}, "kling-1"),
    ({"code": "success", "message": "", "data": "task_xyz"}, "task_xyz"),
    ({"code": 200, "data": {"id": "veo:abc/def"}}, "veo:abc/def"),
    ({"name": "operations/op-1", "done": False}, "operations/op-1"),
    ({"id": "video_1", "object": "video", "status": "queued"}, "video_1"),
    ({"task_id": "  spaced  "}, "spaced"),
]


@pytest.mark.parametrize(("payload", "expected"), ID_CASES, ids=[repr(c[0]) for c in ID_CASES])
def test_extract_task_id(payload: Any, expected: str) -> None:
    assert extract_task_id(payload) == expected


@pytest.mark.parametrize(
    "payload", [{}, {"task_id": ""}, {"task_id": None}, {"data": []}, {"created": 1, "data": []}]
)
def test_extract_task_id_missing_is_malformed(payload: Any) -> None:
    assert find_task_id(payload) is None
    with pytest.raises(UpstreamMalformed):
        extract_task_id(payload)


def test_extract_task_id_error_envelope_is_rejected_with_reason() -> None:
    with pytest.raises(UpstreamRejected) as info:
        extract_task_id(
            {"code": "quota_exceeded", "message": "insufficient quota for KEY-123", "data": None},
            secret="KEY-123",
        )
    assert "insufficient quota" in info.value.message
    assert "KEY-123" not in str(info.value)
    assert info.value.retryable is False


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 0),
        (45, 45),
        (45.9, 45),
        ("45%", 45),
        (" 45 % ", 45),
        ("45", 45),
        ("45.5%", 45),
        (101, 100),
        (-1, 0),
        ("abc", None),
        ("", None),
        (None, None),
        (True, None),
        ({"p": 1}, None),
        (float("nan"), None),
    ],
)
def test_parse_progress(value: Any, expected: int | None) -> None:
    assert parse_progress(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1700000000, T0),
        (1700000000.0, T0),
        (1700000000000, T0),
        ("1700000000", T0),
        ("1700000000000", T0),
        ("2023-11-14T22:13:20Z", T0),
        ("2023-11-14T22:13:20+00:00", T0),
        ("2023-11-14T22:13:20", T0),
        ("2023-11-15T00:13:20+02:00", T0),
        (0, None),
        (-5, None),
        ("", None),
        ("yesterday", None),
        (None, None),
        (True, None),
    ],
)
def test_parse_time(value: Any, expected: datetime | None) -> None:
    assert parse_time(value) == expected
