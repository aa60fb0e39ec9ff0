"""Rebuild the prompt search index (after a master-key rotation changes the index key)."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import delete, select

from app.core.encryption import DecryptionError, Encryptor
from app.core.tasks.payload import TaskPayload
from app.core.tasks.search import derive_search_key, index_terms, insert_terms
from app.db.session import Database
from app.models import GenerationTask, TaskSearchTerm


async def reindex_search_terms(
    database: Database,
    encryptor: Encryptor,
    master_key: str,
    *,
    batch_size: int = 500,
    progress: Callable[[int], object] | None = None,
) -> int:
    """Recompute every task's search terms under the current primary key; returns tasks done.

    Batches are keyset-paginated, each its own transaction: safe to interrupt and re-run.
    """
    key = derive_search_key(master_key)
    done, last_id = 0, ""
    while True:
        async with database.session() as db:
            rows = (
                await db.execute(
                    select(
                        GenerationTask.id, GenerationTask.user_id, GenerationTask.request_encrypted
                    )
                    .where(GenerationTask.id > last_id)
                    .order_by(GenerationTask.id)
                    .limit(batch_size)
                )
            ).all()
            if not rows:
                return done
            ids = [row.id for row in rows]
            await db.execute(delete(TaskSearchTerm).where(TaskSearchTerm.task_id.in_(ids)))
            values: list[tuple[str, str, str]] = []
            for task_id, user_id, token in rows:
                try:
                    prompt = TaskPayload.from_json(encryptor.decrypt_json(token)).prompt
                except (DecryptionError, ValueError):
                    continue  # rotate-keys reports undecryptable rows
                values.extend((task_id, term, user_id) for term in index_terms(key, prompt))
            await insert_terms(db, values)
        done += len(rows)
        last_id = ids[-1]
        if progress is not None:
            progress(len(rows))
