"""`MEDIA_BACKEND=s3` with `S3_PRESIGN=true`: result content and thumbnails answer `302` to a
presigned URL of the object, after sign-in and ownership checks, for `/api/v1/{videos,images}`
and `/v1/videos/{id}/content`.

End to end against a real S3-compatible server (moto in server mode, a child process, as in
tests/core/media/test_s3.py): the simulator's result is downloaded by the worker and uploaded to
the bucket, the route redirects, and the test follows `Location` over real HTTP: same bytes as
the upstream served, Range works there, and the URL names no secret.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import FastAPI

from app.models import Media
from tests.api.v1.conftest import FAST_TASKS, create, sha256, upstream_bytes
from tests.conftest import AuthedUser, register_and_login
from tests.core.media.test_s3 import (
    ACCESS_KEY,
    REGION,
    SECRET_KEY,
    raw_client,
    running_moto_server,
)


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_moto_server(tmp_path_factory.mktemp("moto") / "server.log") as endpoint:
        yield endpoint


@pytest.fixture
def presign() -> bool:
    """Parametrize with `False` to check that the S3 backend still streams when presigning is
    off."""
    return True


@pytest.fixture
def s3_media(
    s3_endpoint: str, presign: bool, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> str:
    """The S3 settings in the environment (the media backend reads them at start-up)."""
    bucket = f"presign-{uuid.uuid4().hex[:12]}"
    raw_client(s3_endpoint).create_bucket(Bucket=bucket)
    for name, value in {
        "MEDIA_BACKEND": "s3",
        "S3_BUCKET": bucket,
        "S3_ENDPOINT_URL": s3_endpoint,
        "S3_REGION": REGION,
        "S3_ACCESS_KEY_ID": ACCESS_KEY,
        "S3_SECRET_ACCESS_KEY": SECRET_KEY,
        "S3_PRESIGN": "true" if presign else "false",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("S3_PRESIGN_EXPIRES_SECONDS", raising=False)
    monkeypatch.delenv("S3_PREFIX", raising=False)
    return bucket


@pytest.fixture
def settings_overrides(s3_media: str) -> dict[str, Any]:
    return dict(FAST_TASKS)


@pytest.fixture
async def video(client: httpx.AsyncClient, user: AuthedUser) -> dict[str, Any]:
    task: dict[str, Any] = await create(
        client, user.headers, {"model": "sora-2", "prompt": "a lighthouse at dusk"}, wait=30
    )
    assert task["status"] == "completed", task
    return task


async def fetch(url: str, **headers: str) -> httpx.Response:
    """GET a presigned URL as a browser would: a new connection, no credentials of ours."""
    async with httpx.AsyncClient(trust_env=False, timeout=30) as http:
        return await http.get(url, headers=headers)


def assert_presigned(response: httpx.Response, bucket: str) -> str:
    assert response.status_code == 302, response.text
    assert response.headers["cache-control"] == "private, no-store"
    location = response.headers["location"]
    parts = urlsplit(location)
    assert bucket in location
    query = parse_qs(parts.query)
    assert query["X-Amz-Expires"] == ["300"]  # short-lived by default
    assert "X-Amz-Signature" in query
    assert SECRET_KEY not in location
    return location


async def test_content_redirects_to_the_object(
    app: FastAPI,
    client: httpx.AsyncClient,
    user: AuthedUser,
    video: dict[str, Any],
    s3_media: str,
) -> None:
    media = video["media"][0]
    expected = await upstream_bytes(app, media["id"])
    assert sha256(expected) == media["sha256"]
    size = len(expected)

    response = await client.get(f"/api/v1/videos/{video['id']}/content", headers=user.headers)
    location = assert_presigned(response, s3_media)
    assert response.content == b""

    whole = await fetch(location)
    assert whole.status_code == 200
    assert whole.content == expected
    assert whole.headers["content-type"] == "video/mp4"
    assert whole.headers["content-disposition"].startswith("inline; filename=")
    part = await fetch(location, Range="bytes=100-199")
    assert part.status_code == 206
    assert part.content == expected[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{size}"
    tail = await fetch(location, Range="bytes=-10")
    assert tail.content == expected[-10:]

    # ?download=1 makes the store send it as an attachment.
    download = await client.get(
        f"/api/v1/videos/{video['id']}/content?download=1", headers=user.headers
    )
    attached = await fetch(assert_presigned(download, s3_media))
    assert attached.headers["content-disposition"].startswith("attachment; filename=")
    assert attached.content == expected

    # Per media item, and the thumbnails (a JPEG poster).
    one = await client.get(
        f"/api/v1/videos/{video['id']}/media/{media['id']}/content", headers=user.headers
    )
    assert (await fetch(assert_presigned(one, s3_media))).content == expected
    for url in (
        f"/api/v1/videos/{video['id']}/thumbnail",
        f"/api/v1/videos/{video['id']}/media/{media['id']}/thumbnail",
    ):
        thumb = await fetch(assert_presigned(await client.get(url, headers=user.headers), s3_media))
        assert thumb.status_code == 200
        assert thumb.headers["content-type"] == "image/jpeg"
        assert thumb.content.startswith(b"\xff\xd8")


async def test_head_and_conditional_requests_are_answered_here(
    client: httpx.AsyncClient, user: AuthedUser, video: dict[str, Any]
) -> None:
    media = video["media"][0]
    url = f"/api/v1/videos/{video['id']}/content"
    head = await client.head(url, headers=user.headers)
    assert head.status_code == 200
    assert int(head.headers["content-length"]) == media["bytes"]
    assert "location" not in head.headers
    cached = await client.get(
        url, headers={**user.headers, "If-None-Match": f'"{media["sha256"]}"'}
    )
    assert cached.status_code == 304
    assert "location" not in cached.headers


async def test_no_redirect_without_access(
    client: httpx.AsyncClient, video: dict[str, Any], s3_media: str
) -> None:
    media = video["media"][0]
    other = await register_and_login(client, "mallory")
    for url in (
        f"/api/v1/videos/{video['id']}/content",
        f"/api/v1/videos/{video['id']}/thumbnail",
        f"/api/v1/videos/{video['id']}/media/{media['id']}/content",
        f"/v1/videos/{video['id']}/content",
    ):
        stranger = await client.get(url, headers=other.headers)
        assert stranger.status_code == 404, (url, stranger.status_code)
        assert "location" not in stranger.headers
        assert s3_media not in stranger.text
        anonymous = await client.get(url)
        assert anonymous.status_code in (401, 303), (url, anonymous.status_code)
        assert s3_media not in anonymous.headers.get("location", "")


async def test_a_missing_object_is_our_404(
    app: FastAPI, client: httpx.AsyncClient, user: AuthedUser, video: dict[str, Any], s3_media: str
) -> None:
    async with app.state.db.session() as db:
        media = await db.get(Media, video["media"][0]["id"])
    assert media is not None
    assert media.storage_key
    await app.state.tasks.storage.delete(media.storage_key)
    response = await client.get(f"/api/v1/videos/{video['id']}/content", headers=user.headers)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "media_not_found"


async def test_images_redirect_too(
    app: FastAPI, client: httpx.AsyncClient, user: AuthedUser, s3_media: str
) -> None:
    task = await create(
        client,
        user.headers,
        {"model": "gpt-image-1", "prompt": "a paper crane"},
        kind="images",
        wait=30,
    )
    assert task["status"] == "completed", task
    media = task["media"][0]
    response = await client.get(f"/api/v1/images/{task['id']}/content", headers=user.headers)
    image = await fetch(assert_presigned(response, s3_media))
    assert image.status_code == 200
    assert sha256(image.content) == media["sha256"]


async def test_openai_video_content_redirects(
    client: httpx.AsyncClient, user: AuthedUser, video: dict[str, Any], s3_media: str
) -> None:
    created = await client.post("/api/v1/keys", json={"name": "sdk"}, headers=user.headers)
    assert created.status_code == 201, created.text
    headers = {"Authorization": f"Bearer {created.json()['key']}"}
    media = video["media"][0]

    response = await client.get(f"/v1/videos/{video['id']}/content", headers=headers)
    location = assert_presigned(response, s3_media)
    whole = await fetch(location)
    assert sha256(whole.content) == media["sha256"]
    assert whole.headers["content-disposition"].startswith("attachment; filename=")
    part = await fetch(location, Range="bytes=0-9")
    assert part.status_code == 206
    assert part.content == whole.content[:10]

    thumb = await client.get(f"/v1/videos/{video['id']}/content?variant=thumbnail", headers=headers)
    poster = await fetch(assert_presigned(thumb, s3_media))
    assert poster.headers["content-type"] == "image/jpeg"


@pytest.mark.parametrize("presign", [False])
async def test_without_presign_the_bytes_are_streamed(
    app: FastAPI, client: httpx.AsyncClient, user: AuthedUser, video: dict[str, Any]
) -> None:
    media = video["media"][0]
    url = f"/api/v1/videos/{video['id']}/content"
    response = await client.get(url, headers=user.headers)
    assert response.status_code == 200
    assert sha256(response.content) == media["sha256"]
    part = await client.get(url, headers={**user.headers, "Range": "bytes=100-199"})
    assert part.status_code == 206
    assert part.content == response.content[100:200]


async def test_the_pages_policy_lets_the_browser_load_redirected_media(
    client: httpx.AsyncClient, s3_endpoint: str
) -> None:
    page = await client.get("/login")
    assert page.status_code == 200
    policy = page.headers["content-security-policy"]
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(s3_endpoint))
    directives = {d.split()[0]: d.split()[1:] for d in policy.split("; ")}
    assert origin in directives["img-src"]
    assert origin in directives["media-src"]
    assert origin not in directives["script-src"]
    assert origin not in directives["connect-src"]


@pytest.mark.parametrize("presign", [False])
async def test_without_presigning_the_pages_policy_stays_same_origin(
    client: httpx.AsyncClient, s3_endpoint: str
) -> None:
    policy = (await client.get("/login")).headers["content-security-policy"]
    assert "img-src 'self' data: blob:;" in policy
    assert "media-src 'self' blob:;" in policy
