"""``gateway-agency results``: check a results file as the gateway will, then send it.

The check is the gateway's own code, not a copy of its rules: the header through
:func:`~gateway.validation.results.map_results_header`, the rows through
:class:`~gateway.validation.chunks.ChunkReader` and
:class:`~gateway.validation.columnar_results.ColumnarResults` (``check``, ``owned``,
``judge``), in the order and with the file-level outcomes of the gateway's results flow
(``gateway/flows/results.py`` and ``read_signed_csv`` in ``gateway/flows/arrival.py``:
E_EMPTY, header errors, E_NO_ROWS, a CSV format error after the rows before it, the
first 1000 errors listed and all counted). Only two things differ, and they are the
kit's to know: ownership is "a case of a batch this kit holds" (its ledger's case ids,
where the gateway asks its own ledger), and "now" is the kit's clock. A differential
test holds the kit's errors equal to the gateway's receipt for the same files.

Sending: a file with errors is refused unless ``--force`` (then the gateway forwards the
valid rows and lists the rest in its receipt, as it always does); a file that would be
rejected whole is never sent. The plaintext is read, never written: it is sealed for the
gateway straight into ``state_dir/outgoing/`` and uploaded from there (:mod:`.send`).
"""

from __future__ import annotations

import collections
import datetime as dt
import hashlib
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from gateway import clock, documents, identifiers
from gateway.crypto import packets
from gateway.errors import UsageError
from gateway.kit import files, send
from gateway.kit.config import AgencyConfig
from gateway.kit.crypto import KitCrypto
from gateway.kit.files import StateDir
from gateway.kit.ledger import NOT_RELEASE, DocumentRow, KitLedger
from gateway.transfer.base import Zone
from gateway.validation import chunks, csvio
from gateway.validation.cases import RowError
from gateway.validation.columnar_results import FLAGS, ColumnarResults
from gateway.validation.results import map_results_header

MAX_LISTED_ERRORS = 1000  # as a receipt lists them (docs/formats.md §1.4); all are counted
_STEM = identifiers.full(identifiers.BATCH_ID)


class Errors:
    """Every error counted, the first :data:`MAX_LISTED_ERRORS` kept — a receipt's list."""

    def __init__(self) -> None:
        self.listed: list[RowError] = []
        self.total = 0

    def add(self, errors: list[RowError]) -> None:
        self.total += len(errors)
        self.listed.extend(errors[:max(0, MAX_LISTED_ERRORS - len(self.listed))])


@dataclass
class Checked:
    """What the gateway's receipt for this file would say."""

    errors: Errors = field(default_factory=Errors)
    records: int = 0
    accepted: int = 0
    fatal: bool = False  # the file as a whole: format or header
    sha256: str = ""  # of the file as it was checked: what is sealed must be the same
    flagged: collections.Counter[str] = field(default_factory=collections.Counter)

    @property
    def sendable(self) -> bool:
        """Whether the gateway would forward anything of it."""
        return not self.fatal and self.accepted > 0

    @property
    def status(self) -> str:
        if not self.sendable:
            return "rejected"
        return "partial" if self.errors.total else "accepted"

    def lines(self) -> list[str]:
        out = [f"row {e.row}: {e.code} {e.field or '-'} — {e.message}" for e in self.errors.listed]
        if self.errors.total > len(self.errors.listed):
            out.append(f"… and {self.errors.total - len(self.errors.listed)} more error(s): "
                       f"like the gateway's receipt, only the first {MAX_LISTED_ERRORS} are listed")
        flags = ", ".join(f"{name} {self.flagged[name]}" for name in FLAGS if self.flagged[name])
        out.append(f"{self.records} row(s), {self.accepted} valid, {self.errors.total} error(s); "
                   f"the gateway would answer: {self.status}"
                   + (f"; flags for the bank's review: {flags}" if flags else ""))
        return out


def destroyed(cfg: AgencyConfig, ledger: KitLedger) -> str | None:
    """Why results cannot be checked: the configured contract's data, its case ids with
    it, was destroyed (the gateway may still take results until its purge)."""
    gone = ledger.files(contract_id=cfg.contract_id,
                        where=f"f.destroyed_at IS NOT NULL AND {NOT_RELEASE}")
    if not gone or ledger.count_cases(cfg.contract_id):
        return None
    return (f"contract {cfg.contract_id}'s data was destroyed (gateway-agency destroy), its "
            "case ids with it: the kit can no longer check or send results for it")


