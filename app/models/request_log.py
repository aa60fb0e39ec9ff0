from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, UUIDPrimaryKey, utcnow


class RequestCategory(UUIDPrimaryKey, Base):
    """A user's label for grouping request-log entries."""

    __tablename__ = "request_categories"
    __table_args__ = (UniqueConstraint("user_id", "name", name="uq_request_categories_user_name"),)

    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True, nullable=False
    )
    name: Mapped[str] = mapped_column(String(64), nullable=False)
    color: Mapped[str | None] = mapped_column(String(16), nullable=True)
    description: Mapped[str | None] = mapped_column(String(500), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, nullable=False)


class ApiRequestLog(UUIDPrimaryKey, Base):
    """One `/api/` request. Bodies, headers, query and note are redacted, then encrypted."""

    __tablename__ = "api_request_logs"
    __table_args__ = (
        Index("ix_api_request_logs_user_started", "user_id", "started_at"),
        Index("ix_api_request_logs_started", "started_at"),
    )

    request_id: Mapped[str] = mapped_column(String(36), nullable=False)
    started_at: Mapped[datetime] = mapped_column(default=utcnow, nullable=False)
    duration_ms: Mapped[float] = mapped_column(nullable=False)
    method: Mapped[str] = mapped_column(String(10), nullable=False)
    path: Mapped[str] = mapped_column(String(2048), nullable=False)
    status_code: Mapped[int] = mapped_column(Integer, nullable=False)
    user_id: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    session_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    api_key_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    client_ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    user_agent: Mapped[str | None] = mapped_column(String(512), nullable=True)
    # Encrypted (Fernet tokens as text).
    query_encrypted: Mapped[str | None] = mapped_column(Text, nullable=True)
    request_headers_encrypted: Mapped[str | None] = mapped_column(Text, nullable=True)
    request_body_encrypted: Mapped[str | None] = mapped_column(Text, nullable=True)
    response_body_encrypted: Mapped[str | None] = mapped_column(Text, nullable=True)
    note_encrypted: Mapped[str | None] = mapped_column(Text, nullable=True)
    request_bytes: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    response_bytes: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    category_id: Mapped[str | None] = mapped_column(
        ForeignKey("request_categories.id", ondelete="SET NULL"), index=True, nullable=True
    )
    tags: Mapped[list[Any]] = mapped_column(JSON, default=list, nullable=False)
