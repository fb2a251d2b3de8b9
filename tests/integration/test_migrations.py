"""Alembic migrations on SQLite and PostgreSQL: up and down with data in the tables, a ledger
from before migrations, the models matching the head revision, two nodes starting at once."""

from __future__ import annotations

import threading

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from gateway.errors import GatewayError
from gateway.ledger import Base, FileRow, Ledger, ReceiptRow, migrate
from tests.conftest import run_cli

pytestmark = pytest.mark.integration

ODD = "B-EVIL\nX-\udcb0.csv.pgp"  # a newline and an undecodable byte


def engine_for(url):
    return migrate.make_engine(url)


def test_up_and_down_with_data(db_url):
    engine = engine_for(db_url)
    try:
        migrate.upgrade(engine, "0001")
        with engine.begin() as conn:  # a ledger as the first release left it
            conn.execute(text(
                "INSERT INTO files (id, sha256, kind, zone, name, size, status, records, accepted, "
                "rejected, received_at) VALUES (1, :sha, 'case_file', 'bank.outgoing', 'B1.csv.pgp', "
                "10, 'accepted', 1, 1, 0, CURRENT_TIMESTAMP)"), {"sha": "a" * 64})
        migrate.upgrade(engine)
        with engine.connect() as conn:
            assert migrate.current(conn) == migrate.head()
        ledger = Ledger(db_url)
        try:
            assert ledger.file(1).name == "B1.csv.pgp"
            ledger.add_receipt(ReceiptRow(file_id=1, file_sha256="a" * 64, input_zone="bank.outgoing",
                                          input_name=ODD, zone="bank.incoming", staged="x",
                                          status="rejected"))
            assert ledger.note_refused("bank.outgoing", ODD, "symlink")
            assert [r.input_name for r in ledger.pending_receipts()] == [ODD]  # round trip
            assert ledger.take_lease("delivery:1", "n1", 60)  # 0003: leases
        finally:
            ledger.close()
        migrate.downgrade(engine, "0001")
        with engine.connect() as conn:
            assert not inspect(conn).has_table("refused_files")
            assert not inspect(conn).has_table("leases")
            assert not inspect(conn).has_table("staged_attempts")
            assert not inspect(conn).has_table("console_accounts")
            assert not inspect(conn).has_table("access_cursors")
            assert conn.execute(text("SELECT name FROM files")).scalar() == "B1.csv.pgp"
            assert conn.execute(text("SELECT value FROM meta")).scalar() == "1"
        migrate.upgrade(engine)
        migrate.downgrade(engine, "base")
        with engine.connect() as conn:
            assert not inspect(conn).has_table("files")
    finally:
        engine.dispose()


def stage_a_results_file(conn):
    """A results file in progress, as a ledger of 0006–0008 holds it: the claim and a
    row in each staging table."""
    conn.execute(text(
        "INSERT INTO files (id, sha256, kind, zone, name, size, status, records, accepted, "
        "rejected, received_at) VALUES (1, :sha, 'results', 'AG001.outbox', 'R1.csv.pgp', "
        "10, 'processing', 0, 0, 0, CURRENT_TIMESTAMP)"), {"sha": "a" * 64})
    conn.execute(text("INSERT INTO staged_attempts (file_id, case_id, day, count) VALUES "
                      "(1, 'C1', '2026-12-02', 2)"))
    conn.execute(text('INSERT INTO staged_cases (file_id, case_id, "row", agency_code, '
                      "contract_id) VALUES (1, 'C9', 2, 'AG001', 'K1')"))


