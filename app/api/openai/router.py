"""Mounts the OpenAI-compatible routers under `/v1` (`app.include_router(openai_router)`)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from app.api.openai import images, models, videos
from app.api.openai.errors import OpenAIRoute
from app.core.openai_compat import OpenAIError

openai_router = APIRouter(prefix="/v1", route_class=OpenAIRoute)
openai_router.include_router(videos.router, prefix="/videos", tags=["openai compatible"])
openai_router.include_router(images.router, prefix="/images", tags=["openai compatible"])
openai_router.include_router(models.router, prefix="/models", tags=["openai compatible"])


@openai_router.api_route(
    "/{path:path}",
    methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
    include_in_schema=False,
)
async def unknown_url(request: Request, path: str) -> None:
    """OpenAI's answer to a URL it does not serve, in its error shape (last route: only paths
    no route above matches get here)."""
    raise OpenAIError(
        f"Invalid URL ({request.method} /v1/{path})", status_code=404, code="unknown_url"
    )
