"""ByteDance Ark (official `contents/generations/tasks`): against the simulator over real HTTP
and against the scripted fake upstream for the error cases."""

from __future__ import annotations

import logging

import httpx
import pytest

from app.clients.ark import ArkAdapter, image_roles
from app.clients.base import GenerationRequest, InputImage, TaskStatus, UpstreamCredentials
from app.clients.errors import (
    UpstreamAuthError,
    UpstreamError,
    UpstreamRejected,
    UpstreamUnavailable,
)
from app.clients.registry import get_adapter
from tests.clients.fakes import API_KEY, FAST_RETRY, FakeUpstream, Reply
from tests.simulator.conftest import LiveServer, png_bytes

TASKS = "/api/v3/contents/generations/tasks"
VIDEO_URL = "https://ark-content.example/result.mp4?X-Tos-Signature=abc"


def ark(http: httpx.AsyncClient) -> ArkAdapter:
    adapter = get_adapter("ark", http, poll_retry=FAST_RETRY, submit_retry=FAST_RETRY)
    assert isinstance(adapter, ArkAdapter)
    return adapter


def text_request(prompt: str = "a fox in snow", **params: object) -> GenerationRequest:
    return GenerationRequest(
        kind="video", model="doubao-seedance-1-0-pro", prompt=prompt, params=params
    )


# ----- against the simulator ---------------------------------------------------------------------


async def test_submit_and_poll_to_completion(
    sim: LiveServer, sim_credentials: UpstreamCredentials, http_client: httpx.AsyncClient
) -> None:
    adapter = ark(http_client)
    request = GenerationRequest(
        kind="video",
        model="doubao-seedance-1-0-pro",
        prompt="a fox in snow",
        params={
            "aspect_ratio": "9:16",
            "duration": "6",
            "resolution": "1080p",
            "seed": 7,
            "camera_fixed": "true",
            "watermark": False,
        },
        images=(InputImage(data=png_bytes(32, 18), content_type="image/png"),),
    )

    submission = await adapter.submit(request, sim_credentials)

    assert submission.upstream_id is not None
    assert submission.status is not None
    assert submission.status.status is TaskStatus.QUEUED
    task = sim.simulator.store.tasks[submission.upstream_id]
    assert task.family == "ark"
    assert task.echo["ratio"] == "9:16"
    assert task.echo["duration"] == 6
    assert task.echo["camera_fixed"] is True
    assert task.width < task.height
    content = task.request["content"]
    assert content[0] == {"type": "text", "text": "a fox in snow"}
    assert content[1]["role"] == "first_frame"
    assert content[1]["image_url"]["url"].startswith("data:image/png;base64,")

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
    assert running.upstream_status == "running"
    assert done.submitted_at is not None
    assert done.finished_at is not None
    assert int(done.finished_at.timestamp()) == int(sim.clock.now)
    (result,) = done.results
    assert result.url is not None
    assert result.requires_auth is False  # a pre-signed URL
    media = await http_client.get(result.url)
    assert media.status_code == 200
    assert media.content[4:8] == b"ftyp"


@pytest.mark.parametrize(
    ("directive", "code", "message"),
    [
        ("[sim:fail=OutputVideoSensitiveContentDetected]", "generation_failed", "OutputVideo"),
        ("[sim:expire]", "task_expired", "expired"),
    ],
    ids=["failed", "expired"],
)
async def test_failure_and_expiry(
    sim: LiveServer,
    sim_credentials: UpstreamCredentials,
    http_client: httpx.AsyncClient,
    directive: str,
    code: str,
    message: str,
) -> None:
    adapter = ark(http_client)
    submission = await adapter.submit(text_request(f"p {directive}"), sim_credentials)
    assert submission.upstream_id is not None
    sim.clock.advance(10)

    status = await adapter.poll(submission.upstream_id, sim_credentials)

    assert status.status is TaskStatus.FAILED
    assert status.error is not None
    assert status.error.code == code
    assert message in status.error.message
    assert status.results == ()
    assert status.finished_at is not None


async def test_cancel_queued_task_then_it_reads_cancelled(
    sim: LiveServer, sim_credentials: UpstreamCredentials, http_client: httpx.AsyncClient
) -> None:
    adapter = ark(http_client)
    assert adapter.supports_cancel is True
    submission = await adapter.submit(text_request("cancel me"), sim_credentials)
    assert submission.upstream_id is not None

    await adapter.cancel(submission.upstream_id, sim_credentials)
    status = await adapter.poll(submission.upstream_id, sim_credentials)

    assert status.status is TaskStatus.CANCELLED
    # Deleting the record of a finished task is fine too; a second delete finds nothing (404)
    # and still counts as done.
    await adapter.cancel(submission.upstream_id, sim_credentials)
    await adapter.cancel(submission.upstream_id, sim_credentials)
    assert sim.simulator.store.tasks[submission.upstream_id].deleted is True


