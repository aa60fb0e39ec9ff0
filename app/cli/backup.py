"""`genapi backup [create|list|verify|prune]` and `genapi restore`."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any

import typer
from tqdm import tqdm

from app.cli.base import cli, configure_logging, load_settings
from app.core.backup import (
    BackupError,
    RestoreRefused,
    create_backup,
    keyring_for,
    list_backups,
    prune_backups,
    restore_backup,
    verify_backup,
)
from app.core.backup.service import BackupInfo, VerifyReport
from app.core.config import Settings

backup_app = typer.Typer(
    help="Encrypted backups of the database and media (`genapi backup` makes one now).",
    add_completion=False,
)
cli.add_typer(backup_app, name="backup")

BLOBS_OPTION = typer.Option(
    None,
    "--blobs",
    help="Media blob directory of the backup (default: 'blobs' next to the file).",
    file_okay=False,
)


class TqdmProgress:
    """One progress bar per phase, on stderr (stdout stays clean for scripts)."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._bar: tqdm[Any] | None = None

    def phase(self, name: str, total: int | None, unit: str = "B") -> None:
        self.close()
        if self.enabled:
            self._bar = tqdm(
                total=total or None,
                desc=name,
                unit=unit,
                unit_scale=True,
                unit_divisor=1024,
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


def _fail(message: str, code: int = 1) -> None:
    typer.echo(f"genapi: {message}", err=True)
    raise typer.Exit(code)


def _size(value: int) -> str:
    amount = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if amount < 1024 or unit == "GiB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{value} B"


def _run_create(progress: bool) -> None:
    configure_logging(logging.WARNING)
    settings = load_settings()
    bar = TqdmProgress(progress)
    try:
        result = asyncio.run(create_backup(settings, progress=bar))
    except BackupError as exc:
        bar.close()
        _fail(f"backup failed: {exc}")
        return
    bar.close()
    manifest = result.manifest
    typer.echo(f"backup written: {result.path}")
    typer.echo(
        f"  {sum(manifest.row_counts.values())} row(s) in {len(manifest.row_counts)} table(s), "
        f"schema {manifest.schema_revision or 'none'}"
    )
    typer.echo(
        f"  {manifest.media_count} media file(s), {_size(manifest.media_bytes)} "
        f"({result.media.copied} new, {_size(result.media.copied_bytes)} copied)"
    )
    if manifest.media_missing:
        typer.echo(
            f"  warning: {len(manifest.media_missing)} media file(s) were missing from the "
            "media store and are not in the backup",
            err=True,
        )


PROGRESS_OPTION = typer.Option(True, "--progress/--no-progress", help="Show progress bars.")


@backup_app.callback(invoke_without_command=True)
def backup_main(ctx: typer.Context, progress: bool = PROGRESS_OPTION) -> None:
    """Create a backup now (same as `genapi backup create`)."""
    if ctx.invoked_subcommand is None:
        _run_create(progress)


@backup_app.command("create")
def create(
    progress: bool = PROGRESS_OPTION,
) -> None:
    """Back up the database and media into BACKUP_DIR."""
    _run_create(progress)


def _row(info: BackupInfo) -> list[str]:
    created = info.created_at.strftime("%Y-%m-%d %H:%M:%S") if info.created_at else "?"
    if info.manifest is None:
        return [info.path.name, created, _size(info.size), "-", "-", "-", info.error or "?"]
    manifest = info.manifest
    return [
        info.path.name,
        created,
        _size(info.size),
        manifest.schema_revision or "-",
        str(sum(manifest.row_counts.values())),
        str(manifest.media_count),
        "ok",
    ]


@backup_app.command("list")
def list_command(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """List the backups in BACKUP_DIR, newest first."""
    configure_logging(logging.WARNING)
    settings = load_settings()
    try:
        infos = list_backups(settings.resolved_backup_dir, keyring_for(settings))
    except BackupError as exc:
        _fail(str(exc))
        return
    if as_json:
        payload = [
            {
                "path": str(info.path),
                "size": info.size,
                "created_at": info.created_at.isoformat() if info.created_at else None,
                "ok": info.ok,
                "error": info.error,
                "manifest": info.manifest.to_json() if info.manifest else None,
            }
            for info in infos
        ]
        typer.echo(json.dumps(payload, indent=2))
        return
    if not infos:
        typer.echo(f"no backups in {settings.resolved_backup_dir}")
        return
    rows = [["NAME", "CREATED (UTC)", "SIZE", "SCHEMA", "ROWS", "MEDIA", "STATUS"]]
    rows += [_row(info) for info in infos]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        typer.echo("  ".join([*cells, row[-1]]))


def _print_report(report: VerifyReport) -> None:
    marks = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}
    typer.echo(f"verifying {report.path}")
    if report.manifest is not None:
        manifest = report.manifest
        typer.echo(
            f"  created {manifest.created_at.isoformat(timespec='seconds')}, "
            f"{manifest.backend}, schema {manifest.schema_revision or 'none'}, "
            f"genapi {manifest.app_version}"
        )
    for check in report.checks:
        typer.echo(f"  [{marks[check.level]}] {check.name}: {check.detail}")
    typer.echo("backup is good" if report.ok else "backup FAILED verification")


@backup_app.command("verify")
def verify(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="The backup file."),
    blobs: Path | None = BLOBS_OPTION,
    progress: bool = PROGRESS_OPTION,
) -> None:
    """Check a backup thoroughly (exit code 1 when anything is wrong).

    Decrypts it, checks its checksums and media, restores it into a scratch database, compares
    row counts with the manifest and decrypts every encrypted column with STORAGE_MASTER_KEY.
    """
    configure_logging(logging.WARNING)
    settings = load_settings()
    bar = TqdmProgress(progress)
    try:
        report = asyncio.run(verify_backup(settings, file, blob_dir=blobs, progress=bar))
    except BackupError as exc:
        bar.close()
        _fail(f"verify failed: {exc}")
        return
    bar.close()
    _print_report(report)
    if not report.ok:
        raise typer.Exit(1)


