"""Serving stored results: `GET|HEAD /{id}/content` (and per media item) with Range, ETag and
conditional requests, `/{id}/thumbnail`, `?download=1`; with bearer, API-key and cookie auth."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from PIL import Image

from app.core.security import CSRF_COOKIE
from tests.api.v1.conftest import FAST_TASKS, create, sha256, upstream_bytes
from tests.conftest import AuthedUser


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return dict(FAST_TASKS)


@dataclass
class Caller:
    """A way of calling the API: a client and the headers that authenticate it."""

    name: str
    client: httpx.AsyncClient
    headers: dict[str, str]


@pytest.fixture(params=["bearer", "api_key", "cookie"])
async def caller(
    request: pytest.FixtureRequest, app: FastAPI, client: httpx.AsyncClient, user: AuthedUser
) -> AsyncIterator[Caller]:
    if request.param == "bearer":
        yield Caller("bearer", client, user.headers)
        return
    if request.param == "api_key":
        created = await client.post("/api/v1/keys", json={"name": "media"}, headers=user.headers)
        assert created.status_code == 201, created.text
        key = created.json()["key"]
        assert key.startswith("gk_")
        yield Caller("api_key", client, {"Authorization": f"Bearer {key}"})
        return
    login = await client.post(
        "/api/v1/auth/login?set_cookie=1",
        json={"username_or_email": user.username, "password": user.password},
    )
    assert login.status_code == 200, login.text
    transport = httpx.ASGITransport(app=app, client=("203.0.113.8", 50001))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://testserver", cookies=login.cookies
    ) as cookie_client:
        yield Caller("cookie", cookie_client, {})


@pytest.fixture
async def video(client: httpx.AsyncClient, user: AuthedUser) -> dict[str, Any]:
    task: dict[str, Any] = await create(
        client, user.headers, {"model": "sora-2", "prompt": "a spinning top"}, wait=30
    )
    assert task["status"] == "completed", task
    return task


async def test_content_ranges_etags_head_and_download(
    caller: Caller, app: FastAPI, video: dict[str, Any]
) -> None:
    http, headers = caller.client, caller.headers
    media = video["media"][0]
    url = f"/api/v1/videos/{video['id']}/content"
    size = media["bytes"]
    etag = f'"{media["sha256"]}"'

    full = await http.get(url, headers=headers)
    assert full.status_code == 200, full.text
    body = full.content
    assert body == await upstream_bytes(app, media["id"])
    assert sha256(body) == media["sha256"]
    assert full.headers["content-type"] == "video/mp4"
    assert int(full.headers["content-length"]) == size == len(body)
    assert full.headers["accept-ranges"] == "bytes"
    assert full.headers["etag"] == etag
    assert full.headers["content-disposition"].startswith("inline")

    # Single ranges: first bytes, an open end, a suffix, one byte.
    for spec, start, end in (
        ("bytes=0-99", 0, 99),
        ("bytes=100-", 100, size - 1),
        ("bytes=-50", size - 50, size - 1),
        ("bytes=7-7", 7, 7),
        (f"bytes=10-{size + 1000}", 10, size - 1),  # an end past the file is clamped
    ):
        part = await http.get(url, headers={**headers, "Range": spec})
        assert part.status_code == 206, (spec, part.status_code)
        assert part.headers["content-range"] == f"bytes {start}-{end}/{size}", spec
        assert int(part.headers["content-length"]) == end - start + 1
        assert part.content == body[start : end + 1], spec
        assert part.headers["etag"] == etag

    # Unsatisfiable: 416 with the size; an invalid header is ignored (whole file).
    for spec in (f"bytes={size}-", f"bytes={size + 5}-{size + 10}", "bytes=-0"):
        refused = await http.get(url, headers={**headers, "Range": spec})
        assert refused.status_code == 416, spec
        assert refused.headers["content-range"] == f"bytes */{size}"
        assert refused.json()["error"]["code"] == "range_not_satisfiable"
    for spec in ("bytes=10-5", "items=0-5", "bytes=abc"):
        ignored = await http.get(url, headers={**headers, "Range": spec})
        assert ignored.status_code == 200, spec
        assert ignored.content == body

    # Conditional requests.
    cached = await http.get(url, headers={**headers, "If-None-Match": etag})
    assert cached.status_code == 304
    assert cached.content == b""
    assert cached.headers["etag"] == etag
    weak = await http.get(url, headers={**headers, "If-None-Match": f'"other", W/{etag}'})
    assert weak.status_code == 304
    stale = await http.get(url, headers={**headers, "If-None-Match": '"something-else"'})
    assert stale.status_code == 200
    assert stale.content == body
    same = await http.get(url, headers={**headers, "Range": "bytes=0-9", "If-Range": etag})
    assert same.status_code == 206
    assert same.content == body[:10]
    changed = await http.get(url, headers={**headers, "Range": "bytes=0-9", "If-Range": '"x"'})
    assert changed.status_code == 200
    assert changed.content == body

    # HEAD: the same headers, no body.
    head = await http.head(url, headers=headers)
    assert head.status_code == 200
    assert head.content == b""
    assert int(head.headers["content-length"]) == size
    assert head.headers["etag"] == etag
    head_range = await http.head(url, headers={**headers, "Range": "bytes=0-9"})
    assert head_range.status_code == 206
    assert head_range.headers["content-range"] == f"bytes 0-9/{size}"

    # Download: an attachment with a sensible file name.
    download = await http.get(url + "?download=1", headers=headers)
    assert download.status_code == 200
    disposition = download.headers["content-disposition"]
    assert disposition.startswith("attachment;")
    assert ".mp4" in disposition
    assert download.content == body

    # The per-media URL in the task object serves the same file.
    per_media = await http.get(media["url"], headers=headers)
    assert per_media.status_code == 200
    assert per_media.content == body
    per_media_range = await http.get(media["url"], headers={**headers, "Range": "bytes=-10"})
    assert per_media_range.status_code == 206
    assert per_media_range.content == body[-10:]


async def test_thumbnail_is_a_small_jpeg_of_the_first_frame(
    caller: Caller, video: dict[str, Any]
) -> None:
    media = video["media"][0]
    assert media["thumbnail_url"]
    for url in (f"/api/v1/videos/{video['id']}/thumbnail", media["thumbnail_url"]):
        response = await caller.client.get(url, headers=caller.headers)
        assert response.status_code == 200, (url, response.text)
        assert response.headers["content-type"] == "image/jpeg"
        assert response.content[:3] == b"\xff\xd8\xff"
        with Image.open(io.BytesIO(response.content)) as image:
            assert image.format == "JPEG"
            assert 0 < max(image.size) <= max(media["width"], media["height"], 640)
        etag = response.headers["etag"]
        assert etag != f'"{media["sha256"]}"'  # the poster is not the video
        cached = await caller.client.get(url, headers={**caller.headers, "If-None-Match": etag})
        assert cached.status_code == 304


async def test_image_content_and_thumbnail(
    caller: Caller, client: httpx.AsyncClient, user: AuthedUser
) -> None:
    task = await create(
        client,
        user.headers,
        {"model": "gpt-image-1", "prompt": "a leaf", "params": {"size": "1024x1024"}},
        kind="images",
        wait=30,
    )
    media = task["media"][0]
    content = await caller.client.get(
        f"/api/v1/images/{task['id']}/content", headers=caller.headers
    )
    assert content.status_code == 200
    assert content.headers["content-type"] == "image/png"
    assert sha256(content.content) == media["sha256"]
    thumb = await caller.client.get(
        f"/api/v1/images/{task['id']}/thumbnail", headers=caller.headers
    )
    assert thumb.status_code == 200
    assert thumb.content[:3] == b"\xff\xd8\xff"
    # A video URL does not serve an image task.
    wrong_kind = await caller.client.get(
        f"/api/v1/videos/{task['id']}/content", headers=caller.headers
    )
    assert wrong_kind.status_code == 404


async def test_content_of_an_unfinished_task_is_404(
    caller: Caller, client: httpx.AsyncClient, user: AuthedUser
) -> None:
    task = await create(client, user.headers, {"model": "sora-2", "prompt": "[sim:never]"})
    for path in ("content", "thumbnail"):
        response = await caller.client.get(
            f"/api/v1/videos/{task['id']}/{path}", headers=caller.headers
        )
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "media_not_found"


async def test_cookie_session_needs_csrf_for_changes(
    app: FastAPI, client: httpx.AsyncClient, user: AuthedUser
) -> None:
    task = await create(client, user.headers, {"model": "sora-2", "prompt": "[sim:never]"})
    login = await client.post(
        "/api/v1/auth/login?set_cookie=1",
        json={"username_or_email": user.username, "password": user.password},
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://testserver", cookies=login.cookies
    ) as browser:
        listing = await browser.get("/api/v1/videos")
        assert listing.status_code == 200
        assert listing.json()["total"] == 1
        refused = await browser.post(f"/api/v1/videos/{task['id']}/cancel")
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "csrf_failed"
        token = login.cookies[CSRF_COOKIE]
        allowed = await browser.post(
            f"/api/v1/videos/{task['id']}/cancel", headers={"X-CSRF-Token": token}
        )
        assert allowed.status_code == 200
        assert allowed.json()["status"] == "cancelled"


async def test_revoked_api_key_loses_access_to_content(
    client: httpx.AsyncClient, user: AuthedUser, video: dict[str, Any]
) -> None:
    created = await client.post("/api/v1/keys", json={"name": "short"}, headers=user.headers)
    key, key_id = created.json()["key"], created.json()["id"]
    url = f"/api/v1/videos/{video['id']}/content"
    auth = {"Authorization": f"Bearer {key}"}
    assert (await client.get(url, headers=auth)).status_code == 200
    assert (await client.delete(f"/api/v1/keys/{key_id}", headers=user.headers)).status_code == 204
    revoked = await client.get(url, headers=auth)
    assert revoked.status_code == 401
    assert (await client.get(url)).status_code == 401
