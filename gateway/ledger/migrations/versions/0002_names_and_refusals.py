"""Any file name a sender chose, and refused zone entries (issue 9).

Names a sender chose (``files.name``, ``receipts.input_name``, ``purge_objects.name``)
are stored in their escaped spelling, up to 1024 characters; ``refused_files`` lists
zone entries the gateway will not read. The ``meta`` table's schema version gives
way to Alembic's own.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

NAMES = (("files", "name"), ("receipts", "input_name"), ("purge_objects", "name"))


def upgrade() -> None:
    for table, column in NAMES:
        with op.batch_alter_table(table) as batch:
            batch.alter_column(column, type_=sa.String(1024), existing_type=sa.String(255),
                               existing_nullable=False)
    op.create_table(
        "refused_files",
        sa.Column("zone", sa.String(80), nullable=False),
        sa.Column("name", sa.String(1024), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("zone", "name"),
    )
    op.drop_table("meta")


def downgrade() -> None:
    op.create_table(
        "meta",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("value", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '1')")
    op.drop_table("refused_files")
    for table, column in NAMES:  # names longer than 255 would not fit: cut, as the old code did
        op.execute(f"UPDATE {table} SET {column} = SUBSTR({column}, 1, 255) "  # noqa: S608 - constants
                   f"WHERE LENGTH({column}) > 255")
        with op.batch_alter_table(table) as batch:
            batch.alter_column(column, type_=sa.String(255), existing_type=sa.String(1024),
                               existing_nullable=False)
