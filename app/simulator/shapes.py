"""Turn a task's state into the JSON one upstream dialect would send."""

from __future__ import annotations

import base64
from typing import Any

from app.simulator.config import ResponseVariant
from app.simulator.state import Phase, Task

_ERROR_CODES = {
    "failed": "generation_failed",
    "expired": "task_expired",
    "cancelled": "task_cancelled",
}
_FLAT_RESULTS = frozenset({"video_url", "videoUrl", "url", "result_url", "output"})
_ERROR_MESSAGES = {
    "expired": "task expired before it could run (simulated)",
    "cancelled": "task was cancelled upstream (simulated)",
}


def _time(value: float | None, variant: ResponseVariant) -> int | None:
    if value is None:
        return None
    return int(value * 1000) if variant.time_unit == "ms" else int(value)


def wrap(variant: ResponseVariant, payload: dict[str, Any]) -> dict[str, Any]:
    if not variant.envelope:
        return payload
    message = "SUCCEED" if variant.envelope_code == 0 else "success"
    return {"code": variant.envelope_code, "message": message, "data": payload}


def create_payload(task: Task, variant: ResponseVariant) -> dict[str, Any]:
    return wrap(variant, {variant.id_field: task.id})


def error_reason(task: Task, phase: Phase) -> str:
    if phase.state == "failed":
        return task.directives.fail or "generation failed (simulated)"
    return _ERROR_MESSAGES.get(phase.state, "task did not complete (simulated)")


def task_payload(
    task: Task,
    phase: Phase,
    variant: ResponseVariant,
    *,
    media_url: str | None,
    video_b64: bytes | None = None,
) -> dict[str, Any]:
    """The status document for one poll, in `variant`'s dialect."""
    body: dict[str, Any] = {variant.id_field: task.id, "model": task.model}
    if variant.status_field == "done":
        body["done"] = phase.is_terminal
    else:
        body[variant.status_field] = variant.word(phase.state)
    if variant.progress == "int":
        body["progress"] = phase.progress
    elif variant.progress == "percent":
        body["progress"] = f"{phase.progress}%"
    elif variant.progress == "float":
        body["progress"] = float(phase.progress)
    body["submit_time"] = _time(task.created_at, variant)
    body["created_at"] = _time(task.created_at, variant)
    body["start_time"] = _time(phase.started_at, variant)
    body["finish_time"] = _time(phase.finished_at, variant)
    if phase.state == "completed" and media_url is not None:
        _put_result(body, variant, media_url, video_b64, task)
    elif variant.result in _FLAT_RESULTS:
        # Flat fields are present but null until the result exists, as most aggregators do.
        body[variant.result] = None
    if phase.state in _ERROR_CODES:
        _put_error(body, variant, _ERROR_CODES[phase.state], error_reason(task, phase))
    return wrap(variant, body)


def _put_result(
    body: dict[str, Any], variant: ResponseVariant, url: str, video_b64: bytes | None, task: Task
) -> None:
    placement = variant.result
    if placement in _FLAT_RESULTS:
        body[placement] = url
    elif placement == "output.url":
        body["output"] = {"url": url}
    elif placement == "output.video_url":
        body["output"] = {"video_url": url}
    elif placement == "content.video_url":
        body["content"] = {"video_url": url}
    elif placement == "gemini":
        body["response"] = {
            "generateVideoResponse": {"generatedSamples": [{"video": {"uri": url}}]}
        }
    elif placement == "kling":
        body["task_result"] = {
            "videos": [{"id": task.media_id, "url": url, "duration": task.seconds or "5"}]
        }
    elif placement == "data_list":
        body["data"] = [{"url": url}]
    elif placement == "video_base64":
        body["video_base64"] = base64.b64encode(video_b64 or b"").decode("ascii")


def _put_error(body: dict[str, Any], variant: ResponseVariant, code: str, message: str) -> None:
    if variant.error == "error_obj":
        body["error"] = {"code": code, "message": message}
    else:
        body[variant.error] = message


