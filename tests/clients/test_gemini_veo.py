"""Veo through the Gemini API (`predictLongRunning`): against the simulator over real HTTP and
against the scripted fake upstream.

The fake checks `Authorization: Bearer <key>`; Gemini sends `x-goog-api-key`. `GoogKeyShim`, a
transport in front of the real HTTP one, records what the adapter put on the wire and moves the
Google header to where the fake looks for it (a wrong key is forwarded as is, so the fake's 401
echoes it and the scrubbing is exercised).
"""

from __future__ import annotations

import base64
import logging
from collections.abc import AsyncIterator

import httpx
import pytest

from app.clients.base import GenerationRequest, InputImage, TaskStatus, UpstreamCredentials
from app.clients.errors import (
    UpstreamAuthError,
    UpstreamMalformed,
    UpstreamRejected,
    UpstreamUnavailable,
)
from app.clients.gemini_veo import GeminiVeoAdapter
from app.clients.registry import get_adapter
from tests.clients.fakes import API_KEY, FAST_RETRY, FakeUpstream, Reply
from tests.clients.specs import PNG_BYTES
from tests.simulator.conftest import API_KEY as SIM_KEY
from tests.simulator.conftest import LiveServer, png_bytes

MODEL = "veo-3.0-generate-001"
PREDICT = f"/v1beta/models/{MODEL}:predictLongRunning"
OPERATION = f"models/{MODEL}/operations/op123"
RESPONSE_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1beta.PredictLongRunningResponse"


class GoogKeyShim(httpx.AsyncBaseTransport):
    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.sent: list[httpx.Headers] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(httpx.Headers(request.headers))
        key = request.headers.pop("x-goog-api-key", None)
        if key is not None:
            request.headers["Authorization"] = f"Bearer {key}"
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def gemini(http: httpx.AsyncClient) -> GeminiVeoAdapter:
    adapter = get_adapter("gemini_veo", http, poll_retry=FAST_RETRY, submit_retry=FAST_RETRY)
    assert isinstance(adapter, GeminiVeoAdapter)
    return adapter


def request_for(prompt: str = "a lighthouse at dusk", **params: object) -> GenerationRequest:
    return GenerationRequest(kind="video", model=MODEL, prompt=prompt, params=params)


def done_operation(uri: str) -> dict[str, object]:
    return {
        "name": OPERATION,
        "done": True,
        "response": {
            "@type": RESPONSE_TYPE,
            "generateVideoResponse": {"generatedSamples": [{"video": {"uri": uri}}]},
        },
    }


@pytest.fixture
async def shim_client() -> AsyncIterator[tuple[httpx.AsyncClient, GoogKeyShim]]:
    shim = GoogKeyShim()
    async with httpx.AsyncClient(transport=shim, timeout=httpx.Timeout(5.0)) as client:
        yield client, shim


# ----- against the simulator ---------------------------------------------------------------------


async def test_submit_poll_and_authenticated_download(
    sim: LiveServer, sim_credentials: UpstreamCredentials, http_client: httpx.AsyncClient
) -> None:
    adapter = gemini(http_client)
    request = GenerationRequest(
        kind="video",
        model=f"models/{MODEL}",
        prompt="a lighthouse at dusk",
        params={
            "aspect_ratio": "9:16",
            "duration": "6",
            "negative_prompt": "people",
            "resolution": "720p",
        },
        images=(InputImage(data=png_bytes(32, 18), content_type="image/png"),),
    )

    submission = await adapter.submit(request, sim_credentials)

    assert submission.upstream_id is not None
    assert submission.upstream_id.startswith(f"models/{MODEL}/operations/")
    assert submission.status is not None
    assert submission.status.status is TaskStatus.QUEUED
    task = sim.simulator.store.tasks[submission.upstream_id.rsplit("/", 1)[1]]
    assert task.echo["parameters"] == {
        "aspectRatio": "9:16",
        "durationSeconds": 6,
        "negativePrompt": "people",
        "resolution": "720p",
    }
    assert task.width < task.height

    running = await adapter.poll(submission.upstream_id, sim_credentials)
    sim.clock.advance(10)
    done = await adapter.poll(submission.upstream_id, sim_credentials)

    assert running.status is TaskStatus.IN_PROGRESS
    assert running.progress is None  # Gemini reports none
    assert done.status is TaskStatus.COMPLETED
    (result,) = done.results
    assert result.url is not None
    assert result.url.startswith(f"{sim.base_url}/v1beta/files/")
    assert result.requires_auth is True
    # What the media downloader does with a `requires_auth` result: the adapter's headers.
    headers = adapter.download_headers(sim_credentials)
    assert headers == {"x-goog-api-key": SIM_KEY}
    video = await http_client.get(result.url, headers=headers)
    assert video.status_code == 200
    assert video.content[4:8] == b"ftyp"
    refused = await http_client.get(result.url)
    assert refused.status_code == 403


