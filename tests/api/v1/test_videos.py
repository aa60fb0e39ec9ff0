"""End-to-end: the HTTP API, the worker and the in-process simulator, over the real app."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import AuthedUser


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"polling_interval": 0.05, "simulator_task_seconds": 0.3}


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
    assert media["width"] and media["height"]
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
