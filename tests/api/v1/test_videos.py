"""End-to-end: the HTTP API, the worker and the in-process simulator, over the real app.

Every test drives `/api/v1/videos` (or `/api/v1/tasks`) over HTTP; the simulator plays the
upstream. Completion is awaited with `?wait=` or by polling with a deadline, never by sleeping.
"""

from __future__ import annotations

import base64
import hashlib
import io
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from PIL import Image

from app.simulator import Simulator
from tests.api.v1.conftest import (
    FAST_TASKS,
    create,
    raw_database_text,
    sha256,
    sim_call,
    sim_stats,
    task_row,
    upstream_bytes,
    wait_for_task,
)
from tests.conftest import AuthedUser


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return dict(FAST_TASKS)


def png_data_uri(width: int = 32, height: int = 18, colour: str = "orange") -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


# ----------------------------------------------------------------------------- every family

ModelPick = Callable[[dict[str, Any]], bool]


def _adapter(name: str, mode: str | None = None) -> ModelPick:
    return lambda m: m["adapter"] == name and (mode is None or mode in m["modes"])


# (how to pick the model from the catalog, params, number of input images, upstream path)
FAMILY_CASES: dict[str, tuple[ModelPick, dict[str, Any], int, str]] = {
    "sora-2": (lambda m: m["id"] == "sora-2", {"duration": 10}, 0, "/v2/videos/generations"),
    "sora-2-pro-hd": (
        lambda m: m["id"] == "sora-2-pro",
        {"duration": 15, "hd": True, "aspect_ratio": "9:16"},
        0,
        "/v2/videos/generations",
    ),
    "sora-2-image": (lambda m: m["id"] == "sora-2", {}, 1, "/v2/videos/generations"),
    "veo-text": (_adapter("veo"), {"duration": 8}, 0, "/v1/video/veo/text-to-video"),
    "veo-image": (_adapter("veo", "image_to_video"), {}, 1, "/v1/video/veo/image-to-video"),
    "seedance-text": (
        _adapter("seedance", "text_to_video"),
        {"duration": 5, "ratio": "16:9"},
        0,
        "/v1/video/seedance/text-to-video",
    ),
    "seedance-image": (
        _adapter("seedance", "image_to_video"),
        {"ratio": "adaptive"},
        1,
        "/v1/video/seedance/image-to-video",
    ),
    "seedance-first-last-frame": (
        _adapter("seedance", "frames_to_video"),
        {"ratio": "adaptive"},
        2,
        "/v1/video/seedance/frames-to-video",
    ),
    "openai-sora": (_adapter("openai_sora"), {"seconds": 4}, 0, "/v1/videos"),
}


@pytest.mark.parametrize("case", sorted(FAMILY_CASES))
async def test_every_video_family_completes_with_the_bytes_the_upstream_served(
    case: str, client: httpx.AsyncClient, app: FastAPI, user: AuthedUser, sim: Simulator
) -> None:
    pick, params, image_count, upstream_path = FAMILY_CASES[case]
    catalog = await client.get("/api/v1/models?kind=video", headers=user.headers)
    assert catalog.status_code == 200, catalog.text
    model = next((m for m in catalog.json()["data"] if pick(m)), None)
    assert model is not None, f"the catalog has no model for {case}"
    images = [png_data_uri(colour=c) for c in ("orange", "navy")[:image_count]]
    prompt = f"a lighthouse at dusk ({case})"

    task = await create(
        client,
        user.headers,
        {"model": model["id"], "prompt": prompt, "params": params, "images": images},
        wait=30,
    )
    assert task["status"] == "completed", task
    assert task["object"] == "video"
    assert task["model"] == model["id"]
    assert task["progress"] == 100
    assert task["error"] is None
    assert task["prompt"] == prompt
    for name, value in params.items():
        assert task["params"][name] == value
    assert task["started_at"]
    assert task["completed_at"]
    [media] = task["media"]
    assert media["state"] == "stored"
    assert media["content_type"] == "video/mp4"
    assert media["width"] > 0
    assert media["height"] > 0
    assert media["duration_seconds"]
    assert media["duration_seconds"] > 0
    assert media["url"] == f"/api/v1/videos/{task['id']}/media/{media['id']}/content"

    # The upstream saw exactly one create, on the family's endpoint, with our images.
    row = await task_row(app, task["id"])
    assert row.upstream_id
    upstream = sim.store.tasks[row.upstream_id]
    assert upstream.prompt == prompt
    creates = [r for r in sim.store.requests if r["method"] == "POST" and r.get("task_id")]
    [create_request] = [r for r in creates if r["task_id"] == row.upstream_id]
    assert create_request["path"] == upstream_path
    assert (await sim_stats(app, prompt))["creates"] == 1

    # Our bytes are the simulator's bytes, byte for byte.
    content = await client.get(f"/api/v1/videos/{task['id']}/content", headers=user.headers)
    assert content.status_code == 200
    assert content.headers["content-type"] == "video/mp4"
    assert int(content.headers["content-length"]) == media["bytes"] == len(content.content)
    view = (await sim_call(app, "GET", f"/_sim/tasks/{row.upstream_id}")).json()
    assert view["state"] == "completed"
    served = await app.state.http.get(view["media_url"])
    assert served.status_code == 200
    assert sha256(content.content) == sha256(served.content) == media["sha256"]
    assert content.content == await upstream_bytes(app, media["id"])