async def test_failure(
    sim: LiveServer, sim_credentials: UpstreamCredentials, http_client: httpx.AsyncClient
) -> None:
    adapter = gemini(http_client)
    submission = await adapter.submit(request_for("x [sim:fail=unsafe prompt]"), sim_credentials)
    assert submission.upstream_id is not None
    sim.clock.advance(10)

    status = await adapter.poll(submission.upstream_id, sim_credentials)

    assert status.status is TaskStatus.FAILED
    assert status.error is not None
    assert (status.error.code, status.error.message) == ("13", "unsafe prompt")


async def test_poll_recovers_from_429_and_5xx(
    sim: LiveServer, sim_credentials: UpstreamCredentials, http_client: httpx.AsyncClient
) -> None:
    sim.simulator.configure(retry_after=0)
    adapter = gemini(http_client)
    submission = await adapter.submit(
        request_for("flaky [sim:poll-429-n=1][sim:poll-503-n=1][sim:task-seconds=0]"),
        sim_credentials,
    )
    assert submission.upstream_id is not None

    status = await adapter.poll(submission.upstream_id, sim_credentials)

    assert status.status is TaskStatus.COMPLETED
    task = sim.simulator.store.tasks[submission.upstream_id.rsplit("/", 1)[1]]
    assert (task.polls, task.answered_polls) == (3, 1)


