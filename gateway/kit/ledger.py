"""The kit's ledger: ``state_dir/kit.db``, SQLite in WAL mode, stdlib only.

What it holds is what the agency must be able to show — which files arrived, when,
acknowledged by which document, destroyed when — and never a personal value: names,
hashes, roles, counts, case ids (identifiers, which the gateway's ledger keeps too) and
the gateway's receipts (codes, rows and case ids, no values).

Every step of the kit is written so that running it again after a crash (``kill -9``
anywhere) neither loses nor doubles anything; the ledger is where each step's "done" is
recorded, each in one transaction, *after* the step's effect is durable (a file renamed
into place) and *before* the next step that depends on it (removing from the inbox).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from gateway import clock

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    batch_id TEXT PRIMARY KEY,
    contract_id TEXT NOT NULL,
    manifest_name TEXT NOT NULL,
    manifest_sha256 TEXT NOT NULL,
    created_at TEXT NOT NULL,          -- the gateway's, from the manifest
    received_at TEXT NOT NULL,
    acknowledged_at TEXT,              -- the first acknowledgement's upload
    ack_id TEXT,
    cases_recorded INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS files (
    name TEXT PRIMARY KEY,
    batch_id TEXT NOT NULL REFERENCES batches(batch_id),
    kind TEXT NOT NULL,                -- slice | manifest
    role TEXT,
    records INTEGER,
    sha256 TEXT NOT NULL,              -- of the ciphertext: the manifest's word for a slice
    received_at TEXT,                  -- NULL: listed by the manifest, not received whole yet
    ack_id TEXT,                       -- the acknowledgement that lists it
    removed_at TEXT,                   -- taken out of the inbox
    stored_path TEXT,                  -- its decrypted copy in the store, if one was made
    decrypted TEXT NOT NULL DEFAULT 'none',  -- 'destroyed' once a store copy was destroyed
    destroyed_at TEXT
);
CREATE TABLE IF NOT EXISTS exports (  -- plaintext written by open --out / export, by intent
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL,                -- the file the person named
    part TEXT NOT NULL,                -- its temporary name while being written
    names TEXT NOT NULL,               -- the slices in it, one per line
    pid INTEGER NOT NULL,              -- the process writing it (a dead one's part is swept)
    created_at TEXT NOT NULL,
    written_at TEXT,                   -- NULL: being written, or interrupted
    destroyed_at TEXT,
    outcome TEXT                       -- destroyed | missing (not found at destroy) | unwritten
);
CREATE TABLE IF NOT EXISTS cases (
    case_id TEXT NOT NULL,
    batch_id TEXT NOT NULL REFERENCES batches(batch_id),
    PRIMARY KEY (case_id, batch_id)
);
CREATE TABLE IF NOT EXISTS documents (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,                -- acknowledgement | attestation | results
                                       -- | unmask-request
    name TEXT NOT NULL,                -- its name in the outbox
    scope TEXT NOT NULL,               -- batch id, contract id, or the results file's name
    created_at TEXT NOT NULL,
    body BLOB,                         -- the signed documents' JSON (no personal data)
    uploaded_at TEXT
);
CREATE TABLE IF NOT EXISTS receipts (
    name TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    received_at TEXT NOT NULL,
    file TEXT,                         -- what it answers; NULL while it cannot be decrypted
    status TEXT,
    records INTEGER, accepted INTEGER, rejected INTEGER, errors_total INTEGER,
    body TEXT,
    PRIMARY KEY (name, sha256)
);
CREATE TABLE IF NOT EXISTS unmask_requests (  -- gateway-agency unmask: what was asked, and its fate
    request_id TEXT PRIMARY KEY,
    doc_id TEXT NOT NULL,              -- its row in documents (sent exactly once from there)
    role TEXT NOT NULL,
    purpose TEXT NOT NULL,
    fields TEXT NOT NULL,              -- comma-separated field names
    cases INTEGER NOT NULL,            -- how many; the ids are in the request itself
    created_at TEXT NOT NULL,
    status TEXT NOT NULL,              -- sent | pending | rejected | denied | expired | released
    status_note TEXT,                  -- the receipt's error code(s), or the denial's reason
    decide_by TEXT,                    -- from the receipt: undecided after this, it expires
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS releases (  -- a one-off unmasked slice's batch (unmask-<n>)
    batch_id TEXT PRIMARY KEY REFERENCES batches(batch_id),
    request_id TEXT NOT NULL,
    purpose TEXT NOT NULL,
    fields TEXT NOT NULL,
    recipient TEXT NOT NULL,           -- the one key the slice is sealed to (fingerprint)
    expires_at TEXT NOT NULL,          -- the kit destroys its copies at this time
    expired_at TEXT                    -- when it did
);
CREATE TABLE IF NOT EXISTS unmask_decisions (  -- a denial or an expiry, told by the gateway
    name TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    request_id TEXT NOT NULL,
    status TEXT NOT NULL,              -- denied | expired
    decided_at TEXT NOT NULL,
    reason TEXT NOT NULL,
    received_at TEXT NOT NULL,
    PRIMARY KEY (name, sha256)
);
"""