def check_file(cfg: AgencyConfig, ledger: KitLedger, path: Path, now: dt.datetime) -> Checked:
    """*path* (plaintext CSV) checked with the gateway's rules and the kit's case ids."""
    _must_be_plaintext(path)
    out = Checked()
    try:
        out.sha256 = files.sha256_of(path)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from exc
    reader: chunks.ChunkReader | None = None
    try:
        with path.open("rb") as fh:
            reader = chunks.ChunkReader(fh, encoding="utf-8", delimiter=",")
            header = reader.header()
            if header is None:
                out.errors.add([RowError(0, None, None, "E_EMPTY", "the file is empty")])
                out.fatal = True
            elif header_errors := _handle(cfg, ledger, now, header, reader, out):
                out.errors.add(header_errors)
                out.fatal = True
            elif out.records == 0:
                out.errors.add([RowError(0, None, None, "E_NO_ROWS",
                                         "the file has a header but no rows")])
                out.fatal = True
    except csvio.CsvFormatError as exc:
        out.errors.add([RowError(exc.row, None, None, exc.code, exc.message)])
        out.fatal = True
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from exc
    finally:
        if reader is not None:
            reader.close()
    return out


def _handle(cfg: AgencyConfig, ledger: KitLedger, now: dt.datetime, header: list[str],
            reader: chunks.ChunkReader, out: Checked) -> list[RowError]:
    columns, errors = map_results_header(header)
    if columns is None:
        return errors
    engine = ColumnarResults(columns, cfg.tz, now, agency=cfg.code, window=cfg.contact_window,
                             contract_end=cfg.contract_end, max_attempts=cfg.max_daily_attempts)

    def foreign(ids: pa.Array) -> Collection[str]:
        wanted = [str(i) for i in pc.unique(ids).to_pylist()]
        return set(wanted) - ledger.held_cases(wanted)

    for chunk in reader.chunks(len(columns)):
        out.records += chunk.records
        judged = engine.judge(engine.owned(engine.check(chunk), foreign=foreign),
                              counted=lambda case, day: {})
        out.errors.add(judged.errors)
        out.flagged.update(judged.flagged)
        out.accepted += judged.forward.num_rows
    return []


def _must_be_plaintext(path: Path) -> None:
    try:
        with path.open("rb") as fh:
            head = fh.read(1024)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from exc
    if packets.is_encrypted(head) or head.lstrip().startswith(b"-----BEGIN PGP "):
        raise UsageError(f"{path} is an OpenPGP file; give the plaintext results CSV — the kit "
                         "seals it for the gateway itself")


def upload_name(path: Path) -> str:
    """``<stem>.csv.pgp``: the file's name without ``.csv``; the gateway's name rule."""
    stem = path.name.removesuffix(".csv")
    if not _STEM.fullmatch(stem):
        raise UsageError(f"{path.name}: a results file's name must be NAME.csv with NAME of "
                         "A-Z a-z 0-9 . _ - (at most 64, starting with a letter or digit)")
    return f"{stem}.csv.pgp"


def send_file(ledger: KitLedger, state: StateDir, crypto: KitCrypto, outbox: Zone, path: Path,
              now: dt.datetime, checked: str) -> str:
    """Seal *path* for the gateway (streaming, into ``outgoing/``), record, upload. What is
    sealed must be what was checked (*checked*, its SHA-256); an earlier run's sealed
    version of a file that changed since is never sent in its place."""
    name = upload_name(path)
    for doc in ledger.documents(kind="results"):
        if doc.name != name:
            continue
        if doc.uploaded_at is not None:
            raise UsageError(f"{name} was sent at {doc.uploaded_at}; to send a corrected file, "
                             "give it a new name")
        if doc.source_sha256 in (None, checked):  # an interrupted send of this very file
            return send.upload(ledger, state, outbox, doc, crypto, now)
        if outbox.stat(name) is not None:
            raise UsageError(f"{name}: an earlier version of this file, sealed by a run that "
                             "was interrupted, may already be in the outbox; to send the "
                             "corrected file, give it a new name")
        ledger.drop_document(doc.id)  # never uploaded: the corrected file replaces it
        state.outgoing(name).unlink(missing_ok=True)
    digest = hashlib.sha256()
    with path.open("rb") as src, files.atomic(state.outgoing(name), tmp_dir=state.tmp) as fh, \
            crypto.seal_for_gateway(fh) as writer:
        while chunk := src.read(files.CHUNK):
            digest.update(chunk)
            writer.write(chunk)
    if digest.hexdigest() != checked:
        state.outgoing(name).unlink(missing_ok=True)
        raise UsageError(f"{path} changed while it was checked; nothing sent — run results "
                         "again")
    row = DocumentRow(id=documents.new_id(), kind="results", name=name, scope=path.name,
                      created_at=clock.iso(now), body=None, uploaded_at=None,
                      source_sha256=checked)
    ledger.add_document(row)
    return send.upload(ledger, state, outbox, row, crypto, now)
