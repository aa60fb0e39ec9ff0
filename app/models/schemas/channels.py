"""Upstream channel administration: requests and responses.

The API key is write-only: it is accepted on create and replace, and only a hint such as
"sk-…abcd" is ever returned.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ChannelTypeName = Literal["aggregator", "openai", "ark", "gemini", "kling"]
ChannelState = Literal["healthy", "cooling_down", "disabled"]

MAX_MODELS = 500
MAX_PRIORITY = 1_000_000
# Printable text: names are shown in the admin page and stored as text (no NUL, no controls).
NAME_PATTERN = r"^[^\x00-\x1f\x7f]+$"


class ChannelCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, pattern=NAME_PATTERN)
    type: ChannelTypeName = Field(
        description="aggregator (API_BASE_URL style), openai, ark, gemini or kling; "
        "fixed once created."
    )
    base_url: str = Field(
        min_length=1, max_length=500, description="http(s) URL, e.g. https://api.openai.com"
    )
    api_key: str = Field(
        min_length=1,
        max_length=512,
        description="Stored encrypted and never shown again. Kling: ACCESS_KEY:SECRET_KEY.",
    )
    models: list[str] = Field(
        default_factory=list,
        max_length=MAX_MODELS,
        description="Catalog model ids this channel serves; empty serves every model of its "
        "type's families (an aggregator: every model).",
    )
    model_map: dict[str, str] = Field(
        default_factory=dict,
        description="Our model id -> the upstream's model name, where they differ.",
    )
    priority: int = Field(
        default=0,
        ge=-MAX_PRIORITY,
        le=MAX_PRIORITY,
        description="Lower is tried first; the default channel comes after every channel.",
    )
    weight: int = Field(
        default=1, ge=1, le=1000, description="Share of the load among equal priorities."
    )
    enabled: bool = True


class ChannelUpdate(BaseModel):
    """Every field optional; `type` cannot change (running tasks depend on it)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=100, pattern=NAME_PATTERN)
    base_url: str | None = Field(default=None, min_length=1, max_length=500)
    api_key: str | None = Field(default=None, min_length=1, max_length=512)
    models: list[str] | None = Field(default=None, max_length=MAX_MODELS)
    model_map: dict[str, str] | None = None
    priority: int | None = Field(default=None, ge=-MAX_PRIORITY, le=MAX_PRIORITY)
    weight: int | None = Field(default=None, ge=1, le=1000)
    enabled: bool | None = None


class ChannelOut(BaseModel):
    id: str = Field(description='A UUID, or "default" for API_BASE_URL/API_KEY.')
    name: str
    type: ChannelTypeName
    base_url: str
    api_key_hint: str = Field(description='e.g. "sk-…abcd"; the key itself is never returned.')
    models: list[str]
    model_map: dict[str, str]
    priority: int | None = Field(description="None for the default channel (always last).")
    weight: int
    enabled: bool
    is_default: bool
    state: ChannelState
    consecutive_failures: int
    cooldown_until: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    last_success_at: datetime | None
    last_probe_at: datetime | None
    created_at: datetime | None
    updated_at: datetime | None


class ChannelList(BaseModel):
    items: list[ChannelOut]
