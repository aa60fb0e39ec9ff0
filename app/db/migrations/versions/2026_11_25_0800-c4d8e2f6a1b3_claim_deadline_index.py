"""index for the claim's deadline sweep

Revision ID: c4d8e2f6a1b3
Revises: b7e3f1a2c4d6
Create Date: 2026-11-25 08:00:00

"""

from collections.abc import Sequence

from alembic import op

revision: str = "c4d8e2f6a1b3"
down_revision: str | Sequence[str] | None = "b7e3f1a2c4d6"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_generation_tasks_status_deadline",
        "generation_tasks",
        ["status", "deadline_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_generation_tasks_status_deadline", table_name="generation_tasks")
