"""The console's tables (docs/security-team.md, issue 12): accounts (Argon2id password hashes, TOTP
secrets, lockouts) and each results file's flag counts (the Compliance page).

Accounts live in the ledger rather than a file so that two console hosts on one
PostgreSQL share them, their failure counts and their lockouts. Flag counts were only
in the (encrypted) receipts and the metrics; the Compliance page and the monthly
reports need them per agency and day.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "console_accounts",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("totp_secret", sa.String(64), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_step", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sessions_from", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "result_flags",
        sa.Column("file_id", sa.Integer(), nullable=False),
        sa.Column("flag", sa.String(16), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["file_id"], ["files.id"]),
        sa.PrimaryKeyConstraint("file_id", "flag"),
    )


def downgrade() -> None:
    op.drop_table("result_flags")
    op.drop_table("console_accounts")
