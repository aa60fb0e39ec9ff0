"""`genapi rotate-keys`: re-encrypt stored data under the first STORAGE_MASTER_KEY."""

from __future__ import annotations

import asyncio
import logging
import sys

import typer
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from tqdm import tqdm

from app.cli.base import cli, configure_logging, load_settings
from app.core.config import Settings
from app.core.encryption import Encryptor
from app.core.key_rotation import DEFAULT_BATCH_SIZE, RotationSummary, count_rows, rotate_all
from app.core.tasks.reindex import reindex_search_terms
from app.db.session import Database
from app.models import GenerationTask


async def count_tasks(database: Database) -> int:
    async with database.session() as db:
        return int(await db.scalar(select(func.count()).select_from(GenerationTask)) or 0)


# Listing every failed row would drown the terminal when, say, a key was dropped too early.
MAX_PRINTED_FAILURES = 50


async def _rotate(settings: Settings, batch_size: int) -> RotationSummary:
    encryptor = Encryptor(settings.storage_master_key or "")
    database = Database.for_settings(settings)
    try:
        total = await count_rows(database)
        with tqdm(total=total, unit="row", desc="rotating", file=sys.stderr) as bar:

            def advance(table: str, rows: int) -> None:
                bar.set_description(table)
                bar.update(rows)

            summary = await rotate_all(database, encryptor, batch_size=batch_size, progress=advance)
        # The prompt search index is keyed by the primary key too: rebuild it.
        tasks = await count_tasks(database)
        with tqdm(total=tasks, unit="task", desc="search index", file=sys.stderr) as bar:
            await reindex_search_terms(
                database,
                encryptor,
                settings.storage_master_key or "",
                batch_size=batch_size,
                progress=bar.update,
            )
        return summary
    finally:
        await database.dispose()


@cli.command("rotate-keys")
def rotate_keys(
    batch_size: int = typer.Option(
        DEFAULT_BATCH_SIZE, "--batch-size", min=1, max=100_000, help="Rows per transaction."
    ),
) -> None:
    """Re-encrypt every stored value under the first STORAGE_MASTER_KEY (resumable)."""
    configure_logging(logging.WARNING)
    settings = load_settings()
    try:
        summary = asyncio.run(_rotate(settings, batch_size))
    except SQLAlchemyError as exc:
        # The first line names the problem (e.g. a missing table); the rest is SQL noise.
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        typer.echo(
            f"genapi: database error: {reason} (is the database migrated? run: genapi migrate)",
            err=True,
        )
        sys.exit(2)
    typer.echo(
        f"rotated {summary.rotated} value(s), {summary.already_current} already current, "
        f"{summary.failed} failed ({summary.rows_scanned} row(s) scanned)"
    )
    if summary.failed:
        for failure in summary.failures[:MAX_PRINTED_FAILURES]:
            typer.echo(f"error: {failure}", err=True)
        hidden = summary.failed - min(len(summary.failures), MAX_PRINTED_FAILURES)
        if hidden > 0:
            typer.echo(f"error: … and {hidden} more", err=True)
        typer.echo(
            "Some values could not be decrypted with any key in STORAGE_MASTER_KEY; they were "
            "left as they are. Add the key they were written with and run rotate-keys again.",
            err=True,
        )
        sys.exit(1)
