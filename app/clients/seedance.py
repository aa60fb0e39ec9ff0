"""Seedance through an aggregator: text-, image- or frames-to-video under `/v1/video/seedance`.

The mode follows the images: `first_frame`/`last_frame` roles (or two images) -> frames,
one image -> image, none -> text. Status at `GET /v1/video/seedance/tasks/{id}`; cancel only
with `cancel_via_delete` (see `TaskAdapter`).

Aggregators disagree on the ratio field (`ratio` like ByteDance Ark, or `aspect_ratio`), so
by default both are sent with the same value; `ratio_fields` narrows that per deployment.
"""

from __future__ import annotations

from typing import Any

import httpx

from app.clients.base import GenerationRequest, InputImage
from app.clients.http import TaskAdapter, as_bool, as_int, quote_id
from app.clients.retry import RetryPolicy

BASE_PATH = "/v1/video/seedance"
DEFAULT_RATIO_FIELDS = ("ratio", "aspect_ratio")


def _frames(images: tuple[InputImage, ...]) -> tuple[InputImage | None, InputImage | None]:
    first = next((image for image in images if image.role == "first_frame"), None)
    last = next((image for image in images if image.role == "last_frame"), None)
    if first is None and last is None and len(images) >= 2:
        return images[0], images[1]
    if first is None and last is not None:
        others = [image for image in images if image is not last]
        first = others[0] if others else None
    return first, last


class SeedanceAdapter(TaskAdapter):
    name = "seedance"
    supports_cancel = False
    synchronous = False

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        ratio_fields: tuple[str, ...] = DEFAULT_RATIO_FIELDS,
        cancel_via_delete: bool = False,
        poll_retry: RetryPolicy | None = None,
        submit_retry: RetryPolicy | None = None,
        timeout: httpx.Timeout | float | None = None,
    ) -> None:
        super().__init__(
            http,
            cancel_via_delete=cancel_via_delete,
            poll_retry=poll_retry,
            submit_retry=submit_retry,
            timeout=timeout,
        )
        self.ratio_fields = ratio_fields

    @staticmethod
    def mode(request: GenerationRequest) -> str:
        first, last = _frames(request.images)
        if first is not None and last is not None:
            return "frames-to-video"
        if request.images:
            return "image-to-video"
        return "text-to-video"

    def create_path(self, request: GenerationRequest) -> str:
        return f"{BASE_PATH}/{self.mode(request)}"

    def status_path(self, upstream_id: str) -> str:
        return f"{BASE_PATH}/tasks/{quote_id(upstream_id)}"

    def create_body(self, request: GenerationRequest) -> dict[str, Any]:
        params = request.params
        body: dict[str, Any] = {"model": request.model, "prompt": request.prompt}
        mode = self.mode(request)
        if mode == "frames-to-video":
            first, last = _frames(request.images)
            assert first is not None  # mode() checked both
            assert last is not None
            body["first_frame"] = first.as_data_uri()
            body["last_frame"] = last.as_data_uri()
        elif mode == "image-to-video":
            first, _ = _frames(request.images)
            body["image"] = (first or request.images[0]).as_data_uri()
        if params.get("duration") is not None:
            body["duration"] = as_int(params["duration"])
        ratio = params.get("ratio", params.get("aspect_ratio"))
        if ratio is not None:
            for key in self.ratio_fields:
                body[key] = ratio
        if params.get("resolution") is not None:
            body["resolution"] = params["resolution"]
        if params.get("seed") is not None:
            body["seed"] = as_int(params["seed"])
        for flag in ("camera_fixed", "watermark"):
            if params.get(flag) is not None:
                body[flag] = as_bool(params[flag])
        return body
