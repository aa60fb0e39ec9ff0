"""`GET /metrics` on the real service: what it counts and who may read it.

The app is `create_app` plus the wiring recommended for `app/main.py` (see
tests/core/observability/helpers.py); clients reach it through ASGITransport with a chosen
client address, so the allowlist is exercised for real.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine

import app.middleware.web_auth_redirect as web_auth_redirect
from app.core.config import Settings
from app.core.encryption import Encryptor
from app.core.observability import metrics as obs_metrics
from app.core.observability.logging import ObservabilitySettings
from app.core.observability.upstream import upstream_event_hooks
from app.core.request_log.entry import RequestLogEntry
from app.core.request_log.writer import RequestLogWriter
from app.db.session import Database
from tests.conftest import AuthedUser, empty_all_tables
from tests.core.observability.helpers import (
    observed_app,
    parse_samples,
    value,
    values_named,
)

METRICS_TOKEN = "scrape-token-" + "z" * 24
LOOPBACK = ("127.0.0.1", 40000)


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    # No worker: created tasks stay queued, so the task gauge is deterministic.
    return {"run_worker": False}


@pytest.fixture
def observability() -> ObservabilitySettings:
    return ObservabilitySettings(
        _env_file=None,
        metrics_token=SecretStr(METRICS_TOKEN),
    )


@pytest.fixture
def metrics_open_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The wiring adds /metrics to the paths the login redirect leaves alone."""
    monkeypatch.setattr(
        web_auth_redirect, "OPEN_PATHS", web_auth_redirect.OPEN_PATHS | {"/metrics"}
    )


@pytest.fixture
async def app(
    settings: Settings,
    cleanup_engine: AsyncEngine,
    observability: ObservabilitySettings,
    metrics_open_path: None,
) -> AsyncIterator[FastAPI]:
    application = observed_app(settings, observability=observability)
    try:
        async with LifespanManager(application, startup_timeout=30, shutdown_timeout=30):
            yield application
    finally:
        await empty_all_tables(cleanup_engine)


