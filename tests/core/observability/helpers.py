"""The service with the observability wiring the lead adds to `app/main.py`, for tests.

`observed_app(settings)` is `create_app(settings)` plus, exactly as recommended for main.py:
the metrics middleware just inside the security headers, the `/metrics` router, and
`/metrics` exempt from the login redirect. Each app gets its own `Metrics`, so counts start at
zero whatever other tests did.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import uvicorn
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from app.core.config import Settings
from app.core.observability.logging import ObservabilitySettings
from app.core.observability.metrics import Metrics
from app.main import create_app

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def observed_app(
    settings: Settings,
    *,
    metrics: Metrics | None = None,
    observability: ObservabilitySettings | None = None,
) -> FastAPI:
    app = create_app(settings)  # already serves /metrics through MetricsMiddleware
    app.state.metrics = metrics or Metrics()
    if observability is not None:
        app.state.observability = observability
    return app


def parse_samples(text: str) -> Samples:
    """Every sample of a Prometheus text exposition, keyed by (name, labels)."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def values_named(samples: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


async def wait_until(
    condition: Callable[[], Awaitable[bool]], *, within: float = 15.0, every: float = 0.02
) -> None:
    """Poll `condition` until it holds; fail after `within` seconds."""
    async with asyncio.timeout(within):
        while not await condition():  # noqa: ASYNC110 - polling state another process owns
            await asyncio.sleep(every)


@contextlib.asynccontextmanager
async def serve(asgi_app: Any, **config: Any) -> AsyncIterator[str]:
    """Serve `asgi_app` over real HTTP on 127.0.0.1 (a free port) in this event loop."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    options: dict[str, Any] = {
        "lifespan": "off",
        "log_level": "warning",
        "access_log": False,
        "log_config": None,
        "timeout_graceful_shutdown": 3,
    }
    options.update(config)
    server = uvicorn.Server(uvicorn.Config(asgi_app, **options))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(serving, timeout=10)
        sock.close()


@contextlib.contextmanager
def logging_restored() -> Iterator[None]:
    """Undo what `setup_logging` (called by the code under test) does to global logging."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    names = ("uvicorn", "uvicorn.error", "uvicorn.access")
    saved = {
        n: (list(logging.getLogger(n).handlers), logging.getLogger(n).propagate) for n in names
    }
    try:
        yield
    finally:
        # Only plain StreamHandlers are ours (or basicConfig's); pytest's capture handlers
        # are subclasses that pytest adds and removes per test phase itself.
        for handler in list(root.handlers):
            if handler not in handlers and type(handler) is logging.StreamHandler:
                root.removeHandler(handler)
        for handler in handlers:
            if handler not in root.handlers and type(handler) is logging.StreamHandler:
                root.addHandler(handler)
        root.setLevel(level)
        for name, (uv_handlers, propagate) in saved.items():
            logging.getLogger(name).handlers[:] = uv_handlers
            logging.getLogger(name).propagate = propagate
