"""`genapi` command line: serve, migrate, create-admin, rotate-keys, simulator, …

Each group of commands lives in its own module and registers itself on `cli`.
"""

from __future__ import annotations

from app.cli import accounts, backup, doctor, keys, media, server, simulator, worker  # noqa: F401  (register commands)
from app.cli.base import cli


def main() -> None:
    cli()


__all__ = ["cli", "main"]
