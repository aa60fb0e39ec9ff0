"""`/v1/videos` driven by the official `openai` package against a live server and the simulator.

Each test goes through the real HTTP stack: the SDK's request → uvicorn → our routes → the task
engine → the in-process simulator, and back. Completion is awaited with the SDK's own poll
helper (which follows our `openai-poll-after-ms`), never by sleeping.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import httpx
import openai
import pytest
from fastapi import FastAPI

from app.simulator import Simulator
from tests.api.openai.conftest import (
    assert_openai_error,
    create_api_key,
    png_bytes,
    png_data_uri,
    sdk,
)
from tests.api.v1.conftest import media_rows, task_row, wait_for_task
from tests.conftest import AuthedUser

# The SDK marks the Sora API as deprecated (a warning on every call); that is OpenAI's notice
# about its own service, not about this one.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

POLL_MS = 50


def upstream_create(sim: Simulator, prompt: str) -> dict[str, Any]:
    """The create request the simulator received for `prompt` (exactly one)."""
    creates = [
        r
        for r in sim.store.requests
        if r["method"] == "POST" and (r.get("body") or {}).get("prompt") == prompt
    ]
    assert len(creates) == 1, creates
    return creates[0]


async def test_create_and_poll_completes_and_download_is_the_stored_media(
    oai: openai.AsyncOpenAI,
    client: httpx.AsyncClient,
    app: FastAPI,
    user: AuthedUser,
    sim: Simulator,
) -> None:
    prompt = "a paper boat on a rainy street"
    video = await oai.videos.create_and_poll(
        model="sora-2-openai",
        prompt=prompt,
        seconds="8",
        size="1280x720",
        poll_interval_ms=POLL_MS,
    )

    assert video.status == "completed", video
    assert video.object == "video"
    assert video.model == "sora-2-openai"
    assert video.progress == 100
    assert video.error is None
    assert video.prompt == prompt
    assert video.seconds == "8"
    assert video.size == "1280x720"
    assert video.completed_at is not None
    assert video.completed_at >= video.created_at > 0
    # The OpenAI-model's own parameters went upstream unchanged.
    row = await task_row(app, video.id)
    assert row.user_id == user.id
    upstream = sim.store.tasks[row.upstream_id or ""]
    assert (upstream.seconds, upstream.size) == ("8", "1280x720")

    content = await oai.videos.download_content(video.id)
    data = content.read()
    [media] = await media_rows(app, video.id)
    assert media.sha256 == hashlib.sha256(data).hexdigest()
    assert len(data) == media.bytes > 0
    assert data[4:8] == b"ftyp"  # an MP4
    # The same task is in the /api/v1 history, with the same bytes.
    same = await client.get(f"/api/v1/videos/{video.id}/content", headers=user.headers)
    assert same.status_code == 200
    assert same.content == data


async def test_sora_style_seconds_and_size_map_through_the_catalog(
    oai: openai.AsyncOpenAI, client: httpx.AsyncClient, user: AuthedUser, sim: Simulator
) -> None:
    # sora-2-pro (aggregator) has duration 10/15/25, aspect_ratio and hd, not seconds/size.
    prompt = "a hummingbird in slow motion"
    video = await oai.videos.create(
        model="sora-2-pro", prompt=prompt, seconds="12", size="1792x1024"
    )
    assert video.status in ("queued", "in_progress")
    assert video.seconds == "10"  # nearest allowed duration to 12
    assert video.size == "1792x1024"

    task = (await client.get(f"/api/v1/videos/{video.id}", headers=user.headers)).json()
    assert task["params"]["duration"] == 10
    assert task["params"]["aspect_ratio"] == "16:9"
    assert task["params"]["hd"] is True
    done = await wait_for_task(client, user.headers, video.id)
    assert done["status"] == "completed"
    sent = upstream_create(sim, prompt)
    assert sent["path"] == "/v2/videos/generations"
    assert (sent["body"]["duration"], sent["body"]["aspect_ratio"]) == (10, "16:9")
    assert sent["body"]["hd"] is True


async def test_nearest_duration_respects_the_models_rules(oai: openai.AsyncOpenAI) -> None:
    # 20 s is as far from 15 as from 25; the longer would win, but HD forbids 25 s.
    video = await oai.videos.create(
        model="sora-2-pro",
        prompt="city lights",
        seconds="20",  # type: ignore[arg-type]  # beyond OpenAI's own 4/8/12, on purpose
        size="1792x1024",
    )
    assert video.seconds == "15"
    portrait = await oai.videos.create(model="sora-2", prompt="a tall tower", size="720x1280")
    assert portrait.size == "720x1280"
    assert portrait.seconds == "10"  # the model's default


async def test_input_reference_upload_and_url(
    oai: openai.AsyncOpenAI, raw: httpx.AsyncClient, sim: Simulator, app: FastAPI
) -> None:
    prompt = "the reference image comes alive"
    video = await oai.videos.create(
        model="sora-2-openai",
        prompt=prompt,
        size="720x1280",
        input_reference=("ref.png", png_bytes(), "image/png"),
    )
    assert video.status == "queued"
    done = await oai.videos.poll(video.id, poll_interval_ms=POLL_MS)
    assert done.status == "completed"
    sent = upstream_create(sim, prompt)
    [upload] = sent["files"]
    assert upload["field"] == "input_reference"
    assert upload["content_type"] == "image/png"
    assert upload["size"] == len(png_bytes())

    # JSON with a data URI, the shape OpenAI documents as `{"image_url": …}`.
    json_prompt = "from a data URI"
    created = await raw.post(
        "/v1/videos",
        json={
            "model": "sora-2",
            "prompt": json_prompt,
            "seconds": 15,
            "input_reference": {"image_url": png_data_uri("navy")},
        },
    )
    assert created.status_code == 200, created.text
    body = created.json()
    assert (body["object"], body["seconds"], body["status"]) == ("video", "15", "queued")
    row = await task_row(app, body["id"])
    assert row.model == "sora-2"

    file_id = await raw.post(
        "/v1/videos",
        json={"prompt": "x", "input_reference": {"file_id": "file-123"}},
    )
    error = assert_openai_error(file_id, 400, "unsupported_parameter")
    assert error["param"] == "input_reference"


async def test_list_paginates_like_openai_and_shows_only_own_videos(
    oai: openai.AsyncOpenAI,
    live_url: str,
    client: httpx.AsyncClient,
    other_user: AuthedUser,
) -> None:
    ids = []
    for index in range(3):
        video = await oai.videos.create(model="sora-2", prompt=f"[sim:never] clip {index}")
        ids.append(video.id)
    async with sdk(live_url, await create_api_key(client, other_user)) as theirs:
        foreign = await theirs.videos.create(model="sora-2", prompt="[sim:never] not yours")

    first = await oai.videos.list(limit=2)
    assert [v.id for v in first.data] == ids[::-1][:2]
    assert first.has_more is True
    assert first.last_id == ids[1]
    # The SDK follows `last_id` through every page.
    assert [v.id async for v in oai.videos.list(limit=2)] == ids[::-1]
    assert [v.id async for v in oai.videos.list(limit=1, order="asc")] == ids
    assert foreign.id not in [v.id async for v in oai.videos.list()]
    last = await oai.videos.list(limit=5, after=ids[1])
    assert [v.id for v in last.data] == [ids[0]]
    assert last.has_more is False

    with pytest.raises(openai.BadRequestError) as bad:
        await oai.videos.list(after=foreign.id)
    assert "after" in bad.value.message


async def test_retrieve_and_delete(
    oai: openai.AsyncOpenAI, client: httpx.AsyncClient, user: AuthedUser, app: FastAPI
) -> None:
    video = await oai.videos.create_and_poll(
        model="sora-2", prompt="waves on a shore", poll_interval_ms=POLL_MS
    )
    again = await oai.videos.retrieve(video.id)
    assert again.id == video.id
    assert again.status == "completed"
    [media] = await media_rows(app, video.id)
    storage_key = media.storage_key
    assert storage_key
    assert await app.state.tasks.storage.exists(storage_key)

    deleted = await oai.videos.delete(video.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (video.id, "video.deleted", True)
    with pytest.raises(openai.NotFoundError):
        await oai.videos.retrieve(video.id)
    gone = await client.get(f"/api/v1/videos/{video.id}", headers=user.headers)
    assert gone.status_code == 404
    assert not await app.state.tasks.storage.exists(storage_key)


async def test_another_users_video_is_not_found(
    oai: openai.AsyncOpenAI, live_url: str, client: httpx.AsyncClient, other_user: AuthedUser
) -> None:
    async with sdk(live_url, await create_api_key(client, other_user)) as theirs:
        video = await theirs.videos.create_and_poll(
            model="sora-2", prompt="their private video", poll_interval_ms=POLL_MS
        )
        assert video.status == "completed"
    with pytest.raises(openai.NotFoundError):
        await oai.videos.retrieve(video.id)
    with pytest.raises(openai.NotFoundError):
        await oai.videos.download_content(video.id)
    with pytest.raises(openai.NotFoundError):
        await oai.videos.remix(video.id, prompt="mine now")
    with pytest.raises(openai.NotFoundError):
        await oai.videos.delete(video.id)
    still = await client.get(f"/api/v1/videos/{video.id}", headers=other_user.headers)
    assert still.status_code == 200


async def test_cancelled_and_failed_videos_read_as_failed(
    oai: openai.AsyncOpenAI, client: httpx.AsyncClient, user: AuthedUser
) -> None:
    running = await oai.videos.create(model="sora-2", prompt="[sim:never] forever")
    cancel = await client.post(f"/api/v1/videos/{running.id}/cancel", headers=user.headers)
    assert cancel.status_code == 200
    assert cancel.json()["status"] == "cancelled"
    cancelled = await oai.videos.retrieve(running.id)
    assert cancelled.status == "failed"
    assert cancelled.error is not None
    assert cancelled.error.code == "cancelled"
    with pytest.raises(openai.BadRequestError) as not_ready:
        await oai.videos.download_content(running.id)
    assert "failed" in not_ready.value.message

    failed = await oai.videos.create_and_poll(
        model="sora-2", prompt="[sim:fail=melted] a snowman", poll_interval_ms=POLL_MS
    )
    assert failed.status == "failed"
    assert failed.error is not None
    assert failed.error.code
    assert "melted" in failed.error.message


async def test_content_supports_range_thumbnail_and_refuses_unfinished_videos(
    oai: openai.AsyncOpenAI, raw: httpx.AsyncClient
) -> None:
    pending = await oai.videos.create(model="sora-2", prompt="[sim:never] still rendering")
    early = await raw.get(f"/v1/videos/{pending.id}/content")
    assert_openai_error(early, 400, "video_not_ready")
    polled = await raw.get(f"/v1/videos/{pending.id}")
    assert int(polled.headers["openai-poll-after-ms"]) > 0

    video = await oai.videos.create_and_poll(
        model="sora-2", prompt="a spinning top", poll_interval_ms=POLL_MS
    )
    whole = (await oai.videos.download_content(video.id)).read()
    part = await raw.get(f"/v1/videos/{video.id}/content", headers={"Range": "bytes=0-9"})
    assert part.status_code == 206
    assert part.content == whole[:10]
    assert part.headers["content-range"] == f"bytes 0-9/{len(whole)}"
    head = await raw.head(f"/v1/videos/{video.id}/content")
    assert head.status_code == 200
    assert int(head.headers["content-length"]) == len(whole)
    assert head.content == b""
    assert "openai-poll-after-ms" not in (await raw.get(f"/v1/videos/{video.id}")).headers

    beyond = await raw.get(
        f"/v1/videos/{video.id}/content", headers={"Range": f"bytes={len(whole) + 10}-"}
    )
    assert_openai_error(beyond, 416, "range_not_satisfiable")

    poster = await oai.videos.download_content(video.id, variant="thumbnail")
    assert poster.read()[:3] == b"\xff\xd8\xff"  # JPEG
    with pytest.raises(openai.BadRequestError) as sprites:
        await oai.videos.download_content(video.id, variant="spritesheet")
    assert "spritesheet" in sprites.value.message


async def test_remix_is_refused_clearly_where_the_upstream_has_none(
    oai: openai.AsyncOpenAI,
) -> None:
    video = await oai.videos.create_and_poll(
        model="sora-2", prompt="a red kite", poll_interval_ms=POLL_MS
    )
    with pytest.raises(openai.BadRequestError) as refused:
        await oai.videos.remix(video.id, prompt="a blue kite")
    assert "remix" in refused.value.message.lower()
    assert "sora-2" in refused.value.message
    assert refused.value.code == "remix_not_supported"


async def test_remix_of_an_openai_video(oai: openai.AsyncOpenAI, sim: Simulator) -> None:
    source = await oai.videos.create_and_poll(
        model="sora-2-openai", prompt="a sailing ship", poll_interval_ms=POLL_MS
    )
    remix = await oai.videos.remix(source.id, prompt="a sailing ship at night")
    assert remix.remixed_from_video_id == source.id
    done = await oai.videos.poll(remix.id, poll_interval_ms=POLL_MS)
    assert done.status == "completed"
    sent = upstream_create(sim, "a sailing ship at night")
    assert sent["path"].endswith("/remix")


@pytest.mark.parametrize(
    ("fields", "param", "words"),
    [
        ({"model": "sora-2", "size": "1024x1024"}, "size", ["16:9", "9:16"]),
        ({"model": "sora-2", "size": "wide"}, "size", ["WIDTHxHEIGHT"]),
        ({"model": "sora-2-openai", "size": "1792x1024"}, "size", ["1280x720"]),
        ({"model": "sora-2", "seconds": "soon"}, "seconds", ["seconds"]),
        ({"model": "no-such-model"}, "model", ["no-such-model", "sora-2"]),
        ({"model": "gpt-image-1"}, "model", ["does not make videos"]),
        ({"model": "sora-2", "colour": "red"}, "colour", ["Unrecognized"]),
        ({"model": "sora-2", "aspect_ratio": "4:3"}, "aspect_ratio", ["16:9"]),
    ],
)
async def test_bad_parameters_are_400s_naming_the_field(
    oai: openai.AsyncOpenAI, fields: dict[str, Any], param: str, words: list[str]
) -> None:
    known = {k: fields[k] for k in ("model", "seconds", "size") if k in fields}
    extra = {k: v for k, v in fields.items() if k not in known}
    with pytest.raises(openai.BadRequestError) as refused:
        await oai.videos.create(prompt="anything", extra_body=extra or None, **known)
    error = refused.value
    assert error.param == param
    assert error.type == "invalid_request_error"
    assert param in error.message
    for word in words:
        assert word in error.message


async def test_extra_catalog_parameters_pass_through(
    oai: openai.AsyncOpenAI, client: httpx.AsyncClient, user: AuthedUser
) -> None:
    video = await oai.videos.create(
        model="sora-2",
        prompt="a quiet forest",
        extra_body={"aspect_ratio": "9:16", "watermark": True},
    )
    assert video.size == "720x1280"
    task = (await client.get(f"/api/v1/videos/{video.id}", headers=user.headers)).json()
    assert task["params"]["aspect_ratio"] == "9:16"
    assert task["params"]["watermark"] is True


async def test_concurrent_sdk_clients_each_get_their_own_video(oai: openai.AsyncOpenAI) -> None:
    videos = await asyncio.gather(
        *(
            oai.videos.create_and_poll(
                model="sora-2", prompt=f"parallel {i}", poll_interval_ms=POLL_MS
            )
            for i in range(4)
        )
    )
    assert {v.status for v in videos} == {"completed"}
    assert len({v.id for v in videos}) == 4
    assert sorted(v.prompt or "" for v in videos) == [f"parallel {i}" for i in range(4)]


async def test_idempotency_key_makes_a_retried_create_the_same_video(
    oai: openai.AsyncOpenAI, sim: Simulator
) -> None:
    headers = {"Idempotency-Key": "create-once-42"}
    first = await oai.videos.create(model="sora-2", prompt="once only", extra_headers=headers)
    again = await oai.videos.create(model="sora-2", prompt="once only", extra_headers=headers)
    assert again.id == first.id
    done = await oai.videos.poll(first.id, poll_interval_ms=POLL_MS)
    assert done.status == "completed"
    upstream_create(sim, "once only")  # exactly one create reached the upstream
