"""The official provider APIs: ByteDance Ark tasks, Gemini predictLongRunning, Kling.

Each speaks its own auth scheme (bearer, `x-goog-api-key`, a Kling JWT) and payload shape.
"""

from __future__ import annotations

import base64
import time
from typing import Any
from urllib.parse import quote

import jwt
import pytest

from tests.simulator.conftest import API_KEY, Harness, decodable_video_frames, png_bytes

ARK = "/api/v3/contents/generations/tasks"
GOOG = {"x-goog-api-key": API_KEY}
VEO = "veo-3.0-generate-001"
PREDICT = f"/v1beta/models/{VEO}:predictLongRunning"
KLING_AK = "ak-sim-access"
KLING_SK = "sk-sim-secret-0123456789abcdef0123"


# ----- helpers ---------------------------------------------------------------------------------


def png_b64() -> str:
    return base64.b64encode(png_bytes(32, 18)).decode("ascii")


def kling_token(
    access: str = KLING_AK, secret: str = KLING_SK, *, now: float | None = None, **claims: Any
) -> str:
    issued = int(time.time() if now is None else now)
    payload = {"iss": access, "exp": issued + 1800, "nbf": issued - 5, **claims}
    return jwt.encode(payload, secret, algorithm="HS256", headers={"typ": "JWT"})


def kling_headers(token: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token or kling_token()}"}


def use_kling_keys(sim: Harness) -> None:
    sim.configure(api_key=f"{KLING_AK}:{KLING_SK}")


async def ark_create(sim: Harness, prompt: str, **extra: Any) -> str:
    body = {
        "model": "doubao-seedance-1-0-pro-250528",
        "content": [{"type": "text", "text": prompt}],
    }
    response = await sim.client.post(ARK, json={**body, **extra})
    assert response.status_code == 200, response.text
    assert set(response.json()) == {"id"}
    task_id: str = response.json()["id"]
    return task_id


