"""``gateway-agency open`` and ``export``: a held slice decrypted where the user says.

The plaintext goes to standard output or to the one file the user names — their
explicit choice — written as every kit file is (a private temp name beside it, renamed
only after the gateway's signature checked out, mode 0600, never over an existing file).
Without ``--out`` the bytes stream before the verdict, as ``gateway open`` does; a failed
verdict then says to discard them.

XLSX is written with the standard library: a zip of minimal SpreadsheetML, every cell an
inline string (so an id keeps its leading zeros and nothing is read as a formula), one
sheet per slice.

"With the role's masking visible": a line on standard error names the role and the
columns in which some value holds the mask character ``*`` — what this role does not see
of those fields. It is an observation of the data, not of the bank's rules.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, BinaryIO
from xml.sax.saxutils import escape

from gateway import clock
from gateway.config import LocalZone
from gateway.errors import CryptoError, GatewayError, UsageError
from gateway.kit import files, unmask
from gateway.kit.config import AgencyConfig, _inside
from gateway.kit.crypto import KitCrypto, alive
from gateway.kit.files import StateDir
from gateway.kit.ledger import FileRow, KitLedger
from gateway.names import display_name


class MaskScan:
    """Which columns of a CSV stream hold a ``*`` somewhere, fed chunk by chunk. Slice
    values never hold a line break (the gateway refuses control characters), so a line
    is a row."""

    def __init__(self) -> None:
        self.header: list[str] | None = None
        self.masked: set[int] = set()
        self._rest = b""

    def feed(self, chunk: bytes) -> None:
        lines = (self._rest + chunk).split(b"\n")
        self._rest = lines.pop()
        for line in lines:
            self._line(line)

    def finish(self) -> None:
        if self._rest:
            self._line(self._rest)

    def _line(self, line: bytes) -> None:
        if self.header is None or b"*" in line:
            self.row(next(csv.reader([line.decode("utf-8", "replace").rstrip("\r")]), []))

    def row(self, values: list[str]) -> None:
        if self.header is None:
            self.header = [h.lstrip("\ufeff") for h in values]
        else:
            self.masked.update(i for i, v in enumerate(values) if "*" in v)

    def note(self, role: str, name: str) -> str:
        columns = [self.header[i] for i in sorted(self.masked)
                   if self.header is not None and i < len(self.header)]
        seen = ", ".join(columns) if columns else "none"
        return (f"{name}: the {role} role's view — columns with masked values (*): {seen}; "
                "fields the role does not receive are not in the file")


def _slice(ledger: KitLedger, crypto: KitCrypto, name: str) -> FileRow:
    row = ledger.file(name)
    if row is None or row.kind != "slice" or not row.received_at:
        raise UsageError(f"{name}: not a slice the kit holds (see 'gateway-agency status')")
    if row.destroyed_at:
        raise UsageError(f"{name}: destroyed on {row.destroyed_at}")
    if (at := unmask.expired(ledger, row.batch_id, clock.now())) is not None:
        raise UsageError(f"{name}: a release that expired at {at}; the next kit command that "
                         "can take the kit's lock destroys it")
    assert row.role is not None  # noqa: S101 — invariant, not an input check
    if not crypto.holds(row.role):
        raise UsageError(f"{name}: a slice of the {row.role} role, whose key this installation "
                         "does not hold (agency.toml [roles])")
    if not unmask.readable(ledger, crypto, row):
        raise UsageError(f"{name}: a release sealed to one member's key alone (the one that "
                         "asked for it), which this installation does not hold")
    return row


def _check_out(cfg: AgencyConfig, out: Path) -> None:
    """Not into a zone the other side reads, nor into the kit's own directory."""
    places = [("state_dir", cfg.state_dir)] + [
        (box, zone.path) for box in ("inbox", "outbox")
        if isinstance(zone := getattr(cfg, box), LocalZone)]
    for key, place in places:
        if _inside(out.absolute(), place.absolute()):
            raise UsageError(f"--out: {out} lies in the {key} directory ({place}); "
                             "write decrypted data elsewhere")


