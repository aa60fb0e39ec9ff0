"""Prometheus metrics: the process-wide instruments, the functions the engine calls to feed
them, and the scrape that adds what is read at scrape time (tasks by state, backups, the
request-log buffer).

Event metrics (HTTP requests, upstream calls, transitions, …) live in one `Metrics` object per
process (`get_metrics()`), in its own `CollectorRegistry`, never prometheus-client's global
one: importing the app twice (tests build many apps) can then never clash. A test that wants
isolated counters builds its own `Metrics()` and sets it as `app.state.metrics`.

State metrics are computed per scrape from the app (`collect_snapshot`): one GROUP BY over
`generation_tasks`, the backup scheduler's counters and the request-log writer's counters.

Several API processes (`genapi serve --workers N`, gunicorn): set PROMETHEUS_MULTIPROC_DIR to an
empty directory shared by them (before start, cleared on each deploy) and every process's
counters are summed into each scrape; without it a scrape shows only the process that answered.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from app.clients.base import TaskStatus

logger = logging.getLogger(__name__)

NAMESPACE = "genapi"
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
TASKS_QUERY_TIMEOUT = 5.0

# Request latencies: API calls are tens of milliseconds, uploads and `?wait=` calls seconds.
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
UPSTREAM_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
# How late a task was polled after it became due; a healthy worker stays under a second.
POLL_LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)

# Bounded label values: anything else is folded into "other" so a client cannot create series.
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UPSTREAM_OUTCOMES = frozenset(
    {
        "ok",
        "rejected",
        "auth_failed",
        "rate_limited",
        "unavailable",
        "malformed",
        "timeout",
        "error",
    }
)
UNMATCHED_ROUTE = "<unmatched>"


class Metrics:
    """Every event metric of one process, registered in `registry`."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        # `*_created` series double the output and no dashboard of ours reads them.
        disable_created_metrics()
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.http_requests = Counter(
            "http_requests",
            "HTTP requests answered, by method, route template and status code.",
            ["method", "route", "status"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.http_request_duration = Histogram(
            "http_request_duration_seconds",
            "Time from request start to the last response byte (streams included).",
            ["method", "route"],
            namespace=NAMESPACE,
            buckets=HTTP_BUCKETS,
            registry=r,
        )
        self.task_transitions = Counter(
            "task_transitions",
            "Task state changes recorded by the worker, by model and new status.",
            ["model", "status"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.upstream_calls = Counter(
            "upstream_calls",
            "Calls to upstream providers, by adapter, operation and outcome.",
            ["adapter", "operation", "outcome"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.upstream_call_duration = Histogram(
            "upstream_call_duration_seconds",
            "Duration of upstream calls, by adapter and operation.",
            ["adapter", "operation"],
            namespace=NAMESPACE,
            buckets=UPSTREAM_BUCKETS,
            registry=r,
        )
        self.poll_lag = Histogram(
            "poll_lag_seconds",
            "How long after it was due a task was picked up by the worker.",
            namespace=NAMESPACE,
            buckets=POLL_LAG_BUCKETS,
            registry=r,
        )
        self.media_bytes_stored = Counter(
            "media_bytes_stored",
            "Bytes of media (files and thumbnails) written to the media store.",
            namespace=NAMESPACE,
            registry=r,
        )
        self.quota_rejections = Counter(
            "quota_rejections",
            "Results or uploads refused because the owner's storage quota was full.",
            namespace=NAMESPACE,
            registry=r,
        )


_default: Metrics | None = None


def get_metrics() -> Metrics:
    """The process-wide metrics (created on first use)."""
    global _default
    if _default is None:
        _default = Metrics()
    return _default


def metrics_for(app_state: Any) -> Metrics:
    """`app.state.metrics` when a test installed one, else the process-wide metrics."""
    metrics = getattr(app_state, "metrics", None)
    return metrics if isinstance(metrics, Metrics) else get_metrics()


# --- what the engine calls ---------------------------------------------------------------------


def record_http_request(
    method: str, route: str, status: int, seconds: float, metrics: Metrics | None = None
) -> None:
    m = metrics or get_metrics()
    method = method.upper() if method.upper() in HTTP_METHODS else "OTHER"
    m.http_requests.labels(method, route, str(status)).inc()
    m.http_request_duration.labels(method, route).observe(max(0.0, seconds))


def record_upstream_call(adapter: str, operation: str, outcome: str, seconds: float) -> None:
    """One upstream HTTP call. `operation`: submit, poll, cancel, download, probe, …;
    `outcome`: one of UPSTREAM_OUTCOMES (see `upstream_outcome`)."""
    m = get_metrics()
    outcome = outcome if outcome in UPSTREAM_OUTCOMES else "error"
    m.upstream_calls.labels(adapter, operation, outcome).inc()
    m.upstream_call_duration.labels(adapter, operation).observe(max(0.0, seconds))


def record_poll_lag(seconds: float) -> None:
    get_metrics().poll_lag.observe(max(0.0, seconds))


def record_transition(model: str, status: str) -> None:
    get_metrics().task_transitions.labels(model, status).inc()


def record_media_stored(nbytes: int) -> None:
    if nbytes > 0:
        get_metrics().media_bytes_stored.inc(nbytes)


def record_quota_rejection() -> None:
    get_metrics().quota_rejections.inc()


def upstream_outcome(*, status_code: int | None = None, error: BaseException | None = None) -> str:
    """The outcome label for an HTTP status or an exception (typed `UpstreamError`s included)."""
    if error is not None:
        code = getattr(error, "code", None)
        by_code = {
            "upstream_rejected": "rejected",
            "upstream_auth_failed": "auth_failed",
            "upstream_rate_limited": "rate_limited",
            "upstream_unavailable": "unavailable",
            "upstream_malformed": "malformed",
        }
        if code in by_code:
            return by_code[code]
        name = type(error).__name__
        if "Timeout" in name:
            return "timeout"
        return "unavailable" if name.endswith(("ConnectError", "NetworkError")) else "error"
    if status_code is None:
        return "error"
    if status_code < 400:
        return "ok"
    if status_code in (401, 403):
        return "auth_failed"
    if status_code == 429:
        return "rate_limited"
    if status_code == 408 or status_code >= 500:
        return "unavailable"
    return "rejected"


# --- scrape time ---------------------------------------------------------------------------------


@dataclass
class Snapshot:
    """What one scrape reads from the app; every part is optional (absent -> not exported)."""

    tasks: dict[tuple[str, str], int] | None = None
    database_up: bool | None = None
    backup_age_seconds: float | None = None
    backups_failed: int | None = None
    backups_succeeded: int | None = None
    backup_is_leader: bool | None = None
    request_log_dropped: int | None = None
    request_log_failed: int | None = None
    request_log_pending: int | None = None
    worker_inflight: int | None = None
    extra: list[Metric] = field(default_factory=list)


async def count_tasks(database: Any) -> dict[tuple[str, str], int]:
    """Tasks per (model, status): one GROUP BY, bounded by TASKS_QUERY_TIMEOUT."""
    from app.models import GenerationTask

    query = select(GenerationTask.model, GenerationTask.status, func.count()).group_by(
        GenerationTask.model, GenerationTask.status
    )
    async with asyncio.timeout(TASKS_QUERY_TIMEOUT), database.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return {(str(model), str(status)): int(count) for model, status, count in rows}


def _newest_backup_age(settings: Any) -> float | None:
    """Age of the newest backup file (cheap: from its name); None without the backup module."""
    try:
        from app.core.backup.service import newest_backup_time
    except ImportError:  # pragma: no cover - the backup feature is optional for metrics
        return None
    try:
        newest = newest_backup_time(settings.resolved_backup_dir)
    except Exception:
        return None
    if newest is None:
        return None
    return max(0.0, (datetime.now(UTC) - newest).total_seconds())


async def collect_snapshot(app_state: Any) -> Snapshot:
    """Read the state metrics from an app's `state`; anything missing is skipped."""
    snapshot = Snapshot()
    database = getattr(app_state, "db", None)
    if database is not None:
        try:
            snapshot.tasks = await count_tasks(database)
            snapshot.database_up = True
        except Exception as exc:  # a scrape must answer even when the database does not
            logger.warning("metrics: counting tasks failed: %s", type(exc).__name__)
            snapshot.database_up = False

    # `app.state.backups` is where the lifespan keeps it; `backup_scheduler` is also accepted.
    scheduler = getattr(app_state, "backup_scheduler", None) or getattr(app_state, "backups", None)
    settings = getattr(app_state, "settings", None)
    if scheduler is not None:
        last_success = getattr(scheduler, "last_success_at", None)
        if isinstance(last_success, datetime):
            when = last_success if last_success.tzinfo else last_success.replace(tzinfo=UTC)
            snapshot.backup_age_seconds = max(0.0, (datetime.now(UTC) - when).total_seconds())
        failures = getattr(scheduler, "backups_failed", getattr(scheduler, "failures", None))
        if isinstance(failures, int):
            snapshot.backups_failed = failures
        succeeded = getattr(scheduler, "backups_succeeded", None)
        if isinstance(succeeded, int):
            snapshot.backups_succeeded = succeeded
        leader = getattr(scheduler, "is_leader", None)
        if isinstance(leader, bool):
            snapshot.backup_is_leader = leader
    if (
        snapshot.backup_age_seconds is None
        and settings is not None
        and (scheduler is not None or getattr(settings, "backup_enabled", False))
    ):
        # Not the leader (or not backed up since start): the newest file still tells the age.
        snapshot.backup_age_seconds = await asyncio.to_thread(_newest_backup_age, settings)

    writer = getattr(app_state, "request_log_writer", None)
    if writer is not None:
        snapshot.request_log_dropped = int(getattr(writer, "dropped", 0))
        snapshot.request_log_failed = int(getattr(writer, "failed", 0))
        snapshot.request_log_pending = int(getattr(writer, "pending", 0))

    tasks = getattr(app_state, "tasks", None)
    worker = getattr(tasks, "worker", None)
    inflight = getattr(worker, "inflight_count", None)
    if isinstance(inflight, int):
        snapshot.worker_inflight = inflight
    return snapshot


def _name(suffix: str) -> str:
    return f"{NAMESPACE}_{suffix}"


def snapshot_metrics(snapshot: Snapshot) -> Iterator[Metric]:
    if snapshot.database_up is not None:
        yield GaugeMetricFamily(
            _name("database_up"),
            "1 when the last scrape could query the database.",
            value=1.0 if snapshot.database_up else 0.0,
        )
    if snapshot.tasks is not None:
        tasks = GaugeMetricFamily(
            _name("tasks"),
            "Tasks in the database by model and status (every status of a seen model).",
            labels=["model", "status"],
        )
        models = sorted({model for model, _ in snapshot.tasks})
        statuses = [s.value for s in TaskStatus]
        extra = sorted({status for _, status in snapshot.tasks} - set(statuses))
        for model in models:
            for status in [*statuses, *extra]:
                tasks.add_metric([model, status], float(snapshot.tasks.get((model, status), 0)))
        yield tasks
    if snapshot.backup_age_seconds is not None:
        yield GaugeMetricFamily(
            _name("backup_age_seconds"),
            "Seconds since the newest successful backup.",
            value=snapshot.backup_age_seconds,
        )
    if snapshot.backups_failed is not None:
        yield CounterMetricFamily(
            _name("backups_failed"),
            "Scheduled backups that failed in this process.",
            value=snapshot.backups_failed,
        )
    if snapshot.backups_succeeded is not None:
        yield CounterMetricFamily(
            _name("backups_succeeded"),
            "Scheduled backups that succeeded in this process.",
            value=snapshot.backups_succeeded,
        )
    if snapshot.backup_is_leader is not None:
        yield GaugeMetricFamily(
            _name("backup_leader"),
            "1 when this process runs the fleet's backup schedule.",
            value=1.0 if snapshot.backup_is_leader else 0.0,
        )
    if snapshot.request_log_dropped is not None:
        yield CounterMetricFamily(
            _name("request_log_dropped"),
            "Request-log entries dropped because the buffer was full.",
            value=snapshot.request_log_dropped,
        )
    if snapshot.request_log_failed is not None:
        yield CounterMetricFamily(
            _name("request_log_failed"),
            "Request-log entries that could not be stored (database or encoding errors).",
            value=snapshot.request_log_failed,
        )
    if snapshot.request_log_pending is not None:
        yield GaugeMetricFamily(
            _name("request_log_pending"),
            "Request-log entries buffered, not yet written.",
            value=snapshot.request_log_pending,
        )
    if snapshot.worker_inflight is not None:
        yield GaugeMetricFamily(
            _name("worker_inflight_tasks"),
            "Tasks this process's worker is working on right now.",
            value=snapshot.worker_inflight,
        )
    yield from snapshot.extra


class _ScrapeCollector:
    """One scrape's view: the process's event metrics plus the snapshot, as one collector
    (so the OpenMetrics encoder writes a single `# EOF`)."""

    def __init__(self, sources: Iterable[Collector], snapshot: Snapshot) -> None:
        self.sources = list(sources)
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        for source in self.sources:
            yield from source.collect()
        yield from snapshot_metrics(self.snapshot)


def _event_sources(metrics: Metrics) -> list[Collector]:
    if os.environ.get(MULTIPROCESS_ENV) and metrics is _default:
        from prometheus_client import multiprocess

        # Every process's counters, read from the shared directory.
        return [multiprocess.MultiProcessCollector(None)]
    return [metrics.registry]


def render(
    snapshot: Snapshot, *, accept: str | None = None, metrics: Metrics | None = None
) -> tuple[bytes, str]:
    """The exposition body and its content type (OpenMetrics when the scraper asks for it)."""
    encoder, content_type = choose_encoder(accept or "")
    started = time.perf_counter()
    collector = _ScrapeCollector(_event_sources(metrics or get_metrics()), snapshot)
    body = encoder(collector)
    logger.debug("metrics rendered in %.1f ms", (time.perf_counter() - started) * 1000)
    return body, content_type
