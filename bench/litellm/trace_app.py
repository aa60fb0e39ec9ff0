"""Diagnostics only: our app with wall-clock spans around the steps of an image request.

    uvicorn bench.litellm.trace_app:create_traced_app --factory   (run.py --trace does this)

Wraps (without changing app/) the handler's steps (auth, create, commit, wait, response) and
the worker's (claim, submit, upstream call, download, probe, thumbnail, quota + rows, file
moves, completion), and serves `GET /_trace` (count, mean, p50, p99 per span; `?reset=1`
clears). Spans are wall time, so they include waiting for the event loop, the connection
pool and locks: a span much longer than its CPU share is contention.

What-if prototypes, off unless named in `BENCH_WHATIF` (comma-separated), to measure what a
change would buy before anyone makes it in app/:
- `authcache`: a verified API key is trusted for 10 s without a query (in-process cache).
- `aiohttp`: the upstream client's transport is aiohttp (`httpx-aiohttp`, installed by hand).
(`wait`, `pool`, `preping` and `merge`, prototyped here first, are now the app's behaviour.)
"""

from __future__ import annotations

import collections
import functools
import inspect
import os
import re
import time
from collections.abc import Callable
from typing import Any

from starlette.responses import JSONResponse

SPANS: dict[str, list[float]] = collections.defaultdict(list)
# CPU seconds of the whole process (all threads) during each span: meaningful with one client
# at a time, when spans of different requests do not overlap.
CPU_SPANS: dict[str, list[float]] = collections.defaultdict(list)
# Database round trips by kind ("UPDATE generation_tasks", "pool checkout (pre-ping)", …).
COUNTS: collections.Counter[str] = collections.Counter()
_TABLE = re.compile(r"\b(?:FROM|INTO|UPDATE)\s+\"?(\w+)", re.IGNORECASE)


def _statement_kind(statement: str) -> str:
    verb = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else "?"
    table = _TABLE.search(statement)
    return f"{verb} {table.group(1) if table else ''}".strip()


def _count_statements() -> None:
    from sqlalchemy import event
    from sqlalchemy.engine import Engine
    from sqlalchemy.pool import Pool

    def on_execute(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        COUNTS[f"sql: {_statement_kind(statement)}"] += 1

    def on_checkout(*args: Any) -> None:
        COUNTS["pool: checkout (each one pings first: pool_pre_ping)"] += 1

    def on_begin(conn: Any) -> None:
        COUNTS["txn: BEGIN"] += 1

    def on_commit(conn: Any) -> None:
        COUNTS["txn: COMMIT"] += 1

    def on_rollback(conn: Any) -> None:
        COUNTS["txn: ROLLBACK"] += 1

    event.listen(Engine, "before_cursor_execute", on_execute)
    event.listen(Engine, "begin", on_begin)
    event.listen(Engine, "commit", on_commit)
    event.listen(Engine, "rollback", on_rollback)
    event.listen(Pool, "checkout", on_checkout)


def _timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            started, cpu = time.perf_counter(), time.process_time()
            try:
                return await fn(*args, **kwargs)
            finally:
                SPANS[name].append(time.perf_counter() - started)
                CPU_SPANS[name].append(time.process_time() - cpu)

        return async_wrapper

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started, cpu = time.perf_counter(), time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            SPANS[name].append(time.perf_counter() - started)
            CPU_SPANS[name].append(time.process_time() - cpu)

    return wrapper


def _patch(owner: Any, attr: str, name: str) -> None:
    original = getattr(owner, attr, None)
    if original is not None:
        setattr(owner, attr, _timed(name, original))


def _install() -> None:
    _count_statements()
    from app.api.openai import deps as openai_deps
    from app.api.openai import images
    from app.clients import images as images_client
    from app.core import openai_compat
    from app.core.tasks import results, runtime, service, worker

    _patch(openai_deps, "authenticate", "handler: authenticate (API key)")
    _patch(service, "create_tasks", "handler: create_tasks")
    _patch(images, "commit", "handler: commit")
    _patch(runtime.TaskRuntime, "wait_for", "handler: wait_for (the tasks)")
    _patch(openai_compat, "images_response", "handler: images_response")
    cls = worker.TaskWorker
    _patch(cls, "claim", "worker: claim")
    _patch(cls, "_submit", "worker: _submit (whole create path)")
    _patch(cls, "_cas", "worker: _cas (one status write)")
    _patch(cls, "_store_results", "worker: _store_results (download..complete)")
    _patch(cls, "_commit_results", "worker: _commit_results (rows, files, complete)")
    _patch(images_client.ImagesAdapter, "submit", "worker: upstream POST (adapter.submit)")
    _patch(worker, "fetch_result", "worker: fetch_result (download+probe+thumb)")
    _patch(worker, "move_into_storage", "worker: move_into_storage")
    _patch(worker, "record_media", "worker: record_media (quota+rows)")
    _patch(results, "download_to_temp", "worker: download_to_temp")
    _patch(results, "inspect_media", "worker: inspect_media (probe + thumbnail)")


# ----------------------------------------------------------------------------- what-if


def _whatif_authcache() -> None:
    from app.api.openai import deps

    original = deps.authenticate
    cache: dict[str, tuple[float, Any]] = {}

    async def authenticate(
        db: Any, *, bearer: str | None, cookie: str | None, jwt_secret: str
    ) -> Any:
        now = time.monotonic()
        hit = cache.get(bearer or "")
        if bearer and hit is not None and hit[0] > now:
            return hit[1]
        principal = await original(db, bearer=bearer, cookie=cookie, jwt_secret=jwt_secret)
        if bearer:
            cache[bearer] = (now + 10.0, principal)
        return principal

    deps.authenticate = authenticate


def _whatif_aiohttp() -> None:
    """The shared upstream client on aiohttp under httpx (`httpx-aiohttp`, as LiteLLM does with
    its own transport) instead of httpcore. Needs `uv pip install httpx-aiohttp` in the
    project's venv first (it is not a dependency)."""
    from httpx_aiohttp import AiohttpTransport  # type: ignore[import-not-found]

    from app.clients import http

    class AiohttpShards(AiohttpTransport):  # type: ignore[misc]
        def __init__(self, shards: int, limits: Any) -> None:
            super().__init__(limits=limits)

    http.ShardedTransport = AiohttpShards  # type: ignore[misc, assignment]


# Prototypes not (yet) in the app. `wait`, `pool`, `preping` and `merge`, measured here in
# session 1, are now the app's own behaviour (see bench/litellm/RESULTS.md).
WHATIFS = {
    "authcache": _whatif_authcache,
    "aiohttp": _whatif_aiohttp,
}


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))]