async def ark_get(sim: Harness, task_id: str) -> dict[str, Any]:
    response = await sim.client.get(f"{ARK}/{quote(task_id, safe='')}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def gemini_create(sim: Harness, prompt: str, **parameters: Any) -> str:
    body: dict[str, Any] = {"instances": [{"prompt": prompt}]}
    if parameters:
        body["parameters"] = parameters
    async with sim.anonymous(GOOG) as client:
        response = await client.post(PREDICT, json=body)
    assert response.status_code == 200, response.text
    name: str = response.json()["name"]
    return name


async def gemini_get(sim: Harness, name: str) -> dict[str, Any]:
    async with sim.anonymous(GOOG) as client:
        response = await client.get(f"/v1beta/{name}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def kling_create(sim: Harness, endpoint: str, body: dict[str, Any]) -> str:
    async with sim.anonymous(kling_headers()) as client:
        response = await client.post(f"/v1/videos/{endpoint}", json=body)
    assert response.status_code == 200, response.text
    payload = response.json()
    assert payload["code"] == 0
    assert payload["data"]["task_status"] == "submitted"
    task_id: str = payload["data"]["task_id"]
    return task_id


async def kling_get(sim: Harness, endpoint: str, task_id: str) -> dict[str, Any]:
    async with sim.anonymous(kling_headers()) as client:
        response = await client.get(f"/v1/videos/{endpoint}/{quote(task_id, safe='')}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# ----- ByteDance Ark ---------------------------------------------------------------------------


async def test_ark_lifecycle_and_task_object(sim: Harness) -> None:
    task_id = await ark_create(
        sim,
        "a fox in snow",
        ratio="9:16",
        resolution="1080p",
        duration=6,
        seed=42,
        camera_fixed=True,
        watermark=False,
    )
    assert task_id.startswith("cgt")
    queued = await ark_get(sim, task_id)
    assert queued["status"] == "queued"
    assert "content" not in queued
    assert "progress" not in queued  # Ark reports none
    assert (queued["ratio"], queued["resolution"], queued["duration"], queued["seed"]) == (
        "9:16",
        "1080p",
        6,
        42,
    )
    sim.clock.advance(5)
    assert (await ark_get(sim, task_id))["status"] == "running"
    sim.clock.advance(5)
    done = await ark_get(sim, task_id)
    assert done["status"] == "succeeded"
    assert done["updated_at"] == int(sim.clock.now)
    assert done["created_at"] == int(sim.clock.now) - 10
    assert done["usage"]["total_tokens"] > 0
    assert "error" not in done
    media = await sim.client.get(done["content"]["video_url"])
    assert media.status_code == 200
    assert decodable_video_frames(media.content) >= 1


async def test_ark_images_and_validation(asgi: Harness) -> None:
    uri = f"data:image/png;base64,{png_b64()}"
    ok = await asgi.client.post(
        ARK,
        json={
            "model": "m",
            "content": [
                {"type": "text", "text": "p"},
                {"type": "image_url", "image_url": {"url": uri}, "role": "first_frame"},
                {
                    "type": "image_url",
                    "image_url": {"url": "https://i/b.png"},
                    "role": "last_frame",
                },
            ],
        },
    )
    assert ok.status_code == 200, ok.text
    bad_cases: list[tuple[dict[str, Any], str]] = [
        ({"model": "m", "content": []}, "content"),
        ({"model": "m", "content": [{"type": "text", "text": "p"}], "duration": 30}, "duration"),
        ({"model": "m", "content": [{"type": "text", "text": "p"}], "ratio": "7:3"}, "ratio"),
        (
            {
                "model": "m",
                "content": [
                    {"type": "image_url", "image_url": {"url": "https://i/a"}, "role": "last_frame"}
                ],
            },
            "last_frame",
        ),
        (
            {
                "model": "m",
                "content": [
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
                ],
            },
            "not a valid image",
        ),
    ]
    for body, needle in bad_cases:
        response = await asgi.client.post(ARK, json=body)
        assert response.status_code == 400, body
        error = response.json()["error"]
        assert error["code"] == "InvalidParameter"
        assert needle in error["message"]
    assert len([t for t in asgi.simulator.store.tasks.values() if t.family == "ark"]) == 1


@pytest.mark.parametrize(
    ("directive", "status", "code"),
    [
        ("[sim:fail=sensitive content]", "failed", "generation_failed"),
        ("[sim:expire]", "expired", "task_expired"),
    ],
)
async def test_ark_unsuccessful_outcomes(
    asgi: Harness, directive: str, status: str, code: str
) -> None:
    task_id = await ark_create(asgi, f"outcome {directive}")
    asgi.clock.advance(10)
    body = await ark_get(asgi, task_id)
    assert body["status"] == status
    assert body["error"]["code"] == code
    assert "content" not in body


async def test_ark_delete_cancels_queued_refuses_running_deletes_finished(sim: Harness) -> None:
    queued = await ark_create(sim, "cancel me")
    response = await sim.client.delete(f"{ARK}/{queued}")
    assert response.status_code == 200
    assert response.json() == {}
    assert (await ark_get(sim, queued))["status"] == "cancelled"

    running = await ark_create(sim, "running")
    sim.clock.advance(5)
    refused = await sim.client.delete(f"{ARK}/{running}")
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "OperationDenied"
    assert (await ark_get(sim, running))["status"] == "running"

    sim.clock.advance(5)
    assert (await ark_get(sim, running))["status"] == "succeeded"
    deleted = await sim.client.delete(f"{ARK}/{running}")
    assert deleted.status_code == 200
    gone = await sim.client.get(f"{ARK}/{running}")
    assert gone.status_code == 404
    assert (await sim.client.delete(f"{ARK}/{running}")).status_code == 404


async def test_ark_bad_key(sim: Harness) -> None:
    async with sim.anonymous({"Authorization": "Bearer wrong"}) as client:
        response = await client.post(ARK, json={"model": "m", "content": []})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "AuthenticationError"
    assert sim.simulator.store.stats.create_requests == 0


async def test_ark_faults_and_weird_ids(asgi: Harness) -> None:
    task_id = await ark_create(asgi, "flaky [sim:poll-429-n=1][sim:weird-id]")
    assert "/" in task_id
    first = await asgi.client.get(f"{ARK}/{quote(task_id, safe='')}")
    assert first.status_code == 429
    assert first.headers["retry-after"] == "1"
    assert (await ark_get(asgi, task_id))["id"] == task_id
    unencoded = await asgi.client.get(f"{ARK}/{task_id}")
    assert unencoded.status_code == 404


# ----- Gemini (Veo) ------------------------------------------------------------------------------


async def test_gemini_operation_lifecycle_and_authenticated_download(sim: Harness) -> None:
    name = await gemini_create(
        sim, "a lighthouse", aspectRatio="9:16", durationSeconds=6, resolution="720p"
    )
    assert name.startswith(f"models/{VEO}/operations/")
    running = await gemini_get(sim, name)
    assert running == {"name": name}  # not even `done: false`, and no progress
    sim.clock.advance(10)
    done = await gemini_get(sim, name)
    assert done["done"] is True
    assert "error" not in done
    assert done["response"]["@type"].endswith("PredictLongRunningResponse")
    (sample,) = done["response"]["generateVideoResponse"]["generatedSamples"]
    uri = sample["video"]["uri"]
    assert uri.startswith(sim.base_url)
    assert uri.endswith(":download?alt=media")
    task = sim.simulator.store.tasks[name.rsplit("/", 1)[1]]
    assert task.width < task.height  # 9:16

    async with sim.anonymous() as client:
        refused = await client.get(uri)
    assert refused.status_code == 403
    assert refused.json()["error"]["status"] == "PERMISSION_DENIED"
    async with sim.anonymous(GOOG) as client:
        video = await client.get(uri)
    assert video.status_code == 200
    assert video.headers["content-type"] == "video/mp4"
    assert decodable_video_frames(video.content) >= 1


async def test_gemini_image_instance(asgi: Harness) -> None:
    image = {"bytesBase64Encoded": png_b64(), "mimeType": "image/png"}
    body = {"instances": [{"prompt": "p", "image": image, "lastFrame": image}]}
    async with asgi.anonymous(GOOG) as client:
        ok = await client.post(PREDICT, json=body)
        assert ok.status_code == 200, ok.text
        broken = {"bytesBase64Encoded": "bm90IGFuIGltYWdl", "mimeType": "image/png"}
        bad = await client.post(PREDICT, json={"instances": [{"prompt": "p", "image": broken}]})
    assert bad.status_code == 400
    assert bad.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert "not a valid image" in bad.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "path", "status", "needle"),
    [
        ({"instances": [{"prompt": "p"}], "parameters": {"fps": 24}}, PREDICT, 400, '"fps"'),
        ({"instances": [{"prompt": "p", "video": {}}]}, PREDICT, 400, '"video"'),
        (
            {"instances": [{"prompt": "p"}], "parameters": {"durationSeconds": 12}},
            PREDICT,
            400,
            "durationSeconds",
        ),
        ({"instances": []}, PREDICT, 400, "exactly one"),
        (
            {"instances": [{"prompt": "p"}]},
            "/v1beta/models/gemini-2.5-flash:predictLongRunning",
            404,
            "not found",
        ),
        ({"instances": [{"prompt": "p"}]}, f"/v1beta/models/{VEO}:generateContent", 404, "Method"),
    ],
)
async def test_gemini_validation(
    asgi: Harness, body: dict[str, Any], path: str, status: int, needle: str
) -> None:
    async with asgi.anonymous(GOOG) as client:
        response = await client.post(path, json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == status
    assert needle in error["message"]
    assert not asgi.simulator.store.tasks


@pytest.mark.parametrize(
    ("headers", "status", "rpc_status"),
    [
        ({"x-goog-api-key": "wrong"}, 400, "INVALID_ARGUMENT"),
        ({"Authorization": f"Bearer {API_KEY}"}, 401, "UNAUTHENTICATED"),
        ({}, 403, "PERMISSION_DENIED"),
    ],
)
async def test_gemini_auth_is_the_goog_header(
    sim: Harness, headers: dict[str, str], status: int, rpc_status: str
) -> None:
    async with sim.anonymous(headers) as client:
        response = await client.post(PREDICT, json={"instances": [{"prompt": "p"}]})
    assert response.status_code == status
    assert response.json()["error"]["status"] == rpc_status
    if status == 400:
        assert response.json()["error"]["details"][0]["reason"] == "API_KEY_INVALID"
    async with sim.anonymous() as client:
        by_query = await client.post(
            PREDICT, params={"key": API_KEY}, json={"instances": [{"prompt": "p"}]}
        )
    assert by_query.status_code == 200


async def test_gemini_failure_and_poll_faults(asgi: Harness) -> None:
    name = await gemini_create(asgi, "blocked [sim:fail=safety filter][sim:poll-503-n=1]")
    async with asgi.anonymous(GOOG) as client:
        assert (await client.get(f"/v1beta/{name}")).status_code == 503
    asgi.clock.advance(10)
    body = await gemini_get(asgi, name)
    assert body == {"name": name, "done": True, "error": {"code": 13, "message": "safety filter"}}


async def test_gemini_operation_belongs_to_its_model(asgi: Harness) -> None:
    name = await gemini_create(asgi, "p")
    other = name.replace(VEO, "veo-2.0-generate-001")
    async with asgi.anonymous(GOOG) as client:
        response = await client.get(f"/v1beta/{other}")
    assert response.status_code == 404


# ----- Kling -----------------------------------------------------------------------------------


async def test_kling_text2video_lifecycle(sim: Harness) -> None:
    use_kling_keys(sim)
    task_id = await kling_create(
        sim,
        "text2video",
        {
            "model_name": "kling-v1-6",
            "prompt": "a paper boat",
            "negative_prompt": "blur",
            "cfg_scale": 0.5,
            "mode": "pro",
            "aspect_ratio": "9:16",
            "duration": "10",
        },
    )
    first = await kling_get(sim, "text2video", task_id)
    assert first["message"] == "SUCCEED"
    assert first["data"]["task_status"] == "submitted"
    assert first["data"]["created_at"] == int(sim.clock.now * 1000)
    sim.clock.advance(5)
    assert (await kling_get(sim, "text2video", task_id))["data"]["task_status"] == "processing"
    sim.clock.advance(5)
    done = (await kling_get(sim, "text2video", task_id))["data"]
    assert done["task_status"] == "succeed"
    (video,) = done["task_result"]["videos"]
    assert video["duration"] == "10"
    media = await sim.client.get(video["url"])
    assert decodable_video_frames(media.content) >= 1
    # A task is only found under the endpoint that created it.
    async with sim.anonymous(kling_headers()) as client:
        wrong = await client.get(f"/v1/videos/image2video/{task_id}")
    assert wrong.status_code == 404
    assert wrong.json()["code"] == 1203


async def test_kling_image2video_and_validation(asgi: Harness) -> None:
    use_kling_keys(asgi)
    task_id = await kling_create(
        asgi, "image2video", {"model_name": "kling-v1", "image": png_b64(), "duration": 5}
    )
    assert (await kling_get(asgi, "image2video", task_id))["data"]["task_id"] == task_id
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("image2video", {"image": f"data:image/png;base64,{png_b64()}"}, "data: prefix"),
        ("image2video", {"prompt": "no image"}, "image is required"),
        ("text2video", {"prompt": "p", "duration": "7"}, "duration"),
        ("text2video", {"prompt": "p", "cfg_scale": 3}, "cfg_scale"),
        ("text2video", {"prompt": "p", "mode": "turbo"}, "mode"),
        ("text2video", {}, "prompt is required"),
    ]
    async with asgi.anonymous(kling_headers()) as client:
        for endpoint, body, needle in cases:
            response = await client.post(f"/v1/videos/{endpoint}", json=body)
            assert response.status_code == 400, body
            assert response.json()["code"] == 1201
            assert needle in response.json()["message"]


async def test_kling_failure_is_failed_with_a_message(asgi: Harness) -> None:
    use_kling_keys(asgi)
    task_id = await kling_create(asgi, "text2video", {"prompt": "x [sim:fail=risk control]"})
    asgi.clock.advance(10)
    data = (await kling_get(asgi, "text2video", task_id))["data"]
    assert data["task_status"] == "failed"
    assert data["task_status_msg"] == "risk control"
    assert "task_result" not in data


@pytest.mark.parametrize(
    ("authorization", "code"),
    [
        (None, 1001),
        (f"Bearer {kling_token(secret='not-the-secret-but-just-as-long-0123')}", 1002),
        (f"Bearer {kling_token(access='someone-else')}", 1002),
        (f"Bearer {kling_token(now=time.time() - 3600)}", 1004),
        (f"Bearer {kling_token(now=time.time() + 600)}", 1003),
        ("Bearer not.a.jwt", 1002),
        (f"Bearer {KLING_AK}:{KLING_SK}", 1002),
    ],
    ids=["missing", "wrong-secret", "wrong-issuer", "expired", "not-yet-valid", "garbage", "raw"],
)
async def test_kling_jwt_is_verified(sim: Harness, authorization: str | None, code: int) -> None:
    use_kling_keys(sim)
    headers = {"Authorization": authorization} if authorization else {}
    async with sim.anonymous(headers) as client:
        response = await client.post("/v1/videos/text2video", json={"prompt": "p"})
    assert response.status_code == 401
    assert response.json()["code"] == code
    assert sim.simulator.store.stats.create_requests == 0


async def test_kling_any_well_formed_jwt_without_configured_key(asgi: Harness) -> None:
    asgi.configure(api_key=None)
    token = kling_token("whoever", "whatever-secret-of-32-bytes-or-more")
    async with asgi.anonymous(kling_headers(token)) as client:
        ok = await client.post("/v1/videos/text2video", json={"prompt": "p"})
        expired = await client.post(
            "/v1/videos/text2video",
            json={"prompt": "p"},
            headers={"Authorization": f"Bearer {kling_token(now=time.time() - 7200)}"},
        )
    assert ok.status_code == 200, ok.text
    assert expired.status_code == 401
    assert expired.json()["code"] == 1004


async def test_kling_request_log_never_holds_the_token(asgi: Harness) -> None:
    use_kling_keys(asgi)
    token = kling_token()
    async with asgi.anonymous(kling_headers(token)) as client:
        await client.post("/v1/videos/text2video", json={"prompt": "logged"})
    log = (await asgi.client.get("/_sim/requests")).text
    assert token not in log
    assert KLING_SK not in log
    (entry,) = [e for e in asgi.simulator.store.requests if e["path"] == "/v1/videos/text2video"]
    assert entry["key_fingerprint"] is not None
    assert entry["status"] == 200


async def test_openai_videos_still_served_next_to_kling(asgi: Harness) -> None:
    response = await asgi.client.post(
        "/v1/videos", json={"model": "sora-2", "prompt": "p", "seconds": "4"}
    )
    assert response.status_code == 200, response.text
    video_id = response.json()["id"]
    assert (await asgi.client.get(f"/v1/videos/{video_id}")).json()["id"] == video_id
