"""Sora through an aggregator (`/v2/videos/generations`), over real HTTP."""

from __future__ import annotations

import httpx

from app.clients.base import GenerationRequest, InputImage, TaskStatus, UpstreamCredentials
from app.clients.sora import SoraAdapter
from tests.clients.fakes import FakeUpstream, Reply
from tests.clients.specs import PNG_BYTES, SPECS, VIDEO_URL

SPEC = SPECS["sora"]
CREATE = "/v2/videos/generations"


async def test_submit_sends_the_documented_body(
    fake: FakeUpstream, http_client: httpx.AsyncClient, credentials: UpstreamCredentials
) -> None:
    adapter = SPEC.adapter(http_client)
    fake.script("POST", CREATE, Reply(json={"task_id": "sora-123"}))
    request = GenerationRequest(
        kind="video",
        model="sora-2-pro",
        prompt="a cat surfing",
        params={
            "aspect_ratio": "9:16",
            "duration": "15",
            "hd": True,
            "watermark": False,
            "private": "true",
        },
        images=(
            InputImage(url="https://img.example/ref.png"),
            InputImage(data=PNG_BYTES, content_type="image/png"),
        ),
        callback_url="https://gateway.example/hooks/upstream/abc",
    )

    submission = await adapter.submit(request, credentials)

    assert submission.upstream_id == "sora-123"
    assert submission.status is not None
    assert submission.status.status is TaskStatus.QUEUED
    (sent,) = fake.hits("POST", CREATE)
    body = sent.json
    assert body["model"] == "sora-2-pro"
    assert body["prompt"] == "a cat surfing"
    assert body["aspect_ratio"] == "9:16"
    assert body["duration"] == 15
    assert body["hd"] is True
    assert body["watermark"] is False
    assert body["private"] is True
    assert body["notify_hook"] == "https://gateway.example/hooks/upstream/abc"
    assert body["images"][0] == "https://img.example/ref.png"
    assert body["images"][1].startswith("data:image/png;base64,iVBORw0KGgo")
    assert sent.headers["content-type"] == "application/json"


async def test_submit_omits_absent_params(
    fake: FakeUpstream, http_client: httpx.AsyncClient, credentials: UpstreamCredentials
) -> None:
    adapter = SPEC.adapter(http_client)
    fake.script("POST", CREATE, Reply(json={"taskId": "t-2"}))
    request = GenerationRequest(kind="video", model="sora-2", prompt="p")

    submission = await adapter.submit(request, credentials)

    assert submission.upstream_id == "t-2"
    assert fake.hits("POST", CREATE)[0].json == {"model": "sora-2", "prompt": "p"}


async def test_poll_to_completion(
    fake: FakeUpstream, http_client: httpx.AsyncClient, credentials: UpstreamCredentials
) -> None:
    adapter = SPEC.adapter(http_client)
    path = f"{CREATE}/sora-123"
    fake.script(
        "GET",
        path,
        Reply(json={"task_id": "sora-123", "status": "queued", "progress": 0}),
        Reply(json={"task_id": "sora-123", "status": "in_progress", "progress": "35%"}),
        Reply(json={"task_id": "sora-123", "status": "in_progress", "progress": "80%"}),
        Reply(
            json={
                "task_id": "sora-123",
                "status": "completed",
                "progress": "100%",
                "video_url": VIDEO_URL,
                "finish_time": 1700000000,
            }
        ),
    )

    seen = [await adapter.poll("sora-123", credentials) for _ in range(4)]

    assert [s.status for s in seen] == [
        TaskStatus.QUEUED,
        TaskStatus.IN_PROGRESS,
        TaskStatus.IN_PROGRESS,
        TaskStatus.COMPLETED,
    ]
    assert [s.progress for s in seen] == [0, 35, 80, 100]
    assert seen[-1].results[0].url == VIDEO_URL
    assert seen[-1].results[0].requires_auth is False
    assert seen[-1].finished_at is not None


async def test_poll_failure_expiry_and_cancel(
    fake: FakeUpstream, http_client: httpx.AsyncClient, credentials: UpstreamCredentials
) -> None:
    adapter = SPEC.adapter(http_client)
    fake.script("GET", f"{CREATE}/f", Reply(json={"status": "FAILURE", "fail_reason": "nsfw"}))
    fake.script("GET", f"{CREATE}/e", Reply(json={"status": "expired"}))
    fake.script("GET", f"{CREATE}/c", Reply(json={"status": "cancelled"}))

    failed = await adapter.poll("f", credentials)
    expired = await adapter.poll("e", credentials)
    cancelled = await adapter.poll("c", credentials)

    assert failed.status is TaskStatus.FAILED
    assert failed.error is not None
    assert failed.error.message == "nsfw"
    assert expired.status is TaskStatus.FAILED
    assert expired.error is not None
    assert expired.error.code == "expired"
    assert cancelled.status is TaskStatus.CANCELLED


async def test_unknown_word_keeps_previous_status(
    fake: FakeUpstream, http_client: httpx.AsyncClient, credentials: UpstreamCredentials
) -> None:
    adapter = SPEC.adapter(http_client)
    fake.script("GET", f"{CREATE}/u", Reply(json={"status": "moderating", "progress": 10}))

    status = await adapter.poll("u", credentials, previous=TaskStatus.QUEUED)

    assert status.status is TaskStatus.QUEUED
    assert status.upstream_status == "moderating"


async def test_cancel_is_a_local_no_op(
    fake: FakeUpstream, http_client: httpx.AsyncClient, credentials: UpstreamCredentials
) -> None:
    adapter = SPEC.adapter(http_client)
    assert isinstance(adapter, SoraAdapter)
    assert adapter.supports_cancel is False

    await adapter.cancel("sora-123", credentials)

    assert fake.requests == []
