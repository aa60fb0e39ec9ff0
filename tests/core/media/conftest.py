"""Fixtures of the media tests: real sample files made with PyAV/Pillow, and a real HTTP server
(uvicorn on 127.0.0.1, port 0, in a thread) that misbehaves on request."""

from __future__ import annotations

import asyncio
import hashlib
import io
import socket
import threading
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import av
import httpx
import pytest
import uvicorn
from PIL import Image

from app.core.media.download import _WRITE_BATCH_BYTES, RetryConfig

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

#: Retries without real waiting, so failure paths run in milliseconds.
FAST_RETRY = RetryConfig(attempts=3, wait_initial=0.001, wait_max=0.002, retry_after_cap=0.01)

_PATTERN = bytes(range(256)) * 256  # 64 KiB
BIG_HEAD = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"


def make_video(
    container_format: str = "mp4", codec: str = "libx264", frames: int = 10, fps: int = 10
) -> bytes:
    """A real, playable 64x64 video of `frames / fps` seconds."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=container_format) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width = 64  # type: ignore[union-attr]
        stream.height = 64  # type: ignore[union-attr]
        stream.pix_fmt = "yuv420p"  # type: ignore[union-attr]
        for index in range(frames):
            image = Image.new("RGB", (64, 64), (index * 20 % 256, 120, 200))
            frame = av.VideoFrame.from_image(image)
            for packet in stream.encode(frame):  # type: ignore[union-attr]
                container.mux(packet)
        for packet in stream.encode():  # type: ignore[union-attr]
            container.mux(packet)
    return buffer.getvalue()


def make_image(fmt: str, size: tuple[int, int] = (96, 48), mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    color: Any = (200, 40, 90, 128) if mode == "RGBA" else (200, 40, 90)
    Image.new(mode, size, color).save(buffer, format=fmt)
    return buffer.getvalue()


def big_body(size: int) -> Iterator[bytes]:
    """`size` bytes that sniff as MP4, generated in 64 KiB pieces (never whole in memory)."""
    yield BIG_HEAD
    remaining = size - len(BIG_HEAD)
    while remaining > 0:
        piece = _PATTERN[: min(len(_PATTERN), remaining)]
        remaining -= len(piece)
        yield piece


def big_body_sha256(size: int) -> str:
    digest = hashlib.sha256()
    for piece in big_body(size):
        digest.update(piece)
    return digest.hexdigest()


@dataclass
class Samples:
    files: dict[str, bytes]

    def __getitem__(self, name: str) -> bytes:
        return self.files[name]


CONTENT_TYPES = {
    "video.mp4": "video/mp4",
    "video.mov": "video/quicktime",
    "video.webm": "video/webm",
    "image.png": "image/png",
    "image.jpg": "image/jpeg",
    "image.webp": "image/webp",
}


@pytest.fixture(scope="session")
def samples() -> Samples:
    return Samples(
        {
            "video.mp4": make_video("mp4", "libx264"),
            "video.mov": make_video("mov", "mpeg4"),
            "video.webm": make_video("webm", "libvpx"),
            "image.png": make_image("PNG"),
            "image.jpg": make_image("JPEG"),
            "image.webp": make_image("WEBP"),
        }
    )


@dataclass
class SeenRequest:
    path: str
    query: dict[str, str]
    headers: dict[str, str]


@dataclass
class MediaServer:
    """A raw ASGI app: full control over status, headers and (broken) bodies."""

    samples: Samples
    port: int = 0
    requests: list[SeenRequest] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def localhost_url(self) -> str:
        return f"http://localhost:{self.port}"

    def seen(self, path_part: str) -> list[SeenRequest]:
        return [request for request in self.requests if path_part in request.path]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        self.requests.append(SeenRequest(path, query, headers))
        parts = path.strip("/").split("/")
        handler = getattr(self, f"_route_{parts[0].replace('-', '_')}", None)
        if handler is None:
            await _respond(send, 404, b"no such route")
            return
        await handler(send, parts[1:], query, headers)

    async def _route_media(self, send: Send, args: list[str], q: dict, h: dict) -> None:
        name = args[0]
        body = self.samples[name]
        content_type = q.get("as", CONTENT_TYPES[name])
        await _respond(send, 200, body, {"content-type": content_type, "etag": '"v1"'})

    async def _route_chunked(self, send: Send, args: list[str], q: dict, h: dict) -> None:
        body = self.samples[args[0]]
        await _start(send, 200, {"content-type": "application/octet-stream"})
        for offset in range(0, len(body), 1000):
            await send(
                {
                    "type": "http.response.body",
                    "body": body[offset : offset + 1000],
                    "more_body": True,
                }
            )
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _route_truncated(self, send: Send, args: list[str], q: dict, h: dict) -> None:
        # Declares the full length, sends half and stops; `fails` times, then behaves.
        token, body = args[0], self.samples["video.mp4"]
        self.counters[token] += 1
        if self.counters[token] <= int(q.get("fails", "1000")):
            await _start(send, 200, {"content-length": str(len(body))})
            await send(
                {"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True}
            )
            return  # uvicorn closes the connection: the client sees a truncated body
        await _respond(send, 200, body)

    async def _route_resumable(self, send: Send, args: list[str], q: dict, h: dict) -> None:
        token, body = args[0], self.samples["video.mp4"]
        self.counters[token] += 1
        etag = '"resumable-v1"'
        range_header = h.get("range")
        if range_header and h.get("if-range") == etag:
            start = int(range_header.removeprefix("bytes=").rstrip("-"))
            if q.get("short") and self.counters[token] == 2:
                # A server that caps range sizes: only 500 bytes of the remainder.
                end = start + 499
                await _respond(
                    send,
                    206,
                    body[start : end + 1],
                    {
                        "etag": etag,
                        "content-range": f"bytes {start}-{end}/{len(body)}",
                    },
                )
                return
            await _respond(
                send,
                206,
                body[start:],
                {
                    "etag": etag,
                    "content-range": f"bytes {start}-{len(body) - 1}/{len(body)}",
                },
            )
            return
        await _start(
            send, 200, {"content-length": str(len(body)), "etag": etag, "accept-ranges": "bytes"}
        )
        await send({"type": "http.response.body", "body": body[:1000], "more_body": True})

    async def _route_status(self, send: Send, args: list[str], q: dict, h: dict) -> None:
        await _respond(send, int(args[0]), b"upstream says no")

    async def _route_flaky(self, send: Send, args: list[str], q: dict, h: dict) -> None:
        token = args[0]
        self.counters[token] += 1
        if self.counters[token] <= int(q.get("fails", "1")):
            headers = {"retry-after": q["retry_after"]} if "retry_after" in q else {}
            await _respond(send, int(q.get("status", "500")), b"try later", headers)
            return
        await _respond(send, 200, self.samples["video.mp4"], {"content-type": "video/mp4"})

    async def _route_redirect(self, send: Send, args: list[str], q: dict, h: dict) -> None:
        await _respond(send, int(q.get("status", "302")), b"", {"location": q["to"]})

    async def _route_loop(self, send: Send, args: list[str], q: dict, h: dict) -> None:
        hop = int(args[0])
        await _respond(send, 302, b"", {"location": f"/loop/{hop + 1}"})

    async def _route_html(self, send: Send, args: list[str], q: dict, h: dict) -> None:
        body = b"<!doctype html><html><body>" + b"x" * 200 + b"</body></html>"
        await _respond(send, 200, body, {"content-type": "video/mp4"})

    async def _route_big(self, send: Send, args: list[str], q: dict, h: dict) -> None:
        size = int(args[0])
        headers = {} if q.get("chunked") else {"content-length": str(size)}
        await _start(send, 200, headers)
        for piece in big_body(size):
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _route_drip(self, send: Send, args: list[str], q: dict, h: dict) -> None:
        # More than one write batch quickly (so some of it reaches the file), then nothing
        # until the server stops: a download stuck mid-body.
        size = _WRITE_BATCH_BYTES + 1024 * 1024
        await _start(send, 200, {"content-length": str(size + 1024 * 1024)})
        for piece in big_body(size):
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await self._wait_for_stop()

    async def _route_stall(self, send: Send, args: list[str], q: dict, h: dict) -> None:
        await self._wait_for_stop()

    async def _wait_for_stop(self) -> None:
        await asyncio.to_thread(self.stop.wait, 10)


async def _start(send: Send, status: int, headers: dict[str, str]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
        }
    )


async def _respond(
    send: Send, status: int, body: bytes, headers: dict[str, str] | None = None
) -> None:
    all_headers = {"content-length": str(len(body)), **(headers or {})}
    await _start(send, status, all_headers)
    await send({"type": "http.response.body", "body": body, "more_body": False})


@pytest.fixture(scope="session")
def media_server(samples: Samples) -> Iterator[MediaServer]:
    server_app = MediaServer(samples)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server_app.port = sock.getsockname()[1]
    config = uvicorn.Config(
        server_app, log_level="warning", lifespan="off", timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the media test server did not start")
        time.sleep(0.01)
    try:
        yield server_app
    finally:
        server_app.stop.set()
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    # trust_env=False: a proxy from the environment must not sit between us and 127.0.0.1.
    async with httpx.AsyncClient(timeout=5.0, trust_env=False) as client:
        yield client
