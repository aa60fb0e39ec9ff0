from __future__ import annotations

import sys

import typer

from app.cli.base import cli, configure_logging, load_settings
from app.core.observability.logging import get_observability_settings, uvicorn_log_config
from app.db.migrate import upgrade_to_head


@cli.command()
def migrate() -> None:
    """Apply database migrations up to the latest revision."""
    configure_logging()
    settings = load_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade_to_head(settings.resolved_database_url)
    typer.echo("database is at the latest revision")


@cli.command()
def serve(
    host: str = typer.Option(None, help="Bind address (default: HOST or 127.0.0.1)."),
    port: int = typer.Option(None, help="Port (default: PORT or 8000)."),
    workers: int = typer.Option(1, min=1, help="Number of API processes."),
    migrate_first: bool = typer.Option(
        True, "--migrate/--no-migrate", help="Apply migrations before serving."
    ),
    reload: bool = typer.Option(False, help="Reload on code changes (development)."),
    shutdown_timeout: float = typer.Option(
        8.0,
        "--shutdown-timeout",
        min=0,
        help="Seconds open connections (e.g. event streams) get to finish on shutdown.",
    ),
) -> None:
    """Run the API server (and, by default, the task worker inside it)."""
    import uvicorn

    configure_logging()
    settings = load_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if migrate_first:
        upgrade_to_head(settings.resolved_database_url)
    if workers > 1 and reload:
        typer.echo("--reload cannot be combined with --workers", err=True)
        sys.exit(2)
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        reload=reload,
        proxy_headers=True,
        log_config=uvicorn_log_config(),
        log_level=get_observability_settings().log_level.lower(),
        timeout_graceful_shutdown=int(shutdown_timeout) if shutdown_timeout else None,
    )
