from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, UUIDPrimaryKey, utcnow


class Channel(UUIDPrimaryKey, Base):
    """An upstream an administrator configured at runtime (see `app/core/channels`).

    The API key is stored only encrypted (`api_key_encrypted`) and is never returned after
    creation; `api_key_hint` ("sk-…abcd") lets an admin tell keys apart. A deleted channel that
    tasks still point at is kept (`deleted_at` set, never routed to again) so their polls,
    cancels and downloads keep reaching the upstream that owns them.
    """

    __tablename__ = "channels"
    __table_args__ = (Index("ix_channels_deleted_priority", "deleted_at", "priority"),)

    name: Mapped[str] = mapped_column(String(100), nullable=False)
    # aggregator | openai | ark | gemini | kling; fixed at creation (running tasks depend on it).
    type: Mapped[str] = mapped_column(String(20), nullable=False)
    base_url: Mapped[str] = mapped_column(String(500), nullable=False)
    api_key_encrypted: Mapped[str] = mapped_column(Text, nullable=False)
    api_key_hint: Mapped[str] = mapped_column(String(20), nullable=False, default="")
    # Catalog model ids served; empty means every model of the type's families.
    models: Mapped[list[Any]] = mapped_column(JSON, nullable=False, default=list)
    # Our model id -> the upstream's model name.
    model_map: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    # Lower is tried first; equal priorities share the load by `weight`.
    priority: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    weight: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)

    consecutive_failures: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    cooldown_until: Mapped[datetime | None] = mapped_column(nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(500), nullable=True)
    last_error_at: Mapped[datetime | None] = mapped_column(nullable=True)
    last_success_at: Mapped[datetime | None] = mapped_column(nullable=True)
    last_probe_at: Mapped[datetime | None] = mapped_column(nullable=True)

    created_at: Mapped[datetime] = mapped_column(default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, nullable=False)
    deleted_at: Mapped[datetime | None] = mapped_column(nullable=True)
