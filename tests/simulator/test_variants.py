"""Status payload dialects: presets, per-request overrides, per-family config."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from tests.simulator.conftest import Harness, decodable_video_frames

SORA = "/v2/videos/generations"


async def run_task(asgi: Harness, prompt: str, *, advance: float = 10) -> tuple[Any, Any]:
    """Create a Sora task with `prompt`; return (create body, status body after `advance`)."""
    created = await asgi.client.post(SORA, json={"model": "sora-2", "prompt": prompt})
    assert created.status_code == 200, created.text
    task_id = list(asgi.simulator.store.tasks)[-1]
    asgi.clock.advance(advance)
    polled = await asgi.client.get(f"{SORA}/{task_id}")
    assert polled.status_code == 200, polled.text
    return created.json(), polled.json()


def media_url(asgi: Harness) -> str:
    task = list(asgi.simulator.store.tasks.values())[-1]
    return f"{asgi.base_url}/media/{task.media_id}.mp4"


async def test_sora_preset(asgi: Harness) -> None:
    created, done = await run_task(asgi, "[sim:variant=sora]")
    assert set(created) == {"task_id"}
    assert done["status"] == "completed"
    assert done["progress"] == "100%"
    assert done["video_url"] == media_url(asgi)
    assert done["created_at"] < 10**11  # seconds


async def test_veo_preset(asgi: Harness) -> None:
    created, done = await run_task(asgi, "[sim:variant=veo]")
    assert created["code"] == "success"
    assert "task_id" in created["data"]
    assert done["code"] == "success"
    data = done["data"]
    assert data["status"] == "success"
    assert data["progress"] == 100
    assert data["video_url"] == media_url(asgi)
    assert data["created_at"] > 10**12  # milliseconds


async def test_ark_preset(asgi: Harness) -> None:
    created, done = await run_task(asgi, "[sim:variant=ark]")
    assert set(created) == {"id"}
    assert done["status"] == "succeeded"
    assert "progress" not in done
    assert done["content"] == {"video_url": media_url(asgi)}


async def test_ark_preset_failure_uses_error_object(asgi: Harness) -> None:
    _, failed = await run_task(asgi, "[sim:variant=ark][sim:fail=bad input]")
    assert failed["status"] == "failed"
    assert failed["error"] == {"code": "generation_failed", "message": "bad input"}


async def test_kling_preset(asgi: Harness) -> None:
    created, done = await run_task(asgi, "[sim:variant=kling]")
    assert created["code"] == 0
    data = done["data"]
    assert data["task_status"] == "succeed"
    assert data["task_result"]["videos"][0]["url"] == media_url(asgi)
    _, failed = await run_task(asgi, "[sim:variant=kling][sim:fail=nsfw]")
    assert failed["data"]["task_status"] == "failed"
    assert failed["data"]["task_status_msg"] == "nsfw"


async def test_gemini_preset(asgi: Harness) -> None:
    _, running = await run_task(asgi, "[sim:variant=gemini]", advance=5)
    assert running["done"] is False
    assert "status" not in running
    asgi.clock.advance(5)
    task_id = running["id"]
    done = (await asgi.client.get(f"{SORA}/{task_id}")).json()
    assert done["done"] is True
    samples = done["response"]["generateVideoResponse"]["generatedSamples"]
    assert samples[0]["video"]["uri"] == media_url(asgi)


async def test_upper_preset(asgi: Harness) -> None:
    created, running = await run_task(asgi, "[sim:variant=upper]", advance=5)
    assert "taskId" in created
    assert running["status"] == "IN_PROGRESS"
    assert running["progress"].endswith("%")
    assert running["result_url"] is None
    asgi.clock.advance(5)
    done = (await asgi.client.get(f"{SORA}/{created['taskId']}")).json()
    assert done["status"] == "SUCCESS"
    assert done["result_url"] == media_url(asgi)


@pytest.mark.parametrize(
    ("directive", "check"),
    [
        ("[sim:result=output]", lambda d, url: d["output"] == url),
        ("[sim:result=output.url]", lambda d, url: d["output"] == {"url": url}),
        ("[sim:result=output.video_url]", lambda d, url: d["output"] == {"video_url": url}),
        ("[sim:result=videoUrl]", lambda d, url: d["videoUrl"] == url),
        ("[sim:result=url]", lambda d, url: d["url"] == url),
        ("[sim:result=data_list]", lambda d, url: d["data"] == [{"url": url}]),
        ("[sim:word-completed=finished]", lambda d, url: d["status"] == "finished"),
        ("[sim:vocab=done]", lambda d, url: d["status"] == "done"),
        ("[sim:vocab=misc]", lambda d, url: d["status"] == "Finished"),
        ("[sim:progress=int]", lambda d, url: d["progress"] == 100),
        ("[sim:progress=float]", lambda d, url: d["progress"] == 100.0),
        ("[sim:progress=none]", lambda d, url: "progress" not in d),
        ("[sim:time=ms]", lambda d, url: d["finish_time"] > 10**12),
        ("[sim:status-field=state]", lambda d, url: d["state"] == "completed"),
        ("[sim:id-field=taskId]", lambda d, url: "taskId" in d and "task_id" not in d),
    ],
)
async def test_field_overrides(asgi: Harness, directive: str, check: Any) -> None:
    _, done = await run_task(asgi, f"override {directive}")
    assert check(done, media_url(asgi)), done


async def test_envelope_override_with_numeric_code(asgi: Harness) -> None:
    created, done = await run_task(asgi, "[sim:envelope=on][sim:envelope-code=200]")
    assert created["code"] == 200
    assert done["code"] == 200
    assert done["data"]["status"] == "completed"


@pytest.mark.parametrize(
    ("directive", "field", "expected"),
    [
        ("[sim:error=error]", "error", "boom"),
        ("[sim:error=message]", "message", "boom"),
        ("[sim:error=detail]", "detail", "boom"),
        ("[sim:error=task_status_msg]", "task_status_msg", "boom"),
        ("[sim:error=error_obj]", "error", {"code": "generation_failed", "message": "boom"}),
    ],
)
async def test_error_placements(asgi: Harness, directive: str, field: str, expected: Any) -> None:
    _, failed = await run_task(asgi, f"{directive}[sim:fail=boom]")
    assert failed[field] == expected


async def test_word_override_for_every_state(asgi: Harness) -> None:
    _, queued = await run_task(asgi, "[sim:word-queued=NotStarted]", advance=0)
    assert queued["status"] == "NotStarted"
    asgi.simulator.reset()
    _, expired = await run_task(asgi, "[sim:expire][sim:word-expired=TimedOut]")
    assert expired["status"] == "TimedOut"


async def test_video_base64_result(asgi: Harness) -> None:
    _, done = await run_task(asgi, "[sim:result=video_base64]")
    assert decodable_video_frames(base64.b64decode(done["video_base64"])) >= 1


async def test_family_variant_by_config_endpoint(asgi: Harness) -> None:
    response = await asgi.client.post("/_sim/config", json={"variants": {"sora": "kling"}})
    assert response.status_code == 200
    _, done = await run_task(asgi, "configured")
    assert done["data"]["task_status"] == "succeed"
    # Other families keep their defaults.
    veo = await asgi.client.post(
        "/v1/video/veo/text-to-video", json={"model": "veo3", "prompt": "v"}
    )
    assert veo.json()["code"] == "success"
    assert "task_id" in veo.json()["data"]


async def test_family_variant_as_custom_object(asgi: Harness) -> None:
    variant = {"id_field": "id", "vocabulary": {"completed": "ok"}, "progress": "percent"}
    asgi.configure(variants={"sora": variant})
    created, done = await run_task(asgi, "custom")
    assert "id" in created
    assert done["status"] == "ok"
    assert done["progress"] == "100%"


async def test_invalid_variant_config_is_400(asgi: Harness) -> None:
    for patch in ({"variants": {"sora": "nope"}}, {"variants": {"kling": "sora"}}):
        response = await asgi.client.post("/_sim/config", json=patch)
        assert response.status_code == 400
        assert "variants" in response.json()["error"]["message"]
