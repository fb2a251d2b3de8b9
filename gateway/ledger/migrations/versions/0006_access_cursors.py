"""Where the gateway stopped reading internal-sftp's log (docs/security-team.md, issue 13).

One row per log a node reads: the file's inode and the byte offset after the last
complete line read, and the parser's open sessions (so a session that began before a
restart keeps its login). A rotated log is finished from its new name before the
new file is read from its start.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "access_cursors",
        sa.Column("source", sa.String(300), nullable=False),
        sa.Column("inode", sa.BigInteger(), nullable=True),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("source"),
    )


def downgrade() -> None:
    op.drop_table("access_cursors")
