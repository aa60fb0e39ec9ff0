"""`GET /metrics`: Prometheus exposition (outside `/api/`, so never in the request log)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from app.api.deps import app_database, app_settings, bearer_token
from app.core.errors import NotFound
from app.core.observability.access import authorize_scrape
from app.core.observability.logging import ObservabilitySettings, get_observability_settings
from app.core.observability.metrics import collect_snapshot, metrics_for, render
from app.core.security import ACCESS_COOKIE

router = APIRouter(tags=["operations"])


def observability_settings(request: Request) -> ObservabilitySettings:
    """`app.state.observability` when set (tests, embedding), else the environment's."""
    configured = getattr(request.app.state, "observability", None)
    if isinstance(configured, ObservabilitySettings):
        return configured
    return get_observability_settings()


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    description=(
        "Prometheus text format (OpenMetrics when asked for in `Accept`). Allowed for clients "
        "in METRICS_ALLOWLIST (default: loopback), a METRICS_TOKEN bearer, or an administrator."
    ),
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}}},
)
async def metrics(request: Request) -> Response:
    settings = observability_settings(request)
    if not settings.metrics_enabled:
        raise NotFound()
    await authorize_scrape(
        client_host=request.client.host if request.client else None,
        bearer=bearer_token(request),
        cookie=request.cookies.get(ACCESS_COOKIE),
        settings=settings,
        database=app_database(request),
        jwt_secret=app_settings(request).jwt_secret_key or "",
    )
    snapshot = await collect_snapshot(request.app.state)
    body, content_type = render(
        snapshot, accept=request.headers.get("accept"), metrics=metrics_for(request.app.state)
    )
    return Response(body, media_type=content_type, headers={"Cache-Control": "no-store"})