async def test_cancel_of_a_running_task_is_refused_by_ark(
    sim: LiveServer, sim_credentials: UpstreamCredentials, http_client: httpx.AsyncClient
) -> None:
    adapter = ark(http_client)
    submission = await adapter.submit(text_request("running"), sim_credentials)
    assert submission.upstream_id is not None
    sim.clock.advance(5)

    with pytest.raises(UpstreamRejected) as info:
        await adapter.cancel(submission.upstream_id, sim_credentials)

    assert info.value.status_code == 409
    assert "running" in info.value.message
    status = await adapter.poll(submission.upstream_id, sim_credentials)
    assert status.status is TaskStatus.IN_PROGRESS


async def test_poll_recovers_from_429_and_5xx(
    sim: LiveServer, sim_credentials: UpstreamCredentials, http_client: httpx.AsyncClient
) -> None:
    sim.simulator.configure(retry_after=0)
    adapter = ark(http_client)
    submission = await adapter.submit(
        text_request("flaky [sim:poll-429-n=1][sim:poll-502-n=1][sim:weird-id]"), sim_credentials
    )
    assert submission.upstream_id is not None
    assert "/" in submission.upstream_id  # encoded into one path segment

    status = await adapter.poll(submission.upstream_id, sim_credentials)

    assert status.status is TaskStatus.QUEUED
    task = sim.simulator.store.tasks[submission.upstream_id]
    assert (task.polls, task.answered_polls) == (3, 1)


