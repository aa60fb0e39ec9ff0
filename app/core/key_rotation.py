"""Re-encrypt every stored secret value under the primary `STORAGE_MASTER_KEY`.

To rotate: put the new key first (`STORAGE_MASTER_KEY=new,old`), run `genapi rotate-keys`,
then drop the old key. Each table is walked in primary-key order with keyset pagination, one
short transaction per batch, so the run can be interrupted at any point and simply re-run:
values already under the primary key are skipped. A value no configured key can decrypt is
reported with its row id and left untouched; it never stops the run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Column, Table, func, select, update

from app.core.encryption import DecryptionError, Encryptor
from app.db.base import Base
from app.db.session import Database
from app.models import ApiRequestLog, Channel, GenerationTask, Media, User, WebhookDelivery

# Every encrypted column, per model: a new table with encrypted columns appends one line.
# tests/core/test_key_rotation.py fails when a `*_encrypted` column is missing from this list.
ENCRYPTED_COLUMNS: list[tuple[type[Base], list[str]]] = [
    (
        ApiRequestLog,
        [
            "query_encrypted",
            "request_headers_encrypted",
            "request_body_encrypted",
            "response_body_encrypted",
            "note_encrypted",
        ],
    ),
    (User, ["webhook_secret_encrypted"]),
    (
        GenerationTask,
        [
            "request_encrypted",
            "response_encrypted",
            "upstream_key_encrypted",
            "error_message_encrypted",
        ],
    ),
    (Media, ["source_encrypted"]),
    (WebhookDelivery, ["url_encrypted", "payload_encrypted"]),
    (Channel, ["api_key_encrypted"]),
]

DEFAULT_BATCH_SIZE = 500
MAX_REPORTED_FAILURES = 1000

# progress(table name, rows processed in the batch just committed)
ProgressCallback = Callable[[str, int], None]


@dataclass(frozen=True)
class RotationFailure:
    table: str
    row_id: str
    column: str

    def __str__(self) -> str:
        return (
            f"{self.table} row {self.row_id}, column {self.column}: "
            "cannot be decrypted with any configured key"
        )


@dataclass
class RotationSummary:
    rotated: int = 0
    already_current: int = 0
    failed: int = 0
    rows_scanned: int = 0
    # The first MAX_REPORTED_FAILURES failures; `failed` counts them all.
    failures: list[RotationFailure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.failed == 0


def _table_of(model: type[Base]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


def _primary_key(table: Table) -> Column[Any]:
    columns = list(table.primary_key.columns)
    if len(columns) != 1:
        raise ValueError(f"{table.name}: key rotation needs a single-column primary key")
    return columns[0]


def _validate_registry(registry: list[tuple[type[Base], list[str]]]) -> None:
    for model, names in registry:
        table = _table_of(model)
        _primary_key(table)
        missing = [name for name in names if name not in table.c]
        if missing:
            raise ValueError(f"{table.name}: unknown encrypted column(s) {missing}")


async def count_rows(
    database: Database, registry: list[tuple[type[Base], list[str]]] | None = None
) -> int:
    """How many rows `rotate_all` will scan (for a progress bar's total)."""
    total = 0
    async with database.session() as session:
        for model, _ in registry or ENCRYPTED_COLUMNS:
            table = _table_of(model)
            total += (await session.execute(select(func.count()).select_from(table))).scalar_one()
    return total


def _preserve_onupdate(table: Table, changed: dict[str, Any]) -> dict[str, Any]:
    # Re-encryption is not a change of the row's content: keep `updated_at` and the like as is.
    values = dict(changed)
    for column in table.columns:
        if column.onupdate is not None and column.name not in values:
            values[column.name] = column
    return values


async def _rotate_table(
    database: Database,
    encryptor: Encryptor,
    table: Table,
    column_names: list[str],
    batch_size: int,
    summary: RotationSummary,
    progress: ProgressCallback | None,
) -> None:
    pk = _primary_key(table)
    columns = [table.c[name] for name in column_names]
    last_id: Any = None
    while True:
        async with database.session() as session:
            query = select(pk, *columns).order_by(pk).limit(batch_size)
            if last_id is not None:
                query = query.where(pk > last_id)
            # FOR UPDATE (PostgreSQL): a concurrent edit of the same row waits for this batch
            # instead of being overwritten by our re-encrypted copy. SQLite ignores it; its
            # BEGIN IMMEDIATE already holds the write lock for the whole batch.
            rows = (await session.execute(query.with_for_update())).all()
            for row in rows:
                row_id = row[0]
                changed: dict[str, Any] = {}
                for column, value in zip(column_names, row[1:], strict=True):
                    if value is None:
                        continue
                    if encryptor.is_current(value):
                        summary.already_current += 1
                        continue
                    try:
                        changed[column] = encryptor.rotate(value)
                    except DecryptionError:
                        summary.failed += 1
                        if len(summary.failures) < MAX_REPORTED_FAILURES:
                            summary.failures.append(
                                RotationFailure(table.name, str(row_id), column)
                            )
                if changed:
                    await session.execute(
                        update(table).where(pk == row_id).values(_preserve_onupdate(table, changed))
                    )
                    summary.rotated += len(changed)
        if not rows:
            return
        summary.rows_scanned += len(rows)
        last_id = rows[-1][0]
        if progress is not None:
            progress(table.name, len(rows))
        if len(rows) < batch_size:
            return


async def rotate_all(
    database: Database,
    encryptor: Encryptor,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: ProgressCallback | None = None,
    *,
    registry: list[tuple[type[Base], list[str]]] | None = None,
) -> RotationSummary:
    """Re-encrypt every registered column value that is not under the primary key yet.

    Counts are per value (cell): `rotated` re-encrypted, `already_current` skipped, `failed`
    undecryptable (each reported in `failures` with table, row id and column).
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    registry = ENCRYPTED_COLUMNS if registry is None else registry
    _validate_registry(registry)
    summary = RotationSummary()
    for model, column_names in registry:
        await _rotate_table(
            database,
            encryptor,
            _table_of(model),
            column_names,
            batch_size,
            summary,
            progress,
        )
    return summary
