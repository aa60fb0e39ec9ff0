"""Channel administration (create, list, read, change, delete) and the create-time check that
some channel serves a model.

The default channel (`API_BASE_URL`/`API_KEY`, id "default") is listed with the others but is
read-only here: it is configured by the environment. It is tried after every stored channel.
With a real upstream configured it serves every model, so a create never finds no channel; when
neither is set it is the built-in simulator, which serves only while no channel is stored, so
simulated results never mix with real ones once an administrator has added an upstream.

Deleting a channel that tasks still point at keeps its row (hidden, disabled, `deleted_at` set)
so their polls, cancels and downloads still reach it; it is removed for good once no task
points at it. A channel no task points at is deleted at once.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.clients.base import MediaKind
from app.core.catalog import Catalog
from app.core.channels.types import CHANNEL_TYPES, can_serve_kind
from app.core.channels.view import DEFAULT_CHANNEL_ID, ChannelView, key_hint, view_of
from app.core.config import Settings
from app.core.encryption import Encryptor
from app.core.errors import Conflict, NotFound, ValidationFailed
from app.db.base import utcnow
from app.models import Channel, GenerationTask
from app.models.schemas.channels import ChannelCreate, ChannelOut, ChannelUpdate

# A key travels in an HTTP header: printable ASCII without spaces.
_KEY_RE = re.compile(r"^[\x21-\x7e]{1,512}$")
_UPSTREAM_MODEL_RE = re.compile(r"^[\x21-\x7e]{1,200}$")


def _invalid(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(
        f"Invalid value for {field}: {message}", details=[{"field": field, "message": message}]
    )


def normalize_base_url(value: str) -> str:
    """An http(s) URL without credentials, query or fragment; no trailing slash."""
    value = value.strip()
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise _invalid("base_url", "must not contain spaces or control characters")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise _invalid("base_url", "is not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise _invalid("base_url", "must start with http:// or https://")
    if not parts.hostname:
        raise _invalid("base_url", "must name a host")
    if parts.username is not None or parts.password is not None:
        # The base URL is shown to admins; credentials belong in api_key.
        raise _invalid("base_url", "must not contain credentials; put the key in api_key")
    if parts.query or parts.fragment:
        raise _invalid("base_url", "must not contain a query or fragment")
    if port is not None and not 0 < port < 65536:
        raise _invalid("base_url", "has an invalid port")
    return value.rstrip("/")


def _check_key(type_name: str, key: str) -> None:
    if not _KEY_RE.match(key):
        raise _invalid("api_key", "must be 1 to 512 printable ASCII characters without spaces")
    problem = CHANNEL_TYPES[type_name].check_key(key)
    if problem:
        raise _invalid("api_key", problem)


def _check_models(
    catalog: Catalog, type_name: str, models: Sequence[str], model_map: dict[str, str]
) -> list[str]:
    unique = list(dict.fromkeys(models))
    for index, model_id in enumerate(unique):
        spec = catalog.get(model_id, include_hidden=True)
        if spec is None:
            raise _invalid(f"models[{index}]", f"unknown model {model_id!r}")
        if not can_serve_kind(type_name, spec.kind):
            raise _invalid(
                f"models[{index}]", f"a {type_name} channel cannot serve {spec.kind} models"
            )
    for model_id, upstream in model_map.items():
        field = f"model_map.{model_id}"
        spec = catalog.get(model_id, include_hidden=True)
        if spec is None:
            raise _invalid(field, f"unknown model {model_id!r}")
        if unique and model_id not in unique:
            raise _invalid(field, "maps a model this channel does not serve (see models)")
        if not _UPSTREAM_MODEL_RE.match(upstream):
            raise _invalid(field, "must be 1 to 200 printable ASCII characters without spaces")
    return unique


def channel_state(channel: ChannelView, now: datetime) -> str:
    if not channel.enabled:
        return "disabled"
    if channel.health.cooling_down(now):
        return "cooling_down"
    return "healthy"


def channel_out(channel: ChannelView, now: datetime | None = None) -> ChannelOut:
    now = now or utcnow()
    health = channel.health
    return ChannelOut(
        id=channel.id,
        name=channel.name,
        type=channel.type,
        base_url=channel.base_url,
        api_key_hint=channel.api_key_hint,
        models=list(channel.models),
        model_map=dict(channel.model_map),
        priority=None if channel.is_default else channel.priority,
        weight=channel.weight,
        enabled=channel.enabled,
        is_default=channel.is_default,
        state=channel_state(channel, now),
        consecutive_failures=health.consecutive_failures,
        cooldown_until=health.cooldown_until if health.cooling_down(now) else None,
        last_error=health.last_error,
        last_error_at=health.last_error_at,
        last_success_at=health.last_success_at,
        last_probe_at=health.last_probe_at,
        created_at=channel.created_at,
        updated_at=channel.updated_at,
    )


async def _stored(db: AsyncSession, channel_id: str) -> Channel:
    # Ids are UUIDs: anything else (too long, control characters) cannot name a channel.
    if len(channel_id) > 36 or not channel_id.isprintable():
        raise NotFound(f"No channel with id {channel_id[:36]!r}", code="channel_not_found")
    row = await db.get(Channel, channel_id)
    if row is None or row.deleted_at is not None:
        raise NotFound(f"No channel with id {channel_id}", code="channel_not_found")
    return row


def _read_only_default() -> Conflict:
    return Conflict(
        "The default channel is configured by API_BASE_URL and API_KEY, not through this API",
        code="default_channel_read_only",
    )


async def create_channel(
    db: AsyncSession, encryptor: Encryptor, catalog: Catalog, body: ChannelCreate
) -> ChannelView:
    base_url = normalize_base_url(body.base_url)
    _check_key(body.type, body.api_key)
    models = _check_models(catalog, body.type, body.models, body.model_map)
    now = utcnow()
    row = Channel(
        name=body.name.strip() or body.name,
        type=body.type,
        base_url=base_url,
        api_key_encrypted=encryptor.encrypt_text(body.api_key),
        api_key_hint=key_hint(body.api_key),
        models=models,
        model_map=dict(body.model_map),
        priority=body.priority,
        weight=body.weight,
        enabled=body.enabled,
        consecutive_failures=0,
        created_at=now,
        updated_at=now,
    )
    db.add(row)
    await db.flush()
    return view_of(row)


async def list_channels(db: AsyncSession, default: ChannelView) -> list[ChannelView]:
    """Stored channels in routing order (priority, then name), then the default channel."""
    rows = await db.scalars(
        select(Channel)
        .where(Channel.deleted_at.is_(None))
        .order_by(Channel.priority, Channel.name, Channel.id)
    )
    return [view_of(row) for row in rows] + [default]


async def get_channel(db: AsyncSession, default: ChannelView, channel_id: str) -> ChannelView:
    if channel_id == DEFAULT_CHANNEL_ID:
        return default
    return view_of(await _stored(db, channel_id))


async def update_channel(
    db: AsyncSession,
    encryptor: Encryptor,
    catalog: Catalog,
    channel_id: str,
    body: ChannelUpdate,
) -> ChannelView:
    if channel_id == DEFAULT_CHANNEL_ID:
        raise _read_only_default()
    row = await _stored(db, channel_id)
    changes: dict[str, Any] = body.model_dump(exclude_unset=True)
    for field in ("name", "base_url", "api_key", "models", "model_map", "weight", "enabled"):
        if field in changes and changes[field] is None:
            raise _invalid(field, "must not be null")
    if "priority" in changes and changes["priority"] is None:
        raise _invalid("priority", "must not be null")
    # A new address, a new key or re-enabling is the admin saying "fixed": start afresh.
    fresh_start = False
    if "name" in changes:
        row.name = changes["name"].strip() or changes["name"]
    if "base_url" in changes:
        base_url = normalize_base_url(changes["base_url"])
        fresh_start = fresh_start or base_url != row.base_url
        row.base_url = base_url
    if "api_key" in changes:
        _check_key(row.type, changes["api_key"])
        row.api_key_encrypted = encryptor.encrypt_text(changes["api_key"])
        row.api_key_hint = key_hint(changes["api_key"])
        fresh_start = True
    if "models" in changes or "model_map" in changes:
        models = changes.get("models", list(row.models or []))
        model_map = changes.get("model_map", dict(row.model_map or {}))
        row.models = _check_models(catalog, row.type, models, model_map)
        row.model_map = dict(model_map)
    if "priority" in changes:
        row.priority = changes["priority"]
    if "weight" in changes:
        row.weight = changes["weight"]
    if "enabled" in changes:
        fresh_start = fresh_start or (changes["enabled"] and not row.enabled)
        row.enabled = changes["enabled"]
    if fresh_start:
        row.consecutive_failures = 0
        row.cooldown_until = None
    row.updated_at = utcnow()
    await db.flush()
    return view_of(row)


async def delete_channel(db: AsyncSession, channel_id: str) -> bool:
    """Delete a channel; True when its row went, False when it was kept for its tasks."""
    if channel_id == DEFAULT_CHANNEL_ID:
        raise _read_only_default()
    row = await _stored(db, channel_id)
    referenced = await db.scalar(
        select(GenerationTask.id).where(GenerationTask.channel_id == channel_id).limit(1)
    )
    if referenced is None:
        await db.delete(row)
        await db.flush()
        return True
    now = utcnow()
    row.deleted_at = now
    row.enabled = False
    row.updated_at = now
    await db.flush()
    return False


def default_serves_everything(settings: Settings) -> bool:
    """A configured upstream behind the default channel serves every model."""
    return not settings.uses_simulator


async def default_available(db: AsyncSession, settings: Settings) -> bool:
    """Whether the default channel takes creates: always with a configured upstream; the
    simulator only while no channel is stored."""
    if default_serves_everything(settings):
        return True
    stored = await db.scalar(select(Channel.id).where(Channel.deleted_at.is_(None)).limit(1))
    return stored is None


async def ensure_model_served(
    db: AsyncSession,
    settings: Settings,
    *,
    model_id: str,
    catalog_adapter: str,
    kind: MediaKind,
    own_key: bool,
) -> None:
    """422 `model_not_served` when no channel could take this create (checked at create time
    so the caller learns it at once instead of from a failed task later)."""
    if default_serves_everything(settings):
        return
    stored = [
        view_of(row)
        for row in await db.scalars(select(Channel).where(Channel.deleted_at.is_(None)))
    ]
    if not stored:
        return  # zero configuration: the built-in simulator serves everything
    if own_key:
        raise ValidationFailed(
            "Requests with their own X-API-Key are sent to API_BASE_URL, which is not "
            "configured on this server",
            code="model_not_served",
            details=[{"field": "X-API-Key", "message": "API_BASE_URL is not configured"}],
        )
    if any(c.enabled and c.serves(model_id, catalog_adapter, kind) for c in stored):
        return
    raise ValidationFailed(
        f"No upstream channel serves model {model_id!r}; an administrator can add or enable "
        "one under /api/v1/admin/channels",
        code="model_not_served",
        details=[{"field": "model", "message": "not served by any enabled channel"}],
    )
