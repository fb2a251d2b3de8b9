"""How a file gets in, whatever its channel: pick-up, claims, duplicates, refusals.

A :class:`~gateway.flows.arrival.Channel` is one kind of input from one sender (the
bank's case files, one agency's result files). For each file in its zone::

    copy the ciphertext into the archive (hashing it) -> claim the SHA-256 ->
    remove it from the zone -> an Arrival, driven along its channel's flow
    (gateway.flows.arrival) -> commit or reject -> the outbox: move staged files into
    zones, send the receipt

Everything after the claim is recorded in the ledger before it happens in a
zone, and :func:`gateway.outbox.finish_pending` completes whatever a crash
interrupted, so a file is never lost, and no slice, forwarded file or receipt is
ever doubled.
"""

from __future__ import annotations

import collections
import datetime as dt
import secrets
from pathlib import Path

import structlog

from gateway import clock, faults, outbox
from gateway.crypto import packets
from gateway.flows import Context
from gateway.flows.arrival import (
    Arrival,
    Channel,
    Outcome,
    Rejection,
    guarded,
    reject,
    stage_receipt,
)
from gateway.flows.receipts import Receipt
from gateway.ledger import ClaimOutcome, ReceiptRow
from gateway.names import file_fields, name_fields
from gateway.state import copy_hashed
from gateway.streams import Readable
from gateway.transfer.base import (
    Entry,
    FileChanged,
    FileMissing,
    ZoneError,
    display_name,
)

log = structlog.get_logger("gateway.intake")

HEAD = 64 * 1024  # bytes read first to tell an encrypted message from anything else
def run_channel(ctx: Context, channel: Channel) -> collections.Counter[str]:
    """Resume files whose worker died, then take every ready file of the channel's zone;
    each file under ``ctx.run.guard``, so one that fails unexpectedly holds back no other."""
    outcomes: collections.Counter[str] = collections.Counter()
    zone = ctx.zones[channel.zone]
    if channel.zone in ctx.run.zone_errors:
        return outcomes
    try:
        for row in ctx.ledger.resumable(ctx.node, channel.kinds, zone=channel.zone):
            if ctx.run.stop.is_set():
                return outcomes
            if not ctx.ledger.take_file(row.id, ctx.node, ctx.leases.seconds):
                continue  # another node took it over first
            if row.lease_owner not in (None, ctx.node):
                log.warning("lease.taken_over", item=f"file:{row.id}", previous=row.lease_owner)
            with ctx.run.guard(channel.part, passing=(ZoneError,)), ctx.leases.keep_file(row.id):
                try:
                    _finish_pickup(ctx, channel, row.name, row.sha256, row.size)
                except ZoneError as exc:  # the copy in the zone (gone, changed, unreadable):
                    if exc.zone_level:   # the archive's and the claim are what count
                        raise
                    log.warning("file.left_in_zone", file_id=row.id, error=str(exc))
                archived = ctx.state.archived(row.sha256).exists()
                if not archived and row.lease_owner not in (None, ctx.node):
                    # Its node removed it from the zone: the copy must be in the archive —
                    # unless that node's archive is not the one this node sees.
                    log.error("file.not_in_shared_archive", file_id=row.id,
                              node=row.lease_owner, archive=str(ctx.state.archive))
                    continue
                arrival = Arrival(row.id, row.name, row.sha256, clock.aware(row.received_at),
                                  channel)
                _count(ctx, outcomes, arrival.kind, guarded(ctx, arrival) if archived
                       else guarded(ctx, arrival, reject_unencrypted))
        if (until := ctx.ledger.next_expiry(ctx.node, channel.kinds, channel.zone)) is not None:
            ctx.leases.saw_busy(until.timestamp())  # a live node's — or a dead one's, until then
        entries = zone.list_ready()
        ctx.ledger.forget_refused(channel.zone, {e.name for e in entries})
        for entry in entries:
            if ctx.run.stop.is_set():
                break
            with ctx.run.guard(channel.part, passing=(ZoneError,)):
                if entry.refused:
                    _count(ctx, outcomes, channel.kind_of(entry.name),
                           refuse(ctx, channel, entry.name, entry.refused))
                    continue
                _count(ctx, outcomes, channel.kind_of(entry.name), pick_up(ctx, channel, entry))
    except ZoneError as exc:  # this zone is unusable for now; the others go on
        ctx.zone_failed(channel.zone, exc)
    return outcomes


def _count(ctx: Context, outcomes: collections.Counter[str], kind: str, outcome: Outcome) -> None:
    outcomes[outcome] += 1
    if outcome.final:
        ctx.metrics.files.labels(channel=kind, outcome=outcome).inc()


def refuse(ctx: Context, channel: Channel, name: str, reason: str) -> Outcome:
    """An entry the gateway will not read — a symlink, a FIFO, a file it may not open. It is
    neither taken nor removed (there is nothing to answer: no content was read), but it is
    never silent: audited once as ``file.refused`` and listed by `gateway status` until
    someone removes it."""
    if ctx.ledger.note_refused(channel.zone, name, reason):
        ctx.audit.record("file.refused", zone=channel.zone, reason=reason, agency=channel.agency,
                         **name_fields(name))
        log.warning("file.refused", zone=channel.zone, name=display_name(name), reason=reason)
    return Outcome.REFUSED


