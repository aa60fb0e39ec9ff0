"""Every `[sim:…]` directive and the configuration-driven faults."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import quote

import pytest

from tests.simulator.conftest import START, FakeClock, Harness, make_config

SORA = "/v2/videos/generations"


def sora_body(prompt: str, **extra: Any) -> dict[str, Any]:
    return {"model": "sora-2", "prompt": prompt, **extra}


async def create_sora(sim: Harness, prompt: str) -> str:
    response = await sim.client.post(SORA, json=sora_body(prompt))
    assert response.status_code == 200, response.text
    task_id: str = response.json()["task_id"]
    return task_id


async def poll_sora(sim: Harness, task_id: str) -> dict[str, Any]:
    response = await sim.client.get(f"{SORA}/{quote(task_id, safe='')}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# ----- task outcomes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("directive", "status", "reason"),
    [
        ("[sim:fail]", "failed", "generation failed (simulated)"),
        ("[sim:fail=moderation blocked]", "failed", "moderation blocked"),
        ("[sim:expire]", "expired", "task expired before it could run (simulated)"),
        ("[sim:cancelled]", "cancelled", "task was cancelled upstream (simulated)"),
    ],
)
async def test_unsuccessful_outcomes(
    sim: Harness, directive: str, status: str, reason: str
) -> None:
    task_id = await create_sora(sim, f"outcome {directive}")
    assert (await poll_sora(sim, task_id))["status"] == "queued"
    sim.clock.advance(10)
    data = await poll_sora(sim, task_id)
    assert data["status"] == status
    assert data["fail_reason"] == reason
    assert data["video_url"] is None


async def test_never_finishes(asgi: Harness) -> None:
    task_id = await create_sora(asgi, "forever [sim:never]")
    asgi.clock.advance(5)
    early = await poll_sora(asgi, task_id)
    asgi.clock.advance(100_000)
    late = await poll_sora(asgi, task_id)
    assert early["status"] == late["status"] == "processing"
    assert int(early["progress"].rstrip("%")) < int(late["progress"].rstrip("%")) == 99


async def test_task_seconds_directive(asgi: Harness) -> None:
    task_id = await create_sora(asgi, "quick [sim:task-seconds=1]")
    asgi.clock.advance(1)
    assert (await poll_sora(asgi, task_id))["status"] == "completed"


async def test_polls_directive_is_clock_free(asgi: Harness) -> None:
    task_id = await create_sora(asgi, "three polls [sim:polls=3]")
    statuses = [(await poll_sora(asgi, task_id))["status"] for _ in range(3)]
    assert statuses == ["queued", "processing", "completed"]


# ----- create faults -----------------------------------------------------------------------


async def test_429_with_retry_after_then_success(sim: Harness) -> None:
    body = sora_body("busy [sim:429]")
    first = await sim.client.post(SORA, json=body)
    assert first.status_code == 429
    assert first.headers["retry-after"] == "1"
    assert first.json()["error"]["type"] == "rate_limit_error"
    second = await sim.client.post(SORA, json=body)
    assert second.status_code == 200
    stats = (await sim.client.get("/_sim/stats", params={"prompt": body["prompt"]})).json()
    assert stats["by_prompt"][body["prompt"]] == {"create_requests": 2, "creates": 1, "polls": 0}


async def test_429_retry_after_value(asgi: Harness) -> None:
    response = await asgi.client.post(SORA, json=sora_body("slow down [sim:429=7]"))
    assert response.headers["retry-after"] == "7"
    response = await asgi.client.post(SORA, json=sora_body("x [sim:429][sim:retry-after=0]"))
    assert response.headers["retry-after"] == "0"


async def test_429_without_retry_after(sim: Harness) -> None:
    response = await sim.client.post(SORA, json=sora_body("busy [sim:429-no-retry-after]"))
    assert response.status_code == 429
    assert "retry-after" not in response.headers


@pytest.mark.parametrize("code", [500, 502, 503, 504])
async def test_json_5xx(asgi: Harness, code: int) -> None:
    response = await asgi.client.post(SORA, json=sora_body(f"down [sim:{code}]"))
    assert response.status_code == code
    assert response.json()["error"]["type"] == "server_error"


async def test_html_error_page(sim: Harness) -> None:
    response = await sim.client.post(SORA, json=sora_body("proxy [sim:html]"))
    assert response.status_code == 502
    assert response.headers["content-type"].startswith("text/html")
    assert "<html>" in response.text
    ok_html = await sim.client.post(SORA, json=sora_body("login [sim:html-200]"))
    assert ok_html.status_code == 200
    assert ok_html.headers["content-type"].startswith("text/html")


async def test_malformed_json(sim: Harness) -> None:
    response = await sim.client.post(SORA, json=sora_body("garbled [sim:malformed]"))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.text)


async def test_envelope_error(asgi: Harness) -> None:
    response = await asgi.client.post(SORA, json=sora_body("envelope [sim:envelope-error]"))
    assert response.status_code == 200
    assert response.json() == {
        "code": "error",
        "message": "upstream busy (simulated)",
        "data": None,
    }


async def test_accepted_500_creates_the_task_anyway(asgi: Harness) -> None:
    prompt = "lost answer [sim:accepted-500]"
    response = await asgi.client.post(SORA, json=sora_body(prompt))
    assert response.status_code == 500
    stats = (await asgi.client.get("/_sim/stats", params={"prompt": prompt})).json()
    assert stats["by_prompt"][prompt]["creates"] == 1
    assert [task.prompt for task in asgi.simulator.store.tasks.values()] == [prompt]


async def test_faults_in_sequence_then_recovery(asgi: Harness) -> None:
    body = sora_body("sequence [sim:429][sim:500][sim:html]")
    codes = [(await asgi.client.post(SORA, json=body)).status_code for _ in range(4)]
    assert codes == [429, 500, 502, 200]


async def test_fault_times(asgi: Harness) -> None:
    twice = sora_body("twice [sim:503][sim:fault-times=2]")
    codes = [(await asgi.client.post(SORA, json=twice)).status_code for _ in range(3)]
    assert codes == [503, 503, 200]
    always = sora_body("always [sim:503][sim:fault-times=always]")
    codes = [(await asgi.client.post(SORA, json=always)).status_code for _ in range(5)]
    assert codes == [503] * 5


async def test_reject_every_time(asgi: Harness) -> None:
    body = sora_body("no [sim:reject=prompt violates policy]")
    for _ in range(2):
        response = await asgi.client.post(SORA, json=body)
        assert response.status_code == 400
        assert response.json()["error"]["message"] == "prompt violates policy"
    assert (await asgi.client.post(SORA, json=sora_body("[sim:400]"))).status_code == 400


async def test_slow_create(asgi: Harness) -> None:
    started = time.monotonic()
    response = await asgi.client.post(SORA, json=sora_body("sluggish [sim:slow=0.3]"))
    assert response.status_code == 200
    assert time.monotonic() - started >= 0.3


async def test_unknown_or_bad_directive_is_400(asgi: Harness) -> None:
    for prompt in ("[sim:explode]", "[sim:slow=fast]", "[sim:variant=nope]", "[sim:progress=x]"):
        response = await asgi.client.post(SORA, json=sora_body(prompt))
        assert response.status_code == 400, prompt
        assert response.json()["error"]["type"] == "simulator_error"


# ----- poll faults -------------------------------------------------------------------------


async def test_poll_fail_n_then_recover(sim: Harness) -> None:
    sim.configure(task_seconds=0)
    task_id = await create_sora(sim, "flaky polls [sim:poll-fail-n=2]")
    path = f"{SORA}/{task_id}"
    codes = [(await sim.client.get(path)).status_code for _ in range(3)]
    assert codes == [500, 500, 200]
    stats = (await sim.client.get("/_sim/stats", params={"tasks": 1})).json()
    assert stats["tasks"][task_id] == {"polls": 3, "answered_polls": 1}


@pytest.mark.parametrize(
    ("kind", "status", "content_type"),
    [
        ("429", 429, "application/json"),
        ("429-no-retry-after", 429, "application/json"),
        ("503", 503, "application/json"),
        ("html", 502, "text/html"),
        ("malformed", 200, "application/json"),
        ("envelope-error", 200, "application/json"),
        ("404", 404, "application/json"),
    ],
)
async def test_poll_fault_kinds(asgi: Harness, kind: str, status: int, content_type: str) -> None:
    asgi.configure(task_seconds=0)
    task_id = await create_sora(asgi, f"poll fault [sim:poll-{kind}-n=1]")
    faulty = await asgi.client.get(f"{SORA}/{task_id}")
    assert faulty.status_code == status
    assert faulty.headers["content-type"].startswith(content_type)
    assert ("retry-after" in faulty.headers) == (kind == "429")
    recovered = await poll_sora(asgi, task_id)
    assert recovered["status"] == "completed"


async def test_poll_slow(asgi: Harness) -> None:
    task_id = await create_sora(asgi, "slow polls [sim:poll-slow=0.2]")
    started = time.monotonic()
    await poll_sora(asgi, task_id)
    assert time.monotonic() - started >= 0.2


async def test_weird_ids_must_be_percent_encoded(sim: Harness) -> None:
    task_id = await create_sora(sim, "odd id [sim:weird-id]")
    assert ":" in task_id
    assert "/" in task_id
    assert (await sim.client.get(f"{SORA}/{quote(task_id, safe='')}")).status_code == 200
    assert (await sim.client.get(f"{SORA}/{task_id}")).status_code == 404


async def test_special_ids_by_config(asgi: Harness) -> None:
    asgi.configure(special_ids=True)
    response = await asgi.client.post(
        "/v1/video/veo/text-to-video", json={"model": "veo3", "prompt": "p"}
    )
    task_id = response.json()["data"]["task_id"]
    assert "/" in task_id
    polled = await asgi.client.get(f"/v1/video/veo/tasks/{quote(task_id, safe='')}")
    assert polled.json()["data"]["task_id"] == task_id


# ----- configuration-driven faults -----------------------------------------------------------


async def test_error_rates_from_config(asgi: Harness) -> None:
    asgi.configure(create_error_rate=1.0, error_kinds=["503"])
    assert (await asgi.client.post(SORA, json=sora_body("a"))).status_code == 503
    asgi.configure(create_error_rate=0.0, poll_error_rate=1.0, error_kinds=["html"])
    task_id = await create_sora(asgi, "b")
    assert (await asgi.client.get(f"{SORA}/{task_id}")).status_code == 502
    stats = (await asgi.client.get("/_sim/stats")).json()
    assert stats["faults"] == 2


async def test_seeded_random_faults_are_reproducible() -> None:
    from app.simulator import create_simulator_app

    async def run() -> list[int]:
        import httpx

        config = make_config(create_error_rate=0.5, seed=42)
        app = create_simulator_app(config, clock=FakeClock(START))
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": "Bearer sim-test-key"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://s", headers=headers
        ) as c:
            return [
                (await c.post(SORA, json=sora_body(f"r{index}"))).status_code for index in range(20)
            ]

    first, second = await run(), await run()
    assert first == second
    assert 200 in first
    assert any(code != 200 for code in first)


async def test_latency_from_config_applies_to_upstream_calls_only(asgi: Harness) -> None:
    asgi.configure(latency=0.5)
    started = time.monotonic()
    await asgi.client.get("/v1/videos")
    assert time.monotonic() - started >= 0.5
    started = time.monotonic()
    await asgi.client.get("/_sim/stats")
    assert time.monotonic() - started < 0.5
