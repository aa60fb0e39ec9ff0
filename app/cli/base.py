from __future__ import annotations

import logging
import sys

import typer

from app.core.config import Settings, get_settings
from app.core.observability.logging import setup_logging
from app.core.secrets import ConfigurationError, ensure_secrets

cli = typer.Typer(
    name="genapi",
    help="Self-hosted AI video/image generation gateway.",
    no_args_is_help=True,
    add_completion=False,
)


def configure_logging(level: int | None = None) -> None:
    """Structured (JSON) or human-readable logs per LOG_FORMAT/LOG_LEVEL."""
    setup_logging(level)
    # httpx logs every request URL at INFO, signed result URLs included.
    logging.getLogger("httpx").setLevel(logging.WARNING)


def load_settings() -> Settings:
    """Settings with usable secrets, or a one-line explanation and exit code 2."""
    try:
        return ensure_secrets(get_settings())
    except ConfigurationError as exc:
        typer.echo(f"genapi: configuration error: {exc}", err=True)
        sys.exit(2)
