"""Seedance through an aggregator (`/v1/video/seedance/...`), over real HTTP."""

from __future__ import annotations

import httpx
import pytest

from app.clients.base import GenerationRequest, InputImage, TaskStatus, UpstreamCredentials
from tests.clients.fakes import FakeUpstream, Reply
from tests.clients.specs import PNG_BYTES, SPECS, VIDEO_URL

SPEC = SPECS["seedance"]
BASE = "/v1/video/seedance"
A = InputImage(url="https://i/a.png")
B = InputImage(url="https://i/b.png")


@pytest.mark.parametrize(
    ("images", "mode", "fields"),
    [
        ((), "text-to-video", {}),
        ((A,), "image-to-video", {"image": "https://i/a.png"}),
        (
            (InputImage(url="https://i/a.png", role="first_frame"),),
            "image-to-video",
            {"image": "https://i/a.png"},
        ),
        (
            (A, B),
            "frames-to-video",
            {"first_frame": "https://i/a.png", "last_frame": "https://i/b.png"},
        ),
        (
            (
                InputImage(url="https://i/last.png", role="last_frame"),
                InputImage(url="https://i/first.png", role="first_frame"),
            ),
            "frames-to-video",
            {"first_frame": "https://i/first.png", "last_frame": "https://i/last.png"},
        ),
    ],
    ids=["text", "image", "first-frame-only", "two-images", "roles"],
)
async def test_mode_follows_images(
    images: tuple[InputImage, ...],
    mode: str,
    fields: dict[str, str],
    fake: FakeUpstream,
    http_client: httpx.AsyncClient,
    credentials: UpstreamCredentials,
) -> None:
    adapter = SPEC.adapter(http_client)
    fake.script("POST", f"{BASE}/{mode}", Reply(json={"task_id": "sd-1"}))
    request = GenerationRequest(kind="video", model="seedance-pro", prompt="fox", images=images)

    submission = await adapter.submit(request, credentials)

    assert submission.upstream_id == "sd-1"
    (sent,) = fake.requests
    assert sent.raw_path == f"{BASE}/{mode}"
    for key, value in fields.items():
        assert sent.json[key] == value
    assert not ({"image", "first_frame", "last_frame"} - set(fields)) & set(sent.json)


async def test_body_params_and_ratio_fields(
    fake: FakeUpstream, http_client: httpx.AsyncClient, credentials: UpstreamCredentials
) -> None:
    fake.script("POST", f"{BASE}/image-to-video", Reply(json={"id": "sd-2"}))
    request = GenerationRequest(
        kind="video",
        model="seedance-1-0-pro",
        prompt="fox",
        params={
            "duration": "10",
            "ratio": "9:16",
            "resolution": "720p",
            "seed": "42",
            "camera_fixed": "false",
        },
        images=(InputImage(data=PNG_BYTES, content_type="image/png"),),
    )

    await SPEC.adapter(http_client).submit(request, credentials)
    await SPEC.adapter(http_client, ratio_fields=("ratio",)).submit(request, credentials)

    both, only_ratio = fake.hits("POST", f"{BASE}/image-to-video")
    assert both.json["ratio"] == "9:16"
    assert both.json["aspect_ratio"] == "9:16"
    assert both.json["duration"] == 10
    assert both.json["resolution"] == "720p"
    assert both.json["seed"] == 42
    assert both.json["camera_fixed"] is False
    assert both.json["image"].startswith("data:image/png;base64,")
    assert only_ratio.json["ratio"] == "9:16"
    assert "aspect_ratio" not in only_ratio.json


async def test_poll_ark_shapes(
    fake: FakeUpstream, http_client: httpx.AsyncClient, credentials: UpstreamCredentials
) -> None:
    adapter = SPEC.adapter(http_client)
    fake.script(
        "GET",
        f"{BASE}/tasks/cgt-1",
        Reply(json={"id": "cgt-1", "status": "queued", "created_at": 1700000000}),
        Reply(json={"id": "cgt-1", "status": "running", "created_at": 1700000000}),
        Reply(json={"id": "cgt-1", "status": "succeeded", "content": {"video_url": VIDEO_URL}}),
    )
    fake.script(
        "GET",
        f"{BASE}/tasks/cgt-2",
        Reply(json={"id": "cgt-2", "status": "failed", "error": {"code": "X", "message": "bad"}}),
    )
    fake.script("GET", f"{BASE}/tasks/cgt-3", Reply(json={"id": "cgt-3", "status": "expired"}))
    fake.script("GET", f"{BASE}/tasks/cgt-4", Reply(json={"id": "cgt-4", "status": "cancelled"}))

    seen = [await adapter.poll("cgt-1", credentials) for _ in range(3)]
    failed = await adapter.poll("cgt-2", credentials)
    expired = await adapter.poll("cgt-3", credentials)
    cancelled = await adapter.poll("cgt-4", credentials)

    assert [s.status for s in seen] == [
        TaskStatus.QUEUED,
        TaskStatus.IN_PROGRESS,
        TaskStatus.COMPLETED,
    ]
    assert seen[0].submitted_at is not None
    assert seen[-1].results[0].url == VIDEO_URL
    assert failed.error is not None
    assert (failed.status, failed.error.code, failed.error.message) == (
        TaskStatus.FAILED,
        "X",
        "bad",
    )
    assert expired.status is TaskStatus.FAILED
    assert cancelled.status is TaskStatus.CANCELLED
