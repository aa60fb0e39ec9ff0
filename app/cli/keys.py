from __future__ import annotations

from app.cli.base import cli  # noqa: F401
