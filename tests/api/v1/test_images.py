"""End-to-end image generation: `/api/v1/images` (JSON) and `/api/v1/images/edits` (multipart),
through the worker and the simulator's synchronous image endpoints."""

from __future__ import annotations

import io
import os
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from PIL import Image

from app.simulator import Simulator
from tests.api.v1.conftest import (
    FAST_TASKS,
    create,
    sha256,
    sim_stats,
    upstream_bytes,
    wait_for_task,
)
from tests.conftest import AuthedUser

UPLOAD_LIMIT = 4096


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {**FAST_TASKS, "upload_max_bytes": UPLOAD_LIMIT}


def png(width: int = 24, height: int = 24, colour: str = "teal") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg(width: int = 24, height: int = 24) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "white").save(buffer, format="JPEG")
    return buffer.getvalue()


def edit_requests(sim: Simulator) -> list[dict[str, Any]]:
    return [r for r in sim.store.requests if r["path"] == "/v1/images/edits"]


# ----------------------------------------------------------------------------- generations


@pytest.mark.parametrize("response_format", ["url", "b64_json"])
async def test_every_image_model_completes_with_the_bytes_the_upstream_served(
    response_format: str,
    client: httpx.AsyncClient,
    app: FastAPI,
    user: AuthedUser,
    sim: Simulator,
) -> None:
    catalog = await client.get("/api/v1/models?kind=image", headers=user.headers)
    assert catalog.status_code == 200
    models = [m["id"] for m in catalog.json()["data"]]
    assert {"gpt-image-1", "dall-e-3", "nano-banana", "flux-pro"} <= set(models)
    for model in models:
        prompt = f"a paper crane ({model}, {response_format})"
        task = await create(
            client,
            user.headers,
            {"model": model, "prompt": prompt, "params": {"response_format": response_format}},
            kind="images",
            wait=30,
        )
        assert task["status"] == "completed", (model, task)
        assert task["object"] == "image"
        assert task["params"]["response_format"] == response_format
        [media] = task["media"]
        assert media["state"] == "stored", (model, media)
        assert media["content_type"] == "image/png"
        assert media["width"]
        assert media["height"]
        assert media["url"] == f"/api/v1/images/{task['id']}/media/{media['id']}/content"

        content = await client.get(f"/api/v1/images/{task['id']}/content", headers=user.headers)
        assert content.status_code == 200
        assert content.headers["content-type"] == "image/png"
        assert sha256(content.content) == media["sha256"]
        assert content.content == await upstream_bytes(app, media["id"])
        assert (await sim_stats(app, prompt))["creates"] == 1

    # The upstream was asked for the format we chose.
    sent = [
        r["body"]["response_format"]
        for r in sim.store.requests
        if r["path"] == "/v1/images/generations"
    ]
    assert sent
    assert set(sent) == {response_format}


async def test_image_failure_fails_the_task(client: httpx.AsyncClient, user: AuthedUser) -> None:
    task = await create(
        client,
        user.headers,
        {"model": "gpt-image-1", "prompt": "no [sim:fail=unsafe prompt]"},
        kind="images",
        wait=30,
    )
    assert task["status"] == "failed"
    assert task["error"]["code"] in {"upstream_rejected", "upstream_failed"}
    assert "unsafe prompt" in task["error"]["message"]


async def test_image_batch_and_wait(client: httpx.AsyncClient, user: AuthedUser) -> None:
    tasks = await create(
        client,
        user.headers,
        {"model": "nano-banana", "prompt": "four seasons", "n": 4},
        kind="images",
        wait=30,
    )
    assert len(tasks) == 4
    assert len({t["batch_id"] for t in tasks}) == 1
    assert all(t["status"] == "completed" for t in tasks)
    assert len({t["media"][0]["id"] for t in tasks}) == 4


async def test_json_request_with_reference_images_is_an_edit_upstream(
    client: httpx.AsyncClient, user: AuthedUser, sim: Simulator
) -> None:
    import base64

    ref = "data:image/png;base64," + base64.b64encode(png()).decode()
    task = await create(
        client,
        user.headers,
        {"model": "nano-banana", "prompt": "blend", "images": [ref, ref]},
        kind="images",
        wait=30,
    )
    assert task["status"] == "completed", task
    [request] = edit_requests(sim)
    assert len(request["files"]) == 2


# ----------------------------------------------------------------------------- edits (multipart)


