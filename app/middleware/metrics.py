"""HTTP metrics and the request's logging context (pure ASGI: streams pass through untouched).

For every HTTP request this middleware
- binds the request id to the logging context (`X-Request-ID` when sane, else a new uuid4) and
  stores it in `scope["state"]["request_id"]`, so every log line of the request carries it;
- counts the answer in `genapi_http_requests_total{method,route,status}` and observes
  `genapi_http_request_duration_seconds{method,route}` once the last body chunk is sent (or the
  request failed). `route` is the route template (`/api/v1/tasks/{task_id}`), never the raw
  path, so ids cannot multiply series; a path no route knows is `<unmatched>`.

Place it outside every other middleware but the security headers, so it times and labels
everything, including the answers CSRF, CORS or the login redirect give before routing.
"""

from __future__ import annotations

import logging
import re
import time
import weakref
from typing import Any

from starlette.routing import Mount, Route, compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.observability.logging import request_context, request_id_from_headers
from app.core.observability.metrics import (
    UNMATCHED_ROUTE,
    Metrics,
    metrics_for,
    record_http_request,
)

logger = logging.getLogger(__name__)

# (path regex, template, methods or None for any) per app, for requests answered before routing.
_Index = list[tuple[re.Pattern[str], str, frozenset[str] | None]]
_indexes: weakref.WeakKeyDictionary[Any, _Index] = weakref.WeakKeyDictionary()


def _template(route: Any) -> str | None:
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    if not isinstance(path, str):
        return None
    if isinstance(route, Mount):
        return path.rstrip("/") + "/{path}" if not path.endswith("{path}") else path
    return path or "/"


def _routed_template(scope: Scope) -> str | None:
    # FastAPI ≥ 0.16x keeps included routers nested: `scope["route"]` then holds the route
    # with its path relative to the router, and the full template is on the effective
    # route context. Older versions flatten routers, and `scope["route"]` is complete.
    fastapi_scope = scope.get("fastapi")
    if isinstance(fastapi_scope, dict):
        context = fastapi_scope.get("effective_route_context")
        path = getattr(context, "path_format", None)
        if isinstance(path, str) and path:
            return path
    template = _template(scope.get("route"))
    if template is None or isinstance(scope.get("route"), Mount):
        return template
    # A route inside a Mount knows only its own part; the Mount recorded the matched prefix
    # in root_path (on top of the server's root path, kept as app_root_path).
    app_root = scope.get("app_root_path")
    root = scope.get("root_path", "")
    if isinstance(app_root, str) and isinstance(root, str) and root.startswith(app_root):
        prefix = root[len(app_root) :].rstrip("/")
        if prefix and not template.startswith(prefix + "/"):
            return prefix + template
    return template


def _build_index(app: Any) -> _Index:
    index: _Index = []
    openapi = getattr(app, "openapi", None)
    if callable(openapi):
        try:
            paths: dict[str, dict[str, Any]] = openapi().get("paths", {})
        except Exception:
            logger.warning("metrics: the OpenAPI schema is unavailable for route labels")
            paths = {}
        for path, operations in paths.items():
            regex, _, _ = compile_path(path)
            index.append((regex, path, frozenset(m.upper() for m in operations)))
    for route in getattr(getattr(app, "router", None), "routes", ()):
        template = _template(route)
        if template is None or not isinstance(route, Route | Mount):
            continue
        methods = getattr(route, "methods", None)
        index.append((route.path_regex, template, frozenset(methods) if methods else None))
    return index


def _unrouted_template(scope: Scope) -> str:
    app = scope.get("app")
    if app is None:
        return UNMATCHED_ROUTE
    try:
        index = _indexes.get(app)
        if index is None:
            index = _indexes[app] = _build_index(app)
    except TypeError:  # not weak-referenceable: build each time (test doubles only)
        index = _build_index(app)
    path: str = scope.get("path", "")
    method: str = scope.get("method", "")
    fallback: str | None = None
    for regex, template, methods in index:
        if regex.match(path):
            if methods is None or method in methods:
                return template
            fallback = fallback or template
    return fallback or UNMATCHED_ROUTE


def route_template(scope: Scope) -> str:
    """The template of the route that answered, or of the route that would have answered
    when a middleware answered first."""
    return _routed_template(scope) or _unrouted_template(scope)


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics | None = None) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = request_id_from_headers(scope.get("headers") or [])
        scope.setdefault("state", {})["request_id"] = request_id
        status = 0

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            with request_context(request_id):
                await self.app(scope, receive, send_wrapper)
        except BaseException:
            # No answer started: the server will send a 500 (or the client went away).
            if status == 0:
                status = 500
            raise
        finally:
            metrics = self.metrics or metrics_for(getattr(scope.get("app"), "state", None))
            record_http_request(
                scope.get("method", ""),
                route_template(scope),
                status,
                time.perf_counter() - started,
                metrics,
            )
