"""The read side: every figure a person sees, computed once (DESIGN: "one read model").

`gateway status` and the console's Overview show the same zone health from
:func:`zone_health`; whatever the CLI prints and a console page shows comes from
here (or, for the audit log, from :mod:`gateway.audit`). Nothing here opens a key
or a zone: the console, which holds neither, uses it as the CLI does.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

from sqlalchemy import func, select

from gateway import audit
from gateway.config import Config
from gateway.crypto import keys
from gateway.errors import KeyPolicyError
from gateway.evidence import (
    ATTESTATION_DUE_DAYS,
    ATTESTATION_STATES,
    AcknowledgedInMonth,
    AgencyEvidence,
    Attested,
    EvidenceHealth,
    acknowledged_in,
    agency_evidence,
    attestation_state,
    evidence_health,
)
from gateway.ledger import (
    AccountRow,
    BatchRow,
    DeliveryRow,
    FileRow,
    Ledger,
    ReceiptRow,
    ResultFlagRow,
)
from gateway.names import display_name
from gateway.retention.policy import Decision, decision_of

# The agency's own evidence has a module of its own; its names are this face's too (callers
# read every figure from gateway.queries). What queries defines itself needs no listing.
__all__ = [
    "ATTESTATION_DUE_DAYS", "ATTESTATION_STATES", "AcknowledgedInMonth", "AgencyEvidence",
    "Attested", "EvidenceHealth", "acknowledged_in", "agency_evidence", "attestation_state",
    "evidence_health",
]


@dataclass(frozen=True)
class ZoneHealth:
    """A zone's health; the fields in the order `gateway status --json` has written them."""

    zone: str  # its config key path
    location: str
    last_scan: dt.datetime | None
    waiting: int
    last_error: str | None
    last_error_at: dt.datetime | None
    state: str  # ok | failing | unknown (never scanned)
    refused: list[dict[str, str]] = field(default_factory=list)  # name, reason


@dataclass(frozen=True)
class InHand:
    item: str
    node: str
    until: dt.datetime
    ran_out: bool


def zone_health(cfg: Config, ledger: Ledger) -> tuple[list[ZoneHealth], list[InHand]]:
    """Each configured zone as the daemon last saw it, and the work nodes hold leases on."""
    seen = {z.zone: z for z in ledger.zone_statuses()}
    refused: dict[str, list[dict[str, str]]] = {}
    for r in ledger.refused_files():
        refused.setdefault(r.zone, []).append({"name": display_name(r.name), "reason": r.reason})
    zones = []
    for key, spec in cfg.zones():
        z = seen.get(key)
        failing = bool(z and z.last_error_at and (z.last_scan_at is None
                                                  or z.last_error_at >= z.last_scan_at))
        zones.append(ZoneHealth(
            zone=key, location=spec.describe(),
            state="failing" if failing else "ok" if z and z.last_scan_at else "unknown",
            last_scan=z.last_scan_at if z else None, waiting=z.waiting if z else 0,
            last_error=z.last_error if z else None, last_error_at=z.last_error_at if z else None,
            refused=refused.get(key, [])))
    in_hand = [InHand(item, node, until, ran_out) for item, node, until, ran_out in ledger.work_in_hand()]
    return zones, in_hand


@dataclass(frozen=True)
class ForwardHealth:
    """A [[forward]] destination as `gateway status` shows it. Its first fields are a zone's
    (``zone`` is ``forward.<name>``, ``waiting`` the backlog, ``last_scan`` the last
    confirmed delivery), so a script reading ``status --json`` as a list of zones reads
    these rows too."""

    zone: str
    location: str
    last_scan: dt.datetime | None
    waiting: int
    last_error: str | None
    last_error_at: dt.datetime | None
    state: str  # ok | failing | unknown (nothing confirmed yet)
    refused: list[dict[str, str]]
    destination: str
    kind: str
    delivered_seq: int  # the last entry the receiver confirmed (0: none)
    backlog: int  # entries after it in this node's log (some may be ones it does not want)


