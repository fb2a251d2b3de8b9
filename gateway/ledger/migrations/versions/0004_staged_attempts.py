"""Attempt counts of a results file in progress, kept in the ledger chunk by chunk (issue 11).

A results file's CALL/SMS counts per case and day were held in memory until its
commit — memory that grew with the file — and were lost across the 1,000-row chunks
for a day already seen in the file (the ATTEMPTS flag under-counted). They are
staged here per chunk and added to ``attempts`` by the commit.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "staged_attempts",
        sa.Column("file_id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.String(64), nullable=False),
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["file_id"], ["files.id"]),
        sa.PrimaryKeyConstraint("file_id", "case_id", "day"),
    )


def downgrade() -> None:
    op.drop_table("staged_attempts")