def test_0007_keeps_every_row_and_makes_the_lookups_covering(db_url):
    """0007 rebuilds three SQLite tables WITHOUT ROWID and widens an index: the rows
    survive the rebuild both ways, and the layout is what the revision says."""
    engine = engine_for(db_url)

    def layout(conn):
        index = {i["name"]: i["column_names"] for i in inspect(conn).get_indexes("cases")}
        if conn.dialect.name != "sqlite":
            return index["ix_cases_agency"], None
        tables = dict(conn.execute(text(
            "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name IN "
            "('attempts', 'staged_attempts', 'staged_cases')")).all())
        assert len(tables) == 3
        return index["ix_cases_agency"], {n: "WITHOUT ROWID" in sql for n, sql in tables.items()}

    def rows(conn):
        return [conn.execute(text(f"SELECT * FROM {t} ORDER BY 1, 2")).all()
                for t in ("attempts", "staged_attempts", "staged_cases")]

    try:
        migrate.upgrade(engine, "0006")
        with engine.begin() as conn:
            stage_a_results_file(conn)
            conn.execute(text("INSERT INTO attempts (agency_code, case_id, day, count) VALUES "
                              "('AG001', 'C1', '2026-12-01', 3), ('AG001', 'C2', '2026-12-01', 1)"))
            before = rows(conn)
            assert layout(conn)[0] == ["agency_code", "case_id"]
        migrate.upgrade(engine, "0007")
        with engine.connect() as conn:
            assert rows(conn) == before
            index, without_rowid = layout(conn)
            assert index == ["agency_code", "case_id", "purged_at"]
            assert without_rowid is None or set(without_rowid.values()) == {True}  # sqlite
        migrate.downgrade(engine, "0006")
        with engine.connect() as conn:
            assert rows(conn) == before
            index, without_rowid = layout(conn)
            assert index == ["agency_code", "case_id"]
            assert without_rowid is None or set(without_rowid.values()) == {False}
    finally:
        engine.dispose()


def test_0008_drops_the_staging_keys_and_keeps_the_rows(db_url):
    """0008 drops the staging tables' foreign keys to ``files`` (SQLite by rebuilding
    them, still WITHOUT ROWID): the rows survive both ways, the keys go and come back."""
    engine = engine_for(db_url)
    tables = ("staged_attempts", "staged_cases")

    def state(conn):
        keys = {t: [fk["referred_table"] for fk in inspect(conn).get_foreign_keys(t)]
                for t in tables}
        rows = [conn.execute(text(f"SELECT * FROM {t} ORDER BY 1, 2")).all() for t in tables]
        if conn.dialect.name == "sqlite":
            assert all("WITHOUT ROWID" in conn.execute(text(
                "SELECT sql FROM sqlite_master WHERE name = :t"), {"t": t}).scalar()
                for t in tables)
        return keys, rows

    try:
        migrate.upgrade(engine, "0007")
        with engine.begin() as conn:
            stage_a_results_file(conn)
            keys, before = state(conn)
            assert keys == {t: ["files"] for t in tables}
        migrate.upgrade(engine, "0008")
        with engine.connect() as conn:
            assert state(conn) == ({t: [] for t in tables}, before)
        migrate.downgrade(engine, "0007")
        with engine.connect() as conn:
            assert state(conn) == ({t: ["files"] for t in tables}, before)
    finally:
        engine.dispose()


def test_models_match_the_head_revision(db_url):
    Ledger(db_url).close()
    engine = engine_for(db_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}),
                                    Base.metadata)
        assert diff == []
    finally:
        engine.dispose()


def test_the_partial_unique_indexes_are_partial_in_the_model_and_the_database(db_url):
    """Alembic's comparison above does not look at an index's predicate. A live case id is
    unique only among live cases, an open alert's key among open alerts: the database's
    indexes and the model's (PostgreSQL's predicates added when such a ledger opens, not at
    import) must both say so."""
    from sqlalchemy.schema import CreateIndex

    Ledger(db_url).close()
    engine = engine_for(db_url)
    try:
        for table, name, where in (("cases", "ux_cases_live", "purged_at IS NULL"),
                                   ("alerts", "ix_alerts_open_key", "cleared_at IS NULL")):
            index = next(i for i in Base.metadata.tables[table].indexes if i.name == name)
            model = str(CreateIndex(index).compile(dialect=engine.dialect))
            with engine.connect() as conn:
                made = conn.execute(
                    text("SELECT sql FROM sqlite_master WHERE name = :n") if
                    engine.dialect.name == "sqlite" else
                    text("SELECT indexdef FROM pg_indexes WHERE indexname = :n"), {"n": name},
                ).scalar_one()
            assert model.endswith(f"WHERE {where}")
            assert made.replace("(", "").replace(")", "").endswith(f"WHERE {where}")
    finally:
        engine.dispose()