async def test_video_create_completes_and_content_matches_upstream(
    client: httpx.AsyncClient, app: FastAPI, user: AuthedUser
) -> None:
    created = await client.post(
        "/api/v1/videos?wait=30",
        json={"model": "sora-2", "prompt": "a red fox in snow", "params": {"duration": 10}},
        headers=user.headers,
    )
    assert created.status_code == 200, created.text
    task = created.json()
    assert task["object"] == "video"
    assert task["status"] == "completed", task
    assert task["progress"] == 100
    assert task["prompt"] == "a red fox in snow"
    media = task["media"][0]
    assert media["state"] == "stored"
    assert media["content_type"] == "video/mp4"
    assert media["width"]
    assert media["height"]
    content = await client.get(f"/api/v1/videos/{task['id']}/content", headers=user.headers)
    assert content.status_code == 200
    assert content.headers["content-type"] == "video/mp4"
    assert hashlib.sha256(content.content).hexdigest() == media["sha256"]
    assert int(content.headers["content-length"]) == media["bytes"]


async def test_another_users_task_is_invisible(
    client: httpx.AsyncClient, user: AuthedUser, other_user: AuthedUser
) -> None:
    created = await client.post(
        "/api/v1/videos",
        json={"model": "sora-2", "prompt": "private"},
        headers=user.headers,
    )
    assert created.status_code == 202, created.text
    task_id = created.json()["id"]
    for path in (f"/api/v1/videos/{task_id}", f"/api/v1/videos/{task_id}/content"):
        response = await client.get(path, headers=other_user.headers)
        assert response.status_code == 404, path
    listing = await client.get("/api/v1/videos", headers=other_user.headers)
    assert listing.json()["total"] == 0


# ----------------------------------------------------------------------------- outcomes


async def test_upstream_failure_fails_the_task_with_code_and_message(
    client: httpx.AsyncClient, user: AuthedUser
) -> None:
    task = await create(
        client,
        user.headers,
        {"model": "sora-2", "prompt": "doomed [sim:fail=content policy violation]"},
        wait=30,
    )
    assert task["status"] == "failed", task
    assert task["error"]["code"] == "upstream_failed"
    assert "content policy violation" in task["error"]["message"]
    assert task["media"] == []
    assert task["completed_at"] is not None
    content = await client.get(f"/api/v1/videos/{task['id']}/content", headers=user.headers)
    assert content.status_code == 404
    assert content.json()["error"]["code"] == "media_not_found"


@pytest.mark.parametrize("model", ["sora-2", "veo3", "doubao-seedance-1-0-pro"])
async def test_upstream_expiry_fails_the_task(
    model: str, client: httpx.AsyncClient, user: AuthedUser
) -> None:
    task = await create(
        client, user.headers, {"model": model, "prompt": "too late [sim:expire]"}, wait=30
    )
    assert task["status"] == "failed", task
    assert task["error"]["code"]
    assert task["error"]["message"]


