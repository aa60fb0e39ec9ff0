"""Auth, the /_sim control surface, and the cost of many in-flight tasks."""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from collections.abc import MutableMapping
from typing import Any

import httpx
import pytest

from app.simulator import SimulatorConfig, create_simulator_app
from tests.simulator.conftest import API_KEY, ASGI_BASE, FakeClock, Harness

INVALID_KEY = {"error": {"message": "invalid api key", "type": "invalid_request_error"}}


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Bearer"},
        {"Authorization": f"Basic {API_KEY}"},
        {},
    ],
)
async def test_bad_key_is_401(sim: Harness, headers: dict[str, str]) -> None:
    async with sim.anonymous(headers) as client:
        for method, path in [
            ("POST", "/v2/videos/generations"),
            ("GET", "/v1/video/veo/tasks/x"),
            ("POST", "/v1/images/generations"),
            ("GET", "/v1/videos"),
            ("GET", "/_sim/stats"),
        ]:
            response = await client.request(method, path, json={"model": "sora-2", "prompt": "p"})
            assert response.status_code == 401, path
            assert response.json() == INVALID_KEY
    assert sim.simulator.store.stats.create_requests == 0


async def test_any_non_empty_key_when_unconfigured() -> None:
    app = create_simulator_app(SimulatorConfig(api_key=None, task_seconds=0))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=ASGI_BASE) as client:
        for key in ("anything", "sk-another"):
            response = await client.post(
                "/v2/videos/generations",
                json={"model": "sora-2", "prompt": "p"},
                headers={"Authorization": f"Bearer {key}"},
            )
            assert response.status_code == 200
        anonymous = await client.post("/v2/videos/generations", json={"model": "sora-2"})
        assert anonymous.status_code == 401


async def test_health_needs_no_key(live: Harness) -> None:
    async with live.anonymous() as client:
        response = await client.get("/health")
    assert response.json() == {"status": "ok", "simulator": True}


async def test_unknown_route_and_method_are_json(asgi: Harness) -> None:
    missing = await asgi.client.get("/v9/nothing")
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == "not found"
    wrong_method = await asgi.client.put("/v2/videos/generations")
    assert wrong_method.status_code == 405


async def test_config_endpoint_redacts_key_and_applies_changes(sim: Harness) -> None:
    current = (await sim.client.get("/_sim/config")).json()
    assert current["api_key"] == "<redacted>"
    assert API_KEY not in json.dumps(current)
    updated = await sim.client.post("/_sim/config", json={"task_seconds": 0, "chunked": True})
    assert updated.status_code == 200
    assert updated.json()["task_seconds"] == 0
    assert sim.simulator.config.chunked is True
    invalid = await sim.client.post("/_sim/config", json={"task_seconds": -1})
    assert invalid.status_code == 400
    assert "task_seconds" in invalid.json()["error"]["message"]
    unknown = await sim.client.post("/_sim/config", json={"colour": "blue"})
    assert unknown.status_code == 400


async def test_stats_count_creates_and_polls_per_prompt(sim: Harness) -> None:
    for index in range(3):
        await sim.client.post(
            "/v2/videos/generations", json={"model": "sora-2", "prompt": f"count {index}"}
        )
    task_id = next(iter(sim.simulator.store.tasks))
    for _ in range(4):
        await sim.client.get(f"/v2/videos/generations/{task_id}")
    stats = (await sim.client.get("/_sim/stats")).json()
    assert stats["creates"] == 3
    assert stats["create_requests"] == 3
    assert stats["polls"] == 4
    assert stats["by_prompt"]["count 0"] == {"create_requests": 1, "creates": 1, "polls": 4}
    assert stats["by_prompt"]["count 2"]["polls"] == 0
    assert "tasks" not in stats


async def test_task_view_and_reset(asgi: Harness) -> None:
    created = await asgi.client.post(
        "/v2/videos/generations",
        json={"model": "sora-2", "prompt": "inspect [sim:poll-500-n=2]", "hd": False},
    )
    task_id = created.json()["task_id"]
    view = (await asgi.client.get(f"/_sim/tasks/{task_id}")).json()
    assert view["state"] == "queued"
    assert view["family"] == "sora"
    assert view["pending_poll_faults"] == ["500", "500"]
    assert view["request"]["hd"] is False
    assert view["directives"]["poll_faults"] == [["500", 2]]
    assert (await asgi.client.post("/_sim/reset")).json() == {"reset": True}
    assert (await asgi.client.get(f"/_sim/tasks/{task_id}")).status_code == 404
    assert (await asgi.client.get("/_sim/stats")).json()["creates"] == 0


async def test_request_log_names_keys_by_fingerprint_only(asgi: Harness) -> None:
    await asgi.client.post(
        "/v2/videos/generations",
        json={
            "model": "sora-2",
            "prompt": "logged",
            "images": ["data:image/png;base64," + "A" * 5000],
        },
    )
    log = (await asgi.client.get("/_sim/requests", params={"limit": 1})).json()["requests"]
    assert len(log) == 1
    entry = log[0]
    assert entry["path"] == "/v2/videos/generations"
    assert entry["status"] == 200
    assert entry["key_fingerprint"] == hashlib.sha256(API_KEY.encode()).hexdigest()[:12]
    assert API_KEY not in json.dumps(log)
    assert len(entry["body"]["images"][0]) < 100  # data URIs are shortened


async def test_ten_thousand_in_flight_tasks_are_cheap() -> None:
    """10,000 tasks polled concurrently: plain dict work, no per-task coroutine or thread."""
    clock = FakeClock()
    app = create_simulator_app(SimulatorConfig(api_key=None, task_seconds=10), clock=clock)
    headers = [(b"host", b"sim"), (b"authorization", b"Bearer k")]

    async def call(method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [*headers, (b"content-type", b"application/json")],
            "server": ("sim", 80),
            "client": ("127.0.0.1", 1),
        }
        delivered = False
        status = 0
        chunks: list[bytes] = []

        async def receive() -> MutableMapping[str, Any]:
            nonlocal delivered
            if delivered:
                return {"type": "http.disconnect"}
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await app(scope, receive, send)
        return status, b"".join(chunks)

    count = 10_000
    threads_before = threading.active_count()
    created = await asyncio.gather(
        *[
            call("POST", "/v1/video/veo/text-to-video", b'{"model": "veo3", "prompt": "bulk"}')
            for _ in range(count)
        ]
    )
    ids = [json.loads(body)["data"]["task_id"] for status, body in created if status == 200]
    assert len(set(ids)) == count
    tasks_before = len(asyncio.all_tasks())
    clock.advance(5)
    polled = await asyncio.gather(*[call("GET", f"/v1/video/veo/tasks/{i}") for i in ids])
    assert {status for status, _ in polled} == {200}
    assert {json.loads(body)["data"]["status"] for _, body in polled} == {"running"}
    # Nothing was left running per task.
    assert len(asyncio.all_tasks()) == tasks_before
    assert threading.active_count() <= threads_before + 1
    simulator = app.state.simulator
    assert simulator.store.stats.polls == count
    assert simulator.store.stats.by_prompt["bulk"].creates == count
