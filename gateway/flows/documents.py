"""The agency's signed documents — acknowledgements and deletion attestations
(docs/formats.md §7) — taken from its outbox like results files, on the same driver.

A document is small (only names, hashes and times), so it is read whole into memory,
under a cap, and judged in three steps: the envelope (encrypted to the gateway, signed
by one of *this* agency's keys — another agency's valid key is ``E_UNKNOWN_SIGNER``),
its form (:func:`gateway.documents.parse`, ``E_DOCUMENT``), and its truth against the
ledger: every listed file delivered to this agency by that name and ciphertext hash
(``E_NOT_DELIVERED``), the document's id never accepted before (``E_REPLAY``), and for
an attestation the agency's own contract (``E_WRONG_CONTRACT``), already ended
(``E_CONTRACT_ACTIVE``). A document is accepted or rejected whole: it is evidence, and
half of it is not.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import structlog

from gateway import clock, documents, outbox
from gateway.crypto.engine import E_TOO_LARGE, OpenedMessage
from gateway.documents import (
    ACK,
    ATTESTATION,
    Acknowledgement,
    Attestation,
    Document,
    DocumentError,
)
from gateway.errors import CryptoError
from gateway.flows import Context
from gateway.flows.arrival import (
    Arrival,
    Flow,
    Outcome,
    Reading,
    Rejection,
    commit_with_receipt,
    truncation,
)
from gateway.flows.receipts import ErrorList, Receipt
from gateway.ledger import AgencyDocumentRow, DeliveryRow, FileStatus
from gateway.names import display_name, file_fields
from gateway.state import file_sha256, write_private
from gateway.validation.cases import RowError

log = structlog.get_logger("gateway.documents")
SKEW = dt.timedelta(minutes=5)  # between the agency's clock and ours, as for results
BANK_IN = "bank.incoming"
_TYPE_NAMES = {ACK: "slice-acknowledgement", ATTESTATION: "deletion-attestation"}


@dataclass
class _Reading(Reading):
    document: Document | None = None
    form: DocumentError | None = None  # not the document its name says
    acknowledged: tuple[int, ...] = ()  # delivery ids an acknowledgement covers
    not_listed: int = 0  # attestations: deliveries to the agency it does not list


def _begin(_ctx: Context, _arrival: Arrival) -> _Reading | Rejection:
    return _Reading()  # the name chose this flow: it is a document name already


def _read(ctx: Context, arrival: Arrival, out: _Reading, _staging: Path) -> None:
    """Decrypt the whole document, then its form. Nothing is written: the plaintext is
    only in memory."""
    agency = arrival.channel.agency
    assert agency is not None  # noqa: S101 — invariant, not an input check
    data = read_whole(ctx, arrival, out, lambda raw: ctx.crypto.open_from_agency(agency, raw),
                      documents.MAX_BYTES)
    if data is None:
        return
    try:
        out.document = documents.parse(data, arrival.kind)  # type: ignore[arg-type]
    except DocumentError as exc:
        out.form = exc
    except Exception as exc:
        # fault, not the pass's: answered E_DOCUMENT, never retried as a poison file
        log.warning("document.unreadable", error=type(exc).__name__)
        out.form = DocumentError("E_DOCUMENT", "the document could not be read as one")


def read_whole(ctx: Context, arrival: Arrival, out: Reading,
               opener: Callable[[BinaryIO], OpenedMessage], limit: int) -> bytes | None:
    """A small signed document (an acknowledgement, an attestation, an unmask request)
    decrypted whole into memory under *limit* bytes — past it refused unread — then gpg's
    verdict; None (and ``out.crypto`` set) when the envelope fails."""
    archive = ctx.state.archived(arrival.sha256)
    with archive.open("rb") as raw, opener(raw) as msg:
        data = bytearray()
        try:
            for chunk in msg.chunks():
                data += chunk
                if len(data) > limit:
                    out.crypto = CryptoError(f"the document is larger than {limit} bytes",
                                             code=E_TOO_LARGE)
                    return None  # leaving the message stops gpg
        except CryptoError as exc:
            if exc.code != E_TOO_LARGE:  # our own gpg failed: processed again next pass
                raise
            out.crypto = exc
            return None
        try:
            out.verified = msg.verdict()
        except CryptoError as exc:
            out.crypto = truncation(exc, archive)
            return None
    return bytes(data)


def _verdict(ctx: Context, arrival: Arrival, out: _Reading) -> Rejection | None:
    """The envelope first (an unauthenticated document names no signer), then the form,
    then the truth of every listed file."""
    if out.crypto is not None:
        return Rejection.of_file(out.crypto.code, out.crypto.message)
    signer = out.verified.fingerprint if out.verified else None
    if out.form is not None or out.document is None or signer is None:
        form = out.form or DocumentError("E_DOCUMENT", "the document could not be read")
        return Rejection.one(form.code, form.message, signer, row=form.row, field=form.field)
    doc = out.document
    agency = arrival.channel.agency
    assert agency is not None  # noqa: S101 — invariant, not an input check
    listed = doc.files if isinstance(doc, Acknowledgement) else doc.objects
    if doc.agency != agency:
        return Rejection.one("E_DOCUMENT", f"the document names agency {doc.agency}, but it came "
                        f"through {agency}'s outbox", signer, field="agency", records=len(listed))
    if doc.created_at > ctx.now() + SKEW:
        return Rejection.one("E_DOCUMENT", "created_at lies in the future (check the clock of the "
                        "machine that wrote it)", signer, field="created_at", records=len(listed))
    if isinstance(doc, Attestation):
        for row, held in enumerate(doc.objects, start=1):
            assert held.destroyed_at is not None  # noqa: S101 — invariant, not an input check
            if held.destroyed_at > doc.created_at + SKEW:
                return Rejection.one("E_DOCUMENT", "destroyed after the attestation was written",
                                signer, row=row, field="destroyed_at", records=len(listed))
    if ctx.ledger.document_seen(doc.id) is not None:
        return Rejection.one("E_REPLAY", "a document with this id was accepted before; each "
                        "acknowledgement or attestation is sent once", signer, field="id",
                        records=len(listed))
    if isinstance(doc, Attestation):
        contract = ctx.cfg.agency(agency).contract
        if doc.contract_id != contract.id:
            return Rejection.one("E_WRONG_CONTRACT", f"the attestation is for contract {doc.contract_id}, "
                            f"but {agency}'s contract is {contract.id}", signer,
                            field="contract_id", records=len(listed))
        if ctx.today() <= contract.effective_end:
            return Rejection.one("E_CONTRACT_ACTIVE", f"contract {contract.id} runs until "
                            f"{contract.effective_end}; destroy and attest after it ends", signer,
                            field="contract_id", records=len(listed))
    delivered = ctx.ledger.delivered_to(agency, [h.sha256 for h in listed])
    errors = ErrorList()
    for row, held in enumerate(listed, start=1):
        d = delivered.get(held.sha256)
        if d is None or d.name != held.name or d.batch_id != held.batch_id:
            errors.add([RowError(row, None, "sha256", "E_NOT_DELIVERED",
                                 "no file of this name and SHA-256 was delivered to this "
                                 "agency in this batch")])
    if errors:
        return Rejection(errors.listed[0].code, errors, records=len(listed), signer=signer)
    if isinstance(doc, Acknowledgement):
        out.acknowledged = tuple(delivered[h.sha256].id for h in listed)
    else:
        out.not_listed = max(0, ctx.ledger.held_count(agency) - len(listed))
    out.records = out.accepted = len(listed)
    return None


def _commit(ctx: Context, arrival: Arrival, out: _Reading, _staging: Path) -> Outcome:
    doc, agency = out.document, arrival.channel.agency
    assert doc is not None and agency is not None and out.verified is not None  # noqa: S101 — invariant
    signer, now = out.verified.fingerprint, ctx.now()
    is_ack = isinstance(doc, Acknowledgement)
    row = AgencyDocumentRow(
        doc_id=doc.id, kind=doc.kind, agency_code=agency, file_id=arrival.id,
        contract_id=None if is_ack else doc.contract_id,  # type: ignore[union-attr]
        batch_id=doc.batch_id if is_ack else None,  # type: ignore[union-attr]
        created_at=doc.created_at, accepted_at=now, listed=out.records,
        not_listed=out.not_listed)
    extra: dict[str, object] = {"document": {"type": _TYPE_NAMES[doc.kind], "id": doc.id,
                                             "created_at": clock.iso(doc.created_at)}}
    if isinstance(doc, Attestation):
        extra["document"] |= {"contract_id": doc.contract_id,  # type: ignore[operator]
                              "not_listed": out.not_listed}
    else:
        extra["document"] |= {"batch_id": doc.batch_id}  # type: ignore[operator]
    receipt = Receipt(file=arrival.name, sha256=arrival.sha256, received_at=arrival.received_at,
                      status=FileStatus.ACCEPTED.value, signer=signer, records=out.records,
                      accepted=out.accepted, extra=extra)
    notice = _late_notice(ctx, arrival, doc, out) if isinstance(doc, Attestation) else None
    commit_with_receipt(ctx, arrival, receipt, lambda r: ctx.ledger.commit_document(
        file_id=arrival.id, document=row, acknowledged=out.acknowledged, receipt=r,
        delivery=notice, end={"signer": signer, "records": out.records,
                              "accepted": out.accepted, "rejected": 0, "batch_id": row.batch_id}))
    fields = file_fields(arrival.name, arrival.sha256)
    if isinstance(doc, Acknowledgement):
        ctx.audit.record("slice.acknowledged", agency=agency, batch_id=doc.batch_id,
                         files=out.records, document_id=doc.id, signer=signer, **fields)
    else:
        ctx.audit.record("agency.deletion_attested", agency=agency, contract_id=doc.contract_id,
                         files=out.records, not_listed=out.not_listed, document_id=doc.id,
                         signer=signer, **fields)
    log.info("document.accepted", kind=doc.kind, agency=agency, files=out.records)
    outbox.finish_pending(ctx)
    return Outcome.ACCEPTED


def _late_notice(ctx: Context, arrival: Arrival, doc: Attestation, out: _Reading
                 ) -> DeliveryRow | None:
    """An attestation accepted after the gateway's own purge came too late for its deletion
    certificate: the bank gets a signed notice that cites both (docs/formats.md §7.2)."""
    agency = ctx.cfg.agency(doc.agency)
    purge = ctx.ledger.purge(doc.contract_id)
    if purge is None or purge.finished_at is None:
        return None  # the certificate, when it is written, cites the attestation itself
    now = ctx.now()
    body = {
        "type": "deletion-attestation-notice",
        "contract_id": doc.contract_id,
        "agency": agency.code,
        "agency_name": agency.name,
        "certificate": purge.certificate,
        "noted_at": clock.iso(now),
        "gateway_key": ctx.crypto.fingerprint,
        "agency_attestation": documents.citation(
            name=display_name(arrival.name), sha256=arrival.sha256, doc_id=doc.id,
            created_at=doc.created_at, accepted_at=now, files=out.records,
            not_listed=out.not_listed),
    }
    name = f"deletion-attestation.{doc.contract_id}.{now.astimezone(dt.UTC):%Y%m%dT%H%M%SZ}.json.asc"
    path = ctx.state.certificates / name
    signed = ctx.crypto.clearsign(json.dumps(body, ensure_ascii=False, indent=2).encode() + b"\n")
    write_private(path, signed)  # a retried commit writes it again, the same way
    ctx.state.publish(path)
    return DeliveryRow(kind="certificate", agency_code=agency.code, zone=BANK_IN, name=name,
                       sha256=file_sha256(path), size=len(signed))


FLOW = Flow(begin=_begin, read=_read, verdict=_verdict, commit=_commit)
FLOWS = {ACK: FLOW, ATTESTATION: FLOW}
