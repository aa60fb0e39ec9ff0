"""OpenAI Sora, official API (`/v1/videos`), over real HTTP."""

from __future__ import annotations

import httpx
import pytest

from app.clients.base import GenerationRequest, InputImage, TaskStatus, UpstreamCredentials
from app.clients.errors import UpstreamUnavailable
from tests.clients.fakes import API_KEY, FakeFile, FakeUpstream, Reply
from tests.clients.specs import PNG_BYTES, SPECS

SPEC = SPECS["openai_sora"]


def video(video_id: str, status: str, **extra: object) -> dict[str, object]:
    return {"id": video_id, "object": "video", "model": "sora-2", "status": status, **extra}


async def test_submit_is_multipart_with_input_reference(
    fake: FakeUpstream, http_client: httpx.AsyncClient, credentials: UpstreamCredentials
) -> None:
    adapter = SPEC.adapter(http_client)
    fake.script("POST", "/v1/videos", Reply(json=video("video_abc", "queued", progress=0)))
    request = GenerationRequest(
        kind="video",
        model="sora-2-pro",
        prompt="a lighthouse",
        params={"seconds": 12, "aspect_ratio": "9:16", "hd": True},
        images=(InputImage(data=PNG_BYTES, content_type="image/png", filename="ref.png"),),
    )

    submission = await adapter.submit(request, credentials)

    assert submission.upstream_id == "video_abc"
    assert submission.status is not None
    assert submission.status.status is TaskStatus.QUEUED
    (sent,) = fake.hits("POST", "/v1/videos")
    assert sent.headers["content-type"].startswith("multipart/form-data")
    assert sent.fields("model") == ["sora-2-pro"]
    assert sent.fields("prompt") == ["a lighthouse"]
    assert sent.fields("seconds") == ["12"]
    assert sent.fields("size") == ["1024x1792"]
    (reference,) = sent.fields("input_reference")
    assert isinstance(reference, FakeFile)
    assert reference.content == PNG_BYTES
    assert reference.content_type == "image/png"


async def test_submit_text_only_is_still_multipart(
    fake: FakeUpstream, http_client: httpx.AsyncClient, credentials: UpstreamCredentials
) -> None:
    adapter = SPEC.adapter(http_client)
    fake.script("POST", "/v1/videos", Reply(json=video("video_t", "queued")))

    await adapter.submit(
        GenerationRequest(
            kind="video",
            model="sora-2",
            prompt="p",
            params={"duration": "4", "aspect_ratio": "16:9"},
        ),
        credentials,
    )

    (sent,) = fake.requests
    assert sent.headers["content-type"].startswith("multipart/form-data")
    assert sent.fields("seconds") == ["4"]
    assert sent.fields("size") == ["1280x720"]
    assert sent.fields("input_reference") == []


@pytest.mark.parametrize("suffix", ["", "/", "/openai/"])
async def test_poll_to_completion_gives_authenticated_content_url(
    suffix: str, fake: FakeUpstream, http_client: httpx.AsyncClient
) -> None:
    adapter = SPEC.adapter(http_client)
    prefix = suffix.rstrip("/")
    credentials = UpstreamCredentials(base_url=fake.url + suffix, api_key=API_KEY)
    fake.script(
        "GET",
        f"{prefix}/v1/videos/video%3Aabc",
        Reply(json=video("video:abc", "queued", progress=0)),
        Reply(json=video("video:abc", "in_progress", progress=42)),
        Reply(
            json=video(
                "video:abc",
                "completed",
                progress=100,
                created_at=1700000000,
                completed_at=1700000090,
            )
        ),
    )

    seen = [await adapter.poll("video:abc", credentials) for _ in range(3)]

    assert [s.status for s in seen] == [
        TaskStatus.QUEUED,
        TaskStatus.IN_PROGRESS,
        TaskStatus.COMPLETED,
    ]
    assert [s.progress for s in seen] == [0, 42, 100]
    (result,) = seen[-1].results
    assert result.url == f"{fake.url}{prefix}/v1/videos/video%3Aabc/content"
    assert result.requires_auth is True
    assert result.content_type == "video/mp4"
    assert seen[-1].finished_at is not None
    assert seen[0].results == ()


async def test_poll_failure(
    fake: FakeUpstream, http_client: httpx.AsyncClient, credentials: UpstreamCredentials
) -> None:
    adapter = SPEC.adapter(http_client)
    fake.script(
        "GET",
        "/v1/videos/video_f",
        Reply(
            json=video("video_f", "failed", error={"code": "moderation_blocked", "message": "no"})
        ),
    )

    status = await adapter.poll("video_f", credentials)

    assert status.status is TaskStatus.FAILED
    assert status.error is not None
    assert (status.error.code, status.error.message) == ("moderation_blocked", "no")
    assert status.results == ()


async def test_cancel_deletes(
    fake: FakeUpstream, http_client: httpx.AsyncClient, credentials: UpstreamCredentials
) -> None:
    adapter = SPEC.adapter(http_client)
    assert adapter.supports_cancel is True
    fake.script(
        "DELETE",
        "/v1/videos/video%2Fx",
        Reply(status=500, body="oops"),
        Reply(json={"id": "video/x", "object": "video.deleted", "deleted": True}),
    )

    await adapter.cancel("video/x", credentials)

    assert len(fake.hits("DELETE", "/v1/videos/video%2Fx")) == 2


async def test_cancel_of_missing_video_is_fine_but_outage_raises(
    fake: FakeUpstream, http_client: httpx.AsyncClient, credentials: UpstreamCredentials
) -> None:
    adapter = SPEC.adapter(http_client)
    fake.script("DELETE", "/v1/videos/gone", Reply(status=404, json={"error": {"message": "nf"}}))
    fake.script("DELETE", "/v1/videos/down", Reply(status=503, body="down"))
    fake.script("DELETE", "/v1/videos/empty", Reply(status=204))

    await adapter.cancel("gone", credentials)
    await adapter.cancel("empty", credentials)
    with pytest.raises(UpstreamUnavailable):
        await adapter.cancel("down", credentials)

    assert len(fake.hits("DELETE", "/v1/videos/gone")) == 1
    assert len(fake.hits("DELETE", "/v1/videos/down")) == 3
