"""``gateway-agency destroy``: after the contract's end, every copy goes, and the agency
signs that it did.

A pure :func:`plan` says what would go (and whether it may: not while the contract
runs — "today" in the gateway's time zone on or before ``contract_end``); :func:`execute`
does it in an order a crash cannot spoil: each file's copies are deleted, *then* its
``destroyed_at`` recorded; the case ids forgotten; only when nothing is left the
:class:`~gateway.documents.Attestation` is built from the ledger (every file ever
received under the contract, when it was received and destroyed, whether a decrypted
copy existed) and sent exactly once (:mod:`.send`). Run again, it finishes what an
interrupted run left and writes a second attestation (a new id) only when the first no
longer tells the whole truth: files were destroyed after it, or the gateway rejected it.

Every decrypted copy the kit knows of goes: the store's (recorded before it is written,
and ``store/<slice name without .pgp>`` swept besides) and every file ``open --out`` and
``export`` wrote (:mod:`.export` records them). A recorded copy that is no longer where
it was written (moved, or deleted by hand) is not claimed destroyed: destroy stops and
lists it, and ``--accept-missing`` is the person's confirmation that those copies are
gone. Other contracts: after a renewal, an earlier contract is destroyed with
``--contract ID --ended DATE`` (its last day), as the configured one is.

What stays is evidence without personal data: the ledger's rows (names, hashes, times)
and, in ``state_dir/attestations/``, the signed attestation as sent and its JSON.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from gateway import clock, documents
from gateway.errors import GatewayError, UsageError
from gateway.kit import files, send
from gateway.kit.config import DELETION_DAYS, AgencyConfig
from gateway.kit.crypto import KitCrypto, alive
from gateway.kit.files import StateDir
from gateway.kit.ledger import DocumentRow, FileRow, KitLedger, parse_time
from gateway.transfer.base import Zone


@dataclass(frozen=True)
class Copy:
    """A decrypted copy of some of the contract's slices, outside ``state_dir``."""

    path: Path
    names: tuple[str, ...]  # the slices in it
    export_id: int | None = None  # None: the store's copy of names[0]
    recorded: bool = True  # the kit wrote it there (False: found by its name in the store)


@dataclass(frozen=True)
class Plan:
    contract_id: str
    today: dt.date
    end: dt.date
    deadline: dt.date
    held: list[FileRow]  # received and not destroyed yet
    expected: list[FileRow]  # listed by a manifest, never received whole
    gone: list[FileRow]  # destroyed by an earlier run
    cases: int
    attestation: DocumentRow | None  # the latest
    copies: list[Copy] = field(default_factory=list)  # there, to destroy
    missing: list[Copy] = field(default_factory=list)  # recorded, no longer where written
    writing: list[str] = field(default_factory=list)  # exports being written by a live command

    @property
    def ended(self) -> bool:
        return self.today > self.end

    def refusal(self) -> str | None:
        if self.ended:
            if self.writing:
                return (f"an open --out or export is writing {', '.join(self.writing)} right "
                        "now; destroy when it is done")
            return None
        return (f"contract {self.contract_id} has not ended: it runs until {self.end} and "
                f"today is {self.today} (the gateway's time zone); its data may be destroyed "
                f"from {self.end + dt.timedelta(days=1)} and must be by {self.deadline}")

    def missing_text(self) -> str:
        listed = "; ".join(f"{c.path} ({', '.join(c.names)})" for c in self.missing)
        return (f"{len(self.missing)} decrypted copy(ies) the kit wrote are no longer where it "
                f"wrote them (moved, or deleted by hand): {listed}. Destroy them where they "
                "are now (or put them back), then run destroy again; if they are gone for "
                "certain, confirm it with --accept-missing")

    def lines(self) -> list[str]:
        store = [c for c in self.copies if c.export_id is None]
        exports = [c for c in self.copies if c.export_id is not None]
        out = [f"contract {self.contract_id}: ended {self.end}, deletion deadline {self.deadline}"
               if self.ended else f"contract {self.contract_id}: runs until {self.end}"]
        out.append(f"to destroy: {len(self.held)} file(s) kept encrypted in state_dir/files, "
                   f"{len(store)} decrypted copy(ies) in the store, {len(exports)} exported "
                   f"file(s), {self.cases} case id(s)")
        by_name = {c.names[0]: c.path for c in store}
        out += [f"  {f.name}" + (f" and {by_name[f.name]}" if f.name in by_name else "")
                for f in self.held]
        out += [f"  exported: {c.path}" for c in exports]
        if self.missing:
            out.append(f"not found: {self.missing_text()}")
        if self.gone:
            out.append(f"already destroyed: {len(self.gone)} file(s)")
        if self.attestation is not None:
            state = "sent" if self.attestation.uploaded_at else "to send"
            if self.attestation.outcome:
                state += f", the gateway's answer: {self.attestation.outcome}" + (
                    f" ({self.attestation.outcome_note})" if self.attestation.outcome_note else "")
            out.append(f"attestation {self.attestation.name}: {state}")
        if self.held and self.cases:
            out.append("send the contract's last results before destroying: afterwards the "
                       "kit no longer knows its case ids")
        return out