def pick_up(ctx: Context, channel: Channel, entry: Entry) -> Outcome:
    """Take one file: archive its bytes, claim them, remove it, process it. A problem of
    this one file (gone, still changing, unreadable) is its own, never the zone's.

    Only an *encrypted* message is copied into the archive. A file that is not one — a
    plaintext CSV dropped by mistake, a signed-only or clear-signed document — may hold
    case data in the clear: it is hashed, never copied, removed from the zone and
    answered with ``E_NOT_ENCRYPTED`` (no plaintext on the gateway's disk, ever)."""
    zone = ctx.zones[channel.zone]
    received_at = ctx.now()
    tmp = ctx.state.temporary("incoming")
    try:
        with zone.open_read(entry.name) as src:
            sha, size, keep = _copy_if_encrypted(src, tmp)
    except (FileMissing, FileChanged) as exc:  # removed, or still being written: not yet
        tmp.unlink(missing_ok=True)
        log.info("file.not_ready", zone=zone.key, name=display_name(entry.name), reason=exc.code)
        return Outcome.NOT_READY
    except ZoneError as exc:
        tmp.unlink(missing_ok=True)
        if exc.zone_level:
            raise
        return refuse(ctx, channel, entry.name, "unreadable")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    faults.point("after_copy")
    ctx.metrics.bytes.labels(direction="in").inc(size)
    if ctx.ledger.open_receipt_for(zone.key, entry.name, sha) is not None:
        tmp.unlink(missing_ok=True)  # answered already; only the removal was interrupted
        outbox.finish_pending(ctx)
        return Outcome.ANSWERED
    claim = ctx.ledger.claim_file(sha256=sha, kind=channel.kind_of(entry.name), zone=zone.key,
                                  name=entry.name, size=size, owner=ctx.node,
                                  agency_code=channel.agency, lease_seconds=ctx.leases.seconds)
    if claim.outcome is ClaimOutcome.BUSY:
        tmp.unlink(missing_ok=True)
        return Outcome.BUSY
    if claim.outcome is ClaimOutcome.DUPLICATE:
        tmp.unlink(missing_ok=True)
        return _duplicate(ctx, channel, entry.name, sha, received_at, claim.file_id)
    archive = ctx.state.archived(sha)
    if archive.exists() or not keep:
        tmp.unlink(missing_ok=True)
    else:
        tmp.rename(archive)
    with ctx.leases.keep_file(claim.file_id):
        faults.point("after_claim")
        zone.remove(entry.name)  # durable in archive + ledger now
        ctx.audit.record("file.received", zone=zone.key, sha256=sha, bytes=size,
                         agency=channel.agency, **file_fields(entry.name, sha))
        arrival = Arrival(claim.file_id, entry.name, sha, received_at, channel)
        return guarded(ctx, arrival) if keep else guarded(ctx, arrival, reject_unencrypted)


def _copy_if_encrypted(src: Readable, tmp: Path | None) -> tuple[str, int, bool]:
    """Hash *src*, copying it to *tmp* only if it starts as an encrypted message; returns
    (SHA-256, size, copied)."""
    head = src.read(HEAD)
    keep = tmp is not None and packets.is_encrypted(head)
    sha, size = copy_hashed(src, tmp if keep else None, head=head)
    return sha, size, keep


def reject_unencrypted(ctx: Context, arrival: Arrival) -> Outcome:
    return reject(ctx, arrival, Rejection.of_file(
        "E_NOT_ENCRYPTED", "the file is not an OpenPGP message encrypted to the gateway "
        "(plaintext, signed-only or clear-signed?); it may hold personal data in the clear, so "
        "it was deleted unread and not kept — encrypt it to the gateway's key and send it again"))


def _finish_pickup(ctx: Context, channel: Channel, name: str, sha: str, size: int) -> None:
    """A worker died between claiming a file and removing it from the zone: remove it now —
    but only if the file there is still the one claimed (same size and SHA-256); archive
    it first if the archive copy was not made yet (never for an unencrypted file)."""
    zone = ctx.zones[channel.zone]
    entry = zone.stat(name)
    if entry is None or entry.size != size:
        return
    archived = ctx.state.archived(sha)
    tmp = ctx.state.temporary("verify")
    try:
        with zone.open_read(name) as src:
            current, _, keep = _copy_if_encrypted(src, None if archived.exists() else tmp)
        if current == sha:
            if keep:  # died before the archive rename
                tmp.rename(archived)
            zone.remove(name)
    finally:
        tmp.unlink(missing_ok=True)


def _duplicate(ctx: Context, channel: Channel, name: str, sha: str, received_at: dt.datetime,
               file_id: int) -> Outcome:
    original = ctx.ledger.file(file_id)
    receipt = Receipt(file=name, sha256=sha, received_at=received_at, status="duplicate",
                      signer=original.signer, batch_id=original.batch_id,
                      extra={"duplicate_of": {"file": display_name(original.name),
                                              "received_at": clock.iso(original.received_at)}})
    staged = stage_receipt(ctx, channel, f"dup-{secrets.token_hex(6)}", receipt)
    ctx.ledger.add_receipt(ReceiptRow(file_id=file_id, file_sha256=sha, input_zone=channel.zone,
                                      input_name=name, zone=channel.receipt_zone, staged=staged,
                                      status="duplicate"))
    ctx.audit.record("file.duplicate", zone=channel.zone, sha256=sha, batch_id=original.batch_id,
                     agency=channel.agency, **file_fields(name, sha))
    outbox.finish_pending(ctx)
    return Outcome.DUPLICATE