@pytest.mark.parametrize("model", ["sora-2", "veo3", "doubao-seedance-1-0-pro"])
async def test_upstream_cancellation_cancels_the_task(
    model: str, client: httpx.AsyncClient, user: AuthedUser
) -> None:
    task = await create(
        client, user.headers, {"model": model, "prompt": "stopped [sim:cancelled]"}, wait=30
    )
    assert task["status"] == "cancelled", task
    assert task["error"]["code"] == "upstream_cancelled"


async def test_status_words_never_leak_beyond_the_five_openai_ones(
    client: httpx.AsyncClient, user: AuthedUser
) -> None:
    task = await create(
        client,
        user.headers,
        {"model": "sora-2", "prompt": "loud words [sim:variant=upper] [sim:task-seconds=0.6]"},
    )
    seen = {task["status"]}
    final = await wait_for_task(client, user.headers, task["id"])
    seen.add(final["status"])
    assert final["status"] == "completed", final
    assert seen <= {"queued", "in_progress", "completed", "failed", "cancelled"}


@pytest.mark.parametrize("settings_overrides", [{**FAST_TASKS, "task_deadline_minutes": 0.005}])
async def test_a_task_past_its_deadline_fails_with_timeout(
    client: httpx.AsyncClient, user: AuthedUser
) -> None:
    task = await create(
        client, user.headers, {"model": "veo3", "prompt": "forever [sim:never]"}, wait=30
    )
    assert task["status"] == "failed", task
    assert task["error"]["code"] == "timeout"
    assert "minutes" in task["error"]["message"]


async def test_cancel_a_running_task_and_it_stays_cancelled(
    client: httpx.AsyncClient, app: FastAPI, user: AuthedUser, sim: Simulator
) -> None:
    task = await create(client, user.headers, {"model": "sora-2", "prompt": "slow [sim:never]"})
    running = await wait_for_task(client, user.headers, task["id"], {"in_progress"})
    assert running["progress"] >= 0

    cancelled = await client.post(f"/api/v1/videos/{task['id']}/cancel", headers=user.headers)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["error"]["code"] == "cancelled"
    polls_at_cancel = sim.store.stats.for_prompt("slow [sim:never]").polls

    # Let the worker run several full rounds (another task from submit to completion) …
    await create(client, user.headers, {"model": "sora-2", "prompt": "after"}, wait=30)
    # … the cancelled task was neither polled again nor revived.
    again = await client.get(f"/api/v1/videos/{task['id']}", headers=user.headers)
    assert again.json()["status"] == "cancelled"
    assert sim.store.stats.for_prompt("slow [sim:never]").polls == polls_at_cancel
    row = await task_row(app, task["id"])
    assert row.next_poll_at is None
    assert row.lease_owner is None

    # Cancelling again is harmless: still cancelled, same completion time.
    twice = await client.post(f"/api/v1/videos/{task['id']}/cancel", headers=user.headers)
    assert twice.status_code == 200
    assert twice.json()["status"] == "cancelled"
    assert twice.json()["completed_at"] == cancelled.json()["completed_at"]


async def test_cancel_of_a_completed_task_changes_nothing(
    client: httpx.AsyncClient, user: AuthedUser
) -> None:
    task = await create(client, user.headers, {"model": "sora-2", "prompt": "done"}, wait=30)
    assert task["status"] == "completed"
    response = await client.post(f"/api/v1/videos/{task['id']}/cancel", headers=user.headers)
    assert response.status_code == 200
    assert response.json()["status"] == "completed"
    assert response.json()["media"][0]["state"] == "stored"


