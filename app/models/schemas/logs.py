"""Request-log and category requests and responses."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from app.models.schemas.common import InputModel

MAX_TAGS = 20
MAX_NOTE_LENGTH = 4000

Tag = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32)]
# A CSS hex colour (#rgb, #rgba, #rrggbb, #rrggbbaa) or a plain colour name.
Color = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        max_length=16,
        pattern=r"^(#([0-9a-fA-F]{3,4}|[0-9a-fA-F]{6}|[0-9a-fA-F]{8})|[A-Za-z]{1,16})$",
    ),
]


class RequestLogOut(BaseModel):
    """One entry in a listing. `decryption_error` is set (and the encrypted fields are null)
    when the row cannot be decrypted with the configured keys."""

    id: str
    request_id: str
    started_at: datetime
    duration_ms: float
    method: str
    path: str
    query: str | None = None
    status_code: int
    user_id: str | None = None
    session_id: str | None = None
    api_key_id: str | None = None
    client_ip: str | None = None
    user_agent: str | None = None
    request_bytes: int
    response_bytes: int
    category_id: str | None = None
    tags: list[str] = Field(default_factory=list)
    note: str | None = None
    decryption_error: str | None = None


class RequestLogDetail(RequestLogOut):
    request_headers: dict[str, str] | None = None
    request_content_type: str | None = None
    request_body: str | None = None
    request_body_truncated: bool = False
    response_content_type: str | None = None
    response_body: str | None = None
    response_body_truncated: bool = False


class RequestLogPage(BaseModel):
    items: list[RequestLogOut]
    total: int
    page: int
    size: int
    pages: int


class RequestLogUpdate(InputModel):
    """Only the fields sent are changed; `category_id: null` removes the category."""

    model_config = ConfigDict(extra="forbid")

    category_id: str | None = Field(default=None, max_length=36)
    tags: list[Tag] | None = Field(default=None, max_length=MAX_TAGS)
    note: str | None = Field(default=None, max_length=MAX_NOTE_LENGTH)

    @field_validator("tags")
    @classmethod
    def _dedupe(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else list(dict.fromkeys(value))


class CategoryCreate(InputModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=64)
    color: Color | None = None
    description: str | None = Field(default=None, max_length=500)


class CategoryUpdate(InputModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str | None = Field(default=None, min_length=1, max_length=64)
    color: Color | None = None
    description: str | None = Field(default=None, max_length=500)

    def changes(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True)


class CategoryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    color: str | None = None
    description: str | None = None
    created_at: datetime
