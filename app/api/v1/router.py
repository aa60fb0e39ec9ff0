"""Mounts every `/api/v1` resource router."""

from fastapi import APIRouter

from app.api.v1 import (
    admin,
    auth,
    categories,
    channels,
    keys,
    logs,
    models,
    stats,
    storage,
    tasks,
    webhooks,
)
from app.api.v1.generations import images_router, videos_router

api_router = APIRouter(prefix="/api/v1")
api_router.include_router(auth.router, prefix="/auth", tags=["auth"])
api_router.include_router(keys.router, prefix="/keys", tags=["api keys"])
api_router.include_router(logs.router, prefix="/logs", tags=["request log"])
api_router.include_router(categories.router, prefix="/categories", tags=["request log"])
api_router.include_router(storage.router, prefix="/storage", tags=["storage"])
api_router.include_router(admin.router, prefix="/admin", tags=["admin"])
api_router.include_router(stats.router, prefix="/admin", tags=["admin"])
api_router.include_router(channels.router, prefix="/admin/channels", tags=["admin"])
api_router.include_router(models.router, prefix="/models", tags=["models"])
api_router.include_router(videos_router, prefix="/videos", tags=["videos"])
api_router.include_router(images_router, prefix="/images", tags=["images"])
api_router.include_router(tasks.router, prefix="/tasks", tags=["tasks"])
api_router.include_router(webhooks.router, prefix="/webhooks", tags=["webhooks"])
