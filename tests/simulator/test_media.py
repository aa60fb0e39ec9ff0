"""Media downloads: real MP4/PNG/JPEG, Range, chunked transfer, expiry."""

from __future__ import annotations

import pytest

from tests.simulator.conftest import Harness, decodable_video_frames, open_image


async def _completed_video_url(sim: Harness, prompt: str = "media") -> str:
    sim.configure(task_seconds=0)
    created = await sim.client.post(
        "/v2/videos/generations", json={"model": "sora-2", "prompt": prompt}
    )
    assert created.status_code == 200, created.text
    task_id = created.json()["task_id"]
    data = (await sim.client.get(f"/v2/videos/generations/{task_id}")).json()
    assert data["status"] == "completed"
    url: str = data["video_url"]
    return url


async def test_video_has_decodable_frames_and_is_cached(sim: Harness) -> None:
    url = await _completed_video_url(sim)
    first = await sim.client.get(url)
    second = await sim.client.get(url)
    assert first.content == second.content
    assert decodable_video_frames(first.content) == sim.simulator.config.video_frames


@pytest.mark.parametrize(("output_format", "pil_format"), [("png", "PNG"), ("jpeg", "JPEG")])
async def test_images_open_with_pillow_at_requested_size(
    sim: Harness, output_format: str, pil_format: str
) -> None:
    response = await sim.client.post(
        "/v1/images/generations",
        json={
            "model": "gpt-image-1",
            "prompt": "pic",
            "size": "96x64",
            "output_format": output_format,
        },
    )
    assert response.status_code == 200, response.text
    url = response.json()["data"][0]["url"]
    assert url.endswith(".png" if output_format == "png" else ".jpg")
    media = await sim.client.get(url)
    assert media.headers["content-type"] == f"image/{pil_format.lower()}"
    image = open_image(media.content)
    assert image.format == pil_format
    assert image.size == (96, 64)


async def test_range_requests(sim: Harness) -> None:
    url = await _completed_video_url(sim)
    full = (await sim.client.get(url)).content
    size = len(full)

    head = await sim.client.get(url, headers={"Range": "bytes=0-99"})
    assert head.status_code == 206
    assert head.headers["content-range"] == f"bytes 0-99/{size}"
    assert head.headers["content-length"] == "100"
    assert head.content == full[:100]

    rest = await sim.client.get(url, headers={"Range": "bytes=100-"})
    assert rest.status_code == 206
    assert head.content + rest.content == full

    tail = await sim.client.get(url, headers={"Range": "bytes=-10"})
    assert tail.content == full[-10:]
    assert tail.headers["content-range"] == f"bytes {size - 10}-{size - 1}/{size}"

    beyond = await sim.client.get(url, headers={"Range": f"bytes={size}-"})
    assert beyond.status_code == 416
    assert beyond.headers["content-range"] == f"bytes */{size}"


async def test_head_reports_length_without_body(sim: Harness) -> None:
    url = await _completed_video_url(sim)
    full = await sim.client.get(url)
    head = await sim.client.head(url)
    assert head.status_code == 200
    assert head.headers["content-length"] == str(len(full.content))
    assert head.content == b""


async def test_chunked_over_http_by_config_and_by_directive(live: Harness) -> None:
    url = await _completed_video_url(live, "plain")
    plain = await live.client.get(url)
    assert "content-length" in plain.headers
    assert "transfer-encoding" not in plain.headers

    live.configure(chunked=True)
    chunked = await live.client.get(url)
    assert chunked.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in chunked.headers
    assert chunked.content == plain.content

    # A task can opt out of (or into) chunking whatever the config says.
    opted_out = await _completed_video_url(live, "solid [sim:no-chunked]")
    response = await live.client.get(opted_out)
    assert "transfer-encoding" not in response.headers
    live.configure(chunked=False)
    opted_in = await _completed_video_url(live, "chunks [sim:chunked]")
    response = await live.client.get(opted_in)
    assert response.headers.get("transfer-encoding") == "chunked"
    assert decodable_video_frames(response.content) >= 1


async def test_media_is_404_until_the_task_completes(asgi: Harness) -> None:
    created = await asgi.client.post(
        "/v2/videos/generations", json={"model": "sora-2", "prompt": "not yet"}
    )
    task_id = created.json()["task_id"]
    view = (await asgi.client.get(f"/_sim/tasks/{task_id}")).json()
    assert view["state"] == "queued"
    assert (await asgi.client.get(view["media_url"])).status_code == 404
    asgi.clock.advance(10)
    assert (await asgi.client.get(view["media_url"])).status_code == 200


async def test_result_ttl_expires_media(sim: Harness) -> None:
    sim.configure(result_ttl=60)
    url = await _completed_video_url(sim)
    sim.clock.advance(59)
    assert (await sim.client.get(url)).status_code == 200
    sim.clock.advance(2)
    expired = await sim.client.get(url)
    assert expired.status_code == 404
    assert "expired" in expired.json()["error"]["message"]


async def test_expired_url_directive(sim: Harness) -> None:
    url = await _completed_video_url(sim, "gone [sim:expired-url]")
    assert (await sim.client.get(url)).status_code == 404


async def test_expire_media_control_endpoint(asgi: Harness) -> None:
    url = await _completed_video_url(asgi)
    task_id = asgi.simulator.store.media[url.rsplit("/", 1)[1].split(".")[0]].task_id
    assert (await asgi.client.get(url)).status_code == 200
    response = await asgi.client.post(f"/_sim/tasks/{task_id}/expire-media")
    assert response.json()["media_available"] is False
    assert (await asgi.client.get(url)).status_code == 404


async def test_media_needs_no_key_but_wrong_extension_is_404(sim: Harness) -> None:
    url = await _completed_video_url(sim)
    async with sim.anonymous() as anonymous:
        assert (await anonymous.get(url)).status_code == 200
        assert (await anonymous.get(url.replace(".mp4", ".png"))).status_code == 404
        assert (await anonymous.get("/media/unknown.mp4")).status_code == 404


async def test_public_base_url_overrides_request_base(asgi: Harness) -> None:
    asgi.configure(public_base_url="https://cdn.example.test/")
    url = await _completed_video_url(asgi)
    assert url.startswith("https://cdn.example.test/media/")
