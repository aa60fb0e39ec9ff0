"""Adapter name -> adapter. The model catalog names an adapter per model; the engine asks here.

    adapter = get_adapter("sora", app.state.http)
    submission = await adapter.submit(request, credentials)

Options (retry policies, timeouts, adapter-specific knobs such as `image_field` for images or
`ratio_fields` for Seedance) pass through to the adapter's constructor.
"""

from __future__ import annotations

from typing import Any

import httpx

from app.clients.ark import ArkAdapter
from app.clients.base import UpstreamAdapter
from app.clients.gemini_veo import GeminiVeoAdapter
from app.clients.http import HttpAdapter
from app.clients.images import ImagesAdapter
from app.clients.kling import KlingAdapter
from app.clients.openai_sora import OpenAISoraAdapter
from app.clients.seedance import SeedanceAdapter
from app.clients.sora import SoraAdapter
from app.clients.veo import VeoAdapter

ADAPTERS: dict[str, type[HttpAdapter]] = {
    SoraAdapter.name: SoraAdapter,
    VeoAdapter.name: VeoAdapter,
    SeedanceAdapter.name: SeedanceAdapter,
    ImagesAdapter.name: ImagesAdapter,
    OpenAISoraAdapter.name: OpenAISoraAdapter,
    # Official provider APIs (direct channels).
    ArkAdapter.name: ArkAdapter,
    GeminiVeoAdapter.name: GeminiVeoAdapter,
    KlingAdapter.name: KlingAdapter,
}


class UnknownAdapterError(LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(f"unknown upstream adapter {name!r}; known: {', '.join(adapter_names())}")
        self.name = name


def adapter_names() -> tuple[str, ...]:
    return tuple(sorted(ADAPTERS))


def get_adapter(name: str, http_client: httpx.AsyncClient, **options: Any) -> UpstreamAdapter:
    """A new adapter bound to the shared client (adapters hold no state beyond configuration)."""
    try:
        adapter_class = ADAPTERS[name]
    except KeyError:
        raise UnknownAdapterError(name) from None
    adapter: UpstreamAdapter = adapter_class(http_client, **options)  # type: ignore[assignment]
    return adapter