async def test_edit_with_several_images_under_both_field_names_and_a_mask(
    client: httpx.AsyncClient, app: FastAPI, user: AuthedUser, sim: Simulator
) -> None:
    files = [
        ("image", ("a.png", png(colour="red"), "image/png")),
        ("image", ("b.jpg", jpeg(), "image/jpeg")),
        ("image[]", ("c.png", png(colour="blue"), "image/png")),
        ("mask", ("mask.png", png(colour="black"), "image/png")),
    ]
    data = {
        "model": "gpt-image-1",
        "prompt": "put them together",
        "title": "Collage",
        "size": "1024x1024",
        "response_format": "url",
        "tags": "edit,collage",
    }
    response = await client.post(
        "/api/v1/images/edits?wait=30", data=data, files=files, headers=user.headers
    )
    assert response.status_code == 200, response.text
    task = response.json()
    assert task["status"] == "completed", task
    assert task["title"] == "Collage"
    assert task["tags"] == ["edit", "collage"]
    assert task["params"]["size"] == "1024x1024"
    [media] = task["media"]
    assert media["state"] == "stored"
    content = await client.get(f"/api/v1/images/{task['id']}/content", headers=user.headers)
    assert content.content == await upstream_bytes(app, media["id"])

    # The upstream received three images and the mask, each as a file.
    [request] = edit_requests(sim)
    names = [f["field"] for f in request["files"]]
    assert names.count("mask") == 1
    assert len([n for n in names if n in {"image", "image[]"}]) == 3
    assert request["body"]["size"] == "1024x1024"
    assert request["body"]["prompt"] == "put them together"


async def test_edit_params_as_json_field(
    client: httpx.AsyncClient, user: AuthedUser, sim: Simulator
) -> None:
    response = await client.post(
        "/api/v1/images/edits",
        data={"model": "gpt-image-1", "prompt": "p", "params": '{"quality": "high"}', "n": "2"},
        files=[("image[]", ("a.png", png(), "image/png"))],
        headers=user.headers,
    )
    assert response.status_code == 202, response.text
    tasks = response.json()
    assert len(tasks) == 2
    assert all(t["params"]["quality"] == "high" for t in tasks)
    for task in tasks:
        assert (await wait_for_task(client, user.headers, task["id"]))["status"] == "completed"


async def test_oversize_upload_is_413(client: httpx.AsyncClient, user: AuthedUser) -> None:
    big = png() + os.urandom(UPLOAD_LIMIT)  # a PNG header, then far too many bytes
    for field in ("image", "mask"):
        files = [("image", ("a.png", png(), "image/png"))]
        files.append((field, ("big.png", big, "image/png")))
        response = await client.post(
            "/api/v1/images/edits",
            data={"model": "gpt-image-1", "prompt": "p"},
            files=files,
            headers=user.headers,
        )
        assert response.status_code == 413, response.text
        assert response.json()["error"]["code"] == "payload_too_large"
    listing = await client.get("/api/v1/images", headers=user.headers)
    assert listing.json()["total"] == 0


@pytest.mark.parametrize(
    ("filename", "payload", "content_type"),
    [
        ("notes.txt", b"just some text, not an image", "text/plain"),
        ("fake.png", b"GIF89a" + b"\x00" * 64, "image/png"),  # the type is sniffed, not trusted
        ("empty.png", b"", "image/png"),
    ],
)
async def test_non_image_upload_is_415(
    filename: str,
    payload: bytes,
    content_type: str,
    client: httpx.AsyncClient,
    user: AuthedUser,
) -> None:
    response = await client.post(
        "/api/v1/images/edits",
        data={"model": "gpt-image-1", "prompt": "p"},
        files=[("image", (filename, payload, content_type))],
        headers=user.headers,
    )
    assert response.status_code == 415, response.text
    error = response.json()["error"]
    assert error["code"] == "unsupported_media_type"
    assert error["details"][0]["field"] == "image[0]"


@pytest.mark.parametrize(
    ("data", "with_mask", "field"),
    [
        ({"model": "gpt-image-1", "prompt": "p", "size": "999x999"}, False, "size"),
        ({"model": "gpt-image-1", "prompt": "p", "params": "{not json"}, False, "params"),
        ({"model": "gpt-image-1", "prompt": "p", "params": "[1, 2]"}, False, "params"),
        ({"model": "gpt-image-1", "prompt": ""}, False, "prompt"),
        ({"model": "gpt-image-1", "prompt": "p", "n": "0"}, False, "n"),
        ({"model": "nano-banana", "prompt": "p"}, True, "mask"),
        ({"model": "dall-e-3", "prompt": "p"}, False, "images"),
        ({"model": "sora-2", "prompt": "p"}, False, "model"),
    ],
)
async def test_bad_edit_params_are_422_naming_the_field(
    data: dict[str, str],
    with_mask: bool,
    field: str,
    client: httpx.AsyncClient,
    user: AuthedUser,
) -> None:
    files = [("image", ("a.png", png(), "image/png"))]
    if with_mask:
        files.append(("mask", ("m.png", png(), "image/png")))
    response = await client.post(
        "/api/v1/images/edits", data=data, files=files, headers=user.headers
    )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    named = " ".join(
        " ".join([str(d.get("field", ""))] + [str(f) for f in d.get("fields", [])])
        for d in error["details"] or []
    )
    assert field in named or field in error["message"], error


