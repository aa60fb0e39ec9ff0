"""covering index for prompt search

Revision ID: 9d2e4b6c8a10
Revises: 5c1f0e7a9b21
Create Date: 2026-11-25 05:00:00

"""

from collections.abc import Sequence

from alembic import op

revision: str = "9d2e4b6c8a10"
down_revision: str | Sequence[str] | None = "5c1f0e7a9b21"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_task_search_terms_user_term_task",
        "task_search_terms",
        ["user_id", "term", "task_id"],
        unique=False,
    )
    op.drop_index("ix_task_search_terms_user_term", table_name="task_search_terms")


def downgrade() -> None:
    op.create_index(
        "ix_task_search_terms_user_term", "task_search_terms", ["user_id", "term"], unique=False
    )
    op.drop_index("ix_task_search_terms_user_term_task", table_name="task_search_terms")
