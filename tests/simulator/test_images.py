"""Synchronous image endpoints: generations (JSON) and edits (multipart)."""

from __future__ import annotations

import base64

import pytest

from tests.simulator.conftest import Harness, open_image, png_bytes


async def test_generations_return_n_urls(sim: Harness) -> None:
    response = await sim.client.post(
        "/v1/images/generations",
        json={"model": "flux-pro", "prompt": "three", "n": 3, "size": "128x128"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert isinstance(body["created"], int)
    urls = [item["url"] for item in body["data"]]
    assert len(urls) == 3
    assert len(set(urls)) == 3
    for url in urls:
        assert url.startswith(sim.base_url + "/media/")
        image = open_image((await sim.client.get(url)).content)
        assert image.size == (128, 128)


async def test_b64_json_mode(sim: Harness) -> None:
    response = await sim.client.post(
        "/v1/images/generations",
        json={
            "model": "gpt-image-1",
            "prompt": "inline",
            "n": 2,
            "size": "64x32",
            "response_format": "b64_json",
        },
    )
    assert response.status_code == 200, response.text
    items = response.json()["data"]
    assert len(items) == 2
    for item in items:
        assert "url" not in item
        image = open_image(base64.b64decode(item["b64_json"]))
        assert image.format == "PNG"
        assert image.size == (64, 32)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"aspect_ratio": "16:9", "image_size": "2K"}, (256, 144)),  # capped at max_image_side
        ({"aspect_ratio": "9:16"}, (144, 256)),
        ({"size": "4096x4096"}, (256, 256)),
        ({"size": "auto"}, (256, 256)),
        ({}, (256, 256)),
        ({"size": "200x100"}, (200, 100)),
    ],
)
async def test_size_and_aspect_ratio(
    asgi: Harness, fields: dict[str, str], expected: tuple[int, int]
) -> None:
    response = await asgi.client.post(
        "/v1/images/generations",
        json={"model": "nano-banana-2", "prompt": "sized", "response_format": "b64_json", **fields},
    )
    assert response.status_code == 200, response.text
    image = open_image(base64.b64decode(response.json()["data"][0]["b64_json"]))
    assert image.size == expected


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"n": 0}, "n must be"),
        ({"n": 11}, "n must be"),
        ({"response_format": "jpeg"}, "response_format"),
        ({"size": "big"}, "size"),
        ({"image_size": "8K"}, "image_size"),
        ({"aspect_ratio": "wide"}, "aspect_ratio"),
        ({"prompt": ""}, "prompt is required"),
        ({"output_format": "gif"}, "output_format"),
    ],
)
async def test_generation_validation(asgi: Harness, fields: dict[str, object], reason: str) -> None:
    body = {"model": "dall-e-3", "prompt": "x", **fields}
    response = await asgi.client.post("/v1/images/generations", json=body)
    assert response.status_code == 400
    assert reason in response.json()["error"]["message"]


async def test_edits_with_single_image_keep_its_size(sim: Harness) -> None:
    response = await sim.client.post(
        "/v1/images/edits",
        data={"model": "gpt-image-1", "prompt": "edit one", "response_format": "b64_json"},
        files={"image": ("in.png", png_bytes(40, 30), "image/png")},
    )
    assert response.status_code == 200, response.text
    image = open_image(base64.b64decode(response.json()["data"][0]["b64_json"]))
    assert image.size == (40, 30)


