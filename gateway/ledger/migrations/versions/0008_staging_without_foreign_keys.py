"""Staged rows no longer name their file by a foreign key (issue 11).

``staged_cases`` and ``staged_attempts`` are a claimed file's scratch: written chunk
by chunk, cleared whenever the file is (re)started, and deleted in the transaction
that ends it. Their ``file_id`` is the claim they belong to. As a foreign key it
checked nothing a file row could break — file rows are never deleted, a purge only
marks them — but it cost: SQLite looks the file up for every staged row it inserts
*and* every one it deletes, and PostgreSQL for every row inserted. On SQLite, the
delete of a 300,000-case batch's staged rows at its commit took 0.30 s with the key
and 0.07 s without (the commit is the serial tail of a batch: nothing else runs).

SQLite cannot drop a constraint in place: both tables are rebuilt (still ``WITHOUT
ROWID``), their rows copied in the migration's transaction. PostgreSQL drops the
constraints by the names it gave them.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


# The two tables as of this revision, with or without the key. A migration keeps its
# own copy of what it builds: another revision's may change after it.
def _staged_attempts(name: str, *, keyed: bool, **kw: bool) -> None:
    op.create_table(
        name,
        sa.Column("file_id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.String(64), nullable=False),
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        *([sa.ForeignKeyConstraint(["file_id"], ["files.id"])] if keyed else []),
        sa.PrimaryKeyConstraint("file_id", "case_id", "day"),
        **kw,
    )


def _staged_cases(name: str, *, keyed: bool, **kw: bool) -> None:
    op.create_table(
        name,
        sa.Column("file_id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.String(64), nullable=False),
        sa.Column("row", sa.Integer(), nullable=False),
        sa.Column("agency_code", sa.String(32), nullable=False),
        sa.Column("contract_id", sa.String(64), nullable=False),
        *([sa.ForeignKeyConstraint(["file_id"], ["files.id"])] if keyed else []),
        sa.PrimaryKeyConstraint("file_id", "case_id"),
        **kw,
    )


_TABLES: dict[str, tuple[Callable[..., None], str]] = {
    "staged_attempts": (_staged_attempts, "file_id, case_id, day, count"),
    "staged_cases": (_staged_cases, 'file_id, case_id, "row", agency_code, contract_id'),
}


def _rebuild(*, keyed: bool) -> None:
    for table, (create, columns) in _TABLES.items():
        create(f"{table}_new", keyed=keyed, sqlite_with_rowid=False)
        op.execute(f"INSERT INTO {table}_new ({columns}) SELECT {columns} FROM {table}")  # noqa: S608 - constants
        op.drop_table(table)
        op.rename_table(f"{table}_new", table)


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        _rebuild(keyed=False)
        return
    for table in _TABLES:
        for fk in sa.inspect(bind).get_foreign_keys(table):
            assert fk["name"] is not None  # noqa: S101 — PostgreSQL names every constraint
            op.drop_constraint(fk["name"], table, type_="foreignkey")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rebuild(keyed=True)
        return
    for table in _TABLES:
        op.create_foreign_key(f"{table}_file_id_fkey", table, "files", ["file_id"], ["id"])
