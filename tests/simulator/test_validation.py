"""Request validation an upstream performs: 400 with the upstream's reason."""

from __future__ import annotations

from typing import Any

import pytest

from tests.simulator.conftest import Harness


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"model": "sora-2", "hd": True}, "sora-2 does not support hd"),
        ({"model": "sora-2", "duration": 25}, "sora-2 does not support 25"),
        ({"model": "sora-2-pro", "duration": "25", "hd": True}, "hd is not available for 25"),
        ({"model": "sora-2", "duration": 12}, "duration must be one of 10, 15, 25"),
        ({"model": "sora-2", "duration": "ten"}, "duration must be a number"),
        ({"model": "sora-3"}, "model must be one of"),
        ({"model": "sora-2", "aspect_ratio": "1:1"}, "aspect_ratio must be one of"),
        ({"model": "sora-2", "hd": "yes"}, "hd must be a boolean"),
        ({"model": "sora-2", "images": ["ftp://x"]}, "images[0] must be an http(s) URL"),
        ({"model": "sora-2", "images": "https://x"}, "images must be a list"),
        ({"model": "sora-2", "notify_hook": "mailto:x"}, "notify_hook"),
    ],
)
async def test_sora_rules(asgi: Harness, body: dict[str, Any], reason: str) -> None:
    response = await asgi.client.post("/v2/videos/generations", json={"prompt": "p", **body})
    assert response.status_code == 400
    error = response.json()["error"]
    assert reason in error["message"]
    assert error["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    "body",
    [
        {"model": "sora-2-pro", "duration": 25, "hd": False},
        {"model": "sora-2-pro", "duration": "15", "hd": True, "watermark": True, "private": True},
        {"model": "sora-2", "duration": 10.0, "images": ["data:image/png;base64,AAAA"]},
        {"model": "sora-2", "notify_hook": "https://hooks.example/x"},
    ],
)
async def test_sora_accepts_valid_combinations(asgi: Harness, body: dict[str, Any]) -> None:
    response = await asgi.client.post("/v2/videos/generations", json={"prompt": "p", **body})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("path", "body", "reason"),
    [
        ("/v1/video/veo/image-to-video", {"model": "veo3"}, "image is required"),
        ("/v1/video/veo/text-to-video", {"model": "veo3", "resolution": "4k"}, "resolution"),
        ("/v1/video/veo/text-to-video", {"model": "veo3", "duration": 99}, "duration"),
        ("/v1/video/veo/text-to-video", {"prompt": ""}, "model is required"),
        ("/v1/video/seedance/image-to-video", {"model": "s"}, "image is required"),
        (
            "/v1/video/seedance/frames-to-video",
            {"model": "s", "first_frame": "https://x/a.png"},
            "last_frame is required",
        ),
        ("/v1/video/seedance/text-to-video", {"model": "s", "ratio": "5:1"}, "ratio"),
        ("/v1/video/seedance/text-to-video", {"model": "s", "seed": 2**40}, "seed"),
        ("/v1/video/seedance/text-to-video", {"model": "s", "camera_fixed": 1}, "camera_fixed"),
    ],
)
async def test_veo_and_seedance_rules(
    asgi: Harness, path: str, body: dict[str, Any], reason: str
) -> None:
    response = await asgi.client.post(path, json={"prompt": "p", **body})
    assert response.status_code == 400
    assert reason in response.json()["error"]["message"]


async def test_seedance_prompt_optional_for_images(asgi: Harness) -> None:
    response = await asgi.client.post(
        "/v1/video/seedance/image-to-video", json={"model": "s", "image": "https://x/a.png"}
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b"\xff\xfe"])
async def test_bad_json_is_400_not_500(asgi: Harness, raw: bytes) -> None:
    response = await asgi.client.post(
        "/v2/videos/generations", content=raw, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert "JSON" in response.json()["error"]["message"]