async def test_retry_creates_a_new_task_with_the_same_request(
    client: httpx.AsyncClient, user: AuthedUser
) -> None:
    body = {
        "model": "sora-2-pro",
        "prompt": "a whale breaching [sim:fail]",
        "title": "Whale",
        "params": {"duration": 15, "hd": True},
        "tags": ["sea"],
    }
    failed = await create(client, user.headers, body, wait=30)
    assert failed["status"] == "failed"

    retried = await client.post(f"/api/v1/videos/{failed['id']}/retry", headers=user.headers)
    assert retried.status_code == 202, retried.text
    clone = retried.json()
    assert clone["id"] != failed["id"]
    assert clone["retry_of"] == failed["id"]
    assert clone["status"] in {"queued", "in_progress"}
    assert clone["prompt"] == failed["prompt"]
    assert clone["params"] == failed["params"]
    assert clone["model"] == failed["model"]
    assert clone["title"] == "Whale"
    assert clone["tags"] == ["sea"]
    final = await wait_for_task(client, user.headers, clone["id"])
    assert final["status"] == "failed"  # same prompt, same directive, same outcome
    # The original is untouched.
    original = await client.get(f"/api/v1/videos/{failed['id']}", headers=user.headers)
    assert original.json()["status"] == "failed"


async def test_n_three_creates_three_tasks_sharing_a_batch_id(
    client: httpx.AsyncClient, app: FastAPI, user: AuthedUser
) -> None:
    prompt = "three little pigs"
    tasks = await create(client, user.headers, {"model": "veo3", "prompt": prompt, "n": 3})
    assert isinstance(tasks, list)
    assert len(tasks) == 3
    assert len({t["id"] for t in tasks}) == 3
    batch_ids = {t["batch_id"] for t in tasks}
    assert len(batch_ids) == 1
    assert None not in batch_ids
    for task in tasks:
        final = await wait_for_task(client, user.headers, task["id"])
        assert final["status"] == "completed"
    # One upstream create per task.
    assert (await sim_stats(app, prompt))["creates"] == 3


async def test_single_task_is_not_batched(client: httpx.AsyncClient, user: AuthedUser) -> None:
    task = await create(client, user.headers, {"model": "veo3", "prompt": "alone"})
    assert isinstance(task, dict)
    assert task["batch_id"] is None


# ----------------------------------------------------------------------------- ?wait


async def test_wait_returns_the_completed_task(client: httpx.AsyncClient, user: AuthedUser) -> None:
    response = await client.post(
        "/api/v1/videos?wait=30",
        json={"model": "sora-2", "prompt": "patience"},
        headers=user.headers,
    )
    assert response.status_code == 200
    assert response.json()["status"] == "completed"
    assert response.json()["media"][0]["state"] == "stored"


async def test_wait_that_runs_out_answers_202_with_the_running_task(
    client: httpx.AsyncClient, user: AuthedUser
) -> None:
    response = await client.post(
        "/api/v1/videos?wait=0.3",
        json={"model": "sora-2", "prompt": "impatient [sim:never]"},
        headers=user.headers,
    )
    assert response.status_code == 202
    assert response.json()["status"] in {"queued", "in_progress"}


@pytest.mark.parametrize("wait", ["121", "-1", "soon"])
async def test_wait_out_of_range_is_422(
    wait: str, client: httpx.AsyncClient, app: FastAPI, user: AuthedUser
) -> None:
    response = await client.post(
        f"/api/v1/videos?wait={wait}",
        json={"model": "sora-2", "prompt": "never created"},
        headers=user.headers,
    )
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "wait"
    listing = await client.get("/api/v1/videos", headers=user.headers)
    assert listing.json()["total"] == 0


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"model": "sora-2", "prompt": "x", "params": {"duration": 25}}, "duration"),
        (
            {"model": "sora-2-pro", "prompt": "x", "params": {"duration": 25, "hd": True}},
            "duration",
        ),
        ({"model": "no-such-model", "prompt": "x"}, "model"),
        ({"model": "gpt-image-1", "prompt": "x"}, "model"),
        ({"model": "sora-2", "prompt": ""}, "prompt"),
        ({"model": "sora-2", "prompt": "x", "n": 21}, "n"),
        ({"model": "sora-2", "prompt": "x", "images": ["ftp://x/y.png"]}, "images"),
        ({"model": "sora-2", "prompt": "x", "unknown": 1}, "unknown"),
    ],
)
async def test_bad_requests_are_422_naming_the_field(
    body: dict[str, Any], field: str, client: httpx.AsyncClient, user: AuthedUser
) -> None:
    response = await client.post("/api/v1/videos", json=body, headers=user.headers)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    fields = " ".join(str(d.get("field", "")) for d in error["details"] or [])
    assert field in fields or field in error["message"], error