async def test_bad_key_on_simulator(
    sim: LiveServer, http_client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "ark-wrong-key-5b1c7d9e"
    credentials = UpstreamCredentials(base_url=sim.base_url, api_key=wrong)

    with pytest.raises(UpstreamAuthError) as info:
        await ark(http_client).submit(text_request(), credentials)

    assert info.value.status_code == 401
    assert sim.simulator.store.stats.creates == 0
    assert wrong not in caplog.text


# ----- against the scripted fake -----------------------------------------------------------------


async def test_body_shape(
    fake: FakeUpstream, http_client: httpx.AsyncClient, credentials: UpstreamCredentials
) -> None:
    fake.script("POST", TASKS, Reply(json={"id": "cgt-20250601-abc"}))
    request = GenerationRequest(
        kind="video",
        model="doubao-seedance-1-0-lite-i2v",
        prompt="from A to B",
        params={"ratio": "16:9", "duration": 5.0, "seed": "-1", "watermark": "false"},
        images=(
            InputImage(url="https://i/last.png", role="last_frame"),
            InputImage(url="https://i/first.png", role="first_frame"),
        ),
        callback_url="https://hooks.example/ark",
    )

    submission = await ark(http_client).submit(request, credentials)

    assert submission.upstream_id == "cgt-20250601-abc"
    (sent,) = fake.requests
    assert sent.headers["authorization"] == f"Bearer {API_KEY}"
    assert sent.json == {
        "model": "doubao-seedance-1-0-lite-i2v",
        "content": [
            {"type": "text", "text": "from A to B"},
            {"type": "image_url", "image_url": {"url": "https://i/last.png"}, "role": "last_frame"},
            {
                "type": "image_url",
                "image_url": {"url": "https://i/first.png"},
                "role": "first_frame",
            },
        ],
        "callback_url": "https://hooks.example/ark",
        "ratio": "16:9",
        "duration": 5,
        "seed": -1,
        "watermark": False,
    }


A = InputImage(url="https://i/a.png")
B = InputImage(url="https://i/b.png")


@pytest.mark.parametrize(
    ("images", "roles"),
    [
        ((), []),
        ((A,), ["first_frame"]),
        ((A, B), ["first_frame", "last_frame"]),
        ((A, B, A), ["reference_image"] * 3),
        ((InputImage(url="x", role="reference"),), ["reference_image"]),
        ((InputImage(url="x", role="last_frame"), A), ["last_frame", "first_frame"]),
        ((InputImage(url="x", role="first_frame"), A), ["first_frame", "reference_image"]),
    ],
    ids=["none", "one", "two", "three", "reference", "last-and-unlabelled", "first-and-other"],
)
def test_image_roles(images: tuple[InputImage, ...], roles: list[str]) -> None:
    assert image_roles(images) == roles


async def test_poll_shapes_and_times(
    fake: FakeUpstream, http_client: httpx.AsyncClient, credentials: UpstreamCredentials
) -> None:
    adapter = ark(http_client)
    path = f"{TASKS}/cgt%3A1"
    fake.script(
        "GET",
        path,
        Reply(json={"id": "cgt:1", "status": "queued", "created_at": 1750000000}),
        Reply(json={"id": "cgt:1", "status": "running", "created_at": 1750000000}),
        Reply(
            json={
                "id": "cgt:1",
                "status": "succeeded",
                "content": {"video_url": VIDEO_URL},
                "usage": {"completion_tokens": 108900, "total_tokens": 108900},
                "created_at": 1750000000,
                "updated_at": 1750000095,
            }
        ),
    )
    fake.script(
        "GET",
        f"{TASKS}/cgt-f",
        Reply(
            json={
                "id": "cgt-f",
                "status": "failed",
                "error": {"code": "InputTextSensitiveContentDetected", "message": "blocked"},
                "updated_at": 1750000010,
            }
        ),
    )
    fake.script("GET", f"{TASKS}/cgt-e", Reply(json={"id": "cgt-e", "status": "expired"}))
    fake.script("GET", f"{TASKS}/cgt-c", Reply(json={"id": "cgt-c", "status": "cancelled"}))

    seen = [await adapter.poll("cgt:1", credentials) for _ in range(3)]
    failed = await adapter.poll("cgt-f", credentials)
    expired = await adapter.poll("cgt-e", credentials)
    cancelled = await adapter.poll("cgt-c", credentials)

    assert [s.status for s in seen] == [
        TaskStatus.QUEUED,
        TaskStatus.IN_PROGRESS,
        TaskStatus.COMPLETED,
    ]
    assert seen[0].finished_at is None
    assert seen[-1].finished_at is not None
    assert int(seen[-1].finished_at.timestamp()) == 1750000095
    assert seen[-1].results[0].url == VIDEO_URL
    assert failed.error is not None
    assert (failed.status, failed.error.code, failed.error.message) == (
        TaskStatus.FAILED,
        "InputTextSensitiveContentDetected",
        "blocked",
    )
    assert failed.finished_at is not None
    assert expired.status is TaskStatus.FAILED
    assert expired.error is not None
    assert expired.error.code == "expired"
    assert cancelled.status is TaskStatus.CANCELLED


async def test_poll_retries_429_and_5xx(
    fake: FakeUpstream, http_client: httpx.AsyncClient, credentials: UpstreamCredentials
) -> None:
    path = f"{TASKS}/cgt-r"
    fake.script(
        "GET",
        path,
        Reply(status=429, json={"error": {"message": "slow down"}}, headers={"Retry-After": "0"}),
        Reply(
            status=502, body="<html><title>502 Bad Gateway</title></html>", content_type="text/html"
        ),
        Reply(json={"id": "cgt-r", "status": "running"}),
    )

    status = await ark(http_client).poll("cgt-r", credentials)

    assert status.status is TaskStatus.IN_PROGRESS
    assert len(fake.hits("GET", path)) == 3


async def test_create_is_not_resent_after_a_5xx(
    fake: FakeUpstream, http_client: httpx.AsyncClient, credentials: UpstreamCredentials
) -> None:
    fake.script("POST", TASKS, Reply(status=500, json={"error": {"message": "internal"}}))

    with pytest.raises(UpstreamUnavailable) as info:
        await ark(http_client).submit(text_request(), credentials)

    assert info.value.reached_upstream is True
    assert len(fake.hits("POST", TASKS)) == 1


@pytest.mark.parametrize("status", [401, 403])
async def test_rejected_key_never_leaks(
    status: int,
    fake: FakeUpstream,
    http_client: httpx.AsyncClient,
    credentials: UpstreamCredentials,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    echo = {"error": {"code": "AuthenticationError", "message": "key {key} is not valid"}}
    fake.script("POST", TASKS, Reply(status=status, json=echo))
    fake.script("GET", f"{TASKS}/cgt-1", Reply(status=status, json=echo))
    adapter = ark(http_client)
    errors: list[UpstreamError] = []

    for call in (
        adapter.submit(text_request(), credentials),
        adapter.poll("cgt-1", credentials),
    ):
        with pytest.raises(UpstreamAuthError) as info:
            await call
        errors.append(info.value)

    assert len(fake.hits("GET", f"{TASKS}/cgt-1")) == 1  # a rejected key is not retried
    for error in errors:
        assert error.status_code == status
        for text in (str(error), repr(error), error.message, error.body_snippet or ""):
            assert API_KEY not in text
        assert "is not valid" in error.message
    assert caplog.records
    assert API_KEY not in caplog.text


async def test_cancel_outcomes(
    fake: FakeUpstream, http_client: httpx.AsyncClient, credentials: UpstreamCredentials
) -> None:
    adapter = ark(http_client)
    fake.script("DELETE", f"{TASKS}/gone", Reply(status=404, json={"error": {"message": "nf"}}))
    fake.script("DELETE", f"{TASKS}/ok", Reply(status=503, body="busy"), Reply(json={}))
    fake.script(
        "DELETE",
        f"{TASKS}/running",
        Reply(status=400, json={"error": {"code": "InvalidAction", "message": "running"}}),
    )

    await adapter.cancel("gone", credentials)
    await adapter.cancel("ok", credentials)
    with pytest.raises(UpstreamRejected):
        await adapter.cancel("running", credentials)

    assert len(fake.hits("DELETE", f"{TASKS}/ok")) == 2
    assert len(fake.hits("DELETE", f"{TASKS}/running")) == 1
