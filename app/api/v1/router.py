"""Mounts every `/api/v1` resource router."""

from fastapi import APIRouter

from app.api.v1 import admin, auth, categories, keys, logs, storage

api_router = APIRouter(prefix="/api/v1")
api_router.include_router(auth.router, prefix="/auth", tags=["auth"])
api_router.include_router(keys.router, prefix="/keys", tags=["api keys"])
api_router.include_router(logs.router, prefix="/logs", tags=["request log"])
api_router.include_router(categories.router, prefix="/categories", tags=["request log"])
api_router.include_router(storage.router, prefix="/storage", tags=["storage"])
api_router.include_router(admin.router, prefix="/admin", tags=["admin"])
