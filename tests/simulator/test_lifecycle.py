"""Each endpoint family: create -> queued -> in progress (rising) -> completed, with real media."""

from __future__ import annotations

import io
import time
from typing import Any
from urllib.parse import quote

import av
import httpx
import pytest

from tests.simulator.conftest import AUTH, Harness, LiveServer, decodable_video_frames


def unwrap(body: dict[str, Any]) -> dict[str, Any]:
    if "code" in body and isinstance(body.get("data"), dict):
        return body["data"]
    return body


def progress_value(raw: Any) -> int:
    return int(str(raw).rstrip("%"))


# (name, create path, body, poll path template, id field, words: queued/running/done, result getter)
FAMILIES: list[tuple[str, str, dict[str, Any], str, str, tuple[str, str, str], Any]] = [
    (
        "sora",
        "/v2/videos/generations",
        {"model": "sora-2", "duration": 10, "aspect_ratio": "16:9", "hd": False},
        "/v2/videos/generations/{}",
        "task_id",
        ("queued", "processing", "completed"),
        lambda data: data["video_url"],
    ),
    (
        "veo-text",
        "/v1/video/veo/text-to-video",
        {"model": "veo3", "duration": 8, "aspect_ratio": "16:9", "resolution": "720p"},
        "/v1/video/veo/tasks/{}",
        "task_id",
        ("pending", "running", "success"),
        lambda data: data["video_url"],
    ),
    (
        "veo-image",
        "/v1/video/veo/image-to-video",
        {"model": "veo3", "image": "https://example.com/cat.png", "aspect_ratio": "9:16"},
        "/v1/video/veo/tasks/{}",
        "task_id",
        ("pending", "running", "success"),
        lambda data: data["video_url"],
    ),
    (
        "seedance-text",
        "/v1/video/seedance/text-to-video",
        {"model": "seedance-1-pro", "duration": 5, "ratio": "16:9", "seed": 7},
        "/v1/video/seedance/tasks/{}",
        "id",
        ("queued", "running", "succeeded"),
        lambda data: data["content"]["video_url"],
    ),
    (
        "seedance-image",
        "/v1/video/seedance/image-to-video",
        {"model": "seedance-1-pro", "image": "data:image/png;base64,iVBORw0KGgo="},
        "/v1/video/seedance/tasks/{}",
        "id",
        ("queued", "running", "succeeded"),
        lambda data: data["content"]["video_url"],
    ),
    (
        "seedance-frames",
        "/v1/video/seedance/frames-to-video",
        {
            "model": "seedance-1-pro",
            "first_frame": "https://example.com/a.png",
            "last_frame": "https://example.com/b.png",
            "camera_fixed": True,
        },
        "/v1/video/seedance/tasks/{}",
        "id",
        ("queued", "running", "succeeded"),
        lambda data: data["content"]["video_url"],
    ),
]


@pytest.mark.parametrize(
    ("name", "create_path", "body", "poll_path", "id_field", "words", "result"),
    FAMILIES,
    ids=[family[0] for family in FAMILIES],
)
async def test_family_lifecycle(
    sim: Harness,
    name: str,
    create_path: str,
    body: dict[str, Any],
    poll_path: str,
    id_field: str,
    words: tuple[str, str, str],
    result: Any,
) -> None:
    created = await sim.client.post(create_path, json={**body, "prompt": f"a fox, {name}"})
    assert created.status_code == 200, created.text
    task_id = unwrap(created.json())[id_field]
    path = poll_path.format(quote(task_id, safe=""))

    first = unwrap((await sim.client.get(path)).json())
    assert first["status"] == words[0]
    assert progress_value(first.get("progress", 0)) == 0

    seen_progress = []
    for _ in range(3):
        sim.clock.advance(2.5)  # 10 s task: queued for 2 s, then running
        data = unwrap((await sim.client.get(path)).json())
        assert data["status"] == words[1]
        if "progress" in data:
            seen_progress.append(progress_value(data["progress"]))
    assert seen_progress == sorted(seen_progress)
    if seen_progress:
        assert len(set(seen_progress)) == len(seen_progress)
        assert seen_progress[0] > 0
        assert seen_progress[-1] < 100

    sim.clock.advance(5)
    done = unwrap((await sim.client.get(path)).json())
    assert done["status"] == words[2]
    url = result(done)
    assert url.startswith(sim.base_url + "/media/")
    assert url.endswith(".mp4")

    media = await sim.client.get(url)
    assert media.status_code == 200
    assert media.headers["content-type"] == "video/mp4"
    assert int(media.headers["content-length"]) == len(media.content)
    assert decodable_video_frames(media.content) >= 1

    stats = (await sim.client.get("/_sim/stats", params={"prompt": f"a fox, {name}"})).json()
    assert stats["by_prompt"][f"a fox, {name}"] == {"create_requests": 1, "creates": 1, "polls": 5}


