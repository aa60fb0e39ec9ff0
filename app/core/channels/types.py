"""Channel types: which adapter speaks to each kind of upstream, and what it serves by default.

One table, so a new provider is one entry. `adapters` maps a model's kind ("video", "image")
to the adapter that talks to this type of upstream; `None` there means "the catalog model's own
adapter" (an aggregator speaks every family's dialect at one base URL). `families` are the
catalog adapters whose models a channel of this type serves when its `models` list is empty.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from app.clients.base import MediaKind


def _any_key(key: str) -> str | None:
    return None


def _access_and_secret(key: str) -> str | None:
    access, sep, secret = key.partition(":")
    if not sep or not access or not secret:
        return "a Kling key is ACCESS_KEY:SECRET_KEY (the access key and the secret key)"
    return None


@dataclass(frozen=True)
class ChannelType:
    name: str
    label: str
    adapters: Mapping[str, str | None]
    families: frozenset[str] | None  # None: every catalog model
    check_key: Callable[[str], str | None] = field(default=_any_key)

    def adapter_for(self, catalog_adapter: str, kind: str) -> str | None:
        """The adapter that sends a model (of `catalog_adapter`, `kind`) to this type of
        upstream; None when this type cannot serve that kind at all."""
        if kind not in self.adapters:
            return None
        return self.adapters[kind] or catalog_adapter

    def serves_by_default(self, catalog_adapter: str) -> bool:
        return self.families is None or catalog_adapter in self.families


AGGREGATOR = "aggregator"

CHANNEL_TYPES: dict[str, ChannelType] = {
    t.name: t
    for t in (
        ChannelType(
            name=AGGREGATOR,
            label="Aggregator (API_BASE_URL style: Sora, Veo, Seedance, images)",
            adapters={"video": None, "image": None},
            families=None,
        ),
        ChannelType(
            name="openai",
            label="OpenAI (official /v1/videos and /v1/images)",
            adapters={"video": "openai_sora", "image": "images"},
            families=frozenset({"openai_sora", "images"}),
        ),
        ChannelType(
            name="ark",
            label="ByteDance Ark (Seedance tasks)",
            adapters={"video": "ark"},
            families=frozenset({"seedance", "ark"}),
        ),
        ChannelType(
            name="gemini",
            label="Google Gemini API (Veo predictLongRunning)",
            adapters={"video": "gemini_veo"},
            families=frozenset({"veo", "gemini_veo"}),
        ),
        ChannelType(
            name="kling",
            label="Kling",
            adapters={"video": "kling"},
            families=frozenset({"kling"}),
            check_key=_access_and_secret,
        ),
    )
}


def channel_type(name: str) -> ChannelType:
    return CHANNEL_TYPES[name]


def can_serve_kind(type_name: str, kind: MediaKind | str) -> bool:
    return kind in CHANNEL_TYPES[type_name].adapters
