"""Agencies' zones are named by the agency's code, not its place in the config's list.

Until now an agency's zone went by its config key path, ``agencies[0].inbox``: reordering
the agencies in gateway.toml renamed every zone — in ``gateway status``, the console, the
Prometheus series — and left the ledger's rows naming a position that now meant another
agency. From this revision a zone is ``AG001.inbox`` (``bank.outgoing`` and
``bank.incoming`` keep their names).

Stored names are rewritten row by row from the agency each row already records, never
from a position: a delivery, a results file, a purge know their agency; a receipt knows
its file. The position -> code pairs those rows show without ambiguity are kept (table
``zone_renames``: what an old name became, for reading old audit entries and for the
downgrade). The zone status and the refused entries record no agency: their old rows
are dropped — the next pass writes the status again and finds a refused entry again.

The audit log is not rewritten (it is append-only and sealed): entries before the upgrade
name zones by position; the monthly report reads both.
"""

# ruff: noqa: S608 — table, column and box names below are this file's constants; every
# value is a bound parameter.
from __future__ import annotations

import re

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_OLD = re.compile(r"agencies\[(\d+)\]\.(inbox|outbox)")


def _pairs(conn: sa.Connection) -> dict[str, str]:
    """``agencies[i]`` -> code, from every row that names both a position and an agency —
    only where the history is unambiguous: a position one agency held, held by no other
    agency, and that agency at no other position (the list reordered before would make
    two positions one agency's: renaming both to its code would merge two zones)."""
    rows = conn.execute(sa.text(
        "SELECT zone, agency_code FROM deliveries WHERE agency_code IS NOT NULL "
        "UNION SELECT zone, agency_code FROM files WHERE agency_code IS NOT NULL "
        "UNION SELECT o.location, p.agency_code FROM purge_objects o "
        "JOIN purges p ON p.contract_id = o.contract_id")).all()
    codes_at: dict[str, set[str]] = {}
    places_of: dict[str, set[str]] = {}
    for zone, code in rows:
        m = _OLD.fullmatch(zone or "")
        if m:
            pos = f"agencies[{m.group(1)}]"
            codes_at.setdefault(pos, set()).add(code)
            places_of.setdefault(code, set()).add(pos)
    return {pos: next(iter(codes)) for pos, codes in codes_at.items()
            if len(codes) == 1 and len(places_of[next(iter(codes))]) == 1}


def _rename_by_row(conn: sa.Connection) -> None:
    for box in ("inbox", "outbox"):
        like = f"agencies[%].{box}"
        conn.execute(sa.text(
            f"UPDATE deliveries SET zone = agency_code || '.{box}' "
            "WHERE zone LIKE :like AND agency_code IS NOT NULL"), {"like": like})
        conn.execute(sa.text(
            f"UPDATE files SET zone = agency_code || '.{box}' "
            "WHERE zone LIKE :like AND agency_code IS NOT NULL"), {"like": like})
        for column in ("zone", "input_zone"):
            conn.execute(sa.text(
                f"UPDATE receipts SET {column} = (SELECT f.agency_code FROM files f "
                f"WHERE f.sha256 = receipts.file_sha256) || '.{box}' "
                f"WHERE {column} LIKE :like AND EXISTS (SELECT 1 FROM files f "
                "WHERE f.sha256 = receipts.file_sha256 AND f.agency_code IS NOT NULL)"),
                {"like": like})
        conn.execute(sa.text(
            f"UPDATE purge_objects SET location = (SELECT p.agency_code FROM purges p "
            f"WHERE p.contract_id = purge_objects.contract_id) || '.{box}' "
            "WHERE location LIKE :like"), {"like": like})


def _rename_by_map(conn: sa.Connection, rename: dict[str, str]) -> None:
    """Receipts no file explains are renamed by the unambiguous pairs. The zone status and
    the refused entries record no agency: their position-named rows are dropped, not
    guessed at — the next pass writes each zone's status again and finds a refused
    entry again (renaming by history could merge two zones, or name an agency's status
    after another)."""
    for column in ("zone", "input_zone"):
        for old, new in rename.items():
            conn.execute(sa.text(f"UPDATE receipts SET {column} = :new WHERE {column} = :old"),
                         {"new": new, "old": old})
    for table in ("zone_status", "refused_files"):
        conn.execute(sa.text(f"DELETE FROM {table} WHERE zone LIKE 'agencies[%'"))


def upgrade() -> None:
    conn = op.get_bind()
    positions = _pairs(conn)
    _rename_by_row(conn)
    rename = {f"{pos}.{box}": f"{code}.{box}"
              for pos, code in positions.items() for box in ("inbox", "outbox")}
    _rename_by_map(conn, rename)
    table = op.create_table(
        "zone_renames",
        sa.Column("old", sa.String(80), nullable=False),
        sa.Column("new", sa.String(80), nullable=False),
        sa.PrimaryKeyConstraint("old"),
    )
    op.bulk_insert(table, [{"old": old, "new": new} for old, new in sorted(rename.items())])


def downgrade() -> None:
    """Back to positions, for the agencies the upgrade knew; a zone of an agency added
    since keeps its code name (the older gateway would not find it: add the agency again
    after stepping back)."""
    conn = op.get_bind()
    back = {new: old for old, new in conn.execute(sa.text("SELECT old, new FROM zone_renames"))}
    for table, column in (("deliveries", "zone"), ("files", "zone"), ("receipts", "zone"),
                          ("receipts", "input_zone"), ("purge_objects", "location"),
                          ("zone_status", "zone"), ("refused_files", "zone")):
        for new, old in back.items():
            conn.execute(sa.text(f"UPDATE {table} SET {column} = :old WHERE {column} = :new"),
                         {"old": old, "new": new})
    op.drop_table("zone_renames")