def test_a_ledger_from_before_migrations_is_stamped_and_upgraded(db_url):
    engine = engine_for(db_url)
    try:
        migrate.upgrade(engine, "0001")
        with engine.begin() as conn:  # what create_all of the first release left: no version
            conn.execute(text("DROP TABLE alembic_version"))
        ledger = Ledger(db_url)
        ledger.close()
        with engine.connect() as conn:
            assert migrate.current(conn) == migrate.head()
            assert inspect(conn).has_table("refused_files")
    finally:
        engine.dispose()


def test_a_ledger_from_a_newer_gateway_is_refused(db_url):
    Ledger(db_url).close()
    engine = engine_for(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    finally:
        engine.dispose()
    with pytest.raises(GatewayError, match="written by a newer gateway"):
        Ledger(db_url)


def test_two_nodes_opening_a_fresh_database_at_once(postgres):
    """The race a user hit: both nodes created the schema at the same moment."""
    url = postgres.create_database()
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def node() -> None:
        try:
            barrier.wait()
            Ledger(url).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=node) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    ledger = Ledger(url)
    try:
        assert ledger.files() == []
    finally:
        ledger.close()


def test_db_commands(setup):
    proc = run_cli("db", "current", "-c", str(setup.config))
    assert proc.returncode == 1 and "no schema yet" in proc.stdout + proc.stderr
    proc = run_cli("db", "upgrade", "-c", str(setup.config))
    assert proc.returncode == 0, proc.stderr
    assert f"at revision {migrate.head()} (head)" in proc.stdout
    proc = run_cli("db", "current", "-c", str(setup.config))
    assert proc.returncode == 0 and f"revision {migrate.head()} (head)" in proc.stdout
    assert FileRow.__tablename__ == "files"


def test_a_failed_first_migration_leaves_nothing_half_made(tmp_path, monkeypatch):
    """All or nothing, on SQLite too: a migration that fails half-way (here: after its
    first tables) leaves an empty database, and the next open builds the whole schema."""
    from alembic.operations import Operations

    url = f"sqlite:///{tmp_path / 'gateway.db'}"
    real = Operations.create_table
    made = []

    def failing(self, name, *cols, **kw):
        made.append(name)
        if len(made) == 5:
            raise RuntimeError("disk full (simulated)")
        return real(self, name, *cols, **kw)

    monkeypatch.setattr(Operations, "create_table", failing)
    with pytest.raises(RuntimeError):
        Ledger(url)
    monkeypatch.undo()
    engine = engine_for(url)
    try:
        with engine.connect() as conn:
            assert inspect(conn).get_table_names() == []
    finally:
        engine.dispose()
    Ledger(url).close()
    engine = engine_for(url)
    try:
        with engine.connect() as conn:
            assert migrate.current(conn) == migrate.head()
            assert inspect(conn).has_table("staged_cases")
    finally:
        engine.dispose()


