"""Image posters are made on the first thumbnail request (not when the image is stored), kept
and counted in the owner's quota; served without being kept when the quota has no room; two
racing requests keep one poster."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update

from app.models import User
from tests.api.v1.conftest import FAST_TASKS, create, media_rows
from tests.conftest import AuthedUser

JPEG_MAGIC = b"\xff\xd8\xff"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return dict(FAST_TASKS)


async def _usage(client: httpx.AsyncClient, user: AuthedUser) -> int:
    response = await client.get("/api/v1/storage/me", headers=user.headers)
    assert response.status_code == 200
    used: int = response.json()["used_bytes"]
    return used


async def _image(client: httpx.AsyncClient, user: AuthedUser, prompt: str) -> dict[str, Any]:
    task: dict[str, Any] = await create(
        client,
        user.headers,
        {"model": "gpt-image-1", "prompt": prompt, "params": {"size": "1024x1024"}},
        kind="images",
        wait=30,
    )
    assert task["status"] == "completed", task
    return task


def _files(app: FastAPI) -> set[str]:
    root = app.state.tasks.storage.root
    return {
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and not p.relative_to(root).as_posix().startswith(".")
    }


async def test_first_thumbnail_request_makes_keeps_and_counts_the_poster(
    app: FastAPI, client: httpx.AsyncClient, user: AuthedUser
) -> None:
    task = await _image(client, user, "a poster on request")
    [media] = task["media"]
    assert media["thumbnail_url"], "a stored image offers a thumbnail before one exists"
    [row] = await media_rows(app, task["id"])
    assert row.thumbnail_key is None
    assert row.thumbnail_bytes == 0
    assert await _usage(client, user) == row.bytes

    first = await client.get(media["thumbnail_url"], headers=user.headers)
    assert first.status_code == 200, first.text
    assert first.headers["content-type"] == "image/jpeg"
    assert first.content.startswith(JPEG_MAGIC)
    [row] = await media_rows(app, task["id"])
    assert row.thumbnail_key
    assert row.thumbnail_bytes == len(first.content)
    assert await _usage(client, user) == row.bytes + row.thumbnail_bytes
    assert _files(app) == {row.storage_key, row.thumbnail_key}

    again = await client.get(f"/api/v1/images/{task['id']}/thumbnail", headers=user.headers)
    assert again.status_code == 200
    assert again.content == first.content
    [same] = await media_rows(app, task["id"])
    assert same.thumbnail_key == row.thumbnail_key
    assert await _usage(client, user) == row.bytes + row.thumbnail_bytes

    # Deleting the task gives back both files' bytes and removes both files.
    deleted = await client.delete(f"/api/v1/images/{task['id']}", headers=user.headers)
    assert deleted.status_code == 204
    assert await _usage(client, user) == 0
    assert _files(app) == set()


async def test_racing_requests_keep_one_poster(
    app: FastAPI, client: httpx.AsyncClient, user: AuthedUser
) -> None:
    task = await _image(client, user, "a raced poster")
    url = f"/api/v1/images/{task['id']}/thumbnail"
    answers = await asyncio.gather(*(client.get(url, headers=user.headers) for _ in range(4)))
    assert [a.status_code for a in answers] == [200] * 4
    assert len({a.content for a in answers}) == 1
    [row] = await media_rows(app, task["id"])
    assert row.thumbnail_key
    assert _files(app) == {row.storage_key, row.thumbnail_key}
    assert await _usage(client, user) == row.bytes + row.thumbnail_bytes


async def test_a_poster_that_does_not_fit_the_quota_is_served_but_not_kept(
    app: FastAPI, client: httpx.AsyncClient, user: AuthedUser
) -> None:
    task = await _image(client, user, "a poster with no room")
    async with app.state.db.session() as db:
        await db.execute(
            update(User)
            .where(User.id == user.id)
            .values(storage_quota_bytes=User.storage_used_bytes)
        )
    used = await _usage(client, user)

    answer = await client.get(f"/api/v1/images/{task['id']}/thumbnail", headers=user.headers)
    assert answer.status_code == 200, answer.text
    assert answer.content.startswith(JPEG_MAGIC)
    [row] = await media_rows(app, task["id"])
    assert row.thumbnail_key is None
    assert row.thumbnail_bytes == 0
    assert await _usage(client, user) == used
    assert _files(app) == {row.storage_key}


async def test_a_video_poster_is_still_made_with_the_video(
    app: FastAPI, client: httpx.AsyncClient, user: AuthedUser
) -> None:
    video = await create(
        client, user.headers, {"model": "sora-2", "prompt": "first frame"}, wait=30
    )
    [row] = await media_rows(app, video["id"])
    assert row.thumbnail_key
    assert row.thumbnail_bytes > 0
    assert await _usage(client, user) == row.bytes + row.thumbnail_bytes
