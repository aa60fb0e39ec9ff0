"""`/v1/images/generations` and `/v1/images/edits` through the official `openai` package: the
answer is synchronous for the client, the work is our task engine's (history, quotas, storage)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx
import openai
import pytest
from fastapi import FastAPI
from PIL import Image
from sqlalchemy import event

from app.core.tasks import worker as worker_module
from app.core.tasks.worker import TaskWorker
from app.simulator import Simulator
from tests.api.openai.conftest import assert_openai_error, png_bytes
from tests.api.v1.conftest import media_rows
from tests.conftest import AuthedUser
from tests.core.tasks.harness import wait_until

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def image_creates(sim: Simulator, prompt: str) -> list[dict[str, Any]]:
    return [
        r
        for r in sim.store.requests
        if r["method"] == "POST"
        and r["path"].startswith("/v1/images/")
        and (r.get("body") or {}).get("prompt") == prompt
    ]


async def user_images(client: httpx.AsyncClient, user: AuthedUser) -> list[dict[str, Any]]:
    response = await client.get("/api/v1/images?size=100", headers=user.headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def test_generate_b64_json_inlines_the_stored_png(
    oai: openai.AsyncOpenAI,
    client: httpx.AsyncClient,
    app: FastAPI,
    user: AuthedUser,
    sim: Simulator,
) -> None:
    prompt = "a lighthouse, watercolour"
    result = await oai.images.generate(
        model="gpt-image-1", prompt=prompt, size="1024x1024", response_format="b64_json"
    )
    assert result.created > 0
    assert result.data is not None
    [image] = result.data
    assert image.url is None
    assert image.b64_json
    data = base64.b64decode(image.b64_json)
    assert data.startswith(PNG_MAGIC)
    assert Image.open(io.BytesIO(data)).format == "PNG"

    [task] = await user_images(client, user)
    assert task["status"] == "completed"
    assert task["params"]["size"] == "1024x1024"
    [media] = await media_rows(app, task["id"])
    assert media.sha256 == hashlib.sha256(data).hexdigest()
    assert len(image_creates(sim, prompt)) == 1


async def test_generate_url_points_at_our_copy_fetchable_with_the_key(
    oai: openai.AsyncOpenAI, live_url: str, api_key: str, app: FastAPI, sim: Simulator
) -> None:
    result = await oai.images.generate(
        model="flux-pro", prompt="a fox in snow", size="1792x1024", response_format="url"
    )
    assert result.data is not None
    [image] = result.data
    assert image.b64_json is None
    assert image.url is not None
    assert image.url.startswith(f"{live_url}/api/v1/images/")
    assert not image.url.startswith(sim.config.public_base_url or "http://simulator")

    async with httpx.AsyncClient(timeout=30) as http:
        fetched = await http.get(image.url, headers={"Authorization": f"Bearer {api_key}"})
        anonymous = await http.get(image.url)
    assert fetched.status_code == 200
    assert fetched.content.startswith(PNG_MAGIC)
    assert Image.open(io.BytesIO(fetched.content)).format == "PNG"
    task_id = image.url.split("/api/v1/images/")[1].split("/")[0]
    [media] = await media_rows(app, task_id)
    assert media.sha256 == hashlib.sha256(fetched.content).hexdigest()
    assert anonymous.status_code == 401


async def test_defaults_follow_the_model_and_size_maps_to_aspect_ratio(
    oai: openai.AsyncOpenAI, client: httpx.AsyncClient, user: AuthedUser
) -> None:
    # GPT image models answer base64 by default, the others a URL.
    gpt = await oai.images.generate(model="gpt-image-1", prompt="a teapot")
    assert gpt.data is not None
    assert gpt.data[0].b64_json
    flux = await oai.images.generate(model="flux-pro", prompt="a teacup", size="1024x1536")
    assert flux.data is not None
    assert flux.data[0].url
    tiers = await oai.images.generate(model="nano-banana-2", prompt="a kettle", size="1792x1024")
    assert tiers.data is not None

    by_prompt = {t["prompt"]: t for t in await user_images(client, user)}
    assert by_prompt["a teacup"]["params"]["aspect_ratio"] == "2:3"
    assert by_prompt["a kettle"]["params"]["aspect_ratio"] == "16:9"
    assert by_prompt["a kettle"]["params"]["image_size"] == "2K"


async def test_n_images_are_n_tasks(
    oai: openai.AsyncOpenAI, client: httpx.AsyncClient, user: AuthedUser
) -> None:
    result = await oai.images.generate(
        model="nano-banana", prompt="three moons", n=3, response_format="url"
    )
    assert result.data is not None
    assert len(result.data) == 3
    assert len({d.url for d in result.data}) == 3
    tasks = await user_images(client, user)
    assert len(tasks) == 3
    assert len({t["batch_id"] for t in tasks}) == 1


async def test_edit_with_files_and_a_mask(
    oai: openai.AsyncOpenAI, sim: Simulator, client: httpx.AsyncClient, user: AuthedUser
) -> None:
    prompt = "put the two together"
    result = await oai.images.edit(
        model="nano-banana",
        prompt=prompt,
        image=[
            ("a.png", png_bytes(colour="red"), "image/png"),
            ("b.png", png_bytes(colour="blue"), "image/png"),
        ],
        size="1024x1024",
        response_format="b64_json",
    )
    assert result.data is not None
    [image] = result.data
    assert base64.b64decode(image.b64_json or "").startswith(PNG_MAGIC)
    [sent] = image_creates(sim, prompt)
    assert sent["path"] == "/v1/images/edits"
    assert len(sent["files"]) == 2
    assert {f["size"] for f in sent["files"]} == {
        len(png_bytes(colour="red")),
        len(png_bytes(colour="blue")),
    }
    [task] = await user_images(client, user)
    assert task["params"]["aspect_ratio"] == "1:1"

    masked_prompt = "paint inside the mask"
    masked = await oai.images.edit(
        model="gpt-image-1",
        prompt=masked_prompt,
        image=("photo.png", png_bytes(), "image/png"),
        mask=("mask.png", png_bytes(colour="white"), "image/png"),
    )
    assert masked.data is not None
    assert masked.data[0].b64_json
    [sent_masked] = image_creates(sim, masked_prompt)
    assert {f["field"] for f in sent_masked["files"]} >= {"mask"}


async def test_edit_refusals_name_the_field(
    oai: openai.AsyncOpenAI, raw: httpx.AsyncClient
) -> None:
    with pytest.raises(openai.BadRequestError) as no_edits:
        await oai.images.edit(
            model="flux-pro", prompt="edit me", image=("a.png", png_bytes(), "image/png")
        )
    assert no_edits.value.param == "image"
    assert "flux-pro" in no_edits.value.message

    not_an_image = await raw.post(
        "/v1/images/edits",
        data={"model": "nano-banana", "prompt": "x"},
        files={"image": ("notes.txt", b"just text", "text/plain")},
    )
    error = assert_openai_error(not_an_image, 415, "unsupported_media_type")
    assert error["param"] == "image"
    no_file = await raw.post("/v1/images/edits", data={"model": "nano-banana", "prompt": "x"})
    assert assert_openai_error(no_file, 400)["param"] == "image"


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"model": "dall-e-3", "size": "1024x1536"}, "size"),
        ({"model": "dall-e-3", "quality": "ultra"}, "quality"),
        ({"model": "flux-pro", "quality": "high"}, "quality"),
        ({"model": "flux-pro", "size": "10x1000"}, "size"),
        ({"model": "sora-2"}, "model"),
        ({"model": "gpt-image-1", "n": 11}, "n"),
        ({"model": "gpt-image-1", "stream": True}, "stream"),
    ],
)
async def test_generate_bad_parameters_are_400s_naming_the_field(
    oai: openai.AsyncOpenAI,
    client: httpx.AsyncClient,
    user: AuthedUser,
    kwargs: dict[str, Any],
    param: str,
) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        await oai.images.generate(prompt="anything", **kwargs)
    assert refused.value.param == param
    assert param in refused.value.message
    assert await user_images(client, user) == []  # nothing was queued


async def test_an_upstream_refusal_is_a_400_and_a_failed_task_in_history(
    oai: openai.AsyncOpenAI, client: httpx.AsyncClient, user: AuthedUser
) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        await oai.images.generate(model="gpt-image-1", prompt="[sim:reject=not allowed] cat")
    assert refused.value.code == "upstream_rejected"
    assert "not allowed" in refused.value.message
    [task] = await user_images(client, user)
    assert task["status"] == "failed"


@pytest.mark.parametrize(
    "settings_overrides",
    [{"polling_interval": 0.05, "simulator_task_seconds": 0.3, "request_timeout": 0.5}],
)
async def test_a_slow_image_times_out_without_inviting_a_retry(
    live_url: str,
    api_key: str,
    client: httpx.AsyncClient,
    user: AuthedUser,
) -> None:
    # The SDK's default retries are on: the answer must tell it not to pay twice.
    async with openai.AsyncOpenAI(
        api_key=api_key, base_url=f"{live_url}/v1", max_retries=2, timeout=30
    ) as patient:
        with pytest.raises(openai.InternalServerError) as timed_out:
            await patient.images.generate(model="gpt-image-1", prompt="[sim:slow=3] a snail")
    assert timed_out.value.status_code == 504
    assert timed_out.value.response.headers["x-should-retry"] == "false"
    [task] = await user_images(client, user)
    assert task["id"] in timed_out.value.message


async def take_every_admission(worker: TaskWorker) -> list[AbstractAsyncContextManager[None]]:
    """Hold every admission of `worker`, as that many synchronous requests in flight would."""
    taken: list[AbstractAsyncContextManager[None]] = []
    while not worker._admission.locked():
        admission = worker.admission()
        await admission.__aenter__()
        taken.append(admission)
    return taken


async def test_a_synchronous_request_past_the_workers_room_waits_before_touching_the_database(
    app: FastAPI,
    raw: httpx.AsyncClient,
    client: httpx.AsyncClient,
    user: AuthedUser,
) -> None:
    worker = app.state.tasks.worker
    taken = await take_every_admission(worker)
    key_lookups: list[str] = []

    def on_execute(conn: object, cursor: object, statement: str, *args: object) -> None:
        if "api_keys" in statement:
            key_lookups.append(statement)

    event.listen(app.state.db.engine.sync_engine, "before_cursor_execute", on_execute)
    request = asyncio.ensure_future(
        raw.post(
            "/v1/images/generations",
            json={"model": "gpt-image-1", "prompt": "waits at the door"},
        )
    )

    async def at_the_door() -> bool:
        return worker.awaiting_admission == 1

    await wait_until(at_the_door, within=10)
    # Waiting it has not even authenticated (the first thing that takes a connection) and has
    # created nothing.
    assert key_lookups == []
    assert await user_images(client, user) == []
    for cm in taken:
        await cm.__aexit__(None, None, None)
    response = await request
    assert response.status_code == 200, response.text
    assert len(response.json()["data"]) == 1
    assert worker.awaiting_admission == 0
    assert key_lookups


async def test_a_synchronous_request_goes_ahead_after_the_admission_wait(
    app: FastAPI, raw: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker_module, "ADMISSION_WAIT", 0.2)
    worker = app.state.tasks.worker
    taken = await take_every_admission(worker)
    try:
        # Queued for a claim instead of handed over, it still completes.
        response = await raw.post(
            "/v1/images/generations",
            json={"model": "gpt-image-1", "prompt": "goes ahead"},
        )
        assert response.status_code == 200, response.text
        assert len(response.json()["data"]) == 1
    finally:
        for cm in taken:
            await cm.__aexit__(None, None, None)
