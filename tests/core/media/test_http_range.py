"""Range parsing (table-driven) and `media_response` through a tiny FastAPI route."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, Request
from starlette.responses import Response

from app.core.errors import install_error_handlers
from app.core.media.errors import RangeNotSatisfiable
from app.core.media.http_range import content_disposition, media_response, parse_range
from app.core.media.storage import LocalMediaStorage, content_key

SIZE = 1000


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("bytes=0-", (0, 999)),
        ("bytes=0-0", (0, 0)),
        ("bytes=100-199", (100, 199)),
        ("bytes=999-999", (999, 999)),
        ("bytes=900-5000", (900, 999)),  # end clamped to the size
        ("bytes=-500", (500, 999)),
        ("bytes=-1", (999, 999)),
        ("bytes=-5000", (0, 999)),  # suffix longer than the file: everything
        ("BYTES = 5 - 10", (5, 10)),
        ("bytes=0-1,5-9", None),  # several ranges: the whole file (200)
        ("items=0-10", None),  # other unit: ignored
        ("bytes=abc", None),
        ("bytes=10-5", None),  # invalid: ignored
        ("bytes=-", None),
        ("bytes=1-2-3", None),
        ("bytes", None),
        ("bytes=+1-5", None),
    ],
)
def test_parse_range_table(header: str | None, expected: tuple[int, int] | None) -> None:
    assert parse_range(header, SIZE) == expected


@pytest.mark.parametrize(
    ("header", "size"),
    [("bytes=1000-", 1000), ("bytes=1000-2000", 1000), ("bytes=-0", 1000), ("bytes=0-", 0)],
)
def test_parse_range_unsatisfiable(header: str, size: int) -> None:
    with pytest.raises(RangeNotSatisfiable) as info:
        parse_range(header, size)
    assert info.value.status_code == 416
    assert info.value.headers == {"Content-Range": f"bytes */{size}"}


DATA = bytes(range(256)) * 4 + b"tail"  # 1028 bytes
SHA = hashlib.sha256(DATA).hexdigest()
ETAG = f'"{SHA}"'
KEY = content_key(SHA, "mp4")


@pytest.fixture
async def storage(tmp_path: Path) -> LocalMediaStorage:
    storage = LocalMediaStorage(tmp_path / "media")
    src = storage.new_temp_path()
    src.write_bytes(DATA)
    await storage.put_file(src, KEY)
    return storage


@pytest.fixture
async def client(storage: LocalMediaStorage) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    install_error_handlers(app)

    @app.api_route("/media/{name}", methods=["GET", "HEAD"])
    async def serve(request: Request, name: str, known_size: bool = True) -> Response:
        key = KEY if name == "video" else f"missing/{name}.mp4"
        return await media_response(
            storage,
            key,
            size=len(DATA) if known_size else None,
            content_type="video/mp4",
            etag=SHA,
            request_headers=request.headers,
            filename="clip ü.mp4",
            disposition="attachment" if name == "download" else "inline",
            method=request.method,
        )

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://media.test") as c:
        yield c


@pytest.mark.parametrize("known_size", [True, False])
async def test_full_content(client: httpx.AsyncClient, known_size: bool) -> None:
    response = await client.get("/media/video", params={"known_size": known_size})
    assert response.status_code == 200
    assert response.content == DATA
    assert response.headers["content-length"] == str(len(DATA))
    assert response.headers["content-type"] == "video/mp4"
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["etag"] == ETAG
    assert response.headers["cache-control"].startswith("private")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "content-range" not in response.headers
    assert hashlib.sha256(response.content).hexdigest() == SHA


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-99", 0, 99),
        ("bytes=100-", 100, len(DATA) - 1),
        ("bytes=-4", len(DATA) - 4, len(DATA) - 1),
        ("bytes=1000-99999", 1000, len(DATA) - 1),
    ],
)
async def test_partial_content(
    client: httpx.AsyncClient, header: str, start: int, end: int
) -> None:
    response = await client.get("/media/video", headers={"Range": header})
    assert response.status_code == 206
    assert response.content == DATA[start : end + 1]
    assert response.headers["content-range"] == f"bytes {start}-{end}/{len(DATA)}"
    assert response.headers["content-length"] == str(end - start + 1)
    assert response.headers["etag"] == ETAG


async def test_unsatisfiable_range_is_416_with_json_error(client: httpx.AsyncClient) -> None:
    response = await client.get("/media/video", headers={"Range": f"bytes={len(DATA)}-"})
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{len(DATA)}"
    body = response.json()
    assert body["error"]["code"] == "range_not_satisfiable"
    assert body["error"]["details"] == {"size": len(DATA)}


async def test_multi_range_is_answered_with_the_whole_file(client: httpx.AsyncClient) -> None:
    response = await client.get("/media/video", headers={"Range": "bytes=0-1,10-20"})
    assert response.status_code == 200
    assert response.content == DATA


@pytest.mark.parametrize("if_none_match", [ETAG, f"W/{ETAG}", f'"other", {ETAG}', "*"], ids=str)
async def test_matching_if_none_match_is_304(client: httpx.AsyncClient, if_none_match: str) -> None:
    response = await client.get("/media/video", headers={"If-None-Match": if_none_match})
    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["etag"] == ETAG


async def test_other_if_none_match_serves_content(client: httpx.AsyncClient) -> None:
    response = await client.get("/media/video", headers={"If-None-Match": '"stale"'})
    assert response.status_code == 200
    assert response.content == DATA


@pytest.mark.parametrize(
    ("if_range", "status"),
    [
        (ETAG, 206),  # unchanged: the range applies
        ('"changed"', 200),  # changed: the whole new file
        (f"W/{ETAG}", 200),  # weak tags never satisfy If-Range
        ("Wed, 21 Oct 2015 07:28:00 GMT", 200),  # no Last-Modified to compare with
    ],
)
async def test_if_range(client: httpx.AsyncClient, if_range: str, status: int) -> None:
    response = await client.get(
        "/media/video", headers={"Range": "bytes=0-9", "If-Range": if_range}
    )
    assert response.status_code == status
    assert response.content == (DATA[:10] if status == 206 else DATA)


async def test_if_range_mismatch_does_not_turn_a_bad_range_into_416(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get(
        "/media/video", headers={"Range": "bytes=99999-", "If-Range": '"changed"'}
    )
    assert response.status_code == 200


async def test_head_sends_headers_without_body(client: httpx.AsyncClient) -> None:
    response = await client.head("/media/video")
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-length"] == str(len(DATA))
    ranged = await client.head("/media/video", headers={"Range": "bytes=10-19"})
    assert ranged.status_code == 206
    assert ranged.headers["content-length"] == "10"
    assert ranged.headers["content-range"] == f"bytes 10-19/{len(DATA)}"


async def test_content_disposition(client: httpx.AsyncClient) -> None:
    inline = await client.get("/media/video", headers={"Range": "bytes=0-0"})
    assert inline.headers["content-disposition"] == (
        "inline; filename=\"clip _.mp4\"; filename*=UTF-8''clip%20%C3%BC.mp4"
    )
    assert content_disposition("attachment", 'a"b\r\n/c.mp4') == (
        'attachment; filename="a_b___c.mp4"'
    )


@pytest.mark.parametrize("known_size", [True, False])
async def test_missing_file_is_404(client: httpx.AsyncClient, known_size: bool) -> None:
    response = await client.get("/media/gone", params={"known_size": known_size})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "media_not_found"


async def test_empty_file(tmp_path: Path) -> None:
    storage = LocalMediaStorage(tmp_path / "empty")
    src = storage.new_temp_path()
    src.write_bytes(b"")
    await storage.put_file(src, "e/empty.bin")
    response = await media_response(
        storage,
        "e/empty.bin",
        size=0,
        content_type="image/png",
        etag="abc",
        request_headers={"Range": "bytes=0-"},
    )
    assert response.status_code == 416
    response = await media_response(
        storage, "e/empty.bin", size=0, content_type="image/png", etag="abc", request_headers={}
    )
    assert response.status_code == 200
    assert response.headers["content-length"] == "0"
    assert response.headers["etag"] == '"abc"'
