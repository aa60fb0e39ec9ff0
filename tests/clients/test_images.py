"""OpenAI-style images (`/v1/images/generations` JSON, `/v1/images/edits` multipart)."""

from __future__ import annotations

import httpx
import pytest

from app.clients.base import GenerationRequest, InputImage, TaskStatus, UpstreamCredentials
from app.clients.errors import UpstreamError, UpstreamRejected
from app.clients.images import ImagesAdapter
from tests.clients.fakes import FakeFile, FakeUpstream, Reply
from tests.clients.specs import PNG_BYTES, SPECS

SPEC = SPECS["images"]
GENERATIONS = "/v1/images/generations"
EDITS = "/v1/images/edits"
PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"


async def test_generation_sends_only_present_params(
    fake: FakeUpstream, http_client: httpx.AsyncClient, credentials: UpstreamCredentials
) -> None:
    adapter = SPEC.adapter(http_client)
    fake.script(
        "POST",
        GENERATIONS,
        Reply(
            json={
                "created": 1700000000,
                "data": [{"url": "https://i/1.png"}, {"url": "https://i/2.png"}],
            }
        ),
    )
    request = GenerationRequest(
        kind="image",
        model="nano-banana-2",
        prompt="an apple",
        n=2,
        params={"aspect_ratio": "16:9", "image_size": "2K", "response_format": "url"},
    )

    submission = await adapter.submit(request, credentials)

    assert fake.hits("POST", GENERATIONS)[0].json == {
        "model": "nano-banana-2",
        "prompt": "an apple",
        "n": 2,
        "aspect_ratio": "16:9",
        "image_size": "2K",
        "response_format": "url",
    }
    assert submission.upstream_id is None
    assert submission.status is not None
    assert submission.status.status is TaskStatus.COMPLETED
    assert [r.url for r in submission.status.results] == ["https://i/1.png", "https://i/2.png"]


async def test_generation_with_b64_results(
    fake: FakeUpstream, http_client: httpx.AsyncClient, credentials: UpstreamCredentials
) -> None:
    adapter = SPEC.adapter(http_client)
    fake.script(
        "POST",
        GENERATIONS,
        Reply(json={"created": 1, "data": [{"b64_json": PNG_B64, "revised_prompt": "x"}]}),
    )
    request = GenerationRequest(
        kind="image",
        model="gpt-image-1",
        prompt="p",
        params={"size": "1024x1024", "quality": "high", "response_format": "b64_json"},
    )

    submission = await adapter.submit(request, credentials)

    assert submission.status is not None
    (result,) = submission.status.results
    assert result.b64_data == PNG_B64
    assert result.content_type == "image/png"
    sent = fake.hits("POST", GENERATIONS)[0].json
    assert sent["size"] == "1024x1024"
    assert sent["quality"] == "high"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"created": 1, "data": []}, "no_result"),
        (
            {"error": {"code": "content_policy_violation", "message": "unsafe"}},
            "content_policy_violation",
        ),
    ],
    ids=["empty", "error-in-200"],
)
async def test_generation_without_images_fails(
    body: dict[str, object],
    code: str,
    fake: FakeUpstream,
    http_client: httpx.AsyncClient,
    credentials: UpstreamCredentials,
) -> None:
    adapter = SPEC.adapter(http_client)
    fake.script("POST", GENERATIONS, Reply(json=body))

    submission = await adapter.submit(SPEC.request, credentials)

    assert submission.status is not None
    assert submission.status.status is TaskStatus.FAILED
    assert submission.status.error is not None
    assert submission.status.error.code == code
    assert submission.status.results == ()


async def test_error_envelope_is_rejected(
    fake: FakeUpstream, http_client: httpx.AsyncClient, credentials: UpstreamCredentials
) -> None:
    adapter = SPEC.adapter(http_client)
    fake.script("POST", GENERATIONS, Reply(json={"code": "fail", "message": "overloaded"}))

    with pytest.raises(UpstreamRejected) as info:
        await adapter.submit(SPEC.request, credentials)

    assert info.value.message == "overloaded"
    assert info.value.upstream == "images"
    assert len(fake.hits("POST", GENERATIONS)) == 1