# ----------------------------------------------------------------------------- idempotency


async def test_same_idempotency_key_and_body_returns_the_same_task_once(
    client: httpx.AsyncClient, app: FastAPI, user: AuthedUser
) -> None:
    body = {"model": "sora-2", "prompt": "only once please"}
    key = {"Idempotency-Key": "order-42"}
    first = await client.post("/api/v1/videos", json=body, headers={**user.headers, **key})
    assert first.status_code == 202, first.text
    assert "idempotent-replayed" not in first.headers
    second = await client.post("/api/v1/videos", json=body, headers={**user.headers, **key})
    assert second.status_code == 200, second.text
    assert second.headers["idempotent-replayed"] == "true"
    assert second.json()["id"] == first.json()["id"]

    await wait_for_task(client, user.headers, first.json()["id"])
    third = await client.post("/api/v1/videos", json=body, headers={**user.headers, **key})
    assert third.json()["id"] == first.json()["id"]
    assert third.json()["status"] == "completed"
    # The upstream received exactly one create; the history holds one task.
    assert (await sim_stats(app, "only once please"))["create_requests"] == 1
    listing = await client.get("/api/v1/videos", headers=user.headers)
    assert listing.json()["total"] == 1


async def test_same_idempotency_key_with_another_body_is_409(
    client: httpx.AsyncClient, user: AuthedUser
) -> None:
    key = {**user.headers, "Idempotency-Key": "order-43"}
    first = await client.post(
        "/api/v1/videos", json={"model": "sora-2", "prompt": "a"}, headers=key
    )
    assert first.status_code == 202
    for changed in (
        {"model": "sora-2", "prompt": "b"},
        {"model": "sora-2", "prompt": "a", "params": {"duration": 15}},
        {"model": "veo3", "prompt": "a"},
    ):
        response = await client.post("/api/v1/videos", json=changed, headers=key)
        assert response.status_code == 409, response.text
        assert response.json()["error"]["code"] == "idempotency_key_reused"
    listing = await client.get("/api/v1/videos", headers=user.headers)
    assert listing.json()["total"] == 1


async def test_idempotency_keys_are_per_user(
    client: httpx.AsyncClient, app: FastAPI, user: AuthedUser, other_user: AuthedUser
) -> None:
    body = {"model": "sora-2", "prompt": "shared key"}
    mine = await client.post(
        "/api/v1/videos", json=body, headers={**user.headers, "Idempotency-Key": "k-1"}
    )
    theirs = await client.post(
        "/api/v1/videos", json=body, headers={**other_user.headers, "Idempotency-Key": "k-1"}
    )
    assert mine.status_code == theirs.status_code == 202
    assert mine.json()["id"] != theirs.json()["id"]
    # Each sees only their own.
    assert (
        await client.get(f"/api/v1/videos/{theirs.json()['id']}", headers=user.headers)
    ).status_code == 404
    await wait_for_task(client, user.headers, mine.json()["id"])
    await wait_for_task(client, other_user.headers, theirs.json()["id"])
    assert (await sim_stats(app, "shared key"))["create_requests"] == 2


async def test_idempotent_batch_replays_the_whole_list(
    client: httpx.AsyncClient, user: AuthedUser
) -> None:
    body = {"model": "veo3", "prompt": "twins", "n": 2}
    headers = {**user.headers, "Idempotency-Key": "batch-1"}
    first = await client.post("/api/v1/videos", json=body, headers=headers)
    second = await client.post("/api/v1/videos", json=body, headers=headers)
    assert first.status_code == 202
    assert second.status_code == 200
    assert [t["id"] for t in first.json()] == [t["id"] for t in second.json()]


