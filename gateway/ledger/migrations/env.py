"""Alembic environment: migrations run on the connection :mod:`gateway.ledger.migrate` hands
over (it holds the migration lock), never from an ini file or a URL of their own."""

from __future__ import annotations

from alembic import context

from gateway.ledger import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - offline (SQL script) mode is not offered
    raise RuntimeError("run migrations through `gateway db upgrade`")
# transactional_ddl: a migration is all or nothing, on SQLite too (see migrate.make_engine).
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True,
                  compare_type=True, transactional_ddl=True)
with context.begin_transaction():
    context.run_migrations()
