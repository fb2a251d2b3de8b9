"""The outbox: what is committed and not yet in its zone — slices, manifests, forwarded
results, certificates, reports, checkpoints and receipts — placed exactly once.

Every producer commits a row first (a delivery, a receipt) and stages its file; then
:func:`finish_pending` places what is pending, whoever committed it and whenever — in
the same pass, or after a crash, or on another node that took the lease over. A
delivery's *kind* says where its staged file is and what is audited once it is placed
(:data:`KINDS`): the outbox knows no producer, and the flows, checkpoints, reports and
retention hand it work without importing one another.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gateway import faults
from gateway.flows.receipts import receipt_name
from gateway.ledger import DeliveryRow, ReceiptRow
from gateway.ledger.schema import UNMASK_BATCH_PREFIX
from gateway.names import file_fields
from gateway.state import State
from gateway.transfer.base import NameTaken, Zone, ZoneError

if TYPE_CHECKING:
    from gateway.flows import Context


@dataclass(frozen=True)
class Kind:
    """How a delivery of one kind is placed."""

    source: Callable[[State, DeliveryRow], Path]  # where its staged file is
    event: str | None  # audited once placed (None: the document itself says where it went)
    drop: bool = False  # its staged copy is removed once placed (the bank holds it now)


def _staged(state: State, d: DeliveryRow) -> Path:
    if d.batch_id is not None and d.batch_id.startswith(UNMASK_BATCH_PREFIX):
        return _unmask(state, d)  # a one-off release: no file's staging (gateway.unmask)
    return state.staging(d.file_id or 0) / d.name  # removed with the file's staging


def _unmask(state: State, d: DeliveryRow) -> Path:
    return state.staging_root / "unmask" / d.name


def _checkpoint(state: State, d: DeliveryRow) -> Path:
    staged = state.staging_root / "checkpoints" / d.name
    if not staged.exists():  # sealed by a release that delivered from audit/checkpoints
        return state.root / "audit" / "checkpoints" / d.name
    return staged


KINDS: dict[str, Kind] = {
    "slice": Kind(_staged, "slice.delivered"),
    "manifest": Kind(_staged, "slice.delivered"),
    "results": Kind(_staged, "results.forwarded"),
    "certificate": Kind(lambda state, d: state.certificates / d.name, "certificate.delivered"),
    "report": Kind(lambda state, d: state.staging_root / "reports" / d.name, "report.delivered",
                   drop=True),
    "checkpoint": Kind(_checkpoint, None, drop=True),  # the node's own copy stays in audit/
    # an unmask request denied or expired, told to the agency (audited when decided)
    "notice": Kind(_unmask, None, drop=True),
}


def finish_pending(ctx: Context, *, kinds: Collection[str] | None = None) -> None:
    """Move committed files into their zones and send receipts; safe to repeat after a crash.

    A zone that fails is recorded (``ctx.zone_failed``) and skipped: what is
    pending for it stays pending for the next pass, and other zones go on.
    *kinds* limits the work to those deliveries (and sends no receipt). Each delivery
    and receipt runs under the pass's ``ctx.run.guard``: one that fails unexpectedly holds
    back no other — also when a flow calls this right after its commit, or a purge after
    its certificate.
    """
    for d in ctx.ledger.pending_deliveries():
        if d.zone in ctx.run.zone_errors or (kinds is not None and d.kind not in kinds):
            continue
        with ctx.run.guard("outbox"), ctx.leases.hold(f"delivery:{d.id}") as held:
            # Held by a live node: it delivers. Taken: another node may have finished it
            # between the listing and the claim.
            if held and ctx.ledger.delivery(d.id).delivered_at is None:
                _deliver(ctx, d)
    if kinds is not None:
        return
    for r in ctx.ledger.pending_receipts():
        if r.zone in ctx.run.zone_errors or r.input_zone in ctx.run.zone_errors:
            continue
        with ctx.run.guard("outbox"), ctx.leases.hold(f"receipt:{r.id}") as held:
            if not held:
                continue
            r = ctx.ledger.receipt(r.id)
            if r.sent_at is not None and r.input_removed_at is not None:
                continue
            try:
                _send_receipt(ctx, r)
            except ZoneError as exc:
                ctx.zone_failed(r.zone if r.sent_at is None else r.input_zone, exc)
    for staged in ctx.state.staging_root.iterdir():  # delivered or abandoned attempts
        if staged.name.isdigit() and ctx.ledger.staging_abandoned(int(staged.name)):
            shutil.rmtree(staged, ignore_errors=True)


def _deliver(ctx: Context, d: DeliveryRow) -> None:
    kind = KINDS[d.kind]
    src = kind.source(ctx.state, d)
    try:
        place(ctx.zones[d.zone], d.name, src, d.size)
    except ZoneError as exc:
        ctx.zone_failed(d.zone, exc)
        return
    faults.point("after_first_delivery")
    if not ctx.ledger.mark_delivered(d.id):
        return  # a node that lost this lease to us finished it too: it audited it
    ctx.metrics.bytes.labels(direction="out").inc(d.size)
    if kind.drop and src.is_relative_to(ctx.state.staging_root):
        src.unlink(missing_ok=True)
    if kind.event is not None:
        ctx.audit.record(kind.event, file=d.name, agency=d.agency_code, role=d.role,
                         batch_id=d.batch_id, records=d.records, zone=d.zone)


def _send_receipt(ctx: Context, r: ReceiptRow) -> None:
    src = ctx.state.staging_root / "receipts" / r.staged
    if r.sent_at is None:
        zone = ctx.zones[r.zone]
        name = r.name
        if name is None:  # choose once, remember, then write: a crash cannot pick ".2"
            name = receipt_name(r.input_name, lambda n: zone.stat(n) is not None)
            ctx.ledger.update_receipt(r.id, name=name)
        place(zone, name, src, src.stat().st_size)
        ctx.metrics.bytes.labels(direction="out").inc(src.stat().st_size)
        faults.point("after_receipt_written")
        ctx.ledger.update_receipt(r.id, sent_at=ctx.now())
        ctx.audit.record("receipt.sent", zone=r.zone, status=r.status,
                         **file_fields(name, r.file_sha256))
    if r.input_removed_at is None:
        ctx.zones[r.input_zone].remove(r.input_name)
        ctx.ledger.update_receipt(r.id, input_removed_at=ctx.now())
    src.unlink(missing_ok=True)


def place(zone: Zone, name: str, src: Path, size: int) -> None:
    """Write *src* as *name*; if a previous attempt already did (same size), that counts."""
    try:
        with src.open("rb") as fh:
            zone.write_atomic(name, fh)
    except NameTaken:
        existing = zone.stat(name)
        if existing is None or existing.size != size:
            raise ZoneError(f"{zone.key}: {name} exists with different content; "
                            "not overwriting it") from None
    except FileNotFoundError:  # staged file gone: only fine if the move already happened
        existing = zone.stat(name)
        if existing is None or existing.size != size:
            raise
