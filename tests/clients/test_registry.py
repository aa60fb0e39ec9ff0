"""Adapter lookup by name."""

from __future__ import annotations

import httpx
import pytest

from app.clients.ark import ArkAdapter
from app.clients.base import UpstreamAdapter
from app.clients.gemini_veo import GeminiVeoAdapter
from app.clients.images import ImagesAdapter
from app.clients.kling import KlingAdapter
from app.clients.openai_sora import OpenAISoraAdapter
from app.clients.registry import UnknownAdapterError, adapter_names, get_adapter
from app.clients.retry import RetryPolicy
from app.clients.seedance import SeedanceAdapter
from app.clients.sora import SoraAdapter
from app.clients.veo import VeoAdapter


@pytest.mark.parametrize(
    ("name", "cls", "cancel", "sync"),
    [
        ("sora", SoraAdapter, False, False),
        ("veo", VeoAdapter, False, False),
        ("seedance", SeedanceAdapter, False, False),
        ("images", ImagesAdapter, False, True),
        ("openai_sora", OpenAISoraAdapter, True, False),
        ("ark", ArkAdapter, True, False),
        ("gemini_veo", GeminiVeoAdapter, False, False),
        ("kling", KlingAdapter, False, False),
    ],
)
async def test_get_adapter(
    name: str, cls: type, cancel: bool, sync: bool, http_client: httpx.AsyncClient
) -> None:
    adapter = get_adapter(name, http_client)
    assert isinstance(adapter, cls)
    assert isinstance(adapter, UpstreamAdapter)
    assert adapter.name == name
    assert adapter.supports_cancel is cancel
    assert adapter.synchronous is sync


def test_names() -> None:
    assert adapter_names() == (
        "ark",
        "gemini_veo",
        "images",
        "kling",
        "openai_sora",
        "seedance",
        "sora",
        "veo",
    )


async def test_options_reach_the_adapter(http_client: httpx.AsyncClient) -> None:
    policy = RetryPolicy(max_attempts=7)
    adapter = get_adapter("images", http_client, image_field="image[]", poll_retry=policy)
    assert isinstance(adapter, ImagesAdapter)
    assert adapter.image_field == "image[]"
    assert adapter.poll_retry is policy


async def test_unknown_adapter(http_client: httpx.AsyncClient) -> None:
    with pytest.raises(UnknownAdapterError) as info:
        get_adapter("runway", http_client)
    assert "runway" in str(info.value)
    assert isinstance(info.value, LookupError)