def openai_video(task: Task, phase: Phase, ttl: float | None) -> dict[str, Any]:
    """The OpenAI `video` object (one dialect only: the official API)."""
    status = phase.state if phase.state in {"queued", "in_progress", "completed"} else "failed"
    error = None
    if status == "failed":
        error = {"code": _ERROR_CODES[phase.state], "message": error_reason(task, phase)}
    completed_at = (
        int(phase.finished_at) if phase.state == "completed" and phase.finished_at else None
    )
    expires_at = None
    if completed_at is not None and ttl is not None and phase.finished_at is not None:
        expires_at = int(phase.finished_at + ttl)
    return {
        "id": task.id,
        "object": "video",
        "model": task.model,
        "status": status,
        "progress": phase.progress,
        "created_at": int(task.created_at),
        "completed_at": completed_at,
        "expires_at": expires_at,
        "prompt": task.prompt,
        "size": task.size,
        "seconds": task.seconds,
        "remixed_from_video_id": task.remixed_from,
        "error": error,
    }


# ----- official provider APIs (one dialect each) -------------------------------------------------

_ARK_STATUS = {
    "queued": "queued",
    "in_progress": "running",
    "completed": "succeeded",
    "failed": "failed",
    "cancelled": "cancelled",
    "expired": "expired",
}
_KLING_STATUS = {
    "queued": "submitted",
    "in_progress": "processing",
    "completed": "succeed",
    "failed": "failed",
    # Kling has no cancelled or expired state: such a task is simply failed, with a reason.
    "cancelled": "failed",
    "expired": "failed",
}
# google.rpc.Code for the operation's `error`.
_GOOGLE_CODES = {"failed": 13, "expired": 4, "cancelled": 1}
GEMINI_RESPONSE_TYPE = (
    "type.googleapis.com/google.ai.generativelanguage.v1beta.PredictLongRunningResponse"
)


def _updated_at(task: Task, phase: Phase) -> float:
    return phase.finished_at or phase.started_at or task.created_at


def ark_task(task: Task, phase: Phase, *, media_url: str | None) -> dict[str, Any]:
    """ByteDance Ark's task object (`GET /api/v3/contents/generations/tasks/{id}`)."""
    body: dict[str, Any] = {
        "id": task.id,
        "model": task.model,
        "status": _ARK_STATUS[phase.state],
        "created_at": int(task.created_at),
        "updated_at": int(_updated_at(task, phase)),
        **task.echo,
        "framespersecond": 24,
    }
    if phase.state == "completed" and media_url is not None:
        body["content"] = {"video_url": media_url}
        tokens = int(task.echo.get("duration", 5)) * 21_780
        body["usage"] = {"completion_tokens": tokens, "total_tokens": tokens}
    if phase.state in ("failed", "expired"):
        body["error"] = {"code": _ERROR_CODES[phase.state], "message": error_reason(task, phase)}
    return body


def gemini_operation(
    task: Task, phase: Phase, *, name: str, video_uri: str | None
) -> dict[str, Any]:
    """A Gemini long-running operation: no `done` (and nothing else) until it has ended."""
    body: dict[str, Any] = {"name": name}
    if not phase.is_terminal:
        return body
    body["done"] = True
    if phase.state == "completed" and video_uri is not None:
        body["response"] = {
            "@type": GEMINI_RESPONSE_TYPE,
            "generateVideoResponse": {"generatedSamples": [{"video": {"uri": video_uri}}]},
        }
    elif phase.state in _GOOGLE_CODES:
        body["error"] = {"code": _GOOGLE_CODES[phase.state], "message": error_reason(task, phase)}
    return body


def kling_envelope(data: dict[str, Any] | None, request_id: str) -> dict[str, Any]:
    return {"code": 0, "message": "SUCCEED", "request_id": request_id, "data": data}


def kling_task(
    task: Task, phase: Phase, *, media_url: str | None, request_id: str
) -> dict[str, Any]:
    """Kling's task (`GET /v1/videos/{text2video|image2video}/{task_id}`), times in ms."""
    data: dict[str, Any] = {
        "task_id": task.id,
        "task_status": _KLING_STATUS[phase.state],
        "task_status_msg": "",
        "task_info": {},
        "created_at": int(task.created_at * 1000),
        "updated_at": int(_updated_at(task, phase) * 1000),
    }
    if phase.state == "completed" and media_url is not None:
        data["task_result"] = {
            "videos": [
                {"id": task.media_id, "url": media_url, "duration": task.echo.get("duration")}
            ]
        }
    elif phase.state in _ERROR_CODES:
        data["task_status_msg"] = error_reason(task, phase)
    return kling_envelope(data, request_id)
