"""The caller's storage quota and usage."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import CurrentUser, SessionDep
from app.core import quota
from app.models.schemas.storage import StorageUsage

router = APIRouter()


@router.get("/me", response_model=StorageUsage)
async def my_storage(user: CurrentUser, db: SessionDep) -> StorageUsage:
    current = await quota.usage(db, user.id)
    return StorageUsage(
        quota_bytes=current.quota_bytes,
        used_bytes=current.used_bytes,
        available_bytes=current.available_bytes,
        used_percent=current.used_percent,
        by_kind=current.by_kind,
    )
