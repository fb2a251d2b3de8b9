"""The alert rules: what each means and what to do (the text of every notice, and of
docs/operations.md, "Alerts"), and how each finds its conditions.

A condition's key is the rule and its subject — ``key_expiry:<fingerprint>``,
``purge_due:<contract>``, ``zone_down:<zone>`` — built only from values the audit log
may hold (fingerprints, contract ids, zone names, agency codes, console account names,
file names that passed the audit log's pattern), never personal data.

State rules look at the ledger and the read model each pass: their alert stays open while
the condition holds, and clears when it no longer does. Event rules look at audit entries
(:func:`from_entry`): each entry is a one-shot alert, cleared once its notices are sent.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from gateway.config.alerts import Window
from gateway.ledger import AccountRow, DeliveryRow, ZoneStatusRow
from gateway.ledger.alerting import Finding
from gateway.queries import AgencyEvidence
from gateway.retention.policy import Decision
from gateway.retention.policy import State as ContractState


@dataclass(frozen=True)
class Rule:
    name: str
    title: str  # what the subject line says after the rule's name
    advice: str  # one paragraph: what it means, what to do


RULES: dict[str, Rule] = {r.name: r for r in (
    Rule("security_event", "a security event in the audit log",
         "The audit log has a security.* entry: a file signed by a key that is not the "
         "sender's (security.bad_signature), a case sent to an agency it is not assigned to "
         "(security.cross_agency), a delivered file fetched by a login of another role or "
         "agency or by an unknown login (security.role_mismatch, security.foreign_access, "
         "security.unknown_login), or a value from outside that no field pattern admits "
         "(security.unsafe_field). Critical: each is one alert. Look at the entry with "
         "`gateway audit show --event <event>` (its seq is in this notice), find out who and "
         "why with the party concerned, and follow the bank's incident procedure; nothing is "
         "delivered for a file with a bad signature."),
    Rule("purge_due", "a contract's purge is due",
         "An agency's contract has ended and its data must be purged by the deadline in this "
         "notice: a warning a few days before (alerts.thresholds.purge_due_days), critical once "
         "the deadline has passed without a purge. The daemon purges at its first pass on the "
         "deadline day, so a warning is a reminder to check it will: `gateway retention status` "
         "and `gateway retention run --dry-run`, a gateway running, the agency's zones "
         "reachable. Critical means the purge did not happen: find why (`gateway retention "
         "status`, the operational log for pass.part_failed with part retention.<agency>), fix "
         "it and run `gateway retention run`. The alert clears when the contract is purged."),
    Rule("key_expiry", "a key expires soon, or has expired",
         "A key the gateway uses — its own, the bank's or an agency's — expires within "
         "alerts.thresholds.key_expiry_days (warning) or has expired (critical): an expired "
         "key is refused, so the files signed by it or encrypted to it stop. Ask the key's "
         "owner for a new key (or make the gateway's: docs/operations.md, \"Keys: rotation and "
         "expiry\"), check it with `gateway keys check`, add it to gateway.toml beside the old "
         "one and restart. The alert clears when the key is no longer configured or its expiry "
         "is extended."),
    Rule("uncollected", "slices not collected",
         "An agency has not collected slices delivered to its inbox more than "
         "alerts.thresholds.uncollected_days ago (default: console.stale_days). Its staff may "
         "not know the files are there, or cannot log in: ask the agency, and check its zone "
         "with `gateway status` and the console's Access page. The alert clears when the "
         "agency has taken every slice older than that (or its data is purged)."),
    Rule("unacknowledged", "delivered files not acknowledged by the agency",
         "An agency that runs the agency kit (agencies.acknowledge_within_days is set) has not "
         "acknowledged slices or manifests delivered more than that many days ago: its kit signs "
         "an acknowledgement of each batch it received whole, so the files may not have arrived "
         "whole, the kit may not be running, or its acknowledgements are being rejected. `gateway "
         "status` names the oldest batch; look for file.rejected entries from the agency's outbox "
         "(`gateway audit show --agency <agency>`) and ask the agency. The alert clears when every"
         " overdue file is acknowledged (or purged)."),
    Rule("attestation_missing", "an agency's deletion attestation is missing",
         "An agency that runs the agency kit has sent no deletion attestation for its contract, "
         "and 30 days have passed since the contract's effective end: the bank has only the "
         "gateway's deletion certificate, not the agency's own word that its copies are gone. Ask "
         "the agency to run the kit's attestation and send it; one it sent may have been rejected "
         "(file.rejected from its outbox, the receipt says why). `gateway status` and the "
         "console's Retention page show the state. The alert clears when an attestation for the "
         "contract is accepted."),
    Rule("file_rejected", "a file was rejected",
         "A file was rejected and quarantined (file.rejected in the audit log): it could not "
         "be decrypted or verified, or it failed validation; a receipt told the sender why. "
         "Look at the entry (`gateway audit show --file <name>`): the code says what was wrong. "
         "Usually the sender fixes and resends it; repeated rejections from one sender are "
         "worth a call. One alert per file, cleared once sent."),
    Rule("pass_failing", "a piece of the daemon's pass keeps failing",
         "A piece of the daemon's pass (named in the subject: the outbox, an agency's results "
         "or collections, a purge, the access log, a report, the checkpoint) has failed in "
         "alerts.thresholds.pass_failures passes in a row. The rest of the pass goes on; the "
         "piece is tried again every pass. The operational log (journalctl -u gateway) has "
         "pass.part_failed with the part and, for a bug, the traceback: a ledger or disk "
         "problem is the operator's to fix, anything else a defect to report with that line. "
         "The alert clears after a pass in which the piece succeeds."),
    Rule("zone_down", "a zone is unreachable",
         "A zone (an SFTP server or a directory) has not answered for "
         "alerts.thresholds.zone_down_minutes minutes. Run `gateway status` (the zone and its "
         "last error) and `gateway check` (which step fails: connection, host key, login, path, "
         "write). A zone.refused in the audit log means the server's host key changed: confirm "
         "the new key with its owners out of band before changing the config. Nothing is lost "
         "meanwhile: what is committed for the zone is delivered once it answers. The alert "
         "clears at the first pass that reaches it."),
    Rule("audit_verify", "the audit log does not verify",
         "The daemon checks its own audit log's chain daily and after each checkpoint, and "
         "the check failed: an entry was edited, removed or reordered, or the file was "
         "replaced. Treat it as an incident: keep a copy of the log as it is, run `gateway "
         "audit verify` (it names the first broken entry), compare with the SIEM's copy and "
         "the signed checkpoints, and find out who could write the file. The alert clears "
         "only when the log verifies again."),
    Rule("console_locked", "a console account is locked",
         "A console account was locked after repeated failed logins. If its owner did not "
         "mistype, someone is guessing: check the console.login_failed entries and their "
         "addresses (`gateway audit show --event console.login_failed`). The lock runs out by "
         "itself; `gateway users reset` gives the owner new credentials. The alert clears when "
         "the lock has run out or the account is reset."),
    Rule("account_change", "a console account changed outside the change window",
         "A console account was added, reset or disabled outside alerts.change_window (or no "
         "window is set). If the change was not planned, find out who made it (the entry's "
         "actor, `gateway audit show --event console.`) and undo it with `gateway users "
         "disable`. One alert per change, cleared once sent."),
    Rule("unmask_waiting", "unmask requests wait for approvers",
         "An agency asked to see named cases' fields unmasked (docs/operations.md, \"Unmasking "
         "by approval\") and the request waits for approver accounts to decide: `gateway unmask "
         "list` or the console's Requests page shows the agency, purpose, cases, fields and the "
         "requester's note. Approve or deny before the time to decide runs out (the request "
         "then expires and the agency is told). The alert clears when nothing waits."),
    Rule("unmask_limit", "an agency nears its monthly unmask limit",
         "An agency's unmask requests this month have reached 80 % of unmask.monthly_cases or "
         "unmask.monthly_releases; past the limit its requests are refused (E_UNMASK_LIMIT). "
         "Look at the register (`gateway unmask register --agency <agency>`): many requests "
         "may be real work, or a member asking for more than the cases need. The alert clears "
         "at the next month, or when the limit is raised."),
    Rule("test", "a test alert",
         "`gateway alerts test` sent this to prove the path from the gateway to you works. "
         "Nothing needs doing."),
)}

def key_hash(key: str) -> str:
    """A condition key as the audit log holds it (``alert_sha256``)."""
    return hashlib.sha256(key.encode()).hexdigest()


SECURITY_FIELDS = ("file", "agency", "zone", "role", "batch_id")
_ACCOUNT_EVENTS = ("console.account_added", "console.account_reset", "console.account_disabled")


def from_entry(entry: dict[str, Any], node: str, tz: dt.tzinfo,
               window: Window | None) -> Finding | None:
    """The one-shot alert an audit entry is, if any."""
    event, seq = str(entry.get("event", "")), entry.get("seq")
    when = f"at {entry.get('ts')}, audit entry {seq} on {node}"
    if event.startswith("security."):
        about = ", ".join(f"{k} {entry[k]}" for k in SECURITY_FIELDS if k in entry)
        return Finding(f"security_event:{node}:{seq}", "security_event", "critical", event,
                       f"{event}{f' ({about})' if about else ''} {when}", oneshot=True)
    if event == "file.rejected" and (name := entry.get("file") or entry.get("sha256")):
        # a name the audit log would not take is there only as its content's SHA-256
        codes = ", ".join(entry.get("codes") or [entry.get("code", "")])
        where = f" in {entry['zone']}" if "zone" in entry else ""
        # the key by the name's hash: a sender's name may be 255 characters, the key's
        # column is 200 (PostgreSQL refuses longer, and the sync would fail every pass)
        ident = hashlib.sha256(str(name).encode()).hexdigest()
        return Finding(f"file_rejected:{ident}", "file_rejected", "warning", str(name)[:160],
                       f"{name} rejected{where}{f' ({codes})' if codes else ''} {when}"[:500],
                       oneshot=True)
    if event in _ACCOUNT_EVENTS and "account" in entry:
        ts = dt.datetime.fromisoformat(str(entry["ts"]).replace("Z", "+00:00")).astimezone(tz)
        if window is not None and window.contains(ts):
            return None
        what = event.removeprefix("console.account_")
        return Finding(f"account_change:{entry['account']}:{seq}", "account_change", "warning",
                       str(entry["account"]), f"account {entry['account']} {what} by "
                       f"{entry.get('actor')} {when} (local time {ts:%a %H:%M})", oneshot=True)
    return None


def purges(decisions: Iterable[Decision], within_days: int) -> list[Finding]:
    """A contract not yet purged whose deadline is *within_days* away (warning) or past
    (critical)."""
    out = []
    for d in decisions:
        if d.state is ContractState.PURGED or d.days_left > within_days:
            continue
        if d.days_left < 0:
            sev, detail = "critical", f"purge of {d.agency} overdue since {d.deadline}"
        else:
            sev, detail = "warning", f"purge of {d.agency} due {d.deadline} ({d.days_left} days)"
        out.append(Finding(f"purge_due:{d.contract_id}", "purge_due", sev, d.contract_id, detail))
    return out


def key_expiries(keys: Iterable[tuple[str, str, dt.datetime | None]], now: dt.datetime,
                 within_days: int) -> list[Finding]:
    """*keys*: (fingerprint, whose and what for, expiry) of every configured key."""
    out: dict[str, Finding] = {}
    for fingerprint, what, expires in keys:
        if expires is None or expires - now > dt.timedelta(days=within_days):
            continue
        if expires <= now:
            sev, detail = "critical", f"{what}: expired {expires:%Y-%m-%d %H:%M} UTC"
        else:
            sev, detail = "warning", f"{what}: expires {expires:%Y-%m-%d %H:%M} UTC"
        if fingerprint not in out or sev == "critical":
            out[fingerprint] = Finding(f"key_expiry:{fingerprint}", "key_expiry", sev,
                                       fingerprint, detail)
    return list(out.values())


def uncollected(waiting: dict[str, list[DeliveryRow]], now: dt.datetime,
                days: int) -> list[Finding]:
    """*waiting*: each agency's delivered, uncollected slices."""
    out = []
    cutoff = now - dt.timedelta(days=days)
    for agency, rows in sorted(waiting.items()):
        old = [r for r in rows if r.delivered_at is not None and r.delivered_at <= cutoff]
        if old:
            first = min(r.delivered_at for r in old if r.delivered_at is not None)
            out.append(Finding(f"uncollected:{agency}", "uncollected", "warning", agency,
                               f"{len(old)} file(s) delivered to {agency} not collected after "
                               f"{days} days (oldest {first:%Y-%m-%d})"))
    return out


