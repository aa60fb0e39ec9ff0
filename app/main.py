"""Application factory and lifespan.

Middleware order, outermost first, as in the seed: CORS → CSRF → RequestLogging →
WebAuthRedirect (security headers wrap them all so even CORS preflights carry them).
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from app.api import health, metrics, pages
from app.api.openai import openai_router
from app.api.v1.router import api_router
from app.clients.http import build_http_client
from app.core.backup import BackupScheduler
from app.core.catalog import get_catalog
from app.core.config import Settings, get_settings
from app.core.encryption import Encryptor
from app.core.errors import install_error_handlers
from app.core.fleet import FleetRunner
from app.core.media.delivery import redirect_origin
from app.core.observability.upstream import upstream_event_hooks
from app.core.request_log.writer import RequestLogWriter
from app.core.secrets import ensure_secrets
from app.core.security import dummy_password_hash
from app.core.tasks.runtime import TaskRuntime
from app.db.session import Database
from app.middleware.body_limit import BodySizeLimitMiddleware
from app.middleware.csrf import CSRFMiddleware
from app.middleware.metrics import MetricsMiddleware
from app.middleware.request_logging import RequestLoggingMiddleware
from app.middleware.security_headers import SecurityHeadersMiddleware
from app.middleware.web_auth_redirect import WebAuthRedirectMiddleware

logger = logging.getLogger(__name__)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    database = Database.for_settings(settings)
    app.state.db = database
    # Pay for the unknown-user dummy hash now, not in the first failed sign-in's timing.
    await asyncio.to_thread(dummy_password_hash, settings.bcrypt_rounds)
    simulator_app = None
    if settings.uses_simulator:
        from app.simulator import SimulatorConfig, create_simulator_app

        simulator_app = create_simulator_app(
            SimulatorConfig(task_seconds=settings.simulator_task_seconds)
        )
        logger.warning(
            "No API_KEY/API_BASE_URL configured: results come from the built-in simulator."
        )
    app.state.simulator = simulator_app
    app.state.http = build_http_client(
        settings, simulator_app=simulator_app, event_hooks=upstream_event_hooks()
    )
    request_log_writer = RequestLogWriter(database, app.state.encryptor, settings)
    app.state.request_log_writer = request_log_writer
    await request_log_writer.start()
    tasks = TaskRuntime(
        settings=settings,
        database=database,
        encryptor=app.state.encryptor,
        http=app.state.http,
        catalog=app.state.catalog,
    )
    app.state.tasks = tasks
    # With presigned downloads the pages load media from the store's origin: the CSP says so.
    app.state.media_origin = await redirect_origin(tasks.storage)
    await tasks.start(run_worker=settings.run_worker)
    backups: BackupScheduler | None = None
    if settings.backup_enabled:
        # Every process may start one; a leader lock lets only one of the fleet run backups.
        backups = BackupScheduler(settings, storage=tasks.storage)
        await backups.start()
    app.state.backups = backups
    # Housekeeping (log retention, expired idempotency keys, stale temp files): every process
    # starts a runner, one leader of the fleet runs the jobs.
    fleet = FleetRunner.for_settings(settings, database=database, storage=tasks.storage)
    await fleet.start()
    app.state.fleet = fleet
    # Everything built by now (routes, schemas, the catalog, SQLAlchemy's mappers and statement
    # caches) lives as long as the app: keep it out of the collector's full passes, which walked
    # all of it, pausing the process ~130 ms every few hundred requests. (Young garbage is
    # collected first; a full collection here would cost a test process a lot, once per app.)
    gc.collect(1)
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
        # Order matters: stop background jobs, stop the worker (it hands its leases back),
        # flush the request log while the database is still open, then close connections.
        await fleet.stop()
        if backups is not None:
            await backups.stop()
        await tasks.stop()
        await request_log_writer.stop()
        await app.state.http.aclose()
        await database.dispose()


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the service. Raises ConfigurationError when secrets are unsafe for production."""
    settings = ensure_secrets(settings or get_settings())
    app = FastAPI(
        title="genapi: AI video and image generation gateway",
        version="0.1.0",
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.settings = settings
    app.state.encryptor = Encryptor(settings.storage_master_key or "")
    # Loaded now so a broken MODELS_FILE stops start-up instead of failing a request later.
    app.state.catalog = get_catalog()
    install_error_handlers(app)

    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(api_router)
    # Last among /v1 routers: it ends with a catch-all answering OpenAI-shaped 404s.
    app.include_router(openai_router)
    app.include_router(pages.router)
    app.mount("/static", pages.static_files(settings), name="static")

    # add_middleware wraps: the last added is outermost.
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.request_max_bytes)
    app.add_middleware(WebAuthRedirectMiddleware)
    # The request log wraps the CSRF check so refused requests are on record too.
    app.add_middleware(CSRFMiddleware)
    app.add_middleware(RequestLoggingMiddleware)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_credentials=True,
        allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
        allow_headers=[
            "Authorization",
            "Content-Type",
            "X-CSRF-Token",
            "X-API-Key",
            "Idempotency-Key",
        ],
        expose_headers=["Retry-After", "X-Request-ID"],
    )
    app.add_middleware(MetricsMiddleware)
    app.add_middleware(SecurityHeadersMiddleware)
    return app