async def test_portrait_request_gives_portrait_video(asgi: Harness) -> None:
    asgi.configure(task_seconds=0)
    created = await asgi.client.post(
        "/v2/videos/generations",
        json={"model": "sora-2-pro", "prompt": "tall", "aspect_ratio": "9:16", "duration": "15"},
    )
    task_id = created.json()["task_id"]
    url = (await asgi.client.get(f"/v2/videos/generations/{task_id}")).json()["video_url"]
    media = await asgi.client.get(url)
    with av.open(io.BytesIO(media.content)) as container:
        stream = container.streams.video[0]
        assert stream.height > stream.width


async def test_zero_task_seconds_completes_on_first_poll(sim: Harness) -> None:
    sim.configure(task_seconds=0)
    created = await sim.client.post(
        "/v2/videos/generations", json={"model": "sora-2", "prompt": "instant"}
    )
    task_id = created.json()["task_id"]
    data = (await sim.client.get(f"/v2/videos/generations/{task_id}")).json()
    assert data["status"] == "completed"
    assert data["progress"] == "100%"
    assert data["video_url"]


async def test_real_clock_over_http_reaches_completion(live_server: LiveServer) -> None:
    """No fake clock: a 0.6 s task polled over a socket moves through its states in real time."""
    live_server.reset()
    live_server.simulator.clock = time.time
    live_server.simulator.configure(task_seconds=0.6, queued_fraction=0.3)
    try:
        async with httpx.AsyncClient(base_url=live_server.base_url, headers=AUTH) as client:
            created = await client.post(
                "/v1/video/veo/text-to-video", json={"model": "veo3", "prompt": "real time"}
            )
            task_id = created.json()["data"]["task_id"]
            states: list[str] = []
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                data = (await client.get(f"/v1/video/veo/tasks/{task_id}")).json()["data"]
                if not states or states[-1] != data["status"]:
                    states.append(data["status"])
                if data["status"] == "success":
                    break
            assert states[-1] == "success"
            assert "running" in states
            assert states.index("running") < states.index("success")
    finally:
        live_server.simulator.clock = live_server.clock


async def test_unknown_task_is_404(sim: Harness) -> None:
    response = await sim.client.get("/v1/video/veo/tasks/task_nope")
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "task not found"


async def test_task_of_another_family_is_404(asgi: Harness) -> None:
    created = await asgi.client.post(
        "/v1/video/veo/text-to-video", json={"model": "veo3", "prompt": "x"}
    )
    task_id = created.json()["data"]["task_id"]
    assert (await asgi.client.get(f"/v1/video/seedance/tasks/{task_id}")).status_code == 404


@pytest.mark.parametrize(
    ("path", "poll"),
    [
        ("/v2/videos/generations", "/v2/videos/generations/{}"),
        ("/v1/video/veo/text-to-video", "/v1/video/veo/tasks/{}"),
        ("/v1/video/seedance/text-to-video", "/v1/video/seedance/tasks/{}"),
    ],
)
async def test_cancel_running_task_then_conflict_when_finished(
    asgi: Harness, path: str, poll: str
) -> None:
    body = {"model": "sora-2" if "v2" in path else "m", "prompt": "cancel me"}
    created = unwrap((await asgi.client.post(path, json=body)).json())
    task_id = created.get("task_id") or created["id"]
    asgi.clock.advance(5)
    cancelled = await asgi.client.delete(poll.format(task_id))
    assert cancelled.status_code == 200
    assert unwrap(cancelled.json())["status"] in {"cancelled", "canceled"}
    asgi.clock.advance(60)
    later = unwrap((await asgi.client.get(poll.format(task_id))).json())
    assert later["status"] in {"cancelled", "canceled"}
    again = await asgi.client.delete(poll.format(task_id))
    assert again.status_code == 409
