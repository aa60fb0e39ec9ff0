"""The one shared outbound HTTP client (connection pool), created in the lifespan."""

from __future__ import annotations

import httpx

from app.core.config import Settings


def build_http_client(settings: Settings) -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=httpx.Timeout(settings.request_timeout, connect=10.0))
