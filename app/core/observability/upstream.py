"""Instrumentation of the shared outbound HTTP client through httpx event hooks.

    http = httpx.AsyncClient(..., event_hooks=upstream_event_hooks())

The hooks add the current request id (`X-Request-ID`) to every outgoing request, so an
upstream's or a webhook receiver's logs can be matched with ours, and count each answer in
`genapi_upstream_calls_total` / `genapi_upstream_call_duration_seconds`, labelled with the
adapter and operation recognised from the URL path (the adapters' documented endpoints; a base
URL with a path prefix still matches). Other GETs on that client are media downloads, other
POSTs webhook deliveries.

Response hooks only see answers: a request that never got one (connect error, timeout) is not
counted here. For those, call `record_upstream_call(..., upstream_outcome(error=exc), ...)`
where the adapter catches the transport error (see the report of issue 6 for the call site).
"""

from __future__ import annotations

import re
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from app.core.observability.logging import current_request_id
from app.core.observability.metrics import record_upstream_call, upstream_outcome

EventHook = Callable[[Any], Awaitable[None]]

# (adapter, path pattern, {method: operation}); searched, so a base URL prefix is fine.
_ROUTES: tuple[tuple[str, re.Pattern[str], dict[str, str]], ...] = (
    ("sora", re.compile(r"/v2/videos/generations/?$"), {"POST": "submit"}),
    ("sora", re.compile(r"/v2/videos/generations/.+"), {"GET": "poll", "DELETE": "cancel"}),
    ("veo", re.compile(r"/v1/video/veo/[a-z\-]+-to-video/?$"), {"POST": "submit"}),
    ("veo", re.compile(r"/v1/video/veo/tasks/.+"), {"GET": "poll", "DELETE": "cancel"}),
    ("seedance", re.compile(r"/v1/video/seedance/[a-z\-]+-to-video/?$"), {"POST": "submit"}),
    ("seedance", re.compile(r"/v1/video/seedance/tasks/.+"), {"GET": "poll", "DELETE": "cancel"}),
    ("images", re.compile(r"/v1/images/(generations|edits)/?$"), {"POST": "submit"}),
    ("ark", re.compile(r"/api/v3/contents/generations/tasks/?$"), {"POST": "submit"}),
    (
        "ark",
        re.compile(r"/api/v3/contents/generations/tasks/.+"),
        {"GET": "poll", "DELETE": "cancel"},
    ),
    ("gemini_veo", re.compile(r"/v1beta/models/[^/]+:predictLongRunning$"), {"POST": "submit"}),
    ("gemini_veo", re.compile(r"/v1beta/models/[^/]+/operations/.+"), {"GET": "poll"}),
    ("gemini_veo", re.compile(r"/v1beta/files/[^/]+:download$"), {"GET": "download"}),
    ("kling", re.compile(r"/v1/videos/(text2video|image2video)/?$"), {"POST": "submit"}),
    ("kling", re.compile(r"/v1/videos/(text2video|image2video)/.+"), {"GET": "poll"}),
    ("openai_sora", re.compile(r"/v1/videos/?$"), {"POST": "submit", "GET": "list"}),
    ("openai_sora", re.compile(r"/v1/videos/.+/content$"), {"GET": "download", "HEAD": "probe"}),
    ("openai_sora", re.compile(r"/v1/videos/.+/remix$"), {"POST": "submit"}),
    ("openai_sora", re.compile(r"/v1/videos/.+"), {"GET": "poll", "DELETE": "cancel"}),
)


def classify(method: str, path: str) -> tuple[str, str]:
    """(adapter, operation) of an outgoing request, from its method and URL path."""
    method = method.upper()
    for adapter, pattern, operations in _ROUTES:
        if pattern.search(path) and method in operations:
            return adapter, operations[method]
    if method in ("GET", "HEAD"):
        return "media", "download"
    if method == "POST":
        return "webhook", "deliver"
    return "other", method.lower()


def upstream_event_hooks() -> dict[str, list[EventHook]]:
    """`event_hooks` for `httpx.AsyncClient`: request-id propagation and upstream metrics."""
    started: weakref.WeakKeyDictionary[httpx.Request, float] = weakref.WeakKeyDictionary()

    async def on_request(request: httpx.Request) -> None:
        request_id = current_request_id()
        if request_id and "x-request-id" not in request.headers:
            request.headers["X-Request-ID"] = request_id
        started[request] = time.perf_counter()

    async def on_response(response: httpx.Response) -> None:
        request = response.request
        begun = started.pop(request, None)
        seconds = time.perf_counter() - begun if begun is not None else 0.0
        adapter, operation = classify(request.method, request.url.path)
        outcome = upstream_outcome(status_code=response.status_code)
        record_upstream_call(adapter, operation, outcome, seconds)

    return {"request": [on_request], "response": [on_response]}
