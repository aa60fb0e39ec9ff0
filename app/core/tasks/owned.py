"""What the worker's compare-and-swap writes share, in one place for the worker and the
one-statement completion (`app.core.tasks.completion`): the task table, the columns a
transition returns, and the condition "still active and leased by us"."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Table, bindparam, literal_column
from sqlalchemy.sql.elements import Label

from app.core.tasks.service import ACTIVE_STATUSES
from app.models import GenerationTask

# Every column but the request payload, which can hold megabytes of data-URI images and is only
# read once, to submit: claims and transitions return these instead of the whole row.
LIGHT_COLUMNS = tuple(c for c in GenerationTask.__table__.columns if c.name != "request_encrypted")


TASKS = cast(Table, GenerationTask.__table__)
LIGHT_TABLE_COLUMNS = tuple(TASKS.c[c.name] for c in LIGHT_COLUMNS)
# "Still active and leased by us" (the compare-and-swap of every transition), built once and
# bound per call: the transitions run as Core statements on a connection, not through an ORM
# session, which cost about as much CPU again as the statements themselves.
OWNED = (
    TASKS.c.id == bindparam("owned_id"),
    TASKS.c.status.in_(ACTIVE_STATUSES),
    TASKS.c.lease_owner == bindparam("owned_by"),
)
# Returned with a completion: whether rows of an earlier attempt must be cleared first (only
# attempts of the code before the move journal wrote rows before completing).
# Spelled out: SQLite's RETURNING renders columns unqualified, which would make a generated
# correlated subquery compare media.task_id with media.id.
HAS_MEDIA: Label[Any] = literal_column(
    "EXISTS (SELECT 1 FROM media WHERE media.task_id = generation_tasks.id)"
).label("has_media")
