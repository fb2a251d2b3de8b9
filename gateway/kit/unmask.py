"""``gateway-agency unmask``: ask the bank to see more of named cases, and keep what it
releases only until the release expires (docs/formats.md §8).

**Asking.** A request names the cases, the fields wanted and one of the bank's purposes,
with a note for the approvers. It is the requester's own word: signed by the key of
their role that this installation holds (``agency.toml [roles]``), not the agency's
signing key, and the gateway seals the release to exactly that key. Before anything is
sent, the kit refuses what the gateway would refuse and the kit can know: the form (the
gateway's own parser, :func:`gateway.unmask.request.parse`: a note with a run of seven
or more digits, empty or repeated lists), a role whose key is not here, and cases that
are not cases of the configured contract's batches the kit holds. What only the bank
knows — its purposes, the fields each role may ask for, its monthly limits — its receipt
says. The request is sent exactly once as every document is (:mod:`.send`).

**Expiry.** A release (``unmask-<n>``) is taken like a batch by ``fetch``, with its
``expires_at``. The first kit command after that time destroys every copy the kit knows
of — its ciphertext, the store's decrypted copy, files written by ``open --out`` and
``export`` — as ``destroy`` does at the contract's end, and records when; the deletion
attestation at the contract's end lists them as destroyed then.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import stat
from collections.abc import Iterable
from pathlib import Path

from gateway import clock
from gateway.documents import DocumentError
from gateway.errors import UsageError
from gateway.kit import files, send
from gateway.kit.config import AgencyConfig
from gateway.kit.crypto import KitCrypto, alive
from gateway.kit.files import StateDir
from gateway.kit.ledger import DocumentRow, FileRow, KitLedger, parse_time
from gateway.names import display_name
from gateway.transfer.base import Zone
from gateway.unmask import request as unmask_request
from gateway.unmask.request import UnmaskRequest

MAX_SHOWN = 5  # case ids named in a refusal; the rest are counted


def split_list(text: str) -> list[str]:
    """``a,b, c`` as ``[a, b, c]``: the comma-separated --fields."""
    return [p.strip() for p in text.split(",") if p.strip()]


def read_cases(path: Path) -> list[str]:
    """A --cases-file: one case id per line; blank lines and lines beginning with ``#``
    ignored (a list copied from a spreadsheet, with a heading commented out)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise UsageError(f"--cases-file: cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"--cases-file: {path} is not UTF-8 text") from None
    return [s for line in text.splitlines() if (s := line.strip()) and not s.startswith("#")]


def build(cfg: AgencyConfig, ledger: KitLedger, *, role: str, purpose: str,
          fields: list[str], note: str, cases: list[str], now: dt.datetime) -> UnmaskRequest:
    """A new request (a random id, created now), or :class:`UsageError` — one line — for
    what the gateway would refuse and the kit can tell."""
    if role not in cfg.roles:
        held = ", ".join(sorted(cfg.roles))
        raise UsageError(f"--role: this installation holds no key of role {role} (agency.toml "
                         f"[roles]: {held}); a request is signed by the requester's own role key")
    if not cases:
        raise UsageError("no case ids: name them as arguments or in --cases-file")
    if not fields:
        raise UsageError("--fields: name at least one field, comma-separated (home_address,id_number)")
    req = UnmaskRequest(secrets.token_hex(16), cfg.code, role, purpose,
                        now.astimezone(dt.UTC).replace(microsecond=0), tuple(cases),
                        tuple(fields), note)
    try:
        req = unmask_request.parse(req.to_json())  # the gateway's own check of the form
    except DocumentError as exc:
        raise UsageError(f"not sent: {_option(exc.field)}{exc.message}") from None
    if cfg.today(now) > cfg.contract_end:
        raise UsageError(f"not sent: contract {cfg.contract_id} ended on {cfg.contract_end} "
                         "(agency.toml contract_end); its cases are no longer the agency's")
    live = ledger.live_cases(cfg.contract_id, req.cases)
    unknown = [c for c in req.cases if c not in live]
    if unknown:
        shown = ", ".join(unknown[:MAX_SHOWN]) + (f" and {len(unknown) - MAX_SHOWN} more"
                                                   if len(unknown) > MAX_SHOWN else "")
        raise UsageError(f"not sent: {len(unknown)} case id(s) are not cases of contract "
                         f"{cfg.contract_id} in the batches this kit holds: {shown}")
    return req


def _option(field: str | None) -> str:
    return {"cases": "case ids: ", "fields": "--fields: ", "note": "--note: ",
            "purpose": "--purpose: ", "role": "--role: "}.get(field or "", "")


def send_request(cfg: AgencyConfig, ledger: KitLedger, state: StateDir, crypto: KitCrypto,
                 outbox: Zone, req: UnmaskRequest, now: dt.datetime) -> str:
    """Record the request as to send, then seal (by the role key) and upload it once; the
    name it went under. A crash after the record is mended by the next ``fetch``."""
    crypto.role_signer(req.role)  # a key that cannot sign is refused before anything is recorded
    name = unmask_request.file_name(f"request-{req.id}")
    doc = DocumentRow(id=req.id, kind=send.UNMASK, name=name, scope=req.id,
                      created_at=clock.iso(req.created_at), body=req.to_json(), uploaded_at=None)
    ledger.add_unmask_request(doc, request_id=req.id, role=req.role, purpose=req.purpose,
                              fields=req.fields, cases=len(req.cases))
    return send.upload(ledger, state, outbox, doc, crypto, now)


def readable(ledger: KitLedger, crypto: KitCrypto, row: FileRow) -> bool:
    """Whether this installation can decrypt slice *row*: a batch's by its role's key, a
    release's only by the one key it is sealed to."""
    if row.role is None or not crypto.holds(row.role):
        return False
    release = ledger.release(row.batch_id)
    return release is None or crypto.holds_key(str(release["recipient"]))


def expired(ledger: KitLedger, batch_id: str, now: dt.datetime) -> str | None:
    """When release *batch_id* expired, if it has."""
    release = ledger.release(batch_id)
    if release is None or parse_time(str(release["expires_at"])) > now:
        return None
    return str(release["expires_at"])


def _regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except FileNotFoundError:
        return False


def expire(cfg: AgencyConfig, ledger: KitLedger, state: StateDir, now: dt.datetime) -> list[str]:
    """Destroy every copy of each release past its ``expires_at``; one line each. Each
    copy's destruction is recorded before it is done (as :mod:`.destroy` does), so a kill
    half-way is finished by the next command."""
    lines: list[str] = []
    for rel in ledger.releases():
        if rel["expired_at"] is not None or parse_time(str(rel["expires_at"])) > now:
            continue
        batch_id = str(rel["batch_id"])
        rows = ledger.files(batch_id=batch_id)
        if all(f.destroyed_at for f in rows):  # destroy at the contract's end came first
            ledger.mark_release_expired(batch_id, clock.iso(now))
            continue
        names = {f.name for f in rows}
        if writing := _exports_being_written(ledger, names):
            lines.append(f"release {batch_id} expired at {rel['expires_at']}, but an export of "
                         f"it is being written (process {writing}); it is destroyed with the "
                         "release's other copies by the next command")
            continue
        try:
            moved = _destroy_exports(ledger, names, now)
            for f in rows:
                if f.kind == "slice":
                    _destroy_store_copy(cfg, ledger, f)
                held = state.held(f.name)
                if held.exists():
                    held.unlink()
                    files.fsync_dir(held.parent)
                ledger.mark_destroyed(f.name, clock.iso(now))
        except OSError as exc:  # one copy that cannot go holds back no command: said, retried
            lines.append(f"release {batch_id} expired, but a copy could not be destroyed "
                         f"({exc.strerror or exc}: {display_name(str(exc.filename or ''))}); "
                         "the next command tries again")
            continue
        ledger.mark_release_expired(batch_id, clock.iso(now))
        lines.append(f"release {batch_id} (unmask request {str(rel['request_id'])[:8]}) expired "
                     f"at {rel['expires_at']}: every copy this kit held of it is destroyed")
        lines += [f"release {batch_id}: the exported file {p} is no longer where it was written "
                  "(moved, or deleted by hand); destroy it where it is now — destroy at the "
                  "contract's end asks about it again" for p in moved]
    return lines


def _destroy_store_copy(cfg: AgencyConfig, ledger: KitLedger, f: FileRow) -> None:
    paths = [Path(f.stored_path)] if f.stored_path else []
    if cfg.store is not None:
        paths.append(cfg.store / f.name.removesuffix(".pgp"))
    for path in dict.fromkeys(paths):
        if _regular(path):
            ledger.mark_copy_destroying(f.name)  # recorded first: a kill after still says so
        if os.path.lexists(path):
            files.destroy(path)  # a symlink in its place: only the link goes


def _exports_being_written(ledger: KitLedger, names: Iterable[str]) -> int | None:
    """The process writing an export of these slices right now, if any: its plaintext is
    not yet where :func:`_destroy_exports` looks, so the release must wait for it."""
    wanted = set(names)
    for e in ledger.exports():
        listed = {n for n in str(e["names"]).split("\n") if n}
        if e["written_at"] is None and wanted & listed and e["pid"] != os.getpid() \
                and alive(int(e["pid"])):
            return int(e["pid"])
    return None


def _destroy_exports(ledger: KitLedger, names: Iterable[str], now: dt.datetime) -> list[Path]:
    """The files ``open --out``/``export`` wrote of these slices: destroyed — also one whose
    command was killed (its partial plaintext, or its whole file if the kill came after the
    rename); those no longer where they were written, returned (left open for
    ``destroy``'s --accept-missing)."""
    wanted, moved = set(names), []
    for e in ledger.exports():
        listed = {n for n in str(e["names"]).split("\n") if n}
        if not wanted & listed:
            continue
        if e["written_at"] is None:  # its writer is gone (_exports_being_written said so)
            for name in listed & wanted:
                ledger.mark_copy_destroying(name)
            ledger.export_done(int(e["id"]), clock.iso(now), outcome="destroying")
            for leftover in (Path(e["part"]), Path(e["path"])):
                if os.path.lexists(leftover):
                    files.destroy(leftover)
            ledger.export_done(int(e["id"]), clock.iso(now), outcome="destroyed")
            continue
        path = Path(e["path"])
        if not _regular(path) and e["outcome"] != "destroying":
            moved.append(path)
            continue
        for name in listed & wanted:
            ledger.mark_copy_destroying(name)
        ledger.export_done(int(e["id"]), clock.iso(now), outcome="destroying")
        files.destroy(path)
        ledger.export_done(int(e["id"]), clock.iso(now), outcome="destroyed")
    return moved