async def test_edits_multipart_with_images_and_mask(
    fake: FakeUpstream, http_client: httpx.AsyncClient, credentials: UpstreamCredentials
) -> None:
    adapter = SPEC.adapter(http_client)
    fake.script("POST", EDITS, Reply(json={"created": 1, "data": [{"url": "https://i/e.png"}]}))
    request = GenerationRequest(
        kind="image",
        model="gpt-image-1",
        prompt="add a hat",
        n=1,
        params={"size": "1024x1024", "image_size": "2K"},
        images=(
            InputImage(data=PNG_BYTES, content_type="image/png", filename="one.png"),
            InputImage(url="data:image/png;base64," + PNG_B64),
            InputImage(url="https://i/remote.jpg"),
        ),
        mask=InputImage(data=PNG_BYTES, filename="mask.png"),
    )

    submission = await adapter.submit(request, credentials)

    assert submission.status is not None
    assert submission.status.status is TaskStatus.COMPLETED
    (sent,) = fake.hits("POST", EDITS)
    assert sent.headers["content-type"].startswith("multipart/form-data")
    assert sent.fields("model") == ["gpt-image-1"]
    assert sent.fields("prompt") == ["add a hat"]
    assert sent.fields("n") == ["1"]
    assert sent.fields("size") == ["1024x1024"]
    assert sent.fields("image_size") == ["2K"]
    images = sent.fields("image")
    assert len(images) == 3
    assert isinstance(images[0], FakeFile)
    assert (images[0].filename, images[0].content, images[0].content_type) == (
        "one.png",
        PNG_BYTES,
        "image/png",
    )
    assert isinstance(images[1], FakeFile)
    assert images[1].content.startswith(b"\x89PNG")
    assert images[2] == "https://i/remote.jpg"
    (mask,) = sent.fields("mask")
    assert isinstance(mask, FakeFile)
    assert mask.content == PNG_BYTES
    assert fake.hits("POST", GENERATIONS) == []


async def test_edits_field_name_option(
    fake: FakeUpstream, http_client: httpx.AsyncClient, credentials: UpstreamCredentials
) -> None:
    adapter = SPEC.adapter(http_client, image_field="image[]")
    fake.script("POST", EDITS, Reply(json={"created": 1, "data": [{"url": "https://i/e.png"}]}))
    request = GenerationRequest(
        kind="image",
        model="seedream-4",
        prompt="merge",
        images=(InputImage(data=PNG_BYTES), InputImage(data=PNG_BYTES)),
    )

    await adapter.submit(request, credentials)

    (sent,) = fake.requests
    assert len(sent.fields("image[]")) == 2
    assert sent.fields("image") == []
    assert sent.fields("mask") == []


async def test_long_read_timeout_by_default(http_client: httpx.AsyncClient) -> None:
    adapter = ImagesAdapter(http_client)
    override = ImagesAdapter(http_client, timeout=httpx.Timeout(30.0, read=900.0))

    assert adapter.timeout is not None
    assert adapter.timeout.read is not None
    assert adapter.timeout.read >= 600.0
    assert adapter.timeout.read >= (http_client.timeout.read or 0)
    assert adapter.timeout.connect == http_client.timeout.connect
    assert override.timeout is not None
    assert override.timeout.read == 900.0


async def test_synchronous_slow_answer_is_awaited(
    fake: FakeUpstream, credentials: UpstreamCredentials
) -> None:
    """The client's own read timeout is shorter than the upstream's answer; the adapter's isn't."""
    async with httpx.AsyncClient(timeout=httpx.Timeout(0.3)) as client:
        adapter = ImagesAdapter(client, min_read_timeout=5.0)
        fake.script(
            "POST",
            GENERATIONS,
            Reply(json={"created": 1, "data": [{"url": "https://i/slow.png"}]}, delay=0.8),
        )
        submission = await adapter.submit(SPEC.request, credentials)

    assert submission.status is not None
    assert submission.status.status is TaskStatus.COMPLETED


async def test_poll_and_cancel_are_not_upstream_calls(
    fake: FakeUpstream, http_client: httpx.AsyncClient, credentials: UpstreamCredentials
) -> None:
    adapter = SPEC.adapter(http_client)
    assert adapter.synchronous is True
    assert adapter.supports_cancel is False

    with pytest.raises(UpstreamError) as info:
        await adapter.poll("anything", credentials)
    await adapter.cancel("anything", credentials)

    assert info.value.retryable is False
    assert fake.requests == []
