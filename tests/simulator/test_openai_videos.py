"""The official OpenAI Sora shape: /v1/videos create, retrieve, content, list, delete, remix."""

from __future__ import annotations

from typing import Any

import pytest

from tests.simulator.conftest import Harness, decodable_video_frames, open_image, png_bytes

VIDEO_KEYS = {
    "id",
    "object",
    "model",
    "status",
    "progress",
    "created_at",
    "completed_at",
    "expires_at",
    "prompt",
    "size",
    "seconds",
    "remixed_from_video_id",
    "error",
}


async def create_video(sim: Harness, prompt: str = "a boat", **fields: Any) -> dict[str, Any]:
    response = await sim.client.post(
        "/v1/videos",
        data={"model": "sora-2", "prompt": prompt, "seconds": "4", "size": "1280x720", **fields},
        files={"input_reference": ("ref.png", png_bytes(64, 36), "image/png")},
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_multipart_create_poll_download(sim: Harness) -> None:
    video = await create_video(sim)
    assert set(video) == VIDEO_KEYS
    assert video["object"] == "video"
    assert video["status"] == "queued"
    assert video["progress"] == 0
    assert video["seconds"] == "4"
    assert video["size"] == "1280x720"
    assert video["id"].startswith("video_")

    early = await sim.client.get(f"/v1/videos/{video['id']}/content")
    assert early.status_code == 404

    sim.clock.advance(5)
    running = (await sim.client.get(f"/v1/videos/{video['id']}")).json()
    assert running["status"] == "in_progress"
    assert 0 < running["progress"] < 100

    sim.clock.advance(5)
    done = (await sim.client.get(f"/v1/videos/{video['id']}")).json()
    assert done["status"] == "completed"
    assert done["progress"] == 100
    assert done["completed_at"] == int(sim.clock.now)
    assert done["expires_at"] is None

    content = await sim.client.get(f"/v1/videos/{video['id']}/content")
    assert content.status_code == 200
    assert content.headers["content-type"] == "video/mp4"
    assert decodable_video_frames(content.content) >= 1
    thumbnail = await sim.client.get(
        f"/v1/videos/{video['id']}/content", params={"variant": "thumbnail"}
    )
    assert open_image(thumbnail.content).format == "WEBP"


async def test_json_create_and_validation(asgi: Harness) -> None:
    ok = await asgi.client.post(
        "/v1/videos", json={"model": "sora-2-pro", "prompt": "p", "seconds": 8, "size": "1024x1792"}
    )
    assert ok.status_code == 200, ok.text
    assert ok.json()["seconds"] == "8"
    bad_seconds = await asgi.client.post("/v1/videos", json={"prompt": "p", "seconds": "5"})
    assert bad_seconds.status_code == 400
    assert "seconds" in bad_seconds.json()["error"]["message"]
    pro_size = await asgi.client.post(
        "/v1/videos", json={"model": "sora-2", "prompt": "p", "size": "1792x1024"}
    )
    assert pro_size.status_code == 400
    assert "size" in pro_size.json()["error"]["message"]
    broken_reference = await asgi.client.post(
        "/v1/videos",
        data={"prompt": "p"},
        files={"input_reference": ("r.png", b"nope", "image/png")},
    )
    assert broken_reference.status_code == 400


async def test_failure_is_failed_with_error_object(asgi: Harness) -> None:
    video = await create_video(asgi, "bad [sim:fail=policy]")
    asgi.clock.advance(10)
    failed = (await asgi.client.get(f"/v1/videos/{video['id']}")).json()
    assert failed["status"] == "failed"
    assert failed["error"] == {"code": "generation_failed", "message": "policy"}
    assert (await asgi.client.get(f"/v1/videos/{video['id']}/content")).status_code == 404


@pytest.mark.parametrize(
    ("directive", "code"), [("expire", "task_expired"), ("cancelled", "task_cancelled")]
)
async def test_expired_and_cancelled_map_to_failed(
    asgi: Harness, directive: str, code: str
) -> None:
    video = await create_video(asgi, f"x [sim:{directive}]")
    asgi.clock.advance(10)
    body = (await asgi.client.get(f"/v1/videos/{video['id']}")).json()
    assert body["status"] == "failed"
    assert body["error"]["code"] == code


async def test_ttl_sets_expires_at_and_expires_content(asgi: Harness) -> None:
    asgi.configure(result_ttl=3600)
    video = await create_video(asgi)
    asgi.clock.advance(10)
    done = (await asgi.client.get(f"/v1/videos/{video['id']}")).json()
    assert done["expires_at"] == done["completed_at"] + 3600
    asgi.clock.advance(3601)
    gone = await asgi.client.get(f"/v1/videos/{video['id']}/content")
    assert gone.status_code == 404
    assert "expired" in gone.json()["error"]["message"]


async def test_list_delete_and_remix(asgi: Harness) -> None:
    first = await create_video(asgi, "first")
    second = await create_video(asgi, "second")
    listing = (await asgi.client.get("/v1/videos", params={"limit": 1})).json()
    assert listing["object"] == "list"
    assert [item["id"] for item in listing["data"]] == [second["id"]]
    assert listing["has_more"] is True
    after = (await asgi.client.get("/v1/videos", params={"after": second["id"]})).json()
    assert [item["id"] for item in after["data"]] == [first["id"]]
    ascending = (await asgi.client.get("/v1/videos", params={"order": "asc"})).json()
    assert [item["id"] for item in ascending["data"]] == [first["id"], second["id"]]

    not_ready = await asgi.client.post(f"/v1/videos/{first['id']}/remix", json={"prompt": "more"})
    assert not_ready.status_code == 400
    asgi.clock.advance(10)
    remix = await asgi.client.post(f"/v1/videos/{first['id']}/remix", json={"prompt": "more"})
    assert remix.status_code == 200
    assert remix.json()["remixed_from_video_id"] == first["id"]
    assert remix.json()["seconds"] == "4"

    deleted = await asgi.client.delete(f"/v1/videos/{first['id']}")
    assert deleted.json() == {"id": first["id"], "object": "video.deleted", "deleted": True}
    assert (await asgi.client.get(f"/v1/videos/{first['id']}")).status_code == 404
    assert (await asgi.client.delete(f"/v1/videos/{first['id']}")).status_code == 404
    remaining = (await asgi.client.get("/v1/videos")).json()["data"]
    assert first["id"] not in [item["id"] for item in remaining]


async def test_poll_faults_apply_to_openai_shape(asgi: Harness) -> None:
    video = await create_video(asgi, "flaky [sim:poll-429-n=1]")
    assert (await asgi.client.get(f"/v1/videos/{video['id']}")).status_code == 429
    assert (await asgi.client.get(f"/v1/videos/{video['id']}")).status_code == 200


async def test_weird_openai_ids(asgi: Harness) -> None:
    from urllib.parse import quote

    video = await create_video(asgi, "odd [sim:weird-id]")
    encoded = quote(video["id"], safe="")
    assert (await asgi.client.get(f"/v1/videos/{encoded}")).json()["id"] == video["id"]
    asgi.clock.advance(10)
    assert (await asgi.client.get(f"/v1/videos/{encoded}/content")).status_code == 200
