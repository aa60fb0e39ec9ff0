"""covering index for the history listing

The history page (GET /api/v1/videos, /images) counts and pages one user's tasks of a kind.
(user_id, kind, created_at, id) gives the page its `-created` / `created` order with the id
tie-break; on PostgreSQL the INCLUDE columns let the count and the page's id scan run
index-only. It replaces (user_id, kind, created_at), a prefix of it. (user_id, kind, title, id)
does the same for `sort=title` (title ASC NULLS LAST, id ASC), so a title-sorted page walks an
index instead of sorting every matching task. On PostgreSQL a pg_trgm GIN index serves the
title search (ILIKE '%…%'); where the extension cannot be created (a role without the right
to) the migration goes on without it, and title search reads the titles instead. Statistics on
the tags' text (PostgreSQL) let the planner know how many tasks a tag filter keeps.

Revision ID: b7e3f1a2c4d6
Revises: 9d2e4b6c8a10
Create Date: 2026-11-25 07:00:00

"""

import logging
from collections.abc import Sequence

from alembic import op
from sqlalchemy.exc import DBAPIError

revision: str = "b7e3f1a2c4d6"
down_revision: str | Sequence[str] | None = "9d2e4b6c8a10"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

logger = logging.getLogger("alembic.runtime.migration")


def _trigram_available() -> bool:
    """pg_trgm is a trusted extension (PostgreSQL 13+): a database owner may create it."""
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return True  # SQLite: a plain index, declared the same way
    try:
        with bind.begin_nested():  # a failure must not abort the migration's transaction
            bind.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except DBAPIError as exc:
        logger.warning(
            "pg_trgm could not be created (%s): title search will read every title. To add "
            "the index later, as a superuser: CREATE EXTENSION pg_trgm; CREATE INDEX "
            "ix_generation_tasks_title_trgm ON generation_tasks USING gin (title gin_trgm_ops)",
            type(exc.orig).__name__,
        )
        return False
    return True


def upgrade() -> None:
    # postgresql_include is ignored on SQLite: there the index has the key columns only.
    op.create_index(
        "ix_generation_tasks_user_kind_created_id",
        "generation_tasks",
        ["user_id", "kind", "created_at", "id"],
        unique=False,
        postgresql_include=["model", "status", "favorite", "title", "tags"],
    )
    op.create_index(
        "ix_generation_tasks_user_kind_title_id",
        "generation_tasks",
        ["user_id", "kind", "title", "id"],
        unique=False,
        postgresql_include=["created_at", "model", "status", "favorite", "tags"],
    )
    if _trigram_available():
        op.create_index(
            "ix_generation_tasks_title_trgm",
            "generation_tasks",
            ["title"],
            unique=False,
            postgresql_using="gin",
            postgresql_ops={"title": "gin_trgm_ops"},
        )
    if op.get_bind().dialect.name == "postgresql":
        # The tag filter is `CAST(tags AS VARCHAR) LIKE '%"tag"%'`; without statistics on that
        # expression the planner guesses a handful of rows and sorts every task of the user
        # for a page that an index walk would fill at once.
        op.execute(
            "CREATE STATISTICS IF NOT EXISTS st_generation_tasks_tags_text "
            "ON (CAST(tags AS VARCHAR)) FROM generation_tasks"
        )
    op.drop_index("ix_generation_tasks_user_kind_created", table_name="generation_tasks")


def downgrade() -> None:
    op.create_index(
        "ix_generation_tasks_user_kind_created",
        "generation_tasks",
        ["user_id", "kind", "created_at"],
        unique=False,
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP STATISTICS IF EXISTS st_generation_tasks_tags_text")
    # The extension stays: other objects may use it, and dropping it needs its owner.
    op.execute("DROP INDEX IF EXISTS ix_generation_tasks_title_trgm")
    op.drop_index("ix_generation_tasks_user_kind_title_id", table_name="generation_tasks")
    op.drop_index("ix_generation_tasks_user_kind_created_id", table_name="generation_tasks")
