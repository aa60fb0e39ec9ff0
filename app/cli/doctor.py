"""`genapi doctor`: check settings, database, migrations, upstream, media store and disk."""

from __future__ import annotations

import asyncio
import json
import logging

import typer
from pydantic import ValidationError

from app.cli.base import cli
from app.core.config import Settings, get_settings
from app.core.observability.doctor import DEFAULT_TIMEOUT, Check, display_url, run_checks
from app.core.observability.logging import (
    ObservabilitySettings,
    get_observability_settings,
    setup_logging,
)

MARKS = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}


def _problems(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']).upper() or 'settings'}: {err['msg']}"
        for err in exc.errors()
    )


def _print(checks: list[Check]) -> None:
    width = max((len(c.name) for c in checks), default=0)
    for check in checks:
        typer.echo(f"  [{MARKS[check.level]}] {check.name.ljust(width)}  {check.detail}")
        if check.fix and check.level != "ok":
            typer.echo(f"         {' ' * width}  fix: {check.fix}")
    counts = {level: sum(1 for c in checks if c.level == level) for level in MARKS}
    typer.echo(f"{counts['ok']} ok, {counts['warn']} warning(s), {counts['fail']} failure(s)")


@cli.command()
def doctor(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    offline: bool = typer.Option(
        False, "--offline", help="Skip the upstream checks (no outgoing requests)."
    ),
    timeout: float = typer.Option(
        DEFAULT_TIMEOUT, min=0.1, help="Seconds to wait for the database and the upstream."
    ),
) -> None:
    """Check the deployment and print what to fix; exit code 1 when anything fails."""
    # Quiet: the checks report problems themselves; library warnings would repeat them.
    setup_logging(logging.ERROR)
    try:
        settings: Settings = get_settings()
    except ValidationError as exc:
        _report_fatal(as_json, f"invalid settings: {_problems(exc)}")
        return
    observability: ObservabilitySettings | None
    extra: list[Check] = []
    try:
        observability = get_observability_settings()
    except ValidationError as exc:
        observability = None
        extra.append(Check("logging/metrics", "fail", f"invalid settings: {_problems(exc)}"))
    checks = extra + asyncio.run(
        run_checks(settings, observability, network=not offline, wait_seconds=timeout)
    )
    failed = any(c.level == "fail" for c in checks)
    if as_json:
        typer.echo(json.dumps({"ok": not failed, "checks": [c.to_json() for c in checks]}))
    else:
        typer.echo(
            f"genapi doctor: ENV={settings.env}, "
            f"database {display_url(settings.resolved_database_url)}"
        )
        _print(checks)
    if failed:
        raise typer.Exit(1)


def _report_fatal(as_json: bool, message: str) -> None:
    check = Check("settings", "fail", message, "fix the environment or .env and run again")
    if as_json:
        typer.echo(json.dumps({"ok": False, "checks": [check.to_json()]}))
    else:
        typer.echo("genapi doctor")
        _print([check])
    raise typer.Exit(1)