async def test_overlong_idempotency_key_is_422(client: httpx.AsyncClient, user: AuthedUser) -> None:
    response = await client.post(
        "/api/v1/videos",
        json={"model": "sora-2", "prompt": "x"},
        headers={**user.headers, "Idempotency-Key": "k" * 256},
    )
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "Idempotency-Key"


# ----------------------------------------------------------------------------- bring your own key


async def test_x_api_key_reaches_the_upstream_and_is_never_stored_in_plaintext(
    client: httpx.AsyncClient, app: FastAPI, user: AuthedUser, sim: Simulator
) -> None:
    own_key = "sk-byok-7f3a9c1e5b2d4086"
    task = await create(
        client,
        user.headers,
        {"model": "sora-2", "prompt": "with my own key"},
        wait=30,
        extra_headers={"X-API-Key": own_key},
    )
    assert task["status"] == "completed", task
    default_task = await create(
        client, user.headers, {"model": "sora-2", "prompt": "with the default key"}, wait=30
    )

    own_upstream = (await task_row(app, task["id"])).upstream_id
    default_upstream = (await task_row(app, default_task["id"])).upstream_id
    own_calls = [r for r in sim.store.requests if r.get("task_id") == own_upstream]
    default_calls = [r for r in sim.store.requests if r.get("task_id") == default_upstream]
    assert len(own_calls) >= 2  # the create and at least one poll
    fingerprint = hashlib.sha256(own_key.encode()).hexdigest()[:12]
    assert {r["key_fingerprint"] for r in own_calls} == {fingerprint}
    assert fingerprint not in {r["key_fingerprint"] for r in default_calls}

    dump = await raw_database_text(app)
    assert own_key not in dump
    assert own_key[3:] not in dump  # not even without its prefix
    assert "with my own key" not in dump  # prompts are encrypted too


# ----------------------------------------------------------------------------- SSRF


@pytest.mark.parametrize("public_base_url", ["http://10.255.255.1", "http://169.254.169.254"])
async def test_result_url_on_a_private_address_is_refused(
    public_base_url: str, client: httpx.AsyncClient, sim: Simulator, user: AuthedUser
) -> None:
    sim.configure(public_base_url=public_base_url)
    task = await create(
        client, user.headers, {"model": "sora-2", "prompt": "metadata please"}, wait=30
    )
    assert task["status"] == "failed", task
    assert task["error"]["code"] == "result_forbidden_host"
    [media] = task["media"]
    assert media["state"] == "failed"
    assert media["reason"] == "forbidden_host"
    assert media["url"] is None
    assert sim.store.stats.media_requests == 0


async def test_webhook_url_to_a_private_address_is_422(
    client: httpx.AsyncClient, user: AuthedUser
) -> None:
    for url in (
        "http://169.254.169.254/latest/meta-data",
        "http://127.0.0.1:9/hook",
        "http://10.0.0.5/hook",
        "http://[::1]/hook",
    ):
        response = await client.post(
            "/api/v1/videos",
            json={"model": "sora-2", "prompt": "x", "webhook_url": url},
            headers=user.headers,
        )
        assert response.status_code == 422, (url, response.text)
        assert response.json()["error"]["code"] == "webhook_url_forbidden"
        assert response.json()["error"]["details"][0]["field"] == "webhook_url"
    listing = await client.get("/api/v1/videos", headers=user.headers)
    assert listing.json()["total"] == 0


# ----------------------------------------------------------------------------- quota


async def _storage(client: httpx.AsyncClient, user: AuthedUser) -> dict[str, Any]:
    response = await client.get("/api/v1/storage/me", headers=user.headers)
    assert response.status_code == 200, response.text
    usage: dict[str, Any] = response.json()
    assert usage["used_bytes"] <= usage["quota_bytes"], usage
    return usage