# columns added after the first release: (table, column, declaration)
_ADDED = (
    ("files", "stored_at", "TEXT"),      # stored_path is recorded before decrypting; this after
    ("files", "size", "INTEGER"),        # the inbox file's size and mtime when verified
    ("files", "mtime", "REAL"),
    ("files", "copy_missing", "TEXT"),   # a recorded copy not found at destroy, confirmed by
                                         # the person (destroy --accept-missing)
    ("documents", "source_sha256", "TEXT"),  # results: the plaintext that was sealed
    ("documents", "outcome", "TEXT"),    # the gateway's receipt: accepted | rejected | unknown
    ("documents", "outcome_note", "TEXT"),   # its error code, or why the outcome is unknown
    ("receipts", "answers", "TEXT"),     # the id of the document it answers, by name
)


# a files-query condition: not a file of a one-off release (whose copies go at its expiry,
# not at the contract's end: their destruction says nothing of the contract's data)
NOT_RELEASE = "f.batch_id NOT IN (SELECT batch_id FROM releases)"


def now_text(at: dt.datetime) -> str:
    return clock.iso(at)


def parse_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass(frozen=True)
class FileRow:
    name: str
    batch_id: str
    kind: str
    role: str | None
    records: int | None
    sha256: str
    received_at: str | None
    ack_id: str | None
    removed_at: str | None
    stored_path: str | None
    decrypted: str
    destroyed_at: str | None
    stored_at: str | None = None
    size: int | None = None
    mtime: float | None = None
    copy_missing: str | None = None


@dataclass(frozen=True)
class DocumentRow:
    id: str
    kind: str
    name: str
    scope: str
    created_at: str
    body: bytes | None
    uploaded_at: str | None
    source_sha256: str | None = None
    outcome: str | None = None
    outcome_note: str | None = None