def forward_health(cfg: Config, ledger: Ledger, node: str, log: audit.AuditLog) -> list[ForwardHealth]:
    """Each destination's cursor for this node's audit log (each node forwards its own)."""
    from gateway.forward.reader import last_seq  # the tail of the log, read without its lock

    rows = {r.destination: r for r in ledger.forward_cursors(node)}
    try:
        newest: int | None = last_seq(log.path)
    except OSError:  # a reader of the ledger who may not read the log: backlog unknown
        newest = None
    out = []
    for d in cfg.forward:
        r = rows.get(d.name)
        failing = bool(r and r.last_error)
        seq = r.seq if r else 0
        out.append(ForwardHealth(
            zone=f"forward.{d.name}", location=d.describe(),
            last_scan=r.delivered_at if r else None,
            waiting=max(0, newest - seq) if newest is not None else 0,
            last_error=r.last_error if r else None, last_error_at=r.last_error_at if r else None,
            state="failing" if failing else "ok" if r and r.delivered_at else "unknown",
            refused=[], destination=d.name, kind=d.kind, delivered_seq=seq,
            backlog=max(0, newest - seq) if newest is not None else 0))
    return out


# --- access (who has fetched what) -------------------------------------------------------

@dataclass(frozen=True)
class RoleAccess:
    agency: str
    role: str
    delivered: int
    collected: int
    waiting: int  # delivered, not yet collected, not purged
    oldest_waiting: dt.datetime | None  # when the oldest of those was delivered
    median_hours: float | None  # from delivery to collection
    max_hours: float | None


@dataclass(frozen=True)
class Step:
    at: dt.datetime
    what: str  # received | delivered | receipt | collected | purged
    detail: str


@dataclass(frozen=True)
class BatchTimeline:
    batch_id: str
    file: str
    received_at: dt.datetime
    accepted: int
    rejected: int
    steps: list[Step]


