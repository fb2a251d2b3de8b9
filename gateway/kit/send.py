"""Sending to the gateway exactly once: acknowledgements, attestations, results files,
unmask requests.

A document goes through three recorded states, so that a crash at any point is mended
by running the command again and never produces a second document:

1. *to send* — its row in the ledger, with its id and (for the signed documents) its
   JSON; from here on its id is fixed;
2. *sealed* — ``outgoing/<name>``, signed and encrypted to the gateway, renamed into
   place whole. A restart uploads this very file; if it was lost before the rename, the
   JSON in the ledger is sealed again (same id, same content);
3. *uploaded* — ``write_atomic`` in the outbox (a temporary name, then the final one),
   then the ledger marks it. A restart that finds the name already in the outbox with
   the same size takes it as its own upload from before the crash.

A results file's plaintext is never kept: it is sealed into ``outgoing/`` first and
recorded after, so a pending results file is always already sealed. An unmask request is
signed by the requester's role key (named in its JSON), not by the agency's: sealed
again after a crash, it is signed by the same key.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from pathlib import Path

from gateway import clock, documents
from gateway.errors import GatewayError
from gateway.kit import files
from gateway.kit.crypto import KitCrypto
from gateway.kit.files import StateDir
from gateway.kit.ledger import DocumentRow, KitLedger
from gateway.transfer.base import NameTaken, Zone
from gateway.unmask import request as unmask_request

UNMASK = "unmask-request"  # documents.kind of a request (docs/formats.md §8.1)


def document_row(doc: documents.Document, name: str, scope: str) -> DocumentRow:
    return DocumentRow(id=doc.id, kind=doc.kind, name=name, scope=scope,
                       created_at=clock.iso(doc.created_at), body=doc.to_json(), uploaded_at=None)


def free_name(ledger: KitLedger, kind: documents.Kind, stems: list[str]) -> str:
    """The first of *stems* that makes a document name not used before (acks of one batch
    after the first get ``.2``, ``.3`` …)."""
    for stem in stems:
        for n in range(1, 1000):
            candidate = stem if n == 1 else f"{stem}.{n}"
            try:
                name = documents.file_name(kind, candidate)
            except ValueError:
                break  # too long for a document name: the next stem
            if not ledger.name_used(name):
                return name
    raise GatewayError(f"no free name for a {kind} among {stems}")


def seal_body(crypto: KitCrypto, state: StateDir, name: str, body: bytes,
              kind: str | None = None) -> Path:
    """*body* signed and sealed for the gateway into ``outgoing/``: an unmask request by the
    role key it names, every other document by the agency's signing key."""
    target = state.outgoing(name)
    with files.atomic(target, tmp_dir=state.tmp) as fh:
        if kind == UNMASK:
            role = unmask_request.parse(body).role
            with crypto.seal_as_role(role, fh) as w:
                w.write(body)
        else:
            with crypto.seal_for_gateway(fh) as w:
                w.write(body)
    return target


def _suffix(doc: DocumentRow) -> str:
    if doc.kind == documents.ACK:
        return documents.file_name(documents.ACK, "x")[1:]
    if doc.kind == documents.ATTESTATION:
        return documents.file_name(documents.ATTESTATION, "x")[1:]
    if doc.kind == UNMASK:
        return unmask_request.file_name("x")[1:]
    return ".csv.pgp"


def next_name(ledger: KitLedger, outbox: Zone, doc: DocumentRow) -> str:
    """A name for *doc* that neither the ledger nor the outbox has: its stem with ``.2``,
    ``.3`` … (as a batch's later acknowledgements are named)."""
    suffix = _suffix(doc)
    stem = re.sub(r"\.\d+$", "", doc.name.removesuffix(suffix))
    for n in range(2, 1000):
        name = f"{stem}.{n}{suffix}"
        if not ledger.name_used(name) and outbox.stat(name) is None:
            return name
    raise GatewayError(f"{doc.name}: no free name in the outbox for it")


def upload(ledger: KitLedger, state: StateDir, outbox: Zone, doc: DocumentRow,
           crypto: KitCrypto | None, now: dt.datetime) -> str:
    """Stages 2 and 3 for one document that is to send; the name it was sent under. A
    different file of its name in the outbox (not ours: another size) is left alone and
    the document sent under the next free name."""
    for _ in range(20):
        sealed = state.outgoing(doc.name)
        if not sealed.exists():
            if doc.body is None or crypto is None:
                raise GatewayError(f"{doc.name}: the sealed file to send is missing from "
                                   f"{sealed.parent} and cannot be made again; send it anew")
            seal_body(crypto, state, doc.name, doc.body, doc.kind)
        size = sealed.stat().st_size
        try:
            with sealed.open("rb") as fh:
                outbox.write_atomic(doc.name, fh)
            break
        except NameTaken:
            there = outbox.stat(doc.name)
            if there is not None and there.size == size:
                break  # our own upload, from a run a crash interrupted before recording it
            new = next_name(ledger, outbox, doc)
            sealed.replace(state.outgoing(new))
            kept = state.attestation(doc.name.removesuffix(".pgp"))
            if kept.exists():
                kept.replace(state.attestation(new.removesuffix(".pgp")))
            ledger.rename_document(doc.id, new)
            doc = dataclasses.replace(doc, name=new)
    else:
        raise GatewayError(f"{doc.name}: the outbox keeps refusing it; ask the bank's IT")
    ledger.mark_uploaded(doc.id, clock.iso(now))
    if doc.kind == documents.ATTESTATION:  # the agency's own evidence, kept
        kept = state.attestation(doc.name)
        if not kept.exists():
            sealed.replace(kept)
            files.fsync_dir(kept.parent)
    sealed.unlink(missing_ok=True)
    return doc.name


def send_pending(ledger: KitLedger, state: StateDir, outbox: Zone, crypto: KitCrypto | None,
                 now: dt.datetime) -> list[str]:
    """Upload every document an earlier run left to send; one line each."""
    lines = []
    for doc in ledger.documents(pending=True):
        name = upload(ledger, state, outbox, doc, crypto, now)
        lines.append(f"sent {name} (left to send by an earlier run)")
    return lines
