"""Kling (official API, JWT auth): against the simulator over real HTTP and against the
scripted fake upstream.

The fake checks `Authorization: Bearer <key>`; Kling sends a JWT minted from the key pair.
`KlingJwtShim`, a transport in front of the real HTTP one, records each token and verifies it
with the secret key like Kling would; a valid token is swapped for the fake's key, an invalid
one is forwarded untouched, so the fake's 401 echoes the raw token back and its scrubbing is
exercised.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import AsyncIterator

import httpx
import jwt
import pytest

from app.clients.base import GenerationRequest, InputImage, TaskStatus, UpstreamCredentials
from app.clients.errors import UpstreamAuthError, UpstreamUnavailable
from app.clients.kling import (
    KlingAdapter,
    KlingKeys,
    mint_token,
    split_keys,
    split_upstream_id,
)
from app.clients.registry import get_adapter
from tests.clients.fakes import API_KEY, FAST_RETRY, FakeUpstream, Reply
from tests.clients.specs import PNG_BYTES
from tests.simulator.conftest import LiveServer, png_bytes

ACCESS = "AkTestAccess7d1f"
SECRET = "SkTestSecret-3c9e2b1a6d4c8e0f5a7b9c1d"
KEY_PAIR = f"{ACCESS}:{SECRET}"
T2V = "/v1/videos/text2video"
I2V = "/v1/videos/image2video"
VIDEO_URL = "https://cdn.klingai.example/result.mp4"


class KlingJwtShim(httpx.AsyncBaseTransport):
    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.tokens: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        self.tokens.append(token)
        try:
            claims = jwt.decode(token, SECRET, algorithms=["HS256"])
        except jwt.PyJWTError:
            claims = {}
        if claims.get("iss") == ACCESS:
            request.headers["Authorization"] = f"Bearer {API_KEY}"
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def kling(http: httpx.AsyncClient) -> KlingAdapter:
    adapter = get_adapter("kling", http, poll_retry=FAST_RETRY, submit_retry=FAST_RETRY)
    assert isinstance(adapter, KlingAdapter)
    return adapter


def text_request(prompt: str = "a paper boat on a river", **params: object) -> GenerationRequest:
    return GenerationRequest(kind="video", model="kling-v1-6", prompt=prompt, params=params)


def envelope(data: object, code: int = 0, message: str = "SUCCEED") -> dict[str, object]:
    return {"code": code, "message": message, "request_id": "req-1", "data": data}


@pytest.fixture
async def shim_client() -> AsyncIterator[tuple[httpx.AsyncClient, KlingJwtShim]]:
    shim = KlingJwtShim()
    async with httpx.AsyncClient(transport=shim, timeout=httpx.Timeout(5.0)) as client:
        yield client, shim


@pytest.fixture
def kling_credentials(fake: FakeUpstream) -> UpstreamCredentials:
    return UpstreamCredentials(base_url=fake.url, api_key=KEY_PAIR)


@pytest.fixture
def sim(simulator_server: LiveServer) -> LiveServer:
    simulator_server.reset()
    simulator_server.simulator.configure(api_key=KEY_PAIR)
    return simulator_server


@pytest.fixture
def sim_credentials(sim: LiveServer) -> UpstreamCredentials:
    return UpstreamCredentials(base_url=sim.base_url, api_key=KEY_PAIR)


# ----- against the simulator ---------------------------------------------------------------------


async def test_text2video_submit_and_poll_to_completion(
    sim: LiveServer, sim_credentials: UpstreamCredentials, http_client: httpx.AsyncClient
) -> None:
    adapter = kling(http_client)
    request = text_request(
        aspect_ratio="9:16", duration=10, mode="pro", cfg_scale="0.5", negative_prompt="blur"
    )

    submission = await adapter.submit(request, sim_credentials)

    assert submission.upstream_id is not None
    endpoint, task_id = split_upstream_id(submission.upstream_id)
    assert endpoint == "text2video"
    assert submission.status is not None
    assert submission.status.status is TaskStatus.QUEUED
    task = sim.simulator.store.tasks[task_id]
    assert task.echo == {"endpoint": "text2video", "duration": "10", "mode": "pro"}
    assert task.width < task.height

    first = await adapter.poll(submission.upstream_id, sim_credentials)
    sim.clock.advance(5)
    running = await adapter.poll(submission.upstream_id, sim_credentials)
    sim.clock.advance(5)
    done = await adapter.poll(submission.upstream_id, sim_credentials)

    assert [first.status, running.status, done.status] == [
        TaskStatus.QUEUED,
        TaskStatus.IN_PROGRESS,
        TaskStatus.COMPLETED,
    ]
    assert [first.upstream_status, running.upstream_status] == ["submitted", "processing"]
    assert done.submitted_at is not None
    assert done.finished_at is not None
    assert int(done.finished_at.timestamp()) == int(sim.clock.now)
    (result,) = done.results
    assert result.url is not None
    assert result.requires_auth is False
    media = await http_client.get(result.url)
    assert media.content[4:8] == b"ftyp"


async def test_image2video_sends_bare_base64_and_polls_its_endpoint(
    sim: LiveServer, sim_credentials: UpstreamCredentials, http_client: httpx.AsyncClient
) -> None:
    adapter = kling(http_client)
    uri = "data:image/png;base64," + base64.b64encode(png_bytes(24, 24)).decode()
    request = GenerationRequest(
        kind="video",
        model="kling-v1",
        prompt="it starts to rain [sim:task-seconds=0]",
        params={"duration": "5", "aspect_ratio": "16:9"},
        images=(InputImage(url=uri), InputImage(data=png_bytes(24, 24), role="last_frame")),
    )

    # The simulator refuses a `data:` prefix (as Kling does), so acceptance proves bare base64.
    submission = await adapter.submit(request, sim_credentials)

    assert submission.upstream_id is not None
    assert submission.upstream_id.startswith("image2video:")
    task = sim.simulator.store.tasks[split_upstream_id(submission.upstream_id)[1]]
    assert set(task.request) >= {"image", "image_tail"}
    assert "aspect_ratio" not in task.request  # image2video takes the image's shape
    status = await adapter.poll(submission.upstream_id, sim_credentials)
    assert status.status is TaskStatus.COMPLETED


async def test_failure(
    sim: LiveServer, sim_credentials: UpstreamCredentials, http_client: httpx.AsyncClient
) -> None:
    adapter = kling(http_client)
    submission = await adapter.submit(text_request("x [sim:fail=risk control]"), sim_credentials)
    assert submission.upstream_id is not None
    sim.clock.advance(10)

    status = await adapter.poll(submission.upstream_id, sim_credentials)

    assert status.status is TaskStatus.FAILED
    assert status.error is not None
    assert status.error.message == "risk control"
    assert status.results == ()


async def test_poll_recovers_from_429_and_5xx(
    sim: LiveServer, sim_credentials: UpstreamCredentials, http_client: httpx.AsyncClient
) -> None:
    sim.simulator.configure(retry_after=0)
    adapter = kling(http_client)
    submission = await adapter.submit(
        text_request("flaky [sim:poll-429-n=1][sim:poll-500-n=1][sim:weird-id]"), sim_credentials
    )
    assert submission.upstream_id is not None

    status = await adapter.poll(submission.upstream_id, sim_credentials)

    assert status.status is TaskStatus.QUEUED
    task = sim.simulator.store.tasks[split_upstream_id(submission.upstream_id)[1]]
    assert "/" in task.id
    assert (task.polls, task.answered_polls) == (3, 1)


async def test_wrong_secret_is_an_auth_error_and_nothing_leaks(
    sim: LiveServer, http_client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong_secret = "SkWrongSecret-0000000000000000000000"
    credentials = UpstreamCredentials(base_url=sim.base_url, api_key=f"{ACCESS}:{wrong_secret}")

    with pytest.raises(UpstreamAuthError) as info:
        await kling(http_client).submit(text_request(), credentials)

    assert info.value.status_code == 401
    assert "Authorization is invalid" in info.value.message
    assert sim.simulator.store.stats.creates == 0
    for text in (str(info.value), repr(info.value), info.value.body_snippet or "", caplog.text):
        assert wrong_secret not in text
        assert "eyJ" not in text  # no token either


@pytest.mark.parametrize("api_key", ["no-colon-here", ":secret-part", "access-part:", ":"])
async def test_malformed_key_pair_is_refused_before_sending(
    api_key: str, sim: LiveServer, http_client: httpx.AsyncClient
) -> None:
    credentials = UpstreamCredentials(base_url=sim.base_url, api_key=api_key)

    with pytest.raises(UpstreamAuthError) as info:
        await kling(http_client).submit(text_request(), credentials)

    assert info.value.reached_upstream is False
    assert info.value.retryable is False
    assert "ACCESS_KEY:SECRET_KEY" in info.value.message
    for part in filter(None, api_key.split(":")):
        assert part not in str(info.value)
    assert sim.simulator.store.stats.create_requests == 0


# ----- against the scripted fake -----------------------------------------------------------------


async def test_token_claims_and_text2video_body(
    fake: FakeUpstream,
    shim_client: tuple[httpx.AsyncClient, KlingJwtShim],
    kling_credentials: UpstreamCredentials,
) -> None:
    client, shim = shim_client
    fake.script("POST", T2V, Reply(json=envelope({"task_id": "7301", "task_status": "submitted"})))
    before = int(time.time())

    submission = await kling(client).submit(
        text_request(
            aspect_ratio="1:1",
            duration=5.0,
            mode="std",
            cfg_scale=0.7,
            negative_prompt="text",
            callback_url="https://hooks.example/k",
        ),
        kling_credentials,
    )

    assert submission.upstream_id == "text2video:7301"
    (token,) = shim.tokens
    header = jwt.get_unverified_header(token)
    assert (header["alg"], header["typ"]) == ("HS256", "JWT")
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert claims["iss"] == ACCESS
    assert before + 1800 <= claims["exp"] <= int(time.time()) + 1800
    assert claims["exp"] - claims["nbf"] == 1805
    (sent,) = fake.requests
    assert sent.json == {
        "model_name": "kling-v1-6",
        "prompt": "a paper boat on a river",
        "aspect_ratio": "1:1",
        "negative_prompt": "text",
        "mode": "std",
        "duration": "5",
        "cfg_scale": 0.7,
        "callback_url": "https://hooks.example/k",
    }


async def test_image2video_body(
    fake: FakeUpstream,
    shim_client: tuple[httpx.AsyncClient, KlingJwtShim],
    kling_credentials: UpstreamCredentials,
) -> None:
    client, _ = shim_client
    fake.script("POST", I2V, Reply(json=envelope({"task_id": "i-1", "task_status": "submitted"})))
    request = GenerationRequest(
        kind="video",
        model="kling-v2-master",
        prompt="",
        params={"aspect_ratio": "16:9"},
        images=(
            InputImage(url="https://i/tail.png", role="last_frame"),
            InputImage(data=PNG_BYTES, role="first_frame"),
        ),
    )

    submission = await kling(client).submit(request, kling_credentials)

    assert submission.upstream_id == "image2video:i-1"
    (sent,) = fake.requests
    assert sent.json == {
        "model_name": "kling-v2-master",
        "image": base64.b64encode(PNG_BYTES).decode(),
        "image_tail": "https://i/tail.png",
    }


async def test_poll_shapes(
    fake: FakeUpstream,
    shim_client: tuple[httpx.AsyncClient, KlingJwtShim],
    kling_credentials: UpstreamCredentials,
) -> None:
    client, _ = shim_client
    adapter = kling(client)
    base = {"task_id": "a:b", "created_at": 1750000000000, "task_status_msg": ""}
    fake.script(
        "GET",
        f"{I2V}/a%3Ab",
        Reply(json=envelope({**base, "task_status": "submitted", "updated_at": 1750000000000})),
        Reply(json=envelope({**base, "task_status": "processing", "updated_at": 1750000010000})),
        Reply(
            json=envelope(
                {
                    **base,
                    "task_status": "succeed",
                    "updated_at": 1750000090000,
                    "task_result": {"videos": [{"id": "v1", "url": VIDEO_URL, "duration": "5"}]},
                }
            )
        ),
    )
    failed = {**base, "task_status": "failed", "task_status_msg": "risk control: face"}
    fake.script("GET", f"{T2V}/f1", Reply(json=envelope({**failed, "task_id": "f1"})))
    fake.script(
        "GET", f"{T2V}/gone", Reply(json={"code": 1203, "message": "task not found", "data": None})
    )

    seen = [await adapter.poll("image2video:a:b", kling_credentials) for _ in range(3)]
    failure = await adapter.poll("f1", kling_credentials)  # a bare id is text2video
    missing = await adapter.poll("text2video:gone", kling_credentials)

    assert [s.status for s in seen] == [
        TaskStatus.QUEUED,
        TaskStatus.IN_PROGRESS,
        TaskStatus.COMPLETED,
    ]
    assert seen[0].submitted_at is not None
    assert int(seen[0].submitted_at.timestamp()) == 1750000000
    assert seen[1].finished_at is None
    assert seen[2].finished_at is not None
    assert int(seen[2].finished_at.timestamp()) == 1750000090
    assert seen[2].results[0].url == VIDEO_URL
    assert failure.status is TaskStatus.FAILED
    assert failure.error is not None
    assert failure.error.message == "risk control: face"
    assert missing.status is TaskStatus.FAILED
    assert missing.error is not None
    assert (missing.error.code, missing.error.message) == ("1203", "task not found")


async def test_poll_retries_429_and_5xx_with_fresh_tokens(
    fake: FakeUpstream,
    shim_client: tuple[httpx.AsyncClient, KlingJwtShim],
    kling_credentials: UpstreamCredentials,
) -> None:
    client, shim = shim_client
    path = f"{T2V}/r1"
    fake.script(
        "GET",
        path,
        Reply(
            status=429, json={"code": 1302, "message": "rate limited"}, headers={"Retry-After": "0"}
        ),
        Reply(status=500, json={"code": 5000, "message": "internal error"}),
        Reply(json=envelope({"task_id": "r1", "task_status": "processing"})),
    )

    status = await kling(client).poll("text2video:r1", kling_credentials)

    assert status.status is TaskStatus.IN_PROGRESS
    assert len(fake.hits("GET", path)) == 3
    assert len(shim.tokens) == 3
    assert all(jwt.decode(t, SECRET, algorithms=["HS256"])["iss"] == ACCESS for t in shim.tokens)


async def test_create_is_not_resent_after_a_5xx(
    fake: FakeUpstream,
    shim_client: tuple[httpx.AsyncClient, KlingJwtShim],
    kling_credentials: UpstreamCredentials,
) -> None:
    client, _ = shim_client
    fake.script("POST", T2V, Reply(status=503, json={"code": 5001, "message": "busy"}))

    with pytest.raises(UpstreamUnavailable):
        await kling(client).submit(text_request(), kling_credentials)

    assert len(fake.hits("POST", T2V)) == 1


async def test_rejected_token_echoed_back_never_leaks(
    fake: FakeUpstream,
    shim_client: tuple[httpx.AsyncClient, KlingJwtShim],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    client, shim = shim_client
    wrong_secret = "SkNotTheSecret-11111111111111111111111"
    credentials = UpstreamCredentials(base_url=fake.url, api_key=f"{ACCESS}:{wrong_secret}")
    fake.script("GET", f"{T2V}/t1", Reply(json=envelope({"task_id": "t1"})))

    with pytest.raises(UpstreamAuthError) as info:
        await kling(client).poll("t1", credentials)

    (token,) = shim.tokens
    assert "Incorrect API key" in info.value.message  # the fake echoed the token back...
    texts = (str(info.value), repr(info.value), info.value.body_snippet or "", caplog.text)
    for text in texts:
        assert token not in text  # ...and the scrubber removed it
        assert wrong_secret not in text
        assert token.split(".")[2] not in text  # not even the signature alone
    assert caplog.records


async def test_cancel_is_a_no_op(
    fake: FakeUpstream, http_client: httpx.AsyncClient, kling_credentials: UpstreamCredentials
) -> None:
    adapter = kling(http_client)
    assert adapter.supports_cancel is False

    await adapter.cancel("text2video:1", kling_credentials)

    assert fake.requests == []


def test_key_pair_helpers_never_show_the_secret() -> None:
    keys = split_keys(f" {ACCESS} : {SECRET} ")
    assert keys == KlingKeys(ACCESS, SECRET)
    assert SECRET not in repr(keys)
    assert split_keys(f"{ACCESS}:{SECRET}:x").secret_key == f"{SECRET}:x"
    token = mint_token(keys, now=1_750_000_000)
    assert jwt.decode(
        token, SECRET, algorithms=["HS256"], options={"verify_exp": False, "verify_nbf": False}
    ) == {"iss": ACCESS, "exp": 1_750_001_800, "nbf": 1_749_999_995}


@pytest.mark.parametrize(
    ("upstream_id", "expected"),
    [
        ("text2video:123", ("text2video", "123")),
        ("image2video:a:b/c", ("image2video", "a:b/c")),
        ("plain-id", ("text2video", "plain-id")),
        ("task:ab/cd", ("text2video", "task:ab/cd")),
        ("image2video:", ("text2video", "image2video:")),
    ],
)
def test_split_upstream_id(upstream_id: str, expected: tuple[str, str]) -> None:
    assert split_upstream_id(upstream_id) == expected