class KitLedger:
    """One connection to ``kit.db``; ``with ledger.tx():`` is one transaction."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None, timeout=30)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")  # an ack recorded is an ack on disk
        self.db.execute("PRAGMA foreign_keys=ON")
        self.db.execute("PRAGMA secure_delete=ON")  # case ids and receipts: not in free pages
        self.db.executescript(_SCHEMA)
        for table, column, decl in _ADDED:
            have = {r[1] for r in self.db.execute(f"PRAGMA table_info({table})")}
            if column not in have:
                self.db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")

    def close(self) -> None:
        self.db.close()

    @contextlib.contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # --- batches and files -----------------------------------------------------------

    def batch(self, batch_id: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.db.execute("SELECT * FROM batches WHERE batch_id = ?",
                                                  (batch_id,)).fetchone()
        return row

    def batches(self, contract_id: str | None = None) -> list[sqlite3.Row]:
        if contract_id is None:
            return self.db.execute("SELECT * FROM batches ORDER BY received_at").fetchall()
        return self.db.execute("SELECT * FROM batches WHERE contract_id = ? ORDER BY received_at",
                               (contract_id,)).fetchall()

    def record_manifest(self, *, batch_id: str, contract_id: str, name: str, sha256: str,
                        created_at: str, received_at: str,
                        slices: Iterable[tuple[str, str, int, str]],
                        seen: tuple[int, float] | None = None,
                        release: tuple[str, str, Iterable[str], str, str] | None = None) -> None:
        """The batch, its manifest (received) and the slices it lists (expected), at once.
        *seen*: the manifest's size and mtime in the inbox when it was read. *release*: a
        one-off release's request id, purpose, fields, recipient and expiry, in the same
        transaction (a kill never leaves a release that looks like a batch)."""
        size, mtime = seen if seen is not None else (None, None)
        with self.tx() as db:
            db.execute("INSERT INTO batches (batch_id, contract_id, manifest_name, manifest_sha256,"
                       " created_at, received_at) VALUES (?, ?, ?, ?, ?, ?)",
                       (batch_id, contract_id, name, sha256, created_at, received_at))
            db.execute("INSERT INTO files (name, batch_id, kind, sha256, received_at, size, mtime)"
                       " VALUES (?, ?, 'manifest', ?, ?, ?, ?)",
                       (name, batch_id, sha256, received_at, size, mtime))
            db.executemany("INSERT INTO files (name, batch_id, kind, role, records, sha256) "
                           "VALUES (?, ?, 'slice', ?, ?, ?)",
                           [(n, batch_id, role, records, sha) for n, role, records, sha in slices])
            if release is not None:
                request_id, purpose, fields, recipient, expires_at = release
                db.execute("INSERT INTO releases (batch_id, request_id, purpose, fields, "
                           "recipient, expires_at) VALUES (?, ?, ?, ?, ?, ?)",
                           (batch_id, request_id, purpose, ",".join(fields), recipient,
                            expires_at))

    def file(self, name: str) -> FileRow | None:
        row = self.db.execute("SELECT * FROM files WHERE name = ?", (name,)).fetchone()
        return None if row is None else FileRow(**dict(row))

    def files(self, *, batch_id: str | None = None, contract_id: str | None = None,
              where: str = "1") -> list[FileRow]:
        sql = "SELECT f.* FROM files f JOIN batches b USING (batch_id) WHERE " + where  # noqa: S608 — *where* is the kit's own literal
        args: list[str] = []
        if batch_id is not None:
            sql += " AND f.batch_id = ?"
            args.append(batch_id)
        if contract_id is not None:
            sql += " AND b.contract_id = ?"
            args.append(contract_id)
        rows = self.db.execute(sql + " ORDER BY b.received_at, f.kind DESC, f.name", args)
        return [FileRow(**dict(r)) for r in rows]

    def mark_received(self, name: str, at: str, seen: tuple[int, float] | None = None) -> None:
        """*seen*: the inbox file's size and mtime when it was read and verified."""
        size, mtime = seen if seen is not None else (None, None)
        with self.tx() as db:
            db.execute("UPDATE files SET received_at = ?, size = ?, mtime = ? WHERE name = ? "
                       "AND received_at IS NULL", (at, size, mtime, name))

    def mark_store_intent(self, name: str, path: str) -> None:
        """Before decrypting into the store: where the copy goes (a kill leaves it known)."""
        with self.tx() as db:
            db.execute("UPDATE files SET stored_path = ?, stored_at = NULL WHERE name = ?",
                       (path, name))

    def mark_stored(self, name: str, at: str) -> None:
        with self.tx() as db:
            db.execute("UPDATE files SET stored_at = ? WHERE name = ?", (at, name))

    def mark_removed(self, name: str, at: str) -> None:
        with self.tx() as db:
            db.execute("UPDATE files SET removed_at = ? WHERE name = ?", (at, name))

    def mark_copy_destroying(self, name: str, missing: str | None = None) -> None:
        """Before a decrypted copy of *name* is destroyed: the file had one. Recorded first,
        so that a kill after the deletion does not make the copy look moved away.
        *missing*: a recorded copy that was not found, confirmed by the person."""
        with self.tx() as db:
            db.execute("UPDATE files SET decrypted = 'destroyed', "
                       "copy_missing = COALESCE(?, copy_missing) WHERE name = ?", (missing, name))

    def mark_destroyed(self, name: str, at: str) -> None:
        with self.tx() as db:
            db.execute("UPDATE files SET destroyed_at = ?, stored_path = NULL "
                       "WHERE name = ? AND destroyed_at IS NULL", (at, name))

    # --- exports ---------------------------------------------------------------------

    def add_export(self, path: str, part: str, names: Iterable[str], at: str) -> int:
        """Before writing: the file a person asked for, and its temporary name."""
        with self.tx() as db:
            cur = db.execute("INSERT INTO exports (path, part, names, pid, created_at) "
                             "VALUES (?, ?, ?, ?, ?)",
                             (path, part, "\n".join(names), os.getpid(), at))
            return int(cur.lastrowid or 0)

    def export_done(self, export_id: int, at: str | None, outcome: str | None = None) -> None:
        """Written (*at*), or *outcome*: destroying (about to be), destroyed, missing (not
        found at destroy, confirmed by the person), unwritten."""
        with self.tx() as db:
            if outcome is None:
                db.execute("UPDATE exports SET written_at = ? WHERE id = ?", (at, export_id))
            else:
                db.execute("UPDATE exports SET destroyed_at = ?, outcome = ? WHERE id = ?",
                           (at, outcome, export_id))

    def exports(self, *, open_only: bool = True) -> list[sqlite3.Row]:
        if open_only:
            return self.db.execute("SELECT * FROM exports WHERE outcome IS NULL OR outcome = "
                                   "'destroying' ORDER BY id").fetchall()
        return self.db.execute("SELECT * FROM exports ORDER BY id").fetchall()

    # --- cases ---------------------------------------------------------------------

    def record_cases(self, batch_id: str, case_ids: Iterable[str]) -> None:
        with self.tx() as db:
            db.executemany("INSERT OR IGNORE INTO cases (case_id, batch_id) VALUES (?, ?)",
                           ((c, batch_id) for c in case_ids))
            db.execute("UPDATE batches SET cases_recorded = 1 WHERE batch_id = ?", (batch_id,))

    def held_cases(self, case_ids: Iterable[str]) -> set[str]:
        """Of *case_ids*, those of batches the kit holds (not destroyed)."""
        ids = list(dict.fromkeys(case_ids))
        found: set[str] = set()
        for i in range(0, len(ids), 500):
            part = ids[i:i + 500]
            marks = ",".join("?" * len(part))
            found.update(r[0] for r in self.db.execute(
                f"SELECT DISTINCT case_id FROM cases WHERE case_id IN ({marks})", part))  # noqa: S608 — only '?' marks
        return found

    def count_cases(self, contract_id: str) -> int:
        return int(self.db.execute(
            "SELECT COUNT(DISTINCT case_id) FROM cases JOIN batches USING (batch_id) "
            "WHERE contract_id = ?", (contract_id,)).fetchone()[0])

    def forget_cases(self, contract_id: str) -> None:
        with self.tx() as db:
            db.execute("DELETE FROM cases WHERE batch_id IN (SELECT batch_id FROM batches "
                       "WHERE contract_id = ?)", (contract_id,))

    # --- documents -----------------------------------------------------------------

    def add_document(self, doc: DocumentRow, *, acknowledges: Iterable[str] = ()) -> None:
        """The document is "to send" from here on; the files it acknowledges point at it."""
        with self.tx() as db:
            db.execute("INSERT INTO documents (id, kind, name, scope, created_at, body, "
                       "uploaded_at, source_sha256) VALUES (?, ?, ?, ?, ?, ?, NULL, ?)",
                       (doc.id, doc.kind, doc.name, doc.scope, doc.created_at, doc.body,
                        doc.source_sha256))
            db.executemany("UPDATE files SET ack_id = ? WHERE name = ? AND ack_id IS NULL",
                           ((doc.id, n) for n in acknowledges))

    def documents(self, *, kind: str | None = None, pending: bool = False,
                  scope: str | None = None) -> list[DocumentRow]:
        sql, args = "SELECT * FROM documents WHERE 1", []
        if kind is not None:
            sql += " AND kind = ?"
            args.append(kind)
        if scope is not None:
            sql += " AND scope = ?"
            args.append(scope)
        if pending:
            sql += " AND uploaded_at IS NULL"
        return [DocumentRow(**dict(r)) for r in self.db.execute(sql + " ORDER BY created_at", args)]

    def rename_document(self, doc_id: str, name: str) -> None:
        with self.tx() as db:
            db.execute("UPDATE documents SET name = ? WHERE id = ?", (name, doc_id))

    def drop_document(self, doc_id: str) -> None:
        """A results file never uploaded, replaced by a newer version of it."""
        with self.tx() as db:
            db.execute("DELETE FROM documents WHERE id = ? AND uploaded_at IS NULL", (doc_id,))

    def set_outcome(self, doc_id: str, outcome: str, note: str | None) -> None:
        """The gateway's answer to the document, from its receipt. A readable receipt
        outranks one this installation could not read."""
        with self.tx() as db:
            db.execute("UPDATE documents SET outcome = ?, outcome_note = ? WHERE id = ? AND "
                       "(outcome IS NULL OR outcome = 'unknown' OR ? != 'unknown')",
                       (outcome, note, doc_id, outcome))

    def document_by_name(self, name: str) -> DocumentRow | None:
        row = self.db.execute("SELECT * FROM documents WHERE name = ? AND uploaded_at IS NOT NULL",
                              (name,)).fetchone()
        return None if row is None else DocumentRow(**dict(row))

    def mark_uploaded(self, doc_id: str, at: str) -> None:
        with self.tx() as db:
            db.execute("UPDATE documents SET uploaded_at = ? WHERE id = ? AND uploaded_at IS NULL",
                       (at, doc_id))
            db.execute("UPDATE batches SET acknowledged_at = ?, ack_id = ? WHERE ack_id IS NULL "
                       "AND batch_id = (SELECT scope FROM documents WHERE id = ? "
                       "AND kind = 'acknowledgement')", (at, doc_id, doc_id))

    def name_used(self, name: str) -> bool:
        return self.db.execute("SELECT 1 FROM documents WHERE name = ?", (name,)).fetchone() \
            is not None

    # --- receipts ------------------------------------------------------------------

    def has_receipt(self, name: str, sha256: str) -> bool:
        return self.db.execute("SELECT 1 FROM receipts WHERE name = ? AND sha256 = ?",
                               (name, sha256)).fetchone() is not None

    def record_receipt(self, name: str, sha256: str, at: str, body: dict[str, object] | None,
                       text: str | None, answers: str | None = None) -> None:
        counts = body.get("counts", {}) if body else {}
        assert isinstance(counts, dict)  # noqa: S101 — invariant, not an input check
        with self.tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO receipts (name, sha256, received_at, file, status, records,"
                " accepted, rejected, errors_total, body, answers) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (name, sha256, at, body.get("file") if body else None,
                 body.get("status") if body else None, counts.get("records"),
                 counts.get("accepted"), counts.get("rejected"),
                 body.get("errors_total") if body else None, text, answers))

    def forget_receipt_bodies(self) -> None:
        """Destroy: the receipts' error lists name case ids; their status and counts stay."""
        with self.tx() as db:
            db.execute("UPDATE receipts SET body = NULL")

    def forget_request_bodies(self) -> None:
        """Destroy: a sent unmask request's JSON lists case ids; its row (id, purpose,
        fields, how many cases, its fate) stays."""
        with self.tx() as db:
            db.execute("UPDATE documents SET body = NULL WHERE kind = 'unmask-request' "
                       "AND uploaded_at IS NOT NULL")

    def receipts(self) -> list[sqlite3.Row]:
        return self.db.execute("SELECT * FROM receipts ORDER BY received_at").fetchall()

    # --- unmask requests and releases ----------------------------------------------

    def add_unmask_request(self, doc: DocumentRow, *, request_id: str, role: str, purpose: str,
                           fields: Iterable[str], cases: int) -> None:
        """The request and its document, "to send", in one transaction."""
        with self.tx() as db:
            db.execute("INSERT INTO documents (id, kind, name, scope, created_at, body, "
                       "uploaded_at) VALUES (?, ?, ?, ?, ?, ?, NULL)",
                       (doc.id, doc.kind, doc.name, doc.scope, doc.created_at, doc.body))
            db.execute("INSERT INTO unmask_requests (request_id, doc_id, role, purpose, fields, "
                       "cases, created_at, status, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, "
                       "'sent', ?)", (request_id, doc.id, role, purpose, ",".join(fields), cases,
                                      doc.created_at, doc.created_at))

    def unmask_requests(self) -> list[sqlite3.Row]:
        return self.db.execute("SELECT r.*, d.name, d.uploaded_at FROM unmask_requests r "
                               "JOIN documents d ON d.id = r.doc_id ORDER BY r.created_at"
                               ).fetchall()

    def set_request_status(self, request_id: str, status: str, note: str | None, at: str, *,
                           decide_by: str | None = None, doc_id: str | None = None) -> None:
        """What the gateway said of a request (by its id, or by its document's id). A final
        word (released, denied, expired, rejected) is not undone by an older receipt."""
        with self.tx() as db:
            db.execute("UPDATE unmask_requests SET status = ?, status_note = ?, "
                       "decide_by = COALESCE(?, decide_by), updated_at = ? "
                       "WHERE (request_id = ? OR doc_id = ?) AND (status IN ('sent', 'pending') "
                       "OR ? NOT IN ('sent', 'pending'))",
                       (status, note, decide_by, at, request_id, doc_id, status))

    def release(self, batch_id: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.db.execute("SELECT * FROM releases WHERE batch_id = ?",
                                                  (batch_id,)).fetchone()
        return row

    def releases(self) -> list[sqlite3.Row]:
        return self.db.execute("SELECT r.*, b.contract_id FROM releases r JOIN batches b "
                               "USING (batch_id) ORDER BY r.expires_at").fetchall()

    def mark_release_expired(self, batch_id: str, at: str) -> None:
        with self.tx() as db:
            db.execute("UPDATE releases SET expired_at = ? WHERE batch_id = ? AND expired_at IS "
                       "NULL", (at, batch_id))

    def has_decision(self, name: str, sha256: str) -> bool:
        return self.db.execute("SELECT 1 FROM unmask_decisions WHERE name = ? AND sha256 = ?",
                               (name, sha256)).fetchone() is not None

    def record_decision(self, *, name: str, sha256: str, request_id: str, status: str,
                        decided_at: str, reason: str, at: str) -> None:
        """The notice, and the request's status from it, in one transaction."""
        with self.tx() as db:
            db.execute("INSERT OR IGNORE INTO unmask_decisions (name, sha256, request_id, "
                       "status, decided_at, reason, received_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (name, sha256, request_id, status, decided_at, reason, at))
            db.execute("UPDATE unmask_requests SET status = ?, status_note = ?, updated_at = ? "
                       "WHERE request_id = ?", (status, reason, at, request_id))

    def decisions(self) -> list[sqlite3.Row]:
        return self.db.execute("SELECT * FROM unmask_decisions ORDER BY received_at").fetchall()

    def live_cases(self, contract_id: str, case_ids: Iterable[str]) -> set[str]:
        """Of *case_ids*, those of the contract's batches the kit holds (releases aside:
        their case ids are never recorded)."""
        ids = list(dict.fromkeys(case_ids))
        found: set[str] = set()
        for i in range(0, len(ids), 500):
            part = ids[i:i + 500]
            marks = ",".join("?" * len(part))
            sql = "SELECT DISTINCT case_id FROM cases JOIN batches USING (batch_id) " \
                f"WHERE contract_id = ? AND case_id IN ({marks})"  # noqa: S608 — only '?' marks
            found.update(r[0] for r in self.db.execute(sql, [contract_id, *part]))
        return found


def open_ledger(state_dir: Path) -> KitLedger:
    """The ledger in *state_dir*, the directory made (0700) if it is not there."""
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    return KitLedger(state_dir / "kit.db")
