"""Unmasking by approval (docs/operations.md, "Unmasking by approval"): an agency's
requests to see named cases' fields unmasked, the cases each names, and every approver's
decision — the register the rules require is read from these rows.

An account decides a request once (the primary key), so the two-person rule holds in
the database, whichever console or node the approvers use.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def _time(name: str, *, nullable: bool = False) -> sa.Column[dt.datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "unmask_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.String(32), nullable=False),
        sa.Column("file_id", sa.Integer(), nullable=False),
        sa.Column("agency_code", sa.String(32), nullable=False),
        sa.Column("contract_id", sa.String(64), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("signer", sa.String(64), nullable=False),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("fields", sa.Text(), nullable=False),
        sa.Column("cases", sa.Integer(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        _time("created_at"), _time("received_at"), _time("decide_by"),
        sa.Column("approvals_needed", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        _time("decided_at", nullable=True), _time("notified_at", nullable=True),
        _time("released_at", nullable=True), _time("expires_at", nullable=True),
        _time("purged_at", nullable=True), _time("release_audited_at", nullable=True),
        _time("purge_audited_at", nullable=True), sa.Column("purge_plan", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["file_id"], ["files.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("request_id", name="uq_unmask_requests_request_id"),
    )
    op.create_index("ix_unmask_requests_status", "unmask_requests", ["status", "agency_code"])
    op.create_table(
        "unmask_cases",
        sa.Column("request", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.String(64), nullable=False),
        sa.Column("batch_id", sa.String(64), nullable=False),
        sa.ForeignKeyConstraint(["request"], ["unmask_requests.id"]),
        sa.PrimaryKeyConstraint("request", "case_id"),
    )
    op.create_table(
        "unmask_decisions",
        sa.Column("request", sa.Integer(), nullable=False),
        sa.Column("account", sa.String(64), nullable=False),
        sa.Column("decision", sa.String(8), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        _time("decided_at"),
        sa.ForeignKeyConstraint(["request"], ["unmask_requests.id"]),
        sa.PrimaryKeyConstraint("request", "account"),
    )


def downgrade() -> None:
    op.drop_table("unmask_decisions")
    op.drop_table("unmask_cases")
    op.drop_index("ix_unmask_requests_status", table_name="unmask_requests")
    op.drop_table("unmask_requests")