async def test_edit_without_an_image_is_422(client: httpx.AsyncClient, user: AuthedUser) -> None:
    response = await client.post(
        "/api/v1/images/edits",
        data={"model": "gpt-image-1", "prompt": "p"},
        files=[("other", ("a.png", png(), "image/png"))],
        headers=user.headers,
    )
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "image"


async def test_too_many_reference_images_for_the_model_is_422(
    client: httpx.AsyncClient, user: AuthedUser
) -> None:
    response = await client.post(
        "/api/v1/images/edits",
        data={"model": "flux-kontext-pro", "prompt": "p"},
        files=[("image", (f"{i}.png", png(), "image/png")) for i in range(2)],
        headers=user.headers,
    )
    assert response.status_code == 422, response.text


async def test_edit_takes_sixteen_images_and_a_mask_but_not_more(
    client: httpx.AsyncClient, user: AuthedUser, sim: Simulator
) -> None:
    sixteen = [("image[]", (f"{i}.png", png(), "image/png")) for i in range(16)]
    mask = [("mask", ("m.png", png(colour="black"), "image/png"))]
    accepted = await client.post(
        "/api/v1/images/edits?wait=30",
        data={"model": "gpt-image-1", "prompt": "many"},
        files=sixteen + mask,
        headers=user.headers,
    )
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["status"] == "completed"
    [request] = edit_requests(sim)
    assert len(request["files"]) == 17

    for count in (17, 40):
        files = [("image", (f"{i}.png", png(), "image/png")) for i in range(count)]
        refused = await client.post(
            "/api/v1/images/edits",
            data={"model": "gpt-image-1", "prompt": "too many"},
            files=files,
            headers=user.headers,
        )
        assert refused.status_code == 422, (count, refused.text)
        fields = [d.get("field") for d in refused.json()["error"]["details"]]
        assert {"image", "images"} & set(fields), refused.json()


def data_uri(data: bytes, content_type: str = "image/png") -> str:
    import base64

    return f"data:{content_type};base64," + base64.b64encode(data).decode()


@pytest.mark.parametrize(
    ("ref", "status", "code"),
    [
        (data_uri(png() + os.urandom(UPLOAD_LIMIT)), 413, "payload_too_large"),
        (data_uri(b"<html><body>not an image</body></html>"), 415, "unsupported_media_type"),
        (data_uri(b""), 415, "unsupported_media_type"),
        ("data:image/png;base64,@@not-base64@@", 422, "validation_error"),
        ("data:image/png,rawbytes", 422, "validation_error"),
    ],
)
async def test_json_data_uri_images_get_the_upload_limits(
    ref: str,
    status: int,
    code: str,
    client: httpx.AsyncClient,
    user: AuthedUser,
    sim: Simulator,
) -> None:
    for kind, body in (
        ("images", {"model": "nano-banana", "prompt": "p", "images": [data_uri(png()), ref]}),
        ("videos", {"model": "veo3", "prompt": "p", "images": [ref]}),
        (
            "images",
            {"model": "gpt-image-1", "prompt": "p", "images": [data_uri(png())], "mask": ref},
        ),
    ):
        response = await client.post(f"/api/v1/{kind}", json=body, headers=user.headers)
        assert response.status_code == status, (kind, response.text)
        error = response.json()["error"]
        assert error["code"] == code
        expected_field = (
            "mask" if body.get("mask") == ref else f"images[{body['images'].index(ref)}]"
        )
        assert error["details"][0]["field"] == expected_field
    assert sim.store.stats.create_requests == 0


async def test_malformed_upstream_key_is_refused_at_create(
    client: httpx.AsyncClient, user: AuthedUser
) -> None:
    for key in ("has a space", "x" * 513, "tab\there"):
        response = await client.post(
            "/api/v1/images",
            json={"model": "nano-banana", "prompt": "p"},
            headers={**user.headers, "X-API-Key": key},
        )
        assert response.status_code == 422, (key, response.text)
        assert response.json()["error"]["details"][0]["field"] == "X-API-Key"
        assert key not in response.text
