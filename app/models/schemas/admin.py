"""Admin user-management requests and responses."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from app.core.users import MAX_QUOTA_BYTES
from app.models.schemas.common import InputModel


class AdminUserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    username: str
    email: str
    is_active: bool
    is_admin: bool
    storage_quota_bytes: int
    storage_used_bytes: int
    created_at: datetime
    updated_at: datetime
    last_login_at: datetime | None = None


class AdminUserPage(BaseModel):
    items: list[AdminUserOut]
    total: int
    page: int
    size: int
    pages: int


class AdminUserUpdate(InputModel):
    # Unknown fields are rejected so a typo ({"active": false}) is a 422, not a silent no-op.
    model_config = ConfigDict(extra="forbid")

    is_active: bool | None = None
    is_admin: bool | None = None


class QuotaUpdate(InputModel):
    model_config = ConfigDict(extra="forbid")

    storage_quota_bytes: int = Field(ge=0, le=MAX_QUOTA_BYTES)
