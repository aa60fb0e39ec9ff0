"""ByteDance Ark (Volcano Engine), official API: Seedance video generation tasks.

- Create: `POST /api/v3/contents/generations/tasks` with `{model, content: [{type: "text",
  text}, {type: "image_url", image_url: {url}, role?}], callback_url?, resolution, ratio,
  duration, seed, camera_fixed, watermark}` -> `{id}`.
- Status: `GET /api/v3/contents/generations/tasks/{id}` -> `{id, model, status: queued |
  running | cancelled | succeeded | failed | expired, content: {video_url}, usage,
  error: {code, message}, created_at, updated_at}` (times in epoch seconds).
- Cancel: `DELETE` on the same path. Ark cancels a task that is still queued and deletes the
  record of a finished one; a running task cannot be cancelled (the upstream refuses, and the
  refusal is raised as `UpstreamRejected` for the engine to log).

Result URLs are pre-signed (no key needed) and expire after 24 h. Images travel as URLs or data
URIs in `content`, each with the role Ark expects: `first_frame`, `last_frame` or
`reference_image`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import httpx

from app.clients.base import (
    GenerationRequest,
    InputImage,
    MediaKind,
    TaskStatus,
    UpstreamCredentials,
    UpstreamStatus,
)
from app.clients.errors import UpstreamRejected
from app.clients.http import TaskAdapter, as_bool, as_int, quote_id
from app.clients.normalize import parse_time
from app.clients.retry import RetryPolicy

TASKS_PATH = "/api/v3/contents/generations/tasks"
FIRST_FRAME = "first_frame"
LAST_FRAME = "last_frame"
REFERENCE_IMAGE = "reference_image"
# Our image roles (and the words clients use for them) -> Ark's.
_ROLES = {
    "first_frame": FIRST_FRAME,
    "first": FIRST_FRAME,
    "last_frame": LAST_FRAME,
    "last": LAST_FRAME,
    "reference": REFERENCE_IMAGE,
    "reference_image": REFERENCE_IMAGE,
}
_INT_PARAMS = ("duration", "seed")
_BOOL_PARAMS = ("camera_fixed", "watermark")


def image_roles(images: tuple[InputImage, ...]) -> list[str]:
    """Ark's role for each image, in order.

    Explicit roles win. Without them: one image is the first frame, two are first and last
    frame, more are reference images (Ark's reference-image mode takes up to four).
    """
    explicit = [_ROLES.get((image.role or "").lower()) for image in images]
    if any(role is not None for role in explicit):
        # An image without a role next to frames is a reference, except a lone partner of a
        # last frame, which is the first frame.
        roles = [role or REFERENCE_IMAGE for role in explicit]
        if LAST_FRAME in roles and FIRST_FRAME not in roles and len(images) == 2:
            roles = [FIRST_FRAME if role == REFERENCE_IMAGE else role for role in roles]
        return roles
    if len(images) == 1:
        return [FIRST_FRAME]
    if len(images) == 2:
        return [FIRST_FRAME, LAST_FRAME]
    return [REFERENCE_IMAGE] * len(images)


class ArkAdapter(TaskAdapter):
    name = "ark"
    supports_cancel = True
    synchronous = False

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        poll_retry: RetryPolicy | None = None,
        submit_retry: RetryPolicy | None = None,
        timeout: httpx.Timeout | float | None = None,
    ) -> None:
        # Ark documents DELETE, so cancel is always on (unlike the aggregators).
        super().__init__(
            http,
            cancel_via_delete=True,
            poll_retry=poll_retry,
            submit_retry=submit_retry,
            timeout=timeout,
        )

    def create_path(self, request: GenerationRequest) -> str:
        return TASKS_PATH

    def status_path(self, upstream_id: str) -> str:
        return f"{TASKS_PATH}/{quote_id(upstream_id)}"

    def create_body(self, request: GenerationRequest) -> dict[str, Any]:
        params = request.params
        content: list[dict[str, Any]] = []
        if request.prompt:
            content.append({"type": "text", "text": request.prompt})
        for image, role in zip(request.images, image_roles(request.images), strict=True):
            url = image.as_data_uri()
            if url:
                content.append({"type": "image_url", "image_url": {"url": url}, "role": role})
        body: dict[str, Any] = {"model": request.model, "content": content}
        callback_url = request.callback_url or params.get("callback_url")
        if callback_url:
            body["callback_url"] = callback_url
        if params.get("resolution") is not None:
            body["resolution"] = params["resolution"]
        ratio = params.get("ratio", params.get("aspect_ratio"))
        if ratio is not None:
            body["ratio"] = ratio
        for key in _INT_PARAMS:
            if params.get(key) is not None:
                body[key] = as_int(params[key])
        for key in _BOOL_PARAMS:
            if params.get(key) is not None:
                body[key] = as_bool(params[key])
        return body

    async def poll(
        self,
        upstream_id: str,
        credentials: UpstreamCredentials,
        *,
        kind: MediaKind = "video",
        previous: TaskStatus | None = None,
    ) -> UpstreamStatus:
        status = await super().poll(upstream_id, credentials, kind=kind, previous=previous)
        return with_finish_time(status)

    async def cancel(self, upstream_id: str, credentials: UpstreamCredentials) -> None:
        """DELETE the task; one already gone (404) counts as cancelled."""
        try:
            await self.send_idempotent(
                "DELETE", self.status_path(upstream_id), credentials, allow_empty=True
            )
        except UpstreamRejected as exc:
            if exc.status_code != 404:
                raise


def with_finish_time(status: UpstreamStatus) -> UpstreamStatus:
    """Ark (and Kling) stamp only `updated_at`: on a terminal status that is the finish time."""
    if not status.status.is_terminal or status.finished_at is not None or not status.raw:
        return status
    finished = parse_time(status.raw.get("updated_at"))
    if finished is None and isinstance(status.raw.get("data"), dict):
        finished = parse_time(status.raw["data"].get("updated_at"))
    return replace(status, finished_at=finished) if finished is not None else status
