"""The shared client: pooling and timeouts from settings, the in-process simulator mount."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from app.clients.base import UpstreamCredentials
from app.clients.http import (
    POOL_SHARDS,
    ShardedTransport,
    build_http_client,
    join_url,
    quote_id,
    simulator_base_url,
)
from app.clients.registry import get_adapter
from app.core.config import Settings
from tests.clients.fakes import API_KEY, FAST_RETRY, FakeUpstream
from tests.clients.specs import SPECS


def _settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


async def test_client_timeouts_and_limits_come_from_settings() -> None:
    client = build_http_client(_settings(request_timeout=42.0, max_concurrent_tasks=80))
    try:
        assert client.timeout.read == 42.0
        assert client.timeout.write == 42.0
        assert client.timeout.connect == 10.0
        assert client.timeout.pool == 42.0
        transport = client._transport
        assert isinstance(transport, ShardedTransport)
        for shard in transport._pools:
            pool = shard._pool
            assert pool._max_connections == 96  # the worker's slots + 16 for downloads, webhooks
            assert pool._max_keepalive_connections == 96
        assert client.follow_redirects is False
    finally:
        await client.aclose()


async def test_short_request_timeout_caps_connect() -> None:
    client = build_http_client(_settings(request_timeout=3.0))
    try:
        assert client.timeout.connect == 3.0
    finally:
        await client.aclose()


async def test_simulator_app_is_mounted_in_process() -> None:
    seen: list[str] = []

    async def status(request: Request) -> JSONResponse:
        seen.append(request.headers.get("authorization", ""))
        return JSONResponse(
            {"status": "SUCCESS", "progress": "100%", "video_url": "http://v/x.mp4"}
        )

    simulator = Starlette(
        routes=[Route("/v2/videos/generations/{task_id:path}", status, methods=["GET"])]
    )
    client = build_http_client(_settings(), simulator_app=simulator)
    try:
        adapter = get_adapter("sora", client, poll_retry=FAST_RETRY)
        credentials = UpstreamCredentials(base_url=simulator_base_url(), api_key=API_KEY)
        result = await adapter.poll("sim-1", credentials)
    finally:
        await client.aclose()

    assert simulator_base_url() == "http://simulator.internal"
    assert result.results[0].url == "http://v/x.mp4"
    assert seen == [f"Bearer {API_KEY}"]


async def test_extra_mounts_are_kept() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"host": request.url.host})

    client = build_http_client(
        _settings(), mounts={"http://mocked.internal": httpx.MockTransport(handler)}
    )
    try:
        response = await client.get("http://mocked.internal/x")
    finally:
        await client.aclose()
    assert response.json() == {"host": "mocked.internal"}


@pytest.mark.parametrize(
    ("base", "path", "expected"),
    [
        ("https://api.example", "/v1/x", "https://api.example/v1/x"),
        ("https://api.example/", "/v1/x", "https://api.example/v1/x"),
        ("http://127.0.0.1:9000/proxy", "/v1/x", "http://127.0.0.1:9000/proxy/v1/x"),
        ("http://127.0.0.1:9000/proxy/", "v1/x", "http://127.0.0.1:9000/proxy/v1/x"),
    ],
)
def test_join_url(base: str, path: str, expected: str) -> None:
    assert join_url(base, path) == expected


def test_quote_id() -> None:
    assert quote_id("models/veo:op/1") == "models%2Fveo%3Aop%2F1"
    assert quote_id("plain-id_1.2~") == "plain-id_1.2~"


async def test_invalid_base_url_is_typed_and_unreached(http_client: httpx.AsyncClient) -> None:
    from app.clients.errors import UpstreamUnavailable

    adapter = SPECS["sora"].adapter(http_client)
    for base in ("ftp://example.com", "not a url"):
        credentials = UpstreamCredentials(base_url=base, api_key=API_KEY)
        with pytest.raises(UpstreamUnavailable) as info:
            await adapter.submit(SPECS["sora"].request, credentials)
        assert info.value.reached_upstream is False
        assert info.value.retryable is False


async def test_requests_are_dealt_over_every_pool_shard(fake: FakeUpstream) -> None:
    client = build_http_client(_settings())
    try:
        transport = client._transport
        assert isinstance(transport, ShardedTransport)
        assert len(transport._pools) == POOL_SHARDS
        responses = await asyncio.gather(
            *(client.get(f"{fake.url}/anything/{n}") for n in range(4 * POOL_SHARDS))
        )
        assert all(r.status_code < 500 for r in responses)
        # Each shard opened and kept its own connections.
        assert all(shard._pool.connections for shard in transport._pools)
    finally:
        await client.aclose()
    assert all(not shard._pool.connections for shard in transport._pools)
