"""Cursors of the audit log's forwarding to a SIEM (docs/operations.md, issue 25).

One row per destination and node (each node forwards its own audit log): the last
entry the receiver confirmed, by seq and hash, the byte offset after it as a hint,
and the destination's last error for `gateway status`.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "forward_cursors",
        sa.Column("destination", sa.String(32), nullable=False),
        sa.Column("node", sa.String(128), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(500), nullable=True),
        sa.Column("last_error_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("destination", "node"),
    )


def downgrade() -> None:
    op.drop_table("forward_cursors")
