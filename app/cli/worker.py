"""`genapi worker`: the task worker without the API, against the configured database.

Run any number of them next to `genapi serve` (started with `RUN_WORKER=false`, or not) on
PostgreSQL: claims use `FOR UPDATE SKIP LOCKED` and leases, so they share the work safely.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import typer
from sqlalchemy.exc import SQLAlchemyError

from app.cli.base import cli, configure_logging, load_settings
from app.core.config import Settings

if TYPE_CHECKING:
    from app.core.tasks.runtime import TaskRuntime

logger = logging.getLogger("app.worker")


@asynccontextmanager
async def standalone_runtime(settings: Settings) -> AsyncIterator[TaskRuntime]:
    """The task runtime of `genapi serve`, without the web app around it."""
    from app.clients.http import build_http_client
    from app.core.catalog import get_catalog
    from app.core.encryption import Encryptor
    from app.core.tasks.runtime import TaskRuntime
    from app.db.session import Database

    simulator_app = None
    if settings.uses_simulator:
        from app.simulator import SimulatorConfig, create_simulator_app

        # Tasks are polled where they were submitted: this process's own simulator only knows
        # the tasks this process sent. Point API_BASE_URL at a shared upstream for real use.
        logger.warning(
            "No API_KEY/API_BASE_URL configured: this worker talks to its own built-in simulator."
        )
        simulator_app = create_simulator_app(
            SimulatorConfig(task_seconds=settings.simulator_task_seconds)
        )
    database = Database.for_settings(settings)
    http = build_http_client(settings, simulator_app=simulator_app)
    try:
        yield TaskRuntime(
            settings=settings,
            database=database,
            encryptor=Encryptor(settings.storage_master_key or ""),
            http=http,
            catalog=get_catalog(),
        )
    finally:
        await http.aclose()
        await database.dispose()


async def run_worker(settings: Settings, *, once: bool) -> None:
    async with standalone_runtime(settings) as runtime:
        worker = runtime.worker
        if once:
            await worker.run_until_idle(limit_seconds=None)
            return
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        # Through the runtime: it also starts the PostgreSQL event relay, so task changes made
        # here reach event streams served by API processes at once.
        await runtime.start(run_worker=True)
        logger.info("task worker %s started (concurrency %d)", worker.worker_id, worker.slots)
        try:
            await stop.wait()
        finally:
            logger.info("task worker %s stopping: handing leases back", worker.worker_id)
            await runtime.stop()
        logger.info("task worker %s stopped", worker.worker_id)


@cli.command()
def worker(
    concurrency: int = typer.Option(
        None,
        "--concurrency",
        "-c",
        min=1,
        help="Tasks in flight at once (default: MAX_CONCURRENT_TASKS).",
    ),
    once: bool = typer.Option(
        False, "--once", help="Process the tasks due now, wait for them, then exit."
    ),
    migrate_first: bool = typer.Option(
        False, "--migrate/--no-migrate", help="Apply migrations before starting."
    ),
) -> None:
    """Run the task worker alone (no API): submit, poll, store results, send webhooks."""
    configure_logging()
    # One INFO line per poll would drown the log, and request URLs can carry signatures.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    settings = load_settings()
    if concurrency is not None:
        settings = settings.model_copy(update={"max_concurrent_tasks": concurrency})
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if migrate_first:
        from app.db.migrate import upgrade_to_head

        upgrade_to_head(settings.resolved_database_url)
    try:
        asyncio.run(run_worker(settings, once=once))
    except SQLAlchemyError as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        typer.echo(
            f"genapi: database error: {reason} (is the database migrated? run: genapi migrate)",
            err=True,
        )
        sys.exit(2)