def plan(cfg: AgencyConfig, ledger: KitLedger, state: StateDir, contract_id: str,
         now: dt.datetime, ended: dt.date | None = None) -> Plan:
    """What destroying *contract_id* means now. The configured contract's end is
    ``contract_end``; an earlier one's is *ended* (``--ended``), which only it takes."""
    if contract_id == cfg.contract_id:
        if ended is not None and ended != cfg.contract_end:
            raise UsageError(f"--ended: contract {contract_id} is the configured one; its end "
                             f"is agency.toml contract_end ({cfg.contract_end})")
        end = cfg.contract_end
    else:
        if not ledger.batches(contract_id):
            raise UsageError(f"--contract: the kit never received a batch of contract "
                             f"{contract_id}")
        if ended is None:
            raise UsageError(f"--contract {contract_id}: the kit knows the end of contract "
                             f"{cfg.contract_id} only (agency.toml contract_end); for an "
                             f"earlier contract give its last day: --ended YYYY-MM-DD")
        end = ended
    rows = ledger.files(contract_id=contract_id)
    held = [f for f in rows if f.received_at and not f.destroyed_at]
    copies, missing = _copies(cfg, ledger, rows, held)
    attested = ledger.documents(kind=documents.ATTESTATION, scope=contract_id)
    return Plan(contract_id=contract_id, today=cfg.today(now), end=end,
                deadline=end + dt.timedelta(days=DELETION_DAYS), held=held,
                expected=[f for f in rows if not f.received_at and not f.destroyed_at],
                gone=[f for f in rows if f.destroyed_at],
                cases=ledger.count_cases(contract_id),
                attestation=attested[-1] if attested else None, copies=copies, missing=missing,
                writing=[e["path"] for e in ledger.exports() if e["written_at"] is None
                         and e["pid"] != os.getpid() and alive(e["pid"])])


def _regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except FileNotFoundError:
        return False


def _copies(cfg: AgencyConfig, ledger: KitLedger, rows: list[FileRow],
            held: list[FileRow]) -> tuple[list[Copy], list[Copy]]:
    """The decrypted copies of the contract's slices: those there, and those the kit
    recorded that are no longer where it wrote them."""
    there: list[Copy] = []
    missing: list[Copy] = []
    for f in held:
        if f.kind != "slice":
            continue
        paths: dict[Path, bool] = {}
        if f.stored_path:
            paths[Path(f.stored_path)] = True
        if cfg.store is not None:  # whatever the ledger says, the store's name for it
            paths.setdefault(cfg.store / f.name.removesuffix(".pgp"), False)
        for path, recorded in paths.items():
            if _regular(path):
                there.append(Copy(path, (f.name,), recorded=recorded))
            elif recorded and f.stored_at and f.decrypted != "destroyed":
                missing.append(Copy(path, (f.name,)))  # written whole, now gone from there
            elif os.path.lexists(path):  # a symlink or other thing planted in its place
                there.append(Copy(path, (f.name,), recorded=recorded))
    names = {f.name for f in rows}
    for e in ledger.exports():
        listed = tuple(n for n in str(e["names"]).split("\n") if n)
        if e["written_at"] is None or not names.intersection(listed):
            continue
        copy = Copy(Path(e["path"]), listed, export_id=int(e["id"]))
        if _regular(copy.path) or e["outcome"] == "destroying":
            there.append(copy)
        else:
            missing.append(copy)
    return there, missing