async def test_wrong_key_is_an_auth_error_and_never_leaks(
    sim: LiveServer, http_client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "AIzaSyWrongKey0123456789"
    credentials = UpstreamCredentials(base_url=sim.base_url, api_key=wrong)

    with pytest.raises(UpstreamAuthError) as info:
        await gemini(http_client).submit(request_for(), credentials)

    assert info.value.status_code == 400  # Google's answer to a wrong key
    assert "API key not valid" in info.value.message
    assert info.value.retryable is False
    assert sim.simulator.store.stats.creates == 0
    for text in (str(info.value), repr(info.value), info.value.body_snippet or ""):
        assert wrong not in text
    assert wrong not in caplog.text


async def test_link_image_is_refused_before_sending(
    sim: LiveServer, sim_credentials: UpstreamCredentials, http_client: httpx.AsyncClient
) -> None:
    request = GenerationRequest(
        kind="video", model=MODEL, prompt="p", images=(InputImage(url="https://i/a.png"),)
    )

    with pytest.raises(UpstreamRejected) as info:
        await gemini(http_client).submit(request, sim_credentials)

    assert info.value.reached_upstream is False
    assert "not a link" in info.value.message
    assert sim.simulator.store.stats.create_requests == 0


# ----- against the scripted fake -----------------------------------------------------------------


async def test_request_shape_and_auth_header(
    fake: FakeUpstream,
    shim_client: tuple[httpx.AsyncClient, GoogKeyShim],
    credentials: UpstreamCredentials,
) -> None:
    client, shim = shim_client
    fake.script("POST", PREDICT, Reply(json={"name": OPERATION}))
    request = GenerationRequest(
        kind="video",
        model=MODEL,
        prompt="from dawn to dusk",
        params={"aspect_ratio": "16:9", "duration": 8, "seed": "5", "enhance_prompt": True},
        images=(
            InputImage(url="data:image/png;base64," + base64.b64encode(PNG_BYTES).decode()),
            InputImage(data=PNG_BYTES, role="last_frame"),
            InputImage(data=b"\xff\xd8\xff\xe0jpeg", role="reference"),
        ),
    )

    submission = await gemini(client).submit(request, credentials)

    assert submission.upstream_id == OPERATION
    (headers,) = shim.sent
    assert headers["x-goog-api-key"] == API_KEY
    assert "authorization" not in headers
    (sent,) = fake.requests
    png = {"bytesBase64Encoded": base64.b64encode(PNG_BYTES).decode(), "mimeType": "image/png"}
    jpeg = {
        "bytesBase64Encoded": base64.b64encode(b"\xff\xd8\xff\xe0jpeg").decode(),
        "mimeType": "image/jpeg",
    }
    assert sent.json == {
        "instances": [
            {
                "prompt": "from dawn to dusk",
                "image": png,
                "lastFrame": png,
                "referenceImages": [{"image": jpeg, "referenceType": "asset"}],
            }
        ],
        # Knobs the Gemini API does not take (enhance_prompt) are not sent.
        "parameters": {"aspectRatio": "16:9", "durationSeconds": 8, "seed": 5},
    }


async def test_poll_path_and_result_origin(
    fake: FakeUpstream,
    shim_client: tuple[httpx.AsyncClient, GoogKeyShim],
    credentials: UpstreamCredentials,
) -> None:
    client, _ = shim_client
    adapter = gemini(client)
    own = f"{fake.url}/v1beta/files/abc:download?alt=media"
    foreign = "https://storage.example/abc.mp4"
    fake.script(
        "GET",
        f"/v1beta/{OPERATION}",
        Reply(json={"name": OPERATION}),
        Reply(json=done_operation(own)),
    )
    fake.script("GET", "/v1beta/models/veo/operations/foreign", Reply(json=done_operation(foreign)))

    running = await adapter.poll(OPERATION, credentials)
    done = await adapter.poll(OPERATION, credentials)
    elsewhere = await adapter.poll("models/veo/operations/foreign", credentials)

    assert running.status is TaskStatus.IN_PROGRESS
    assert done.status is TaskStatus.COMPLETED
    assert done.results[0].url == own
    assert done.results[0].requires_auth is True
    # The key only ever goes to the API's own origin.
    assert elsewhere.results[0].url == foreign
    assert elsewhere.results[0].requires_auth is False


async def test_filtered_and_failed_operations(
    fake: FakeUpstream,
    shim_client: tuple[httpx.AsyncClient, GoogKeyShim],
    credentials: UpstreamCredentials,
) -> None:
    client, _ = shim_client
    adapter = gemini(client)
    filtered = {
        "name": "models/veo/operations/f",
        "done": True,
        "response": {
            "generateVideoResponse": {
                "raiMediaFilteredCount": 1,
                "raiMediaFilteredReasons": ["The prompt could not be submitted."],
            }
        },
    }
    failed = {
        "name": "models/veo/operations/e",
        "done": True,
        "error": {"code": 3, "message": "Invalid duration", "status": "INVALID_ARGUMENT"},
    }
    fake.script("GET", "/v1beta/models/veo/operations/f", Reply(json=filtered))
    fake.script("GET", "/v1beta/models/veo/operations/e", Reply(json=failed))

    blocked = await adapter.poll("models/veo/operations/f", credentials)
    errored = await adapter.poll("models/veo/operations/e", credentials)

    assert blocked.status is TaskStatus.FAILED
    assert blocked.error is not None
    assert blocked.error.code == "content_filtered"
    assert "could not be submitted" in blocked.error.message
    assert errored.error is not None
    assert (errored.status, errored.error.code, errored.error.message) == (
        TaskStatus.FAILED,
        "3",
        "Invalid duration",
    )


@pytest.mark.parametrize("name", ["../../v1/secret", "models//operations/x", "op", " / "])
async def test_unusable_operation_names_are_refused(
    name: str,
    fake: FakeUpstream,
    shim_client: tuple[httpx.AsyncClient, GoogKeyShim],
    credentials: UpstreamCredentials,
) -> None:
    client, _ = shim_client
    adapter = gemini(client)
    fake.script("POST", PREDICT, Reply(json={"name": name}))

    with pytest.raises(UpstreamMalformed):
        await adapter.submit(request_for(), credentials)
    with pytest.raises(UpstreamMalformed):
        await adapter.poll(name, credentials)

    assert len(fake.requests) == 1  # the create; no poll left for a bad name


async def test_poll_retries_429_and_5xx(
    fake: FakeUpstream,
    shim_client: tuple[httpx.AsyncClient, GoogKeyShim],
    credentials: UpstreamCredentials,
) -> None:
    client, _ = shim_client
    path = f"/v1beta/{OPERATION}"
    fake.script(
        "GET",
        path,
        Reply(
            status=429,
            json={
                "error": {
                    "code": 429,
                    "message": "Resource exhausted",
                    "status": "RESOURCE_EXHAUSTED",
                }
            },
        ),
        Reply(status=503, json={"error": {"code": 503, "message": "overloaded"}}),
        Reply(json={"name": OPERATION}),
    )

    status = await gemini(client).poll(OPERATION, credentials)

    assert status.status is TaskStatus.IN_PROGRESS
    assert len(fake.hits("GET", path)) == 3


async def test_create_is_not_resent_after_a_5xx(
    fake: FakeUpstream,
    shim_client: tuple[httpx.AsyncClient, GoogKeyShim],
    credentials: UpstreamCredentials,
) -> None:
    client, _ = shim_client
    fake.script("POST", PREDICT, Reply(status=500, json={"error": {"message": "internal"}}))

    with pytest.raises(UpstreamUnavailable):
        await gemini(client).submit(request_for(), credentials)

    assert len(fake.hits("POST", PREDICT)) == 1


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (401, {"error": {"code": 401, "message": "bad key {key}"}}, UpstreamAuthError),
        (403, {"error": {"code": 403, "message": "PERMISSION_DENIED"}}, UpstreamAuthError),
        (
            400,
            {
                "error": {
                    "code": 400,
                    "message": "API key not valid. Please pass a valid API key.",
                    "status": "INVALID_ARGUMENT",
                }
            },
            UpstreamAuthError,
        ),
        (
            400,
            {"error": {"code": 400, "message": "durationSeconds out of range"}},
            UpstreamRejected,
        ),
    ],
    ids=["401", "403", "400-key-invalid", "400-other"],
)
async def test_key_errors(
    status: int,
    body: dict[str, object],
    error: type[Exception],
    fake: FakeUpstream,
    shim_client: tuple[httpx.AsyncClient, GoogKeyShim],
    credentials: UpstreamCredentials,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    client, _ = shim_client
    fake.script("POST", PREDICT, Reply(status=status, json=body))

    with pytest.raises(
        UpstreamRejected if error is UpstreamRejected else UpstreamAuthError
    ) as info:
        await gemini(client).submit(request_for(), credentials)

    assert type(info.value) is error
    assert info.value.status_code == status
    assert API_KEY not in str(info.value) + (info.value.body_snippet or "")
    assert API_KEY not in caplog.text


async def test_echoed_wrong_key_is_scrubbed(
    fake: FakeUpstream,
    shim_client: tuple[httpx.AsyncClient, GoogKeyShim],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    client, _ = shim_client
    wrong = "AIzaSyNotTheRightKey42"
    credentials = UpstreamCredentials(base_url=fake.url, api_key=wrong)

    with pytest.raises(UpstreamAuthError) as info:
        await gemini(client).poll(OPERATION, credentials)

    assert "Incorrect API key" in info.value.message  # the fake echoed it back...
    for text in (str(info.value), repr(info.value), info.value.body_snippet or ""):
        assert wrong not in text  # ...and it was scrubbed
    assert wrong not in caplog.text


async def test_cancel_is_a_no_op_and_download_headers(
    fake: FakeUpstream, http_client: httpx.AsyncClient, credentials: UpstreamCredentials
) -> None:
    adapter = gemini(http_client)
    assert adapter.supports_cancel is False

    await adapter.cancel(OPERATION, credentials)

    assert fake.requests == []
    assert adapter.download_headers(credentials) == {"x-goog-api-key": API_KEY}