@contextlib.contextmanager
def recorded(ledger: KitLedger, out: Path, names: list[str]) -> Iterator[BinaryIO]:
    """*out* written whole (as :func:`files.atomic`), recorded in the ledger before a byte
    is written — its temporary name too — so that ``destroy`` finds it and a kill's
    leftover is removed by the next command (:func:`sweep_parts`)."""
    target = out.absolute()
    if target.exists() or target.is_symlink():
        raise UsageError(f"{out} already exists; not overwriting it")
    part = files.part_name(target)
    export_id = ledger.add_export(str(target), str(part), names, clock.iso(clock.now()))
    try:
        with files.atomic(target, overwrite=False, part=part) as fh:
            yield fh
    except BaseException:
        ledger.export_done(export_id, clock.iso(clock.now()), outcome="unwritten")
        raise
    ledger.export_done(export_id, clock.iso(clock.now()))


def sweep_parts(ledger: KitLedger) -> list[str]:
    """The half-written plaintext of exports whose command was killed: removed."""
    lines = []
    for row in ledger.exports():
        if row["written_at"] is not None or row["pid"] == os.getpid() or alive(row["pid"]):
            continue
        part, target = Path(row["part"]), Path(row["path"])
        if files.destroy(part):
            lines.append(f"removed {display_name(str(part))}: the partial plaintext of an "
                         "interrupted export")
        now = clock.iso(clock.now())
        if target.exists():  # killed after the rename: the export is whole
            ledger.export_done(row["id"], now)
        else:
            ledger.export_done(row["id"], now, outcome="unwritten")
    return lines


def open_slice(cfg: AgencyConfig, ledger: KitLedger, state: StateDir, crypto: KitCrypto,
               name: str, out: Path | None, stdout: BinaryIO) -> str:
    """Decrypt *name* to *out* or *stdout*; the masking note."""
    row = _slice(ledger, crypto, name)
    scan = MaskScan()
    if out is None:
        _decrypt(state, crypto, row, stdout, scan, streaming=True)
    else:
        _check_out(cfg, out)
        with recorded(ledger, out, [row.name]) as fh:
            _decrypt(state, crypto, row, fh, scan, streaming=False)
    assert row.role is not None  # noqa: S101 — invariant, not an input check
    return scan.note(row.role, name)


def _decrypt(state: StateDir, crypto: KitCrypto, row: FileRow, sink: BinaryIO, scan: MaskScan,
             *, streaming: bool) -> None:
    try:
        with state.held(row.name).open("rb") as src, crypto.open_from_gateway(src) as msg:
            for chunk in msg.chunks():
                scan.feed(chunk)
                sink.write(chunk)
            msg.verdict()
    except CryptoError as exc:
        tail = "discard what was printed" if streaming else "nothing was written"
        raise CryptoError(f"{row.name}: {exc}; {tail}", code=exc.code) from exc
    scan.finish()
    sink.flush()