async def test_result_over_quota_is_not_stored_then_fetched_once_space_is_granted(
    client: httpx.AsyncClient, app: FastAPI, admin_user: AuthedUser, user: AuthedUser
) -> None:
    quota_url = f"/api/v1/admin/users/{user.id}/quota"
    small = await client.patch(
        quota_url, json={"storage_quota_bytes": 1000}, headers=admin_user.headers
    )
    assert small.status_code == 200, small.text

    task = await create(client, user.headers, {"model": "sora-2", "prompt": "big"}, wait=30)
    assert task["status"] == "completed", task
    [media] = task["media"]
    assert media["state"] == "not_stored"
    assert media["reason"] == "quota_exceeded"
    assert media["bytes"] > 1000
    assert media["url"] is None
    assert (await _storage(client, user))["used_bytes"] == 0
    content = await client.get(f"/api/v1/videos/{task['id']}/content", headers=user.headers)
    assert content.status_code == 404

    fetch_url = f"/api/v1/videos/{task['id']}/media/{media['id']}/fetch"
    still_small = await client.post(fetch_url, headers=user.headers)
    assert still_small.status_code == 413, still_small.text
    assert still_small.json()["error"]["code"] == "quota_exceeded"
    assert (await _storage(client, user))["used_bytes"] == 0

    raised = await client.patch(
        quota_url, json={"storage_quota_bytes": 50_000_000}, headers=admin_user.headers
    )
    assert raised.status_code == 200
    fetched = await client.post(fetch_url, headers=user.headers)
    assert fetched.status_code == 200, fetched.text
    [stored] = fetched.json()["media"]
    assert stored["id"] == media["id"]
    assert stored["state"] == "stored"
    assert stored["reason"] is None
    usage = await _storage(client, user)
    assert usage["used_bytes"] >= stored["bytes"] > 0

    content = await client.get(f"/api/v1/videos/{task['id']}/content", headers=user.headers)
    assert content.status_code == 200
    assert content.content == await upstream_bytes(app, media["id"])
    assert sha256(content.content) == stored["sha256"]

    # Fetching a stored media again changes nothing (no double reservation).
    again = await client.post(fetch_url, headers=user.headers)
    assert again.status_code == 200
    assert (await _storage(client, user))["used_bytes"] == usage["used_bytes"]

    # Deleting gives every byte back.
    deleted = await client.delete(f"/api/v1/videos/{task['id']}", headers=user.headers)
    assert deleted.status_code == 204
    assert (await _storage(client, user))["used_bytes"] == 0


async def test_quota_is_never_exceeded_by_a_batch(
    client: httpx.AsyncClient, admin_user: AuthedUser, user: AuthedUser
) -> None:
    # Room for one video but not for three.
    probe = await create(client, user.headers, {"model": "veo3", "prompt": "probe"}, wait=30)
    usage = await _storage(client, user)
    one = usage["used_bytes"]
    assert one > 0
    await client.delete(f"/api/v1/videos/{probe['id']}", headers=user.headers)
    assert (await _storage(client, user))["used_bytes"] == 0
    response = await client.patch(
        f"/api/v1/admin/users/{user.id}/quota",
        json={"storage_quota_bytes": one + one // 2},
        headers=admin_user.headers,
    )
    assert response.status_code == 200

    tasks = await create(client, user.headers, {"model": "veo3", "prompt": "probe", "n": 3})
    finals = [await wait_for_task(client, user.headers, t["id"]) for t in tasks]
    assert all(t["status"] == "completed" for t in finals)
    states = sorted(t["media"][0]["state"] for t in finals)
    assert states == ["not_stored", "not_stored", "stored"]
    [stored] = [t["media"][0] for t in finals if t["media"][0]["state"] == "stored"]
    usage = await _storage(client, user)  # asserts used <= quota
    assert usage["used_bytes"] >= stored["bytes"] > 0


async def test_fetch_of_unknown_or_foreign_media_is_404(
    client: httpx.AsyncClient, user: AuthedUser, other_user: AuthedUser
) -> None:
    task = await create(client, user.headers, {"model": "sora-2", "prompt": "x"}, wait=30)
    media_id = task["media"][0]["id"]
    unknown = await client.post(
        f"/api/v1/videos/{task['id']}/media/not-a-media/fetch", headers=user.headers
    )
    assert unknown.status_code == 404
    foreign = await client.post(
        f"/api/v1/videos/{task['id']}/media/{media_id}/fetch", headers=other_user.headers
    )
    assert foreign.status_code == 404