def test_0009_names_agency_zones_by_code_and_back(db_url):
    """0009 renames stored zones from list positions to agency codes, row by row from the
    agency each row records; what records none (zone status, refused entries) is dropped,
    to be written again by the next pass; and back on downgrade."""
    engine = engine_for(db_url)
    sha = {"b": "b" * 64, "r": "c" * 64}
    try:
        migrate.upgrade(engine, "0008")
        with engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO files (id, sha256, kind, zone, name, size, agency_code, status, records, "
                "accepted, rejected, received_at) VALUES "
                "(1, :b, 'case_file', 'bank.outgoing', 'B1.csv.pgp', 10, NULL, 'accepted', 1, 1, 0, "
                "CURRENT_TIMESTAMP), "
                "(2, :r, 'results', 'agencies[1].outbox', 'R1.csv.pgp', 10, 'AG002', 'accepted', 1, 1, "
                "0, CURRENT_TIMESTAMP)"), sha)
            conn.execute(text(
                "INSERT INTO deliveries (id, file_id, kind, agency_code, role, zone, name, sha256, "
                "size, records) VALUES (1, 1, 'slice', 'AG001', 'collector', 'agencies[0].inbox', "
                "'B1.AG001.collector.csv.pgp', :b, 1, 1)"), sha)
            conn.execute(text(
                "INSERT INTO receipts (id, file_id, file_sha256, input_zone, input_name, zone, "
                "staged, status, created_at) VALUES (1, 2, :r, 'agencies[1].outbox', 'R1.csv.pgp', "
                "'agencies[1].inbox', 'x', 'accepted', CURRENT_TIMESTAMP)"), sha)
            for zone in ("agencies[0].inbox", "agencies[1].outbox", "agencies[7].inbox",
                         "bank.outgoing"):
                conn.execute(text("INSERT INTO zone_status (zone, description, waiting, updated_at) "
                                  "VALUES (:z, 'd', 0, CURRENT_TIMESTAMP)"), {"z": zone})
            conn.execute(text("INSERT INTO refused_files (zone, name, reason, first_seen) VALUES "
                              "('agencies[0].outbox', 'odd', 'symlink', CURRENT_TIMESTAMP)"))

        def zones(conn):
            return (conn.execute(text("SELECT zone FROM files ORDER BY id")).scalars().all(),
                    conn.execute(text("SELECT zone FROM deliveries")).scalars().all(),
                    tuple(conn.execute(text("SELECT input_zone, zone FROM receipts")).one()),
                    sorted(conn.execute(text("SELECT zone FROM zone_status")).scalars().all()),
                    conn.execute(text("SELECT zone FROM refused_files")).scalars().all())

        migrate.upgrade(engine, "0009")
        with engine.connect() as conn:
            assert zones(conn) == (["bank.outgoing", "AG002.outbox"], ["AG001.inbox"],
                                   ("AG002.outbox", "AG002.inbox"), ["bank.outgoing"], [])
            assert dict(conn.execute(text("SELECT old, new FROM zone_renames")).all()) == {
                f"agencies[{i}].{box}": f"AG00{i + 1}.{box}" for i in (0, 1)
                for box in ("inbox", "outbox")}
        migrate.downgrade(engine, "0008")
        with engine.connect() as conn:
            assert zones(conn) == (["bank.outgoing", "agencies[1].outbox"], ["agencies[0].inbox"],
                                   ("agencies[1].outbox", "agencies[1].inbox"), ["bank.outgoing"],
                                   [])
            assert not inspect(conn).has_table("zone_renames")
    finally:
        engine.dispose()


def test_0009_after_a_reordering_merges_nothing(db_url):
    """AG001 was first (agencies[0]), then second when an agency was put before it: its
    deliveries name both positions. Each row is renamed from its own agency; the
    ambiguous positions are no pair, and the zone status of both is dropped, not merged
    into one name (which the table's key would refuse)."""
    engine = engine_for(db_url)
    try:
        migrate.upgrade(engine, "0008")
        with engine.begin() as conn:
            for i, zone in enumerate(("agencies[0].inbox", "agencies[1].inbox"), start=1):
                conn.execute(text(
                    "INSERT INTO deliveries (id, kind, agency_code, role, zone, name, sha256, "
                    "size, records) VALUES (:i, 'slice', 'AG001', 'collector', :z, :n, :s, 1, 1)"),
                    {"i": i, "z": zone, "n": f"B{i}.AG001.collector.csv.pgp", "s": str(i) * 64})
                conn.execute(text("INSERT INTO zone_status (zone, description, waiting, updated_at) "
                                  "VALUES (:z, 'd', 0, CURRENT_TIMESTAMP)"), {"z": zone})
        migrate.upgrade(engine, "0009")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT DISTINCT zone FROM deliveries")).scalars().all() == [
                "AG001.inbox"]
            assert conn.execute(text("SELECT count(*) FROM zone_status")).scalar() == 0
            assert conn.execute(text("SELECT count(*) FROM zone_renames")).scalar() == 0
    finally:
        engine.dispose()