@backup_app.command("prune")
def prune() -> None:
    """Delete backups older than BACKUP_RETENTION_DAYS (never the newest good one)."""
    configure_logging(logging.WARNING)
    settings = load_settings()
    try:
        result = asyncio.run(prune_backups(settings))
    except BackupError as exc:
        _fail(str(exc))
        return
    typer.echo(
        f"deleted {len(result.deleted)} backup(s), kept {len(result.kept)}, "
        f"removed {result.blobs_deleted} unreferenced media blob(s)"
    )


def _confirm_target(settings: Settings) -> str:
    from sqlalchemy.engine import make_url

    return make_url(settings.resolved_database_url).render_as_string(hide_password=True)


@cli.command()
def restore(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="The backup file."),
    force: bool = typer.Option(
        False, "--force", help="Replace a database that already holds data."
    ),
    media: bool = typer.Option(True, "--media/--no-media", help="Put the media files back."),
    blobs: Path | None = BLOBS_OPTION,
    progress: bool = PROGRESS_OPTION,
) -> None:
    """Restore a backup into DATABASE_URL and the media store, then migrate to head.

    Stop the service first.
    """
    configure_logging(logging.WARNING)
    settings = load_settings()
    bar = TqdmProgress(progress)
    try:
        result = asyncio.run(
            restore_backup(
                settings,
                file,
                force=force,
                restore_media=media,
                blob_dir=blobs,
                progress=bar,
            )
        )
    except RestoreRefused as exc:
        bar.close()
        _fail(f"restore refused: {exc}")
        return
    except BackupError as exc:
        bar.close()
        _fail(f"restore failed: {exc}")
        return
    bar.close()
    manifest = result.manifest
    typer.echo(f"restored {file.name} into {_confirm_target(settings)}")
    typer.echo(
        f"  {sum(manifest.row_counts.values())} row(s) from "
        f"{manifest.created_at.isoformat(timespec='seconds')}, migrated to the latest schema"
    )
    if result.media_skipped:
        typer.echo("  media files were not restored (--no-media)")
    else:
        typer.echo(f"  {result.media_restored} media file(s) restored")
