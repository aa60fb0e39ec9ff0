"""A channel as routing sees it: an immutable snapshot of a stored row, or the default channel.

The default channel is virtual: `API_BASE_URL`/`API_KEY` (or the built-in simulator when
neither is set), type aggregator, serving every catalog model. It has no row; its health lives
in the memory of each process.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from app.clients.registry import ADAPTERS
from app.core.channels.types import AGGREGATOR, CHANNEL_TYPES
from app.models import Channel

DEFAULT_CHANNEL_ID = "default"


@dataclass(frozen=True)
class Health:
    consecutive_failures: int = 0
    cooldown_until: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    last_success_at: datetime | None = None
    last_probe_at: datetime | None = None

    def cooling_down(self, now: datetime) -> bool:
        return self.cooldown_until is not None and self.cooldown_until > now


@dataclass(frozen=True)
class ChannelView:
    id: str
    name: str
    type: str
    base_url: str
    api_key_hint: str
    # None for the default channel: its key comes from the settings (or the task's own key).
    api_key_encrypted: str | None
    models: tuple[str, ...] = ()
    model_map: dict[str, str] = field(default_factory=dict)
    priority: int = 0
    weight: int = 1
    enabled: bool = True
    deleted: bool = False
    health: Health = field(default_factory=Health)
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def is_default(self) -> bool:
        return self.id == DEFAULT_CHANNEL_ID

    @property
    def stored_id(self) -> str | None:
        """What `generation_tasks.channel_id` holds for a task this channel owns."""
        return None if self.is_default else self.id

    def adapter_name(self, catalog_adapter: str, kind: str) -> str | None:
        """The adapter that talks to this channel for a model of `catalog_adapter` and `kind`
        (whatever the models list says: polls of a task keep working after it changes)."""
        spec = CHANNEL_TYPES.get(self.type)
        return spec.adapter_for(catalog_adapter, kind) if spec is not None else None

    def serves(self, model_id: str, catalog_adapter: str, kind: str) -> bool:
        """Whether new creates of `model_id` may come here: listed (or, with no list, of the
        type's families), of a kind the type makes, and its adapter installed."""
        spec = CHANNEL_TYPES.get(self.type)
        if spec is None:
            return False
        if self.models:
            if model_id not in self.models:
                return False
        elif not spec.serves_by_default(catalog_adapter):
            return False
        return self.adapter_name(catalog_adapter, kind) in ADAPTERS

    def upstream_model(self, model_id: str) -> str | None:
        """The model name this channel knows `model_id` by, when it maps it."""
        return self.model_map.get(model_id)


def view_of(row: Channel) -> ChannelView:
    return ChannelView(
        id=row.id,
        name=row.name,
        type=row.type,
        base_url=row.base_url,
        api_key_hint=row.api_key_hint,
        api_key_encrypted=row.api_key_encrypted,
        models=tuple(str(m) for m in row.models or ()),
        model_map={str(k): str(v) for k, v in (row.model_map or {}).items()},
        priority=row.priority,
        weight=row.weight,
        enabled=row.enabled,
        deleted=row.deleted_at is not None,
        health=Health(
            consecutive_failures=row.consecutive_failures,
            cooldown_until=row.cooldown_until,
            last_error=row.last_error,
            last_error_at=row.last_error_at,
            last_success_at=row.last_success_at,
            last_probe_at=row.last_probe_at,
        ),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def default_view(
    *, base_url: str, api_key: str, simulator: bool, available: bool, health: Health
) -> ChannelView:
    return ChannelView(
        id=DEFAULT_CHANNEL_ID,
        name="Built-in simulator" if simulator else "Default (API_BASE_URL)",
        type=AGGREGATOR,
        base_url=base_url,
        api_key_hint=key_hint(api_key) if api_key else "",
        api_key_encrypted=None,
        enabled=available,
        health=health,
    )


def key_hint(key: str) -> str:
    """Enough of a key to tell two apart, never enough to use: "sk-…abcd"."""
    if len(key) < 12:
        return "…"
    head = key[:3]
    return f"{head}…{key[-4:]}"