async def test_edits_with_image_array_and_mask(sim: Harness) -> None:
    files = [
        ("image[]", ("a.png", png_bytes(50, 50), "image/png")),
        ("image[]", ("b.png", png_bytes(60, 40, (0, 200, 0)), "image/png")),
        ("mask", ("mask.png", png_bytes(50, 50, (0, 0, 0)), "image/png")),
    ]
    response = await sim.client.post(
        "/v1/images/edits",
        data={"model": "nano-banana", "prompt": "merge two", "n": "2", "size": "64x64"},
        files=files,
    )
    assert response.status_code == 200, response.text
    urls = [item["url"] for item in response.json()["data"]]
    assert len(urls) == 2
    assert open_image((await sim.client.get(urls[0])).content).size == (64, 64)
    log = (await sim.client.get("/_sim/requests", params={"limit": 5})).json()["requests"]
    edit = next(entry for entry in log if entry["path"] == "/v1/images/edits")
    assert [item["field"] for item in edit["files"]] == ["image[]", "image[]", "mask"]
    assert edit["body"]["prompt"] == "merge two"


async def test_edits_accept_repeated_image_field(asgi: Harness) -> None:
    files = [
        ("image", ("a.png", png_bytes(), "image/png")),
        ("image", ("b.png", png_bytes(), "image/png")),
    ]
    response = await asgi.client.post(
        "/v1/images/edits", data={"model": "seedream-4", "prompt": "two"}, files=files
    )
    assert response.status_code == 200, response.text
    entry = list(asgi.simulator.store.requests)[-1]
    assert len(entry["files"]) == 2


async def test_edits_reject_missing_or_broken_images(asgi: Harness) -> None:
    no_image = await asgi.client.post(
        "/v1/images/edits",
        data={"model": "m", "prompt": "p"},
        files={"other": ("x.txt", b"hello", "text/plain")},
    )
    assert no_image.status_code == 400
    assert "at least one image" in no_image.json()["error"]["message"]

    broken = await asgi.client.post(
        "/v1/images/edits",
        data={"model": "m", "prompt": "p"},
        files={"image": ("x.png", b"not a png", "image/png")},
    )
    assert broken.status_code == 400
    assert "not a valid image" in broken.json()["error"]["message"]

    bad_mask = await asgi.client.post(
        "/v1/images/edits",
        data={"model": "m", "prompt": "p"},
        files=[
            ("image", ("x.png", png_bytes(), "image/png")),
            ("mask", ("m.png", b"junk", "image/png")),
        ],
    )
    assert bad_mask.status_code == 400
    assert "mask" in bad_mask.json()["error"]["message"]

    as_json = await asgi.client.post("/v1/images/edits", json={"model": "m", "prompt": "p"})
    assert as_json.status_code == 400
    assert "multipart" in as_json.json()["error"]["message"]


async def test_image_fail_directive(asgi: Harness) -> None:
    response = await asgi.client.post(
        "/v1/images/generations",
        json={"model": "dall-e-3", "prompt": "nope [sim:fail=content policy violation]"},
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "generation_failed"
    assert error["message"] == "content policy violation"
    stats = (await asgi.client.get("/_sim/stats")).json()
    assert stats["creates"] == 0
    assert stats["create_requests"] == 1


async def test_image_expired_url_directive(asgi: Harness) -> None:
    response = await asgi.client.post(
        "/v1/images/generations",
        json={"model": "dall-e-3", "prompt": "short lived [sim:expired-url]"},
    )
    url = response.json()["data"][0]["url"]
    assert (await asgi.client.get(url)).status_code == 404


async def test_image_ttl_counts_from_creation(asgi: Harness) -> None:
    asgi.configure(result_ttl=30)
    response = await asgi.client.post(
        "/v1/images/generations", json={"model": "dall-e-3", "prompt": "ttl"}
    )
    url = response.json()["data"][0]["url"]
    assert (await asgi.client.get(url)).status_code == 200
    asgi.clock.advance(31)
    assert (await asgi.client.get(url)).status_code == 404


async def test_broken_multipart_is_400_json(asgi: Harness) -> None:
    response = await asgi.client.post(
        "/v1/images/edits",
        content=b"--xyz\r\nContent-Disposition: form-data\r\n\r\nno name\r\n--xyz--\r\n",
        headers={"Content-Type": "multipart/form-data; boundary=xyz"},
    )
    assert response.status_code == 400
    assert "message" in response.json()["error"]