def export(cfg: AgencyConfig, ledger: KitLedger, state: StateDir, crypto: KitCrypto,
           target: str, fmt: str, out: Path) -> list[str]:
    """A slice, or a batch's readable slices, into *out* as CSV or XLSX; the notes."""
    if ledger.file(target) is not None:
        rows = [_slice(ledger, crypto, target)]
    elif ledger.batch(target) is not None:
        rows = [f for f in ledger.files(batch_id=target)
                if f.kind == "slice" and f.received_at and not f.destroyed_at
                and unmask.readable(ledger, crypto, f)]
        if rows and unmask.expired(ledger, target, clock.now()):
            rows = [_slice(ledger, crypto, rows[0].name)]  # refused, with the reason
        if not rows:
            raise UsageError(f"batch {target}: no slice of a role whose key this installation holds")
    else:
        raise UsageError(f"{target}: neither a held slice nor a batch (see 'gateway-agency status')")
    if fmt == "csv":
        if len(rows) > 1:
            raise UsageError(f"batch {target} has {len(rows)} slices the kit can read (roles "
                             f"{', '.join(str(r.role) for r in rows)}), each with its own columns: "
                             "export one by name, or use --format xlsx (a sheet each)")
        return [open_slice(cfg, ledger, state, crypto, rows[0].name, out, io.BytesIO())]
    notes = []
    _check_out(cfg, out)
    with recorded(ledger, out, [r.name for r in rows]) as fh, \
            zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED) as zf:
        for n, row in enumerate(rows, start=1):
            scan = MaskScan()
            with zf.open(f"xl/worksheets/sheet{n}.xml", "w") as sheet:
                _sheet(state, crypto, row, sheet, scan)
            assert row.role is not None  # noqa: S101 — invariant, not an input check
            notes.append(scan.note(row.role, row.name))
        _workbook(zf, [str(r.role) for r in rows])
    return notes


def _sheet(state: StateDir, crypto: KitCrypto, row: FileRow, sheet: IO[bytes], scan: MaskScan) -> None:
    """One slice as a worksheet, streamed: rows decrypted, parsed and written as XML rows
    into the workbook's temp file, which becomes the workbook only if the verdict holds."""
    sheet.write(b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<worksheet xmlns='
                b'"http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>')
    try:
        with state.held(row.name).open("rb") as src, crypto.open_from_gateway(src) as msg:
            text = io.TextIOWrapper(io.BufferedReader(msg), encoding="utf-8-sig", newline="")
            for r, values in enumerate(csv.reader(text), start=1):
                scan.row(values)
                cells = "".join(f'<c r="{_column(i)}{r}" t="inlineStr"><is><t xml:space='
                                f'"preserve">{escape(v)}</t></is></c>' for i, v in enumerate(values))
                sheet.write(f'<row r="{r}">{cells}</row>'.encode())
            msg.verdict()
    except CryptoError as exc:
        raise CryptoError(f"{row.name}: {exc}; nothing was written", code=exc.code) from exc
    sheet.write(b"</sheetData></worksheet>")


def _column(i: int) -> str:
    name = ""
    i += 1
    while i:
        i, rem = divmod(i - 1, 26)
        name = chr(65 + rem) + name
    return name


def _workbook(zf: zipfile.ZipFile, sheets: list[str]) -> None:
    if not sheets:
        raise GatewayError("nothing to export")
    names = [f"{s[:28]}{'' if sheets.count(s) == 1 else f'-{i}'}" for i, s in enumerate(sheets, 1)]
    overrides = "".join(
        f'<Override PartName="/xl/worksheets/sheet{i}.xml" ContentType="application/'
        'vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
        for i in range(1, len(sheets) + 1))
    zf.writestr("[Content_Types].xml", (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<Types xmlns="http://schemas.'
        'openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType='
        '"application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" '
        'ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType='
        '"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
        f"{overrides}</Types>"))
    zf.writestr("_rels/.rels", (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<Relationships xmlns="http://'
        'schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type='
        '"http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" '
        'Target="xl/workbook.xml"/></Relationships>'))
    listed = "".join(f'<sheet name="{escape(n)}" sheetId="{i}" r:id="rId{i}"/>'
                     for i, n in enumerate(names, 1))
    zf.writestr("xl/workbook.xml", (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<workbook xmlns="http://'
        'schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.'
        'openxmlformats.org/officeDocument/2006/relationships">'
        f"<sheets>{listed}</sheets></workbook>"))
    rels = "".join(
        f'<Relationship Id="rId{i}" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
        f'relationships/worksheet" Target="worksheets/sheet{i}.xml"/>'
        for i in range(1, len(sheets) + 1))
    zf.writestr("xl/_rels/workbook.xml.rels", (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<Relationships xmlns="http://'
        f'schemas.openxmlformats.org/package/2006/relationships">{rels}</Relationships>'))
