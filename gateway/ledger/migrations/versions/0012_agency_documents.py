"""The agency's signed documents (docs/formats.md §7, issue 26): acknowledgements of the
slices an agency received whole, and its attestation that it destroyed them at the
contract's end — one row per document the gateway accepted, and when each delivery was
acknowledged.

The document's own id is unique: a replayed document (re-encrypted, so new bytes) is
told from a new one, and two nodes never both accept it.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "agency_documents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("doc_id", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("agency_code", sa.String(32), nullable=False),
        sa.Column("file_id", sa.Integer(), nullable=False),
        sa.Column("contract_id", sa.String(64), nullable=True),
        sa.Column("batch_id", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("listed", sa.Integer(), nullable=False),
        sa.Column("not_listed", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["file_id"], ["files.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("doc_id", name="uq_agency_documents_doc_id"),
    )
    op.create_index("ix_agency_documents_agency", "agency_documents", ["agency_code", "kind"])
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("acknowledged_at")
    op.drop_index("ix_agency_documents_agency", table_name="agency_documents")
    op.drop_table("agency_documents")
