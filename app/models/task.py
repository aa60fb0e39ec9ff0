from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, UUIDPrimaryKey, utcnow


class GenerationTask(UUIDPrimaryKey, Base):
    """One generation: the state machine the worker drives.

    Every transition is a compare-and-swap (`UPDATE … WHERE status = :expected AND lease_owner =
    :me`), so two workers can never both complete, fail or refund one task. What the user typed
    (prompt, params, input images, webhook URL) lives only inside `request_encrypted`; the search
    index over prompts is the keyed hashes in `task_search_terms`.
    """

    __tablename__ = "generation_tasks"
    __table_args__ = (
        # The history listing's index: the page walks it in `created` order and the count
        # scans it; on PostgreSQL the INCLUDE columns (what the filters, title search and
        # title sort read) make both index-only scans that never touch the wide rows.
        Index(
            "ix_generation_tasks_user_kind_created_id",
            "user_id",
            "kind",
            "created_at",
            "id",
            postgresql_include=["model", "status", "favorite", "title", "tags"],
        ),
        # The same for `sort=title` (title ASC NULLS LAST, id): a page walks it in order.
        Index(
            "ix_generation_tasks_user_kind_title_id",
            "user_id",
            "kind",
            "title",
            "id",
            postgresql_include=["created_at", "model", "status", "favorite", "tags"],
        ),
        # Title search (ILIKE '%…%') on PostgreSQL: a trigram index (pg_trgm) finds the few
        # matching titles without reading every title. A plain index on SQLite (unused there).
        Index(
            "ix_generation_tasks_title_trgm",
            "title",
            postgresql_using="gin",
            postgresql_ops={"title": "gin_trgm_ops"},
        ),
        Index("ix_generation_tasks_due", "status", "next_poll_at"),
        # The claim's deadline sweep (`OR deadline_at <= now`): without it PostgreSQL scans
        # every active task on each claim instead of two index ranges.
        Index("ix_generation_tasks_status_deadline", "status", "deadline_at"),
        Index("ix_generation_tasks_user_updated", "user_id", "updated_at"),
    )

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    kind: Mapped[str] = mapped_column(String(10), nullable=False)  # video | image
    model: Mapped[str] = mapped_column(String(100), nullable=False)
    adapter: Mapped[str] = mapped_column(String(50), nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False, default="queued")
    # pending → sending → submitted; "sending" after a crash means "maybe received upstream".
    submit_state: Mapped[str] = mapped_column(String(20), nullable=False, default="pending")
    progress: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    upstream_id: Mapped[str | None] = mapped_column(String(512), nullable=True)
    upstream_status: Mapped[str | None] = mapped_column(String(64), nullable=True)
    title: Mapped[str | None] = mapped_column(String(200), nullable=True)
    tags: Mapped[list[Any]] = mapped_column(JSON, default=list, nullable=False)
    favorite: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    batch_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    retry_of: Mapped[str | None] = mapped_column(String(36), nullable=True)

    request_encrypted: Mapped[str] = mapped_column(Text, nullable=False)
    response_encrypted: Mapped[str | None] = mapped_column(Text, nullable=True)
    upstream_key_encrypted: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The channel that was sent the create (None: the default upstream, API_BASE_URL). Polls,
    # cancels and downloads always go to it, whatever the routing prefers meanwhile.
    channel_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error_message_encrypted: Mapped[str | None] = mapped_column(Text, nullable=True)

    poll_attempts: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    consecutive_errors: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    deadline_at: Mapped[datetime] = mapped_column(nullable=False)
    next_poll_at: Mapped[datetime | None] = mapped_column(nullable=True)
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(nullable=True)
    has_webhook: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)

    created_at: Mapped[datetime] = mapped_column(default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, nullable=False)
    submitted_at: Mapped[datetime | None] = mapped_column(nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(nullable=True)
    completed_at: Mapped[datetime | None] = mapped_column(nullable=True)


class TaskSearchTerm(Base):
    """Keyed hashes (HMAC) of prompt words and prefixes: search without storing the prompt."""

    __tablename__ = "task_search_terms"
    # Covering (user_id, term, task_id): a search reads the index only, never the table.
    __table_args__ = (Index("ix_task_search_terms_user_term_task", "user_id", "term", "task_id"),)

    task_id: Mapped[str] = mapped_column(
        ForeignKey("generation_tasks.id", ondelete="CASCADE"), primary_key=True
    )
    term: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(36), nullable=False)


class Media(UUIDPrimaryKey, Base):
    """A stored (or not stored, with the reason) result file of a task."""

    __tablename__ = "media"
    __table_args__ = (Index("ix_media_task_position", "task_id", "position"),)

    task_id: Mapped[str] = mapped_column(
        ForeignKey("generation_tasks.id", ondelete="CASCADE"), nullable=False
    )
    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True, nullable=False
    )
    kind: Mapped[str] = mapped_column(String(10), nullable=False)
    position: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    state: Mapped[str] = mapped_column(String(20), nullable=False)  # stored | not_stored | failed
    reason: Mapped[str | None] = mapped_column(String(64), nullable=True)
    reason_message: Mapped[str | None] = mapped_column(String(500), nullable=True)
    storage_key: Mapped[str | None] = mapped_column(String(255), nullable=True)
    thumbnail_key: Mapped[str | None] = mapped_column(String(255), nullable=True)
    content_type: Mapped[str | None] = mapped_column(String(64), nullable=True)
    bytes: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    thumbnail_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    width: Mapped[int | None] = mapped_column(Integer, nullable=True)
    height: Mapped[int | None] = mapped_column(Integer, nullable=True)
    duration_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    # Where the upstream served it (encrypted: signed URLs are credentials); lets a user re-fetch
    # a result that was not stored for lack of quota while the URL still lives.
    source_encrypted: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, nullable=False)


class IdempotencyKey(UUIDPrimaryKey, Base):
    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("user_id", "key", name="uq_idempotency_keys_user_key"),)

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    key: Mapped[str] = mapped_column(String(255), nullable=False)
    request_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    task_ids: Mapped[list[Any]] = mapped_column(JSON, nullable=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, nullable=False, index=True)


class WebhookDelivery(UUIDPrimaryKey, Base):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_due", "state", "next_attempt_at"),)

    task_id: Mapped[str] = mapped_column(
        ForeignKey("generation_tasks.id", ondelete="CASCADE"), index=True, nullable=False
    )
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    event_type: Mapped[str] = mapped_column(String(64), nullable=False)
    url_encrypted: Mapped[str] = mapped_column(Text, nullable=False)
    payload_encrypted: Mapped[str] = mapped_column(Text, nullable=False)
    state: Mapped[str] = mapped_column(String(20), nullable=False, default="pending")
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(nullable=True)
    last_status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(500), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, nullable=False)
    delivered_at: Mapped[datetime | None] = mapped_column(nullable=True)