def access(cfg: Config, ledger: Ledger) -> list[RoleAccess]:
    """Per agency and role: slices delivered, collected, still waiting, and how long the
    agency took to fetch them. (Who fetched — the SSH login and address — joins this once
    the access evidence of docs/security-team.md is recorded.)"""
    rows: dict[tuple[str, str], list[DeliveryRow]] = {
        (a.code, r): [] for a in cfg.agencies for r in a.roles}
    with ledger.session(write=False) as s:
        for d in s.scalars(select(DeliveryRow).where(DeliveryRow.kind == "slice",
                                                     DeliveryRow.delivered_at.is_not(None))):
            rows.setdefault((d.agency_code, d.role or ""), []).append(d)
    out = []
    for (agency, role), ds in rows.items():
        hours = sorted((d.collected_at - d.delivered_at).total_seconds() / 3600
                       for d in ds if d.collected_at and d.delivered_at)
        waiting = [d for d in ds if d.collected_at is None and d.purged_at is None]
        out.append(RoleAccess(
            agency, role, len(ds), len(hours), len(waiting),
            min((d.delivered_at for d in waiting if d.delivered_at), default=None),
            hours[len(hours) // 2] if hours else None, hours[-1] if hours else None))
    return out


def batch_timelines(ledger: Ledger, limit: int = 20) -> list[BatchTimeline]:
    """The newest batches, each from the file received to every slice collected."""
    out = []
    with ledger.session(write=False) as s:
        batches = list(s.execute(select(BatchRow, FileRow).join(FileRow, FileRow.id == BatchRow.file_id)
                                 .order_by(BatchRow.committed_at.desc()).limit(limit)))
        for batch, file in batches:
            steps = [Step(file.received_at, "received", display_name(file.name))]
            for d in s.scalars(select(DeliveryRow).where(DeliveryRow.batch_id == batch.batch_id)
                               .order_by(DeliveryRow.id)):
                who = f"{d.agency_code} {d.role or 'manifest'}"
                if d.delivered_at:
                    steps.append(Step(d.delivered_at, "delivered", f"{who}: {d.records} rows"))
                if d.collected_at:
                    steps.append(Step(d.collected_at, "collected", who))
                if d.purged_at:
                    steps.append(Step(d.purged_at, "purged", who))
            for r in s.scalars(select(ReceiptRow).where(ReceiptRow.file_id == file.id)):
                if r.sent_at:
                    steps.append(Step(r.sent_at, "receipt", r.status))
            out.append(BatchTimeline(batch.batch_id, display_name(file.name), file.received_at,
                                     batch.accepted, batch.rejected,
                                     sorted(steps, key=lambda x: x.at)))
    return out


# --- case files and batches (`gateway batches`) ----------------------------------------
# Field names and order are those of the command's --json, which scripts read.

@dataclass(frozen=True)
class CaseFile:
    id: int
    file: str
    batch_id: str | None  # None: no batch was accepted from it
    status: str
    records: int
    accepted: int
    rejected: int
    error_code: str | None
    received_at: dt.datetime
    sha256: str


def case_files(ledger: Ledger, limit: int) -> list[CaseFile]:
    """The newest bank case files, accepted or not (a refused one is not a batch)."""
    return [CaseFile(f.id, f.name, f.batch_id, f.status, f.records, f.accepted, f.rejected,
                     f.error_code, f.received_at, f.sha256)
            for f in ledger.files(kind="case_file", limit=limit)]


@dataclass(frozen=True)
class BatchDelivery:
    name: str
    agency: str
    role: str | None  # None: the batch's manifest
    records: int
    sha256: str
    delivered_at: dt.datetime | None  # None: staged, not placed yet


@dataclass(frozen=True)
class BatchReceipt:
    name: str | None  # chosen when it is sent
    status: str
    sent_at: dt.datetime | None


@dataclass(frozen=True)
class BatchDetail:
    batch_id: str
    status: str
    file: str
    sha256: str
    signer: str | None
    received_at: dt.datetime
    records: int
    accepted: int
    rejected: int
    deliveries: list[BatchDelivery]
    receipts: list[BatchReceipt]


def batch_detail(ledger: Ledger, batch_id: str) -> BatchDetail | None:
    """One accepted batch with the file it came in, what went to each agency and the
    receipts to the bank: what an operator answers the bank's "where is batch X?" with."""
    found = ledger.batch_detail(batch_id)
    if found is None:
        return None
    b, f, deliveries, receipts = found
    return BatchDetail(
        b.batch_id, b.status, f.name, f.sha256, f.signer, f.received_at, b.records, b.accepted,
        b.rejected,
        [BatchDelivery(d.name, d.agency_code, d.role, d.records, d.sha256, d.delivered_at)
         for d in deliveries],
        [BatchReceipt(r.name, r.status, r.sent_at) for r in receipts])


# --- retention -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Held:
    decision: Decision
    slices: int  # slices and manifests in the agency's inbox: delivered, not purged
    bytes: int
    cases: int  # live cases
    certificate: str | None  # the deletion certificate's file name, once purged


def held(cfg: Config, ledger: Ledger, today: dt.date) -> list[Held]:
    """Each contract's retention state and what the ledger says the agency still holds."""
    out = []
    for a in cfg.agencies:
        purge = ledger.purge(a.contract.id)  # once: the state and the certificate both need it
        d = decision_of(cfg, a, purge, today)
        with ledger.session(write=False) as s:
            n, size = s.execute(select(func.count(), func.coalesce(func.sum(DeliveryRow.size), 0))
                                .where(DeliveryRow.agency_code == d.agency,
                                       DeliveryRow.kind.in_(("slice", "manifest")),
                                       DeliveryRow.delivered_at.is_not(None),
                                       DeliveryRow.purged_at.is_(None))).one()
        out.append(Held(d, int(n), int(size), ledger.live_case_count(d.agency),
                        purge.certificate if purge else None))
    return out


# --- keys -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class KeyView:
    owner: str  # gateway | bank | an agency code
    use: str  # what the gateway does with it
    key_path: str  # the config key that names the file
    fingerprint: str | None
    algorithm: str | None
    user_ids: tuple[str, ...]
    expires: dt.datetime | None
    problem: str | None  # why the key is refused or unreadable; None when in use


def configured_keys(cfg: Config) -> list[tuple[str, str, str, Path, keys.Purpose]]:
    """(owner, use, config key, file, purpose) of every *public* key the config names. The
    gateway's secret key is not among them: its public half is `console.gateway_public_keys`."""
    out = [("gateway", "signs receipts, slices, certificates, checkpoints",
            f"console.gateway_public_keys[{i}]", p, keys.Purpose.VERIFY)
           for i, p in enumerate(cfg.console.gateway_public_keys)]
    out += [("bank", "its signatures on case files are accepted", f"bank.signing_keys[{i}]", p,
             keys.Purpose.VERIFY) for i, p in enumerate(cfg.bank.signing_keys)]
    out += [("bank", "receipts, results and certificates are encrypted to it",
             f"bank.encrypt_to[{i}]", p, keys.Purpose.ENCRYPT) for i, p in enumerate(cfg.bank.encrypt_to)]
    for n, a in enumerate(cfg.agencies):
        out += [(a.code, "its signatures on result files are accepted",
                 f"agencies[{n}].signing_keys[{i}]", p, keys.Purpose.VERIFY)
                for i, p in enumerate(a.signing_keys)]
        for role, spec in a.roles.items():
            out += [(a.code, f"{role} slices are encrypted to it",
                     f"agencies[{n}].roles.{role}.encrypt_to[{i}]", p, keys.Purpose.ENCRYPT)
                    for i, p in enumerate(spec.encrypt_to)]
    return out


@dataclass(frozen=True)
class KeyFileVerdict:
    info: keys.KeyInfo
    problems: list[str]  # "<purpose>: why the policy refuses the file for it"; [] = it meets it

    @property
    def verdict(self) -> str:
        return "; ".join(self.problems) or "meets the key policy"


def key_file_verdict(path: Path) -> KeyFileVerdict:
    """A key file judged before any config names it, so for what a file of its kind is given
    to the gateway for: a secret one as the gateway's own (sign and decrypt), a public one as
    a partner's, to encrypt to and to verify with. Each use it fails is named on its own, so a
    key fit for one use only (a signing-only key) says so rather than failing as a whole."""
    info = keys.inspect(path)
    purposes = [keys.Purpose.GATEWAY] if info.secret else [keys.Purpose.ENCRYPT, keys.Purpose.VERIFY]
    problems = []
    for purpose in purposes:
        try:
            keys.check(path, purpose)
        except KeyPolicyError as exc:
            problems.append(f"{purpose.value}: {str(exc).removeprefix(f'{path}: ')}")
    return KeyFileVerdict(info, problems)


def subkey_state(key: keys.SubKey) -> str:
    """revoked | expired | valid: a revocation is final, so it is named even when the key
    has also expired."""
    return "revoked" if key.revoked else "expired" if key.expired else "valid"


def key_views(cfg: Config) -> list[KeyView]:
    """Each configured public key as the key policy judges it today (each file asked of
    gpg once: a refused key's listing is shown as well as judged)."""
    out = []
    listings = keys.Listings()
    for owner, use, key_path, path, purpose in configured_keys(cfg):
        info, problem = None, None
        try:
            info = keys.check(path, purpose, listings)
        except KeyPolicyError as exc:
            problem = str(exc).replace(str(path), path.name)
            try:
                info = keys.inspect(path, listings)  # refused, but readable: show what it is
            except KeyPolicyError:
                info = None
        out.append(KeyView(owner, use, key_path, info.fingerprint if info else None,
                           info.primary.description if info else None,
                           info.user_ids if info else (), info.expires if info else None, problem))
    return out


# --- compliance -----------------------------------------------------------------------------

FLAG_NAMES = ("HOURS", "ATTEMPTS", "THIRD_PARTY", "DISPUTE", "FRAUD", "LATE")


@dataclass(frozen=True)
class ComplianceDay:
    agency: str
    day: dt.date  # the local day the results arrived
    files: int
    rows: int  # accepted rows
    flags: dict[str, int]  # FLAG_NAMES -> rows flagged
    not_assigned: int  # rows about a case the agency does not hold (E_NOT_ASSIGNED)


def compliance(cfg: Config, ledger: Ledger,
               cross_agency: Callable[[audit.Filter], Iterable[dict[str, Any]]],
               since: dt.date) -> list[ComplianceDay]:
    """Per agency and local day from *since*: results files, accepted rows, rows per flag
    (the ledger) and ``E_NOT_ASSIGNED`` rows (the audit log's ``security.cross_agency``,
    which counts them for refused files too; *cross_agency* gives the entries a filter
    matches — the log read whole, or the console's index of it)."""
    tz = cfg.gateway.tz
    start = dt.datetime.combine(since, dt.time(), tz)
    days: dict[tuple[str, dt.date], dict[str, Any]] = {}

    def bucket(agency: str, at: dt.datetime) -> dict[str, Any]:
        if at.tzinfo is None:
            at = at.replace(tzinfo=dt.UTC)
        key = (agency, at.astimezone(tz).date())
        return days.setdefault(key, {"files": 0, "rows": 0, "flags": dict.fromkeys(FLAG_NAMES, 0),
                                     "not_assigned": 0})

    with ledger.session(write=False) as s:
        for f in s.scalars(select(FileRow).where(FileRow.kind == "results",
                                                 FileRow.received_at >= start)):
            b = bucket(f.agency_code or "", f.received_at)
            b["files"] += 1
            b["rows"] += f.accepted
            for flag in s.scalars(select(ResultFlagRow).where(ResultFlagRow.file_id == f.id)):
                if flag.flag in b["flags"]:
                    b["flags"][flag.flag] += flag.count
    for e in cross_agency(audit.Filter(event="security.cross_agency", since=start)):
        bucket(e.get("agency", ""), dt.datetime.fromisoformat(e["ts"].replace("Z", "+00:00"))
               )["not_assigned"] += int(e.get("count", 0))
    return [ComplianceDay(agency, day, v["files"], v["rows"], v["flags"], v["not_assigned"])
            for (agency, day), v in sorted(days.items(), key=lambda kv: (kv[0][1], kv[0][0]))]


# --- access evidence (docs/security-team.md) ------------------------------------------------------------

ACCESS_EVENTS = ("slice.accessed", "security.role_mismatch", "security.foreign_access",
                 "security.unknown_login")
ALARMS = ACCESS_EVENTS[1:]  # what a read can raise (security.unsafe_field only marks a value)


@dataclass(frozen=True)
class Read:
    """One read of a delivered file, as internal-sftp's log showed it."""

    at: dt.datetime
    agency: str
    role: str | None
    file: str
    login: str
    address: str | None
    bytes: int
    complete: bool
    alarm: str | None  # role_mismatch | foreign_access | unknown_login, if one was raised


def logged_reads(log: audit.AuditLog, flt: audit.Filter) -> list[Read]:
    """The reads that *flt* matches, from the audit log read whole (the reference reading;
    the console reads its index of the log instead)."""
    return reads(e for e in audit.search(log, flt) if e["event"] in ACCESS_EVENTS)


def reads(entries: Iterable[dict[str, Any]]) -> list[Read]:
    """The reads in *entries* (audit entries of :data:`ACCESS_EVENTS`, in log order), each
    with the security event it raised, if any (written right after it)."""
    out: list[Read] = []
    for e in entries:
        if e["event"] == "slice.accessed":
            out.append(Read(dt.datetime.fromisoformat(e["ts"].replace("Z", "+00:00")), e["agency"],
                            e.get("role"), e["file"], shown(e, "login", "unknown") or "", shown(e, "address"),
                            int(e.get("bytes", 0)), bool(e.get("complete")), None))
        elif out and e["event"] in ALARMS and out[-1].file == e.get("file") \
                and out[-1].login == shown(e, "login", "unknown") and out[-1].alarm is None:
            last = out[-1]
            out[-1] = Read(last.at, last.agency, last.role, last.file, last.login, last.address,
                           last.bytes, last.complete, e["event"].removeprefix("security."))
    return out


@overload
def shown(e: dict[str, Any], name: str, missing: str) -> str: ...
@overload
def shown(e: dict[str, Any], name: str, missing: None = None) -> str | None: ...
def shown(e: dict[str, Any], name: str, missing: str | None = None) -> str | None:
    """An outside value as recorded — or, where it fitted no audit pattern and was kept as
    its hash (``login_sha256``), the hash's start, marked: the log never held the text."""
    if name in e:
        return str(e[name])
    if f"{name}_sha256" in e:
        return f"sha256:{e[f'{name}_sha256'][:16]}"
    return missing


@dataclass(frozen=True)
class LoginSeen:
    agency: str
    role: str | None
    login: str
    addresses: tuple[str, ...]
    reads: int
    incomplete: int
    last: dt.datetime
    alarms: int


def logins(found: list[Read]) -> list[LoginSeen]:
    """Per agency, role and login: where from, how many reads, how many partial, the last."""
    groups: dict[tuple[str, str | None, str], list[Read]] = {}
    for r in found:
        groups.setdefault((r.agency, r.role, r.login), []).append(r)
    return [LoginSeen(a, role, login, tuple(sorted({r.address for r in rs if r.address})),
                      len(rs), sum(not r.complete for r in rs), max(r.at for r in rs),
                      sum(r.alarm is not None for r in rs))
            for (a, role, login), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], str(kv[0][1]),
                                                                              kv[0][2]))]


# --- console accounts ------------------------------------------------------------------------

@dataclass(frozen=True)
class AccountView:
    name: str
    role: str
    state: str  # disabled | locked | active: see account_state
    failures: int
    locked_until: dt.datetime | None  # only while the account is locked
    last_login: dt.datetime | None
    created: dt.datetime


def account_state(row: AccountRow, now: dt.datetime) -> str:
    """What a login to the account would meet at *now*. Disabled comes first: a lock that
    runs out does not enable an account, only a reset does. The console's login and
    session checks (``gateway.console.auth``) ask this too."""
    if row.disabled:
        return "disabled"
    return "locked" if row.locked_until is not None and row.locked_until > now else "active"


def accounts(ledger: Ledger, now: dt.datetime) -> list[AccountView]:
    """Every console account, by name, as it stands at *now*."""
    out = []
    for row in ledger.accounts():
        state = account_state(row, now)
        out.append(AccountView(row.name, row.role, state, row.failures,
                               row.locked_until if state == "locked" else None,
                               row.last_login_at, row.created_at))
    return out
