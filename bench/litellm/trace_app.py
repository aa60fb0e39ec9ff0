"""Diagnostics only: our app with wall-clock spans around the steps of an image request.

    uvicorn bench.litellm.trace_app:create_traced_app --factory   (run.py --trace does this)

Wraps (without changing app/) the handler's steps (auth, create, commit, wait, response) and
the worker's (claim, submit, upstream call, download, probe, thumbnail, quota + rows, file
moves, completion), and serves `GET /_trace` (count, mean, p50, p99 per span; `?reset=1`
clears). Spans are wall time, so they include waiting for the event loop, the connection
pool and locks: a span much longer than its CPU share is contention.

What-if prototypes of the fixes proposed in RESULTS.md, off unless named in `BENCH_WHATIF`
(comma-separated), to measure what each would buy before anyone changes app/:
- `wait`: wait_for_tasks wakes on events about its own tasks only and trusts the terminal status
  they carry; the database is re-read only on its 1-second timeout (other processes' workers).
- `pool`: a pool of 30 kept-open connections (today: 10 + 20 overflow, so above 10 busy ones
  every checkout may connect and every return disconnect).
- `preping`: no `pool_pre_ping` on checkout (with asyncpg that is three round trips: BEGIN,
  `;`, ROLLBACK).
- `authcache`: a verified API key is trusted for 10 s without a query (in-process cache).
- `merge`: a synchronous upstream's answer is saved with the submission in one write, instead
  of a `submitted` write followed by a `pending_results` write.
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
            started = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                SPANS[name].append(time.perf_counter() - started)

        return async_wrapper

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            SPANS[name].append(time.perf_counter() - started)

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
    from app.core.tasks import results, service, worker

    _patch(openai_deps, "authenticate", "handler: authenticate (API key)")
    _patch(service, "create_tasks", "handler: create_tasks")
    _patch(images, "commit", "handler: commit")
    _patch(images, "wait_for_tasks", "handler: wait_for_tasks")
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
    _patch(worker, "reserve_and_record", "worker: reserve_and_record (quota+rows)")
    _patch(results, "download_to_temp", "worker: download_to_temp")
    _patch(results, "probe", "worker: probe")
    _patch(results, "make_thumbnail", "worker: make_thumbnail")


# ----------------------------------------------------------------------------- what-if


def _whatif_wait() -> None:
    import asyncio
    import contextlib

    from sqlalchemy import select

    from app.api.openai import images
    from app.clients.base import TaskStatus
    from app.models import GenerationTask

    async def wait_for_tasks(
        runtime: Any, user_id: str, task_ids: list[str], seconds: float
    ) -> None:
        queue = runtime.events.subscribe(user_id)
        remaining = set(task_ids)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        check_db = True
        try:
            while remaining:
                if check_db:
                    async with runtime.database.session() as db:
                        rows = await db.execute(
                            select(GenerationTask.id, GenerationTask.status).where(
                                GenerationTask.id.in_(remaining)
                            )
                        )
                        for task_id, status in rows.all():
                            if TaskStatus(status).is_terminal:
                                remaining.discard(task_id)
                    check_db = False
                    if not remaining:
                        return
                left = deadline - loop.time()
                if left <= 0:
                    return
                try:
                    event = await asyncio.wait_for(queue.get(), timeout=min(left, 1.0))
                except TimeoutError:
                    check_db = True
                    continue
                status = event.data.get("status")
                if event.task_id in remaining and status:
                    with contextlib.suppress(ValueError):
                        if TaskStatus(status).is_terminal:
                            remaining.discard(event.task_id)
        finally:
            runtime.events.unsubscribe(user_id, queue)

    images.wait_for_tasks = wait_for_tasks


def _whatif_preping() -> None:
    from app.db import session

    original = session.create_engine

    def create_engine(url: str, *, echo: bool = False) -> Any:
        engine = original(url, echo=echo)
        engine.sync_engine.pool._pre_ping = False
        return engine

    session.create_engine = create_engine


def _whatif_pool() -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    from app.db import session

    original = session.create_engine

    def create_engine(url: str, *, echo: bool = False) -> Any:
        if session.is_sqlite_url(url):
            return original(url, echo=echo)
        # As many connections as today at most (30), but all kept open: no connect/disconnect
        # churn when more than 10 are busy.
        return create_async_engine(url, echo=echo, pool_pre_ping=True, pool_size=30, max_overflow=0)

    session.create_engine = create_engine


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


def _whatif_merge() -> None:
    from app.clients.base import TaskStatus
    from app.core.tasks import worker as worker_module

    cls = worker_module.TaskWorker
    original = cls._submitted

    async def _submitted(self: Any, task: Any, submission: Any) -> None:
        status = submission.status
        if status is None or status.status != TaskStatus.COMPLETED or not status.results:
            await original(self, task, submission)
            return
        now = worker_module.utcnow()
        saved = await self._save_submission(
            task,
            {
                "submit_state": "submitted",
                "upstream_id": submission.upstream_id,
                "submitted_at": now,
                "consecutive_errors": 0,
                "poll_attempts": task.poll_attempts + 1,
                "upstream_status": (status.upstream_status or "")[:64] or None,
                "status": TaskStatus.IN_PROGRESS.value,
                "progress": 99,
                "started_at": task.started_at or now,
                "response_encrypted": self.encryptor.encrypt_json(
                    {"pending_results": worker_module._results_to_json(status.results)}
                ),
            },
        )
        if saved is not None:
            await self._store_results(
                saved, list(status.results), await self.router.credentials_for(saved)
            )

    cls._submitted = _submitted  # type: ignore[method-assign]


# Applied in this order whatever the order in BENCH_WHATIF (`preping` wraps `pool`).
WHATIFS = {
    "wait": _whatif_wait,
    "pool": _whatif_pool,
    "preping": _whatif_preping,
    "authcache": _whatif_authcache,
    "merge": _whatif_merge,
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
        }
        for name, v in SPANS.items()
        if v
    }
    out["_counts"] = dict(COUNTS.most_common())
    if reset:
        SPANS.clear()
        COUNTS.clear()
    return out


def create_traced_app() -> Any:
    wanted = {n.strip() for n in os.environ.get("BENCH_WHATIF", "").split(",") if n.strip()}
    unknown = wanted - WHATIFS.keys()
    if unknown:
        raise SystemExit(f"unknown BENCH_WHATIF entries: {', '.join(sorted(unknown))}")
    for name, apply in WHATIFS.items():
        if name in wanted:
            apply()
    _install()
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
        started = time.perf_counter()
        try:
            await inner(scope, receive, send)
        finally:
            SPANS["request: whole ASGI app"].append(time.perf_counter() - started)

    return timed_app
