"""`genapi media migrate --to s3|local`: copy the stored media to the other backend."""

from __future__ import annotations

import asyncio
import enum
import logging
import sys
from typing import Any

import typer
from sqlalchemy.exc import SQLAlchemyError
from tqdm import tqdm

from app.cli.base import cli, configure_logging, load_settings
from app.core.config import Settings
from app.core.media.migrate import DEFAULT_CONCURRENCY, MigrationReport, media_keys, migrate_media
from app.core.media.s3 import S3MediaStorage, S3StorageError
from app.core.media.storage import LocalMediaStorage, MediaStorage
from app.core.secrets import ConfigurationError
from app.db.session import Database

media_app = typer.Typer(help="Media storage maintenance.", add_completion=False)
cli.add_typer(media_app, name="media")

# Listing every failed key would drown the terminal when, say, the bucket is unreachable.
MAX_PRINTED_KEYS = 20


class Backend(enum.StrEnum):
    s3 = "s3"
    local = "local"


class TqdmProgress:
    """One bar per phase, on stderr (stdout stays clean for scripts); thread-safe via tqdm."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._bar: tqdm[Any] | None = None

    def phase(self, name: str, total: int | None, unit: str = "B") -> None:
        self.close()
        if self.enabled:
            in_bytes = unit == "B"
            self._bar = tqdm(
                total=total or None,
                desc=name,
                unit=unit,
                unit_scale=in_bytes,
                unit_divisor=1024 if in_bytes else 1000,
                file=sys.stderr,
                leave=False,
            )

    def advance(self, amount: int) -> None:
        if self._bar is not None:
            self._bar.update(amount)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _size(value: int) -> str:
    amount = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if amount < 1024 or unit == "GiB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{value} B"  # pragma: no cover


def _fail(message: str, code: int) -> None:
    typer.echo(f"genapi: {message}", err=True)
    raise typer.Exit(code)


async def _migrate(
    settings: Settings, to: Backend, *, dry_run: bool, concurrency: int, bar: TqdmProgress
) -> MigrationReport:
    s3 = S3MediaStorage.from_settings(settings)
    local = LocalMediaStorage(settings.media_dir)
    source: MediaStorage = local if to is Backend.s3 else s3
    dest: MediaStorage = s3 if to is Backend.s3 else local
    database = Database.for_settings(settings)
    try:
        await s3.check()
        keys = await media_keys(database)
        return await migrate_media(
            source, dest, keys, dry_run=dry_run, concurrency=concurrency, progress=bar
        )
    finally:
        bar.close()
        await database.dispose()
        s3.close()


def _print_report(report: MigrationReport, to: Backend) -> None:
    if report.dry_run:
        typer.echo(
            f"dry run: would copy {len(report.planned)} file(s) ({_size(report.planned_bytes)}), "
            f"{report.skipped} already present, {len(report.missing)} missing at the source "
            f"({report.total} key(s) checked)"
        )
        for key in report.planned[:MAX_PRINTED_KEYS]:
            typer.echo(f"  {key}")
    else:
        typer.echo(
            f"copied {report.copied} file(s) ({_size(report.copied_bytes)}), "
            f"{report.skipped} already present, {len(report.missing)} missing at the source, "
            f"{len(report.failed)} failed ({report.total} key(s) checked)"
        )
    if report.missing:
        typer.echo(
            f"warning: {len(report.missing)} file(s) referenced by the database are not in the "
            "source store (first: " + ", ".join(report.missing[:5]) + ")",
            err=True,
        )
    for key, reason in list(report.failed.items())[:MAX_PRINTED_KEYS]:
        typer.echo(f"  failed {key}: {reason}", err=True)
    if report.failed:
        typer.echo("some files were not copied; run the command again to retry them", err=True)
    elif not report.dry_run:
        typer.echo(
            f"done: set MEDIA_BACKEND={to.value} and restart; the source files were left in "
            "place, remove them once the service runs on the new backend"
        )


@media_app.command("migrate")
def migrate(
    to: Backend = typer.Option(..., "--to", help="Backend to copy the media to."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only report what would be copied."),
    concurrency: int = typer.Option(
        DEFAULT_CONCURRENCY, "--concurrency", min=1, max=64, help="Files copied at once."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
) -> None:
    """Copy every stored media file to the other backend (resumable: files already there with
    the same size are skipped). Needs the S3_* settings in both directions."""
    configure_logging(logging.WARNING)
    settings = load_settings()
    bar = TqdmProgress(progress)
    try:
        report = asyncio.run(
            _migrate(settings, to, dry_run=dry_run, concurrency=concurrency, bar=bar)
        )
    except ConfigurationError as exc:
        _fail(f"configuration error: {exc}", 2)
        return
    except S3StorageError as exc:
        _fail(f"cannot use the S3 media store: {exc}", 2)
        return
    except SQLAlchemyError as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        _fail(f"database error: {reason} (is the database migrated? run: genapi migrate)", 2)
        return
    _print_report(report, to)
    if not report.ok:
        raise typer.Exit(1)
