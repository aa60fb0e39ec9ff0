"""Veo through an aggregator (`/v1/video/veo/...`), over real HTTP."""

from __future__ import annotations

import httpx

from app.clients.base import GenerationRequest, InputImage, TaskStatus, UpstreamCredentials
from tests.clients.fakes import FakeUpstream, Reply
from tests.clients.specs import PNG_BYTES, SPECS, VIDEO_URL

SPEC = SPECS["veo"]


async def test_text_to_video(
    fake: FakeUpstream, http_client: httpx.AsyncClient, credentials: UpstreamCredentials
) -> None:
    adapter = SPEC.adapter(http_client)
    fake.script(
        "POST",
        "/v1/video/veo/text-to-video",
        Reply(json={"code": "success", "message": "", "data": {"task_id": "veo3:abc"}}),
    )
    request = GenerationRequest(
        kind="video",
        model="veo3-fast",
        prompt="waves",
        params={"duration": "8", "aspect_ratio": "16:9", "resolution": "1080p"},
    )

    submission = await adapter.submit(request, credentials)

    assert submission.upstream_id == "veo3:abc"
    body = fake.hits("POST", "/v1/video/veo/text-to-video")[0].json
    assert body == {
        "model": "veo3-fast",
        "prompt": "waves",
        "duration": 8,
        "aspect_ratio": "16:9",
        "resolution": "1080p",
    }


async def test_image_to_video_sends_the_image(
    fake: FakeUpstream, http_client: httpx.AsyncClient, credentials: UpstreamCredentials
) -> None:
    adapter = SPEC.adapter(http_client)
    fake.script("POST", "/v1/video/veo/image-to-video", Reply(json={"id": "veo-2"}))
    with_bytes = GenerationRequest(
        kind="video",
        model="veo3",
        prompt="animate",
        images=(InputImage(data=PNG_BYTES),),
    )
    with_url = GenerationRequest(
        kind="video", model="veo3", prompt="animate", images=(InputImage(url="https://i/x.jpg"),)
    )

    await adapter.submit(with_bytes, credentials)
    await adapter.submit(with_url, credentials)

    first, second = fake.hits("POST", "/v1/video/veo/image-to-video")
    assert first.json["image"].startswith("data:image/png;base64,")
    assert second.json["image"] == "https://i/x.jpg"
    assert fake.hits("POST", "/v1/video/veo/text-to-video") == []


async def test_poll_to_completion_failure_expiry_cancel(
    fake: FakeUpstream, http_client: httpx.AsyncClient, credentials: UpstreamCredentials
) -> None:
    adapter = SPEC.adapter(http_client)
    path = "/v1/video/veo/tasks/veo3%3Aabc"
    fake.script(
        "GET",
        path,
        Reply(json={"code": "success", "data": {"status": "NOT_START", "progress": "0%"}}),
        Reply(json={"code": "success", "data": {"status": "IN_PROGRESS", "progress": "50%"}}),
        Reply(
            json={
                "code": "success",
                "data": {"status": "SUCCESS", "progress": "100%", "data": {"video_url": VIDEO_URL}},
            }
        ),
    )
    fake.script(
        "GET",
        "/v1/video/veo/tasks/bad",
        Reply(json={"code": "success", "data": {"status": "FAILURE", "fail_reason": "blocked"}}),
    )
    fake.script("GET", "/v1/video/veo/tasks/old", Reply(json={"status": "expired"}))
    fake.script("GET", "/v1/video/veo/tasks/gone", Reply(json={"status": "canceled"}))
    fake.script(
        "GET",
        "/v1/video/veo/tasks/missing",
        Reply(json={"code": "task_not_exist", "message": "task does not exist", "data": None}),
    )

    seen = [await adapter.poll("veo3:abc", credentials) for _ in range(3)]
    failed = await adapter.poll("bad", credentials)
    expired = await adapter.poll("old", credentials)
    cancelled = await adapter.poll("gone", credentials)
    missing = await adapter.poll("missing", credentials)

    assert [s.status for s in seen] == [
        TaskStatus.QUEUED,
        TaskStatus.IN_PROGRESS,
        TaskStatus.COMPLETED,
    ]
    assert [s.progress for s in seen] == [0, 50, 100]
    assert seen[-1].results[0].url == VIDEO_URL
    assert failed.status is TaskStatus.FAILED
    assert failed.error is not None
    assert failed.error.message == "blocked"
    assert expired.status is TaskStatus.FAILED
    assert cancelled.status is TaskStatus.CANCELLED
    assert missing.status is TaskStatus.FAILED
    assert missing.error is not None
    assert missing.error.message == "task does not exist"


async def test_cancel_sends_nothing(
    fake: FakeUpstream, http_client: httpx.AsyncClient, credentials: UpstreamCredentials
) -> None:
    adapter = SPEC.adapter(http_client)
    assert adapter.supports_cancel is False
    await adapter.cancel("veo3:abc", credentials)
    assert fake.requests == []