def client_from(app: FastAPI, address: tuple[str, int]) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=address)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@pytest.fixture
async def local(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client on the loopback address: allowlisted by default."""
    async with client_from(app, LOOPBACK) as http:
        yield http


async def scrape(http: httpx.AsyncClient, **headers: str) -> dict[Any, float]:
    response = await http.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse_samples(response.text)


# --- counting ----------------------------------------------------------------------------------


async def test_requests_are_counted_by_route_template_and_status(
    local: httpx.AsyncClient, user: AuthedUser
) -> None:
    for _ in range(2):
        assert (await local.get("/health")).status_code == 200
    missing = [str(uuid.uuid4()) for _ in range(3)]
    for task_id in missing:
        response = await local.get(f"/api/v1/tasks/{task_id}", headers=user.headers)
        assert response.status_code == 404
    assert (await local.get(f"/api/v1/tasks/{missing[0]}")).status_code == 401
    assert (await local.get("/api/v1/no-such-thing/123")).status_code == 404

    samples = await scrape(local)
    requests = "genapi_http_requests_total"
    assert value(samples, requests, method="GET", route="/health", status="200") == 2
    task_route = "/api/v1/tasks/{task_id}"
    assert value(samples, requests, method="GET", route=task_route, status="404") == 3
    assert value(samples, requests, method="GET", route=task_route, status="401") == 1
    assert value(samples, requests, method="GET", route="<unmatched>", status="404") == 1
    # Ids never become label values: one series per template, whatever the path held.
    routes = {dict(labels)["route"] for labels in values_named(samples, requests)}
    assert not any(task_id in route for route in routes for task_id in missing)
    durations = "genapi_http_request_duration_seconds_count"
    assert value(samples, durations, method="GET", route="/health") == 2
    assert value(samples, durations, method="GET", route=task_route) == 4
    assert (
        value(samples, "genapi_http_request_duration_seconds_sum", method="GET", route="/health")
        or 0
    ) > 0


async def test_answers_given_before_routing_keep_their_route(
    local: httpx.AsyncClient, user: AuthedUser
) -> None:
    # CSRF refuses a cookie-authenticated POST without the token before any route runs.
    local.cookies.set("access_token", user.token)
    refused = await local.post("/api/v1/keys", json={"name": "x"})
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "csrf_failed"
    local.cookies.clear()
    samples = await scrape(local)
    assert (
        value(
            samples, "genapi_http_requests_total", method="POST", route="/api/v1/keys", status="403"
        )
        == 1
    )


async def test_tasks_gauge_counts_every_status_of_each_model(
    local: httpx.AsyncClient, user: AuthedUser
) -> None:
    for _ in range(2):
        created = await local.post(
            "/api/v1/videos",
            json={"model": "sora-2", "prompt": "a lighthouse"},
            headers=user.headers,
        )
        assert created.status_code == 202, created.text
        assert created.json()["status"] == "queued"
    samples = await scrape(local)
    assert value(samples, "genapi_tasks", model="sora-2", status="queued") == 2
    for status in ("in_progress", "completed", "failed", "cancelled"):
        assert value(samples, "genapi_tasks", model="sora-2", status=status) == 0
    assert value(samples, "genapi_database_up") == 1
    assert value(samples, "genapi_worker_inflight_tasks") == 0


async def test_engine_events_recorded_through_the_module_functions_are_exposed(
    app: FastAPI, local: httpx.AsyncClient
) -> None:
    # The record_* functions feed the process-wide metrics; compare before and after.
    app.state.metrics = obs_metrics.get_metrics()
    before = await scrape(local)
    obs_metrics.record_upstream_call("sora", "submit", "ok", 0.25)
    obs_metrics.record_upstream_call("sora", "poll", "rate_limited", 0.1)
    obs_metrics.record_upstream_call("sora", "poll", "something-odd", 0.1)
    obs_metrics.record_poll_lag(1.5)
    obs_metrics.record_transition("sora-2", "completed")
    obs_metrics.record_media_stored(4096)
    obs_metrics.record_media_stored(0)
    obs_metrics.record_quota_rejection()
    after = await scrape(local)

    def delta(name: str, **labels: str) -> float:
        return (value(after, name, **labels) or 0) - (value(before, name, **labels) or 0)

    calls = "genapi_upstream_calls_total"
    assert delta(calls, adapter="sora", operation="submit", outcome="ok") == 1
    assert delta(calls, adapter="sora", operation="poll", outcome="rate_limited") == 1
    # Unknown outcomes are folded into "error": no label value comes from outside.
    assert delta(calls, adapter="sora", operation="poll", outcome="error") == 1
    assert (
        delta("genapi_upstream_call_duration_seconds_count", adapter="sora", operation="submit")
        == 1
    )
    assert delta("genapi_poll_lag_seconds_count") == 1
    assert delta("genapi_poll_lag_seconds_bucket", le="1.0") == 0
    assert delta("genapi_poll_lag_seconds_bucket", le="2.5") == 1
    assert delta("genapi_task_transitions_total", model="sora-2", status="completed") == 1
    assert delta("genapi_media_bytes_stored_total") == 4096
    assert delta("genapi_quota_rejections_total") == 1


async def test_worker_upstream_calls_are_counted_through_the_client_hooks(
    app: FastAPI, local: httpx.AsyncClient, user: AuthedUser
) -> None:
    # What the lead wires into build_http_client; set here on the live shared client.
    app.state.http.event_hooks = upstream_event_hooks()
    app.state.metrics = obs_metrics.get_metrics()
    before = await scrape(local)
    created = await local.post(
        "/api/v1/videos", json={"model": "sora-2", "prompt": "hooks"}, headers=user.headers
    )
    assert created.status_code == 202
    task_id = created.json()["id"]
    # The worker is off in this module: run it once over what is due, as `genapi worker --once`.
    await app.state.tasks.worker.run_until_idle()
    after = await scrape(local)
    calls = "genapi_upstream_calls_total"
    submit = dict(adapter="sora", operation="submit", outcome="ok")
    assert (value(after, calls, **submit) or 0) - (value(before, calls, **submit) or 0) == 1
    task = await local.get(f"/api/v1/tasks/{task_id}", headers=user.headers)
    assert task.json()["status"] in ("queued", "in_progress", "completed")


# --- state read at scrape time --------------------------------------------------------------------


async def test_backup_scheduler_state_is_exposed_when_present(
    app: FastAPI, local: httpx.AsyncClient
) -> None:
    samples = await scrape(local)
    assert value(samples, "genapi_backup_age_seconds") is None  # no scheduler, backups off

    app.state.backup_scheduler = SimpleNamespace(
        last_success_at=datetime.now(UTC) - timedelta(hours=2),
        backups_failed=3,
        backups_succeeded=7,
        is_leader=True,
    )
    samples = await scrape(local)
    age = value(samples, "genapi_backup_age_seconds")
    assert age is not None
    assert 7190 < age < 7300
    assert value(samples, "genapi_backups_failed_total") == 3
    assert value(samples, "genapi_backups_succeeded_total") == 7
    assert value(samples, "genapi_backup_leader") == 1

    # Where the lifespan keeps it (`app.state.backups`) works the same; the attribute name
    # `failures` is read too; a scheduler that never succeeded exposes no age.
    del app.state.backup_scheduler
    app.state.backups = SimpleNamespace(last_success_at=None, failures=1)
    samples = await scrape(local)
    assert value(samples, "genapi_backups_failed_total") == 1
    assert value(samples, "genapi_backup_age_seconds") is None


async def test_request_log_drops_are_exposed(
    app: FastAPI, local: httpx.AsyncClient, settings: Settings
) -> None:
    writer = RequestLogWriter(
        app.state.db, Encryptor(settings.storage_master_key or ""), settings, max_buffer=2
    )
    for index in range(5):  # not started: nothing drains the buffer
        writer.submit(
            RequestLogEntry(
                request_id=f"r{index}",
                started_at=datetime.now(UTC),
                method="GET",
                path="/api/v1/x",
                query_string=b"",
                status_code=200,
                duration_ms=1.0,
                client_ip=None,
                request_headers=[],
            )
        )
    original = app.state.request_log_writer
    app.state.request_log_writer = writer
    try:
        samples = await scrape(local)
    finally:
        app.state.request_log_writer = original
    assert value(samples, "genapi_request_log_dropped_total") == 3
    assert value(samples, "genapi_request_log_pending") == 2


async def test_openmetrics_is_served_when_asked_for(local: httpx.AsyncClient) -> None:
    response = await local.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.rstrip().endswith("# EOF")
    assert response.text.count("# EOF") == 1


# --- protection ------------------------------------------------------------------------------


async def test_anonymous_clients_off_the_allowlist_are_refused(app: FastAPI) -> None:
    async with client_from(app, ("203.0.113.7", 50000)) as outsider:
        response = await outsider.get("/metrics")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "metrics_unauthorized"
    assert response.headers["www-authenticate"] == "Bearer"
    assert "genapi_" not in response.text


async def test_non_admins_are_forbidden_and_admins_allowed(
    app: FastAPI, client: httpx.AsyncClient, admin_user: AuthedUser, user: AuthedUser
) -> None:
    # `client` comes from 203.0.113.7: only credentials can open the door.
    refused = await client.get("/metrics", headers=user.headers)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "admin_required"
    allowed = await client.get("/metrics", headers=admin_user.headers)
    assert allowed.status_code == 200
    assert "genapi_http_requests_total" in allowed.text


async def test_an_admin_api_key_and_the_metrics_token_are_accepted(
    client: httpx.AsyncClient, admin_user: AuthedUser, user: AuthedUser
) -> None:
    created = await client.post(
        "/api/v1/keys", json={"name": "prometheus"}, headers=admin_user.headers
    )
    assert created.status_code == 201, created.text
    key = created.json()["key"]
    assert (
        await client.get("/metrics", headers={"Authorization": f"Bearer {key}"})
    ).status_code == 200

    user_key = (
        await client.post("/api/v1/keys", json={"name": "mine"}, headers=user.headers)
    ).json()["key"]
    by_user = await client.get("/metrics", headers={"Authorization": f"Bearer {user_key}"})
    assert by_user.status_code == 403

    token = await client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert token.status_code == 200
    wrong = await client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}x"})
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "invalid_token"


@pytest.mark.parametrize(
    ("allowlist", "address", "allowed"),
    [
        (None, "::1", True),
        (None, "127.0.0.1", True),
        (None, "::ffff:127.0.0.1", True),
        (None, "10.0.0.5", False),
        ("10.0.0.0/8, 192.168.1.7", "10.20.30.40", True),
        ("10.0.0.0/8, 192.168.1.7", "192.168.1.7", True),
        ("10.0.0.0/8, 192.168.1.7", "192.168.1.8", False),
        ("10.0.0.0/8", "127.0.0.1", False),
        ("10.0.0.0/8", "not-an-address", False),
    ],
)
async def test_the_allowlist_admits_exactly_its_networks(
    app: FastAPI, allowlist: str | None, address: str, allowed: bool
) -> None:
    options: dict[str, Any] = {} if allowlist is None else {"metrics_allowlist": allowlist}
    app.state.observability = ObservabilitySettings(_env_file=None, **options)
    async with client_from(app, (address, 1234)) as http:
        response = await http.get("/metrics")
    assert response.status_code == (200 if allowed else 401), response.text


async def test_metrics_can_be_switched_off(app: FastAPI, local: httpx.AsyncClient) -> None:
    app.state.observability = ObservabilitySettings(_env_file=None, metrics_enabled=False)
    response = await local.get("/metrics")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


async def test_metrics_stay_out_of_the_request_log(
    app: FastAPI, local: httpx.AsyncClient, user: AuthedUser
) -> None:
    await scrape(local)
    await app.state.request_log_writer.flush()
    async with app.state.db.session() as db:
        from sqlalchemy import func, select

        from app.models import ApiRequestLog

        logged = await db.scalar(
            select(func.count()).select_from(ApiRequestLog).where(ApiRequestLog.path == "/metrics")
        )
    assert logged == 0


async def test_a_scrape_still_answers_when_the_database_is_down(
    app: FastAPI, local: httpx.AsyncClient
) -> None:
    assert (await local.get("/health")).status_code == 200
    real = app.state.db
    # A real engine pointed at a port nobody listens on.
    app.state.db = Database("postgresql+asyncpg://nobody@127.0.0.1:1/nothing")
    try:
        samples = await scrape(local)
    finally:
        await app.state.db.dispose()
        app.state.db = real
    assert value(samples, "genapi_database_up") == 0
    assert values_named(samples, "genapi_tasks") == {}
    assert (
        value(samples, "genapi_http_requests_total", method="GET", route="/health", status="200")
        == 1
    )