def unacknowledged(evidence: Iterable[AgencyEvidence]) -> list[Finding]:
    """An agency with the kit and files overdue for acknowledgement (the read model's
    count: :func:`gateway.queries.agency_evidence`)."""
    return [Finding(f"unacknowledged:{e.agency}", "unacknowledged", "warning", e.agency,
                    f"{e.agency}: {e.acknowledgements_text}")
            for e in evidence if e.expected and e.overdue]


def attestations_missing(evidence: Iterable[AgencyEvidence]) -> list[Finding]:
    """A contract whose deletion attestation was due and has not come."""
    return [Finding(f"attestation_missing:{e.contract_id}", "attestation_missing", "critical",
                    e.contract_id, f"deletion attestation of {e.agency} for contract "
                    f"{e.contract_id} (ended {e.effective_end}): {e.attestation_text}")
            for e in evidence if e.state == "missing"]


def zones_down(statuses: Iterable[ZoneStatusRow], now: dt.datetime, minutes: int,
               first_failing: dict[str, dt.datetime]) -> list[Finding]:
    """A zone failing since its last good scan (or, never scanned, since this engine first
    saw it failing: *first_failing*, kept up to date here) at least *minutes* ago."""
    out = []
    for z in statuses:
        failing = z.last_error_at is not None and (z.last_scan_at is None
                                                   or z.last_error_at >= z.last_scan_at)
        if not failing:
            first_failing.pop(z.zone, None)
            continue
        since = z.last_scan_at or first_failing.setdefault(z.zone, now)
        if now - since >= dt.timedelta(minutes=minutes):
            out.append(Finding(f"zone_down:{z.zone}", "zone_down", "critical", z.zone,
                               f"{z.zone} unreachable since {since:%Y-%m-%d %H:%M} UTC"))
    return out


