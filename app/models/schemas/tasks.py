"""API schemas of generation tasks (`/api/v1/videos`, `/api/v1/images`, `/api/v1/tasks`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.clients.base import TaskStatus
from app.models.schemas.common import InputModel

MAX_BATCH = 20
MAX_TAGS = 20
MAX_REFERENCE_IMAGES = 16


def _clean_tags(tags: list[str]) -> list[str]:
    seen: list[str] = []
    for tag in tags:
        cleaned = tag.strip()
        if not cleaned:
            continue
        if len(cleaned) > 50:
            raise ValueError("a tag has at most 50 characters")
        if cleaned not in seen:
            seen.append(cleaned)
    if len(seen) > MAX_TAGS:
        raise ValueError(f"at most {MAX_TAGS} tags")
    return seen


class TaskCreate(InputModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=100)
    prompt: str = Field(min_length=1, max_length=32_000)
    title: str | None = Field(default=None, max_length=200)
    params: dict[str, Any] = Field(default_factory=dict)
    images: list[str] = Field(default_factory=list, max_length=MAX_REFERENCE_IMAGES)
    mask: str | None = None
    n: int = Field(default=1, ge=1, le=MAX_BATCH)
    webhook_url: str | None = Field(default=None, max_length=2048)
    tags: list[str] = Field(default_factory=list)

    @field_validator("images")
    @classmethod
    def _image_refs(cls, value: list[str]) -> list[str]:
        for ref in value:
            if not (ref.startswith(("http://", "https://")) or ref.startswith("data:image/")):
                raise ValueError("each image must be an http(s) URL or a data:image/… URI")
        return value

    @field_validator("mask")
    @classmethod
    def _mask_ref(cls, value: str | None) -> str | None:
        if value is not None and not (
            value.startswith(("http://", "https://")) or value.startswith("data:image/")
        ):
            raise ValueError("mask must be an http(s) URL or a data:image/… URI")
        return value

    @field_validator("webhook_url")
    @classmethod
    def _webhook(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("webhook_url must be an http(s) URL")
        return value

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str]) -> list[str]:
        return _clean_tags(value)


class TaskUpdate(InputModel):
    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(default=None, max_length=200)
    tags: list[str] | None = None
    favorite: bool | None = None

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _clean_tags(value)


class TaskError(BaseModel):
    code: str
    message: str


class MediaOut(BaseModel):
    id: str
    state: Literal["stored", "not_stored", "failed"]
    reason: str | None = None
    reason_message: str | None = None
    content_type: str | None = None
    bytes: int
    width: int | None = None
    height: int | None = None
    duration_seconds: float | None = None
    sha256: str | None = None
    url: str | None = None
    thumbnail_url: str | None = None


class TaskOut(BaseModel):
    id: str
    object: Literal["video", "image"]
    model: str
    status: TaskStatus
    progress: int
    prompt: str | None
    title: str | None
    params: dict[str, Any]
    created_at: datetime
    submitted_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    error: TaskError | None = None
    media: list[MediaOut]
    tags: list[str]
    favorite: bool
    batch_id: str | None = None
    retry_of: str | None = None
    webhook: bool = False
    decryption_error: str | None = None


class TaskPage(BaseModel):
    items: list[TaskOut]
    total: int = Field(
        description="Matching tasks. Exact unless `total_is_estimate`: then counting stopped at "
        "10,000 (1,000 with `search`), or at the end of this page if that is further, and "
        "more tasks match."
    )
    page: int
    size: int
    pages: int = Field(description="Pages of `size` in `total`.")
    total_is_estimate: bool = Field(
        default=False,
        description="True when `total` (and so `pages`) is a lower bound: more tasks match.",
    )


class BulkDeleteRequest(InputModel):
    model_config = ConfigDict(extra="forbid")

    ids: list[str] = Field(min_length=1, max_length=500)


class BulkDeleteResult(BaseModel):
    deleted: list[str]
    not_found: list[str]


class WebhookDeliveryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    task_id: str
    event_type: str
    state: str = Field(description="pending, delivered or failed")
    attempts: int
    last_status_code: int | None = None
    last_error: str | None = None
    created_at: datetime
    delivered_at: datetime | None = None
    next_attempt_at: datetime | None = None


class WebhookSecretOut(BaseModel):
    secret: str
    algorithm: str = (
        "Standard Webhooks (HMAC-SHA256 over '{webhook-id}.{webhook-timestamp}.{body}')"
    )
