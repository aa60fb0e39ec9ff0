"""A scripted fake upstream served over real HTTP (uvicorn on 127.0.0.1, port 0, own thread).

The fixtures in conftest.py start it once per session and reset it per test.

Tests script replies per (method, raw path) and read back what the adapter sent:

    fake.script("POST", "/v2/videos/generations", Reply(json={"task_id": "t1"}))
    fake.script("GET", "/v2/videos/generations/t1", Reply(status=500), Reply(json={...}))

Replies are served in order; the last one repeats. The fake checks the bearer key like a real
upstream, and a wrong key gets a 401 that echoes the key back (as real upstreams do), so the
scrubbing is exercised. `{key}` inside a scripted body is replaced by the expected key.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.clients.retry import RetryPolicy

API_KEY = "test-key-7f3c9e2b1a6d4c8e"  # not sk- shaped: proves the key itself is scrubbed
FAST_RETRY = RetryPolicy(
    max_attempts=3, initial_wait=0.001, max_wait=0.01, jitter=0.001, max_retry_after=0.05
)
_MISSING: Any = object()


@dataclass
class Reply:
    status: int = 200
    json: Any = _MISSING
    body: str | bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str | None = None
    delay: float = 0.0


@dataclass
class Recorded:
    method: str
    raw_path: str
    headers: dict[str, str]
    body: bytes
    form: list[tuple[str, Any]] = field(default_factory=list)

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    def fields(self, name: str) -> list[Any]:
        return [value for key, value in self.form if key == name]


@dataclass
class FakeFile:
    filename: str | None
    content: bytes
    content_type: str | None


class FakeUpstream:
    def __init__(self) -> None:
        self.url = ""
        self.expected_key = API_KEY
        self._lock = threading.Lock()
        self._scripts: dict[tuple[str, str], list[Reply]] = {}
        self.requests: list[Recorded] = []

    def reset(self) -> None:
        with self._lock:
            self._scripts.clear()
            self.requests.clear()
            self.expected_key = API_KEY

    def script(self, method: str, raw_path: str, *replies: Reply) -> None:
        with self._lock:
            self._scripts[(method.upper(), raw_path)] = list(replies)

    def hits(self, method: str, raw_path: str) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.method == method and r.raw_path == raw_path]

    def _next(self, method: str, raw_path: str) -> Reply | None:
        with self._lock:
            queue = self._scripts.get((method, raw_path))
            if not queue:
                return None
            return queue.pop(0) if len(queue) > 1 else queue[0]

    async def handle(self, request: Request) -> Response:
        raw_path = request.scope["raw_path"].decode("ascii").split("?", 1)[0]
        body = await request.body()
        form: list[tuple[str, Any]] = []
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            parsed = await request.form()
            for key, value in parsed.multi_items():
                if isinstance(value, UploadFile):
                    data = await value.read()
                    form.append((key, FakeFile(value.filename, data, value.content_type)))
                else:
                    form.append((key, value))
        with self._lock:
            self.requests.append(
                Recorded(request.method, raw_path, dict(request.headers), body, form)
            )
        auth = request.headers.get("authorization", "")
        if auth != f"Bearer {self.expected_key}":
            given = auth.removeprefix("Bearer ")
            message = f"Incorrect API key provided: {given}. Authorization: {auth}"
            return Response(
                json.dumps({"error": {"code": "invalid_api_key", "message": message}}),
                status_code=401,
                media_type="application/json",
            )
        reply = self._next(request.method, raw_path)
        if reply is None:
            return Response(
                json.dumps({"error": {"message": f"no script for {request.method} {raw_path}"}}),
                status_code=404,
                media_type="application/json",
            )
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.json is not _MISSING:
            content: str | bytes = json.dumps(reply.json).replace("{key}", self.expected_key)
            media_type = reply.content_type or "application/json"
        else:
            content = reply.body or b""
            if isinstance(content, str):
                content = content.replace("{key}", self.expected_key)
            media_type = reply.content_type or "text/plain"
        return Response(
            content, status_code=reply.status, headers=reply.headers, media_type=media_type
        )


def build_app(fake: FakeUpstream) -> Starlette:
    methods = ["GET", "POST", "DELETE", "PUT", "PATCH"]
    return Starlette(routes=[Route("/{path:path}", fake.handle, methods=methods)])


def closed_port_url() -> str:
    """A loopback URL nothing listens on: connecting fails before any byte is sent."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class FlakyConnectTransport(httpx.AsyncBaseTransport):
    """Real transport whose first `failures` requests fail to connect (nothing is sent)."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.attempts = 0
        self._inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise httpx.ConnectError("simulated connection refused", request=request)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()
