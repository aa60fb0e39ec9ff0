from __future__ import annotations

import logging
import sys

import typer

from app.core.config import Settings, get_settings
from app.core.secrets import ConfigurationError, ensure_secrets

cli = typer.Typer(
    name="genapi",
    help="Self-hosted AI video/image generation gateway.",
    no_args_is_help=True,
    add_completion=False,
)


def configure_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def load_settings() -> Settings:
    """Settings with usable secrets, or a one-line explanation and exit code 2."""
    try:
        return ensure_secrets(get_settings())
    except ConfigurationError as exc:
        typer.echo(f"genapi: configuration error: {exc}", err=True)
        sys.exit(2)
