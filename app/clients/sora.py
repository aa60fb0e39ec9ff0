"""Sora (`sora-2`, `sora-2-pro`) through an aggregator: `POST /v2/videos/generations`.

Body: `{model, prompt, images?, aspect_ratio, duration, hd, watermark, private, notify_hook?}`;
the answer holds the task id, polled at `GET /v2/videos/generations/{id}`. No documented cancel
endpoint: `cancel` is a no-op unless `cancel_via_delete` (see `TaskAdapter`).
"""

from __future__ import annotations

from typing import Any

from app.clients.base import GenerationRequest
from app.clients.http import TaskAdapter, as_bool, as_int, quote_id

CREATE_PATH = "/v2/videos/generations"


class SoraAdapter(TaskAdapter):
    name = "sora"
    supports_cancel = False
    synchronous = False

    def create_path(self, request: GenerationRequest) -> str:
        return CREATE_PATH

    def status_path(self, upstream_id: str) -> str:
        return f"{CREATE_PATH}/{quote_id(upstream_id)}"

    def create_body(self, request: GenerationRequest) -> dict[str, Any]:
        params = request.params
        body: dict[str, Any] = {"model": request.model, "prompt": request.prompt}
        images = [uri for image in request.images if (uri := image.as_data_uri())]
        if images:
            body["images"] = images
        if params.get("aspect_ratio") is not None:
            body["aspect_ratio"] = params["aspect_ratio"]
        if params.get("duration") is not None:
            body["duration"] = as_int(params["duration"])
        for flag in ("hd", "watermark", "private"):
            if params.get(flag) is not None:
                body[flag] = as_bool(params[flag])
        notify_hook = request.callback_url or params.get("notify_hook")
        if notify_hook:
            body["notify_hook"] = notify_hook
        return body
