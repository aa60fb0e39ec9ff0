"""A task's completion as one PostgreSQL statement: compare-and-swap, quota and media rows.

Every completion of a user's task adds to the same `users` row (the quota). In a transaction of
several statements that row stays locked from its UPDATE until the COMMIT, and under load the
process is slow to send the next statement (its event loop is busy with everyone else's work):
PostgreSQL then spent most of its time with completions queued on that lock, one behind the
other. As one statement in autocommit mode, the row is locked only while PostgreSQL runs it.

It handles the common case: every result fits in the quota, and no earlier attempt left media
rows. Whatever it cannot do it leaves untouched (`Completion.FALLBACK`) for the transaction in
`TaskWorker._commit_results`, which also serves SQLite.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Mapping, Sequence
from typing import Any, cast

from sqlalchemy import (
    Insert,
    Select,
    Table,
    bindparam,
    exists,
    insert,
    select,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.tasks.owned import HAS_MEDIA, LIGHT_TABLE_COLUMNS, OWNED, TASKS
from app.models import GenerationTask, Media, User

_MEDIA = cast(Table, Media.__table__)
_USERS = cast(Table, User.__table__)


class Completion(enum.Enum):
    DONE = "done"  # completed, rows written, quota reserved
    NOT_OURS = "not_ours"  # no longer active and leased by us: nothing written
    FALLBACK = "fallback"  # ours, but it needs the transaction: nothing written


@functools.cache
def completion_statement(columns: tuple[str, ...], media_count: int) -> Select[Any]:
    """Built once per set of task columns and number of media rows; bound per call."""
    owned = select(TASKS.c.id, HAS_MEDIA).where(*OWNED).with_for_update(of=TASKS).cte("owned")
    quota = (
        update(_USERS)
        .where(
            _USERS.c.id == bindparam("quota_user"),
            _USERS.c.storage_used_bytes + bindparam("quota_bytes") <= _USERS.c.storage_quota_bytes,
            exists().where(owned.c.has_media.is_(False)),
        )
        .values(storage_used_bytes=_USERS.c.storage_used_bytes + bindparam("quota_bytes"))
        .returning(_USERS.c.id)
        .cte("quota")
    )
    task = (
        update(TASKS)
        .where(TASKS.c.id.in_(select(owned.c.id)), exists(select(quota.c.id)))
        .values({column: bindparam(f"set_{column}") for column in columns})
        .returning(*LIGHT_TABLE_COLUMNS)
        .cte("task")
    )
    media_columns = list(_MEDIA.columns)
    sources = [
        select(*(bindparam(f"m{i}_{c.name}", type_=c.type).label(c.name) for c in media_columns))
        for i in range(media_count)
    ]
    source = (union_all(*sources) if media_count > 1 else sources[0]).subquery("source")
    rows: Insert = insert(_MEDIA).from_select(
        [c.name for c in media_columns],
        select(*source.c).where(exists(select(task.c.id))),
    )
    return (
        select(owned.c.id.label("owned_task"), *task.c)
        .select_from(owned.outerjoin(task, task.c.id == owned.c.id))
        .add_cte(rows.cte("inserted"))
    )


async def complete_in_one_statement(
    engine: AsyncEngine,
    *,
    task_id: str,
    worker_id: str,
    user_id: str,
    values: Mapping[str, Any],
    rows: Sequence[Media],
) -> tuple[Completion, GenerationTask | None]:
    """Complete the task with `values`, write `rows` as `stored` and reserve their bytes, all
    or nothing; `rows` are the planned (`pending`) media of a completion."""
    statement = completion_statement(tuple(sorted(values)), len(rows))
    params: dict[str, Any] = {
        "owned_id": task_id,
        "owned_by": worker_id,
        "quota_user": user_id,
        "quota_bytes": sum(m.bytes + m.thumbnail_bytes for m in rows),
    }
    params.update({f"set_{k}": v for k, v in values.items()})
    for i, media in enumerate(rows):
        for column in _MEDIA.columns:
            value = getattr(media, column.name)
            params[f"m{i}_{column.name}"] = "stored" if column.name == "state" else value
    async with engine.connect() as conn:
        autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
        found = (await autocommit.execute(statement, params)).one_or_none()
    if found is None:
        return Completion.NOT_OURS, None
    mapping = dict(found._mapping)
    if mapping.pop("owned_task") is None or mapping.get("id") is None:
        return Completion.FALLBACK, None
    for media in rows:
        media.state = "stored"
    return Completion.DONE, GenerationTask(**mapping)