def locked_accounts(rows: Iterable[AccountRow], now: dt.datetime) -> list[Finding]:
    return [Finding(f"console_locked:{r.name}", "console_locked", "warning", r.name,
                    f"account {r.name} locked until {r.locked_until:%Y-%m-%d %H:%M} UTC")
            for r in rows if not r.disabled and r.locked_until is not None
            and r.locked_until > now]


def failing_parts(streaks: dict[str, int], node: str, threshold: int) -> list[Finding]:
    return [Finding(f"pass_failing:{node}:{part}", "pass_failing", "critical", part,
                    f"{part} failed in the last {n} passes on {node}")
            for part, n in sorted(streaks.items()) if n >= threshold]


def audit_broken(problem: str | None, node: str) -> list[Finding]:
    if problem is None:
        return []
    return [Finding(f"audit_verify:{node}", "audit_verify", "critical", node,
                    f"the audit log on {node} does not verify: {problem}")]


def unmask_waiting(pending: Iterable[tuple[str, str, dt.datetime]]) -> list[Finding]:
    """*pending*: (agency, purpose, decide by) of each request waiting for approvers; one
    alert for all of them, so approvers get one notice, not one per request."""
    rows = sorted(pending, key=lambda p: p[2])
    if not rows:
        return []
    agencies = ", ".join(sorted({a for a, _, _ in rows}))
    return [Finding("unmask_waiting:all", "unmask_waiting", "warning", agencies,
                    f"{len(rows)} unmask request(s) from {agencies} wait for approvers; the "
                    f"first must be decided by {rows[0][2]:%Y-%m-%d %H:%M} UTC")]


def unmask_limits(usage: Iterable[tuple[str, int, int | None, int, int | None]]
                  ) -> list[Finding]:
    """*usage*: (agency, requests, monthly_releases, cases, monthly_cases) this month."""
    out = []
    for agency, requests, max_requests, cases, max_cases in usage:
        near = [f"{used} of {limit} {what}" for used, limit, what in (
            (requests, max_requests, "requests"), (cases, max_cases, "cases"))
            if limit is not None and used * 5 >= limit * 4]
        if near:
            out.append(Finding(f"unmask_limit:{agency}", "unmask_limit", "warning", agency,
                               f"{agency}: {' and '.join(near)} this month"))
    return out