def summary(*, reset: bool) -> dict[str, Any]:
    out = {
        name: {
            "count": len(v),
            "mean_ms": round(sum(v) / len(v) * 1000, 2),
            "p50_ms": round(_pct(v, 50) * 1000, 2),
            "p99_ms": round(_pct(v, 99) * 1000, 2),
            "cpu_mean_ms": round(sum(CPU_SPANS[name]) / len(v) * 1000, 2),
        }
        for name, v in SPANS.items()
        if v
    }
    out["_counts"] = dict(COUNTS.most_common())
    if reset:
        SPANS.clear()
        CPU_SPANS.clear()
        COUNTS.clear()
    return out


def _gc_spans() -> None:
    """Each garbage collection as a span per generation (pauses the whole process)."""
    import gc

    started: list[float] = []

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[:] = [time.perf_counter(), time.process_time()]
        elif started:
            name = f"gc: generation {info.get('generation')}"
            SPANS[name].append(time.perf_counter() - started[0])
            CPU_SPANS[name].append(time.process_time() - started[1])

    gc.callbacks.append(on_gc)


def create_traced_app() -> Any:
    wanted = {n.strip() for n in os.environ.get("BENCH_WHATIF", "").split(",") if n.strip()}
    unknown = wanted - WHATIFS.keys()
    if unknown:
        raise SystemExit(f"unknown BENCH_WHATIF entries: {', '.join(sorted(unknown))}")
    for name, apply in WHATIFS.items():
        if name in wanted:
            apply()
    _install()
    _gc_spans()
    from app.main import create_app

    inner = create_app()

    async def timed_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope.get("path") == "/_trace":
            reset = b"reset=1" in scope.get("query_string", b"")
            await JSONResponse(summary(reset=reset))(scope, receive, send)
            return
        if scope["type"] != "http" or scope.get("path") != "/v1/images/generations":
            await inner(scope, receive, send)
            return
        started, cpu = time.perf_counter(), time.process_time()
        try:
            await inner(scope, receive, send)
        finally:
            SPANS["request: whole ASGI app"].append(time.perf_counter() - started)
            CPU_SPANS["request: whole ASGI app"].append(time.process_time() - cpu)

    return timed_app
