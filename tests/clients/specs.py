"""What each adapter sends and where, for the tests shared by every adapter."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from app.clients.base import GenerationRequest, InputImage
from app.clients.registry import get_adapter
from app.clients.retry import RetryPolicy
from tests.clients.fakes import FAST_RETRY

PNG_BYTES = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"
    b"\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\xdac\xf8\xcf\xc0\xf0\x1f\x00\x05\x00\x01\xff\x89\x99"
    b"=\x1d\x00\x00\x00\x00IEND\xaeB`\x82"
)


@dataclass(frozen=True)
class AdapterSpec:
    name: str
    request: GenerationRequest
    create_path: str
    status_prefix: str | None  # None: synchronous, nothing to poll
    create_reply: Callable[[str], Any]
    done_reply: Callable[[str], Any]

    def status_path(self, upstream_id: str) -> str:
        assert self.status_prefix is not None
        return f"{self.status_prefix}/{quote(upstream_id, safe='')}"

    def adapter(
        self,
        http: httpx.AsyncClient,
        *,
        poll_retry: RetryPolicy = FAST_RETRY,
        submit_retry: RetryPolicy = FAST_RETRY,
        **options: Any,
    ) -> Any:
        return get_adapter(
            self.name, http, poll_retry=poll_retry, submit_retry=submit_retry, **options
        )


VIDEO_URL = "https://cdn.example/result.mp4"

SPECS: dict[str, AdapterSpec] = {
    "sora": AdapterSpec(
        name="sora",
        request=GenerationRequest(
            kind="video",
            model="sora-2",
            prompt="a cat surfing",
            params={"aspect_ratio": "16:9", "duration": 10, "hd": False},
        ),
        create_path="/v2/videos/generations",
        status_prefix="/v2/videos/generations",
        create_reply=lambda task_id: {"task_id": task_id},
        done_reply=lambda task_id: {
            "task_id": task_id,
            "status": "completed",
            "progress": 100,
            "video_url": VIDEO_URL,
        },
    ),
    "veo": AdapterSpec(
        name="veo",
        request=GenerationRequest(
            kind="video",
            model="veo3",
            prompt="waves",
            params={"duration": 8, "aspect_ratio": "16:9", "resolution": "720p"},
        ),
        create_path="/v1/video/veo/text-to-video",
        status_prefix="/v1/video/veo/tasks",
        create_reply=lambda task_id: {"code": "success", "message": "", "data": task_id},
        done_reply=lambda task_id: {
            "code": "success",
            "data": {"task_id": task_id, "status": "SUCCESS", "progress": "100%", "url": VIDEO_URL},
        },
    ),
    "seedance": AdapterSpec(
        name="seedance",
        request=GenerationRequest(
            kind="video",
            model="seedance-1-0-pro",
            prompt="a fox",
            params={"duration": 5, "ratio": "16:9", "resolution": "1080p"},
        ),
        create_path="/v1/video/seedance/text-to-video",
        status_prefix="/v1/video/seedance/tasks",
        create_reply=lambda task_id: {"id": task_id},
        done_reply=lambda task_id: {
            "id": task_id,
            "status": "succeeded",
            "content": {"video_url": VIDEO_URL},
        },
    ),
    "openai_sora": AdapterSpec(
        name="openai_sora",
        request=GenerationRequest(
            kind="video",
            model="sora-2",
            prompt="a lighthouse",
            params={"seconds": "8", "size": "1280x720"},
        ),
        create_path="/v1/videos",
        status_prefix="/v1/videos",
        create_reply=lambda task_id: {
            "id": task_id,
            "object": "video",
            "status": "queued",
            "progress": 0,
        },
        done_reply=lambda task_id: {
            "id": task_id,
            "object": "video",
            "status": "completed",
            "progress": 100,
            "error": None,
        },
    ),
    "images": AdapterSpec(
        name="images",
        request=GenerationRequest(
            kind="image", model="gpt-image-1", prompt="a red apple", params={"size": "1024x1024"}
        ),
        create_path="/v1/images/generations",
        status_prefix=None,
        create_reply=lambda _: {"created": 1700000000, "data": [{"url": "https://i/a.png"}]},
        done_reply=lambda _: None,
    ),
}

VIDEO_SPECS = [spec for spec in SPECS.values() if spec.status_prefix is not None]
ALL_SPECS = list(SPECS.values())


def reference_image() -> InputImage:
    return InputImage(data=PNG_BYTES, content_type="image/png", filename="ref.png")