def execute(cfg: AgencyConfig, ledger: KitLedger, state: StateDir, crypto: KitCrypto,
            outbox: Zone, p: Plan, now: Callable[[], dt.datetime] = clock.now, *,
            accept_missing: bool = False) -> list[str]:
    """Destroy what *p* lists, then attest it; the lines to print."""
    if (why := p.refusal()) is not None:
        raise GatewayError(why)
    if p.missing and not accept_missing:
        raise GatewayError(f"nothing destroyed: {p.missing_text()}")
    lines = []
    for c in p.missing:  # the person confirmed these are gone
        files.destroy(c.path)  # a symlink in its place: only the link goes
        if c.export_id is None:
            ledger.mark_copy_destroying(c.names[0], missing=str(c.path))
        else:
            for name in c.names:
                ledger.mark_copy_destroying(name, missing=str(c.path))
            ledger.export_done(c.export_id, clock.iso(now()), outcome="missing")
        lines.append(f"not found, confirmed gone by you: {c.path}")
    for c in p.copies:
        if not c.recorded and not _regular(c.path):
            files.destroy(c.path)  # a symlink planted under a store name: only the link goes
            continue
        for name in c.names:
            if any(f.name == name for f in p.held) or c.export_id is None:
                ledger.mark_copy_destroying(name)
        if c.export_id is not None:
            ledger.export_done(c.export_id, clock.iso(now()), outcome="destroying")
        files.destroy(c.path)
        if c.export_id is not None:
            ledger.export_done(c.export_id, clock.iso(now()), outcome="destroyed")
            lines.append(f"destroyed the exported file {c.path}")
    for f in p.held:
        state.held(f.name).unlink(missing_ok=True)
        files.fsync_dir(state.held(f.name).parent)
        ledger.mark_destroyed(f.name, clock.iso(now()))
    for f in p.expected:  # never held: nothing to delete, nothing to attest
        ledger.mark_destroyed(f.name, clock.iso(now()))
    if cfg.store is not None and cfg.store.is_dir():  # a crashed decryption's half-written copy
        for leftover in cfg.store.glob(".*.part"):
            files.destroy(leftover)
    state.clear_tmp()  # downloads a kill interrupted: ciphertext, but the contract's
    for receipt in (state.root / "receipts").iterdir():  # receipts name case ids
        receipt.unlink(missing_ok=True)
    ledger.forget_receipt_bodies()
    ledger.forget_request_bodies()
    ledger.forget_cases(p.contract_id)
    lines.append(f"destroyed {len(p.held)} file(s) and the case ids of contract {p.contract_id}")
    doc = _current(ledger, p.contract_id)
    if doc is None:
        doc = _attestation(cfg, ledger, state, p.contract_id, now())
        if doc is None:
            lines.append("nothing was ever received under this contract: no attestation to send")
            return lines
    if doc.uploaded_at is None:
        name = send.upload(ledger, state, outbox, doc, crypto, now())
        lines.append(f"sent the deletion attestation {name} (a signed copy is kept in "
                     f"{state.attestation(name)})")
    else:
        lines.append(f"the deletion attestation {doc.name} was sent at {doc.uploaded_at}")
    return lines


def _current(ledger: KitLedger, contract_id: str) -> DocumentRow | None:
    """The latest attestation, if it still tells the whole truth: it lists every file
    received under the contract, and the gateway has not rejected it."""
    attested = ledger.documents(kind=documents.ATTESTATION, scope=contract_id)
    if not attested:
        return None
    doc = attested[-1]
    if doc.outcome == "rejected" or doc.body is None:
        return None
    listed = {o["name"] for o in json.loads(doc.body)["objects"]}
    received = {f.name for f in ledger.files(contract_id=contract_id) if f.received_at}
    return doc if listed == received else None


def _attestation(cfg: AgencyConfig, ledger: KitLedger, state: StateDir, contract_id: str,
                 now: dt.datetime) -> DocumentRow | None:
    """The attestation, recorded as to send, its JSON kept beside the signed copy."""
    objects = tuple(
        documents.Held(f.batch_id, f.name, f.sha256, parse_time(f.received_at or ""),
                       parse_time(f.destroyed_at or ""), f.decrypted)
        for f in ledger.files(contract_id=contract_id) if f.received_at)
    if not objects:
        return None
    if any(o.destroyed_at is None for o in objects):
        raise GatewayError("some files are not destroyed yet; run destroy again")
    doc = documents.Attestation(id=documents.new_id(), agency=cfg.code, contract_id=contract_id,
                                created_at=now, objects=objects)
    name = send.free_name(ledger, documents.ATTESTATION,
                          [f"{contract_id}.{cfg.code}", f"attestation-{doc.id}"])
    row = send.document_row(doc, name, contract_id)
    with files.atomic(state.attestation(name.removesuffix(".pgp")), tmp_dir=state.tmp) as fh:
        fh.write(doc.to_json())
    ledger.add_document(row)
    return row
