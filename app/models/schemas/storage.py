"""Storage quota responses."""

from __future__ import annotations

from pydantic import BaseModel, Field


class StorageUsage(BaseModel):
    quota_bytes: int = Field(description="Storage allowed for the account, in bytes.")
    used_bytes: int = Field(description="Storage currently used, in bytes.")
    available_bytes: int = Field(description="quota_bytes - used_bytes, never below 0.")
    used_percent: float = Field(
        description="used_bytes as a percentage of quota_bytes (above 100 when an admin "
        "lowered the quota below what is stored)."
    )
    by_kind: dict[str, int] = Field(
        default_factory=dict,
        description="Bytes of stored media (files and thumbnails) per kind: `video`, `image`. "
        "A kind appears once it has stored media.",
    )
