"""``gateway-agency destroy``: after the contract's end, every copy goes, and the agency
signs that it did.

A pure :func:`plan` says what would go (and whether it may: not while the contract
runs — "today" in the gateway's time zone on or before ``contract_end``); :func:`execute`
does it in an order a crash cannot spoil: each file's copies are deleted, *then* its
``destroyed_at`` recorded; the case ids forgotten; only when nothing is left the
:class:`~gateway.documents.Attestation` is built from the ledger (every file ever
received under the contract, when it was received and destroyed, whether a decrypted
copy existed) and sent exactly once (:mod:`.send`). Run again, it finishes what an
interrupted run left and never writes a second attestation.

What stays is evidence without personal data: the ledger's rows (names, hashes, times)
and, in ``state_dir/attestations/``, the signed attestation as sent and its JSON.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gateway import clock, documents
from gateway.errors import GatewayError, UsageError
from gateway.kit import files, send
from gateway.kit.config import AgencyConfig
from gateway.kit.crypto import KitCrypto
from gateway.kit.files import StateDir
from gateway.kit.ledger import DocumentRow, FileRow, KitLedger, parse_time
from gateway.transfer.base import Zone


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
    attestation: DocumentRow | None

    @property
    def ended(self) -> bool:
        return self.today > self.end

    def refusal(self) -> str | None:
        if self.ended:
            return None
        return (f"contract {self.contract_id} has not ended: it runs until {self.end} and "
                f"today is {self.today} (the gateway's time zone); its data may be destroyed "
                f"from {self.end + dt.timedelta(days=1)} and must be by {self.deadline}")

    def lines(self) -> list[str]:
        stored = [f for f in self.held if f.stored_path]
        out = [f"contract {self.contract_id}: ended {self.end}, deletion deadline {self.deadline}"
               if self.ended else f"contract {self.contract_id}: runs until {self.end}"]
        out.append(f"to destroy: {len(self.held)} file(s) kept encrypted in state_dir/files, "
                   f"{len(stored)} decrypted copy(ies) in the store, {self.cases} case id(s)")
        out += [f"  {f.name}" + (f" and {f.stored_path}" if f.stored_path else "")
                for f in self.held]
        if self.gone:
            out.append(f"already destroyed: {len(self.gone)} file(s)")
        if self.attestation is not None:
            state = "sent" if self.attestation.uploaded_at else "to send"
            out.append(f"attestation {self.attestation.name}: {state}")
        return out


def plan(cfg: AgencyConfig, ledger: KitLedger, state: StateDir, contract_id: str,
         now: dt.datetime) -> Plan:
    """What destroying *contract_id* means now. Only the configured contract: it is the
    one whose end the kit knows."""
    if contract_id != cfg.contract_id:
        raise UsageError(f"--contract: the kit knows the end of contract {cfg.contract_id} "
                         f"only (agency.toml contract_end), not of {contract_id}")
    rows = ledger.files(contract_id=contract_id)
    attested = ledger.documents(kind=documents.ATTESTATION, scope=contract_id)
    return Plan(contract_id=contract_id, today=cfg.today(now), end=cfg.contract_end,
                deadline=cfg.deletion_deadline,
                held=[f for f in rows if f.received_at and not f.destroyed_at],
                expected=[f for f in rows if not f.received_at and not f.destroyed_at],
                gone=[f for f in rows if f.destroyed_at],
                cases=ledger.count_cases(contract_id),
                attestation=attested[0] if attested else None)


def execute(cfg: AgencyConfig, ledger: KitLedger, state: StateDir, crypto: KitCrypto,
            outbox: Zone, p: Plan, now: Callable[[], dt.datetime] = clock.now) -> list[str]:
    """Destroy what *p* lists, then attest it; the lines to print."""
    if (why := p.refusal()) is not None:
        raise GatewayError(why)
    lines = []
    for f in p.held:
        if f.stored_path:
            files.destroy(Path(f.stored_path))
        state.held(f.name).unlink(missing_ok=True)
        files.fsync_dir(state.held(f.name).parent)
        ledger.mark_destroyed(f.name, clock.iso(now()), had_copy=f.stored_path is not None)
    for f in p.expected:  # never held: nothing to delete, nothing to attest
        ledger.mark_destroyed(f.name, clock.iso(now()), had_copy=False)
    if cfg.store is not None and cfg.store.is_dir():  # a crashed decryption's half-written copy
        for leftover in cfg.store.glob(".*.part"):
            files.destroy(leftover)
    ledger.forget_cases(p.contract_id)
    lines.append(f"destroyed {len(p.held)} file(s) and the case ids of contract {p.contract_id}")
    doc = p.attestation or _attestation(cfg, ledger, state, p.contract_id, now())
    if doc is None:
        lines.append("nothing was ever received under this contract: no attestation to send")
        return lines
    if doc.uploaded_at is None:
        send.upload(ledger, state, outbox, doc, crypto, now())
        lines.append(f"sent the deletion attestation {doc.name} (a signed copy is kept in "
                     f"{state.attestation(doc.name)})")
    else:
        lines.append(f"the deletion attestation {doc.name} was sent at {doc.uploaded_at}")
    return lines


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
