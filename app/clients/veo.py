"""Veo through an aggregator: `/v1/video/veo/text-to-video`, or `/image-to-video` with an image.

Body: `{model, prompt, image?, duration, aspect_ratio, resolution}` (plus a few optional knobs
when the catalog supplies them); status at `GET /v1/video/veo/tasks/{id}`. Cancel only with
`cancel_via_delete` (see `TaskAdapter`).
"""

from __future__ import annotations

from typing import Any

from app.clients.base import GenerationRequest
from app.clients.http import TaskAdapter, as_bool, as_int, quote_id

BASE_PATH = "/v1/video/veo"
# Optional knobs forwarded only when present; the catalog decides which a model offers.
_PASSTHROUGH = ("aspect_ratio", "resolution", "negative_prompt")
_FLAGS = ("enhance_prompt", "generate_audio")


class VeoAdapter(TaskAdapter):
    name = "veo"
    supports_cancel = False
    synchronous = False

    def create_path(self, request: GenerationRequest) -> str:
        mode = "image-to-video" if request.images else "text-to-video"
        return f"{BASE_PATH}/{mode}"

    def status_path(self, upstream_id: str) -> str:
        return f"{BASE_PATH}/tasks/{quote_id(upstream_id)}"

    def create_body(self, request: GenerationRequest) -> dict[str, Any]:
        params = request.params
        body: dict[str, Any] = {"model": request.model, "prompt": request.prompt}
        if request.images:
            body["image"] = request.images[0].as_data_uri()
        if params.get("duration") is not None:
            body["duration"] = as_int(params["duration"])
        for key in _PASSTHROUGH:
            if params.get(key) is not None:
                body[key] = params[key]
        if params.get("seed") is not None:
            body["seed"] = as_int(params["seed"])
        for flag in _FLAGS:
            if params.get(flag) is not None:
                body[flag] = as_bool(params[flag])
        return body
