"""``gateway-agency status``: what the kit holds and owes, per contract, from its ledger.

Counts, names and dates only: how many batches and files are held, how many cases,
which batches are not acknowledged yet, the receipts by status, the contract's end and
the date by which its data must be destroyed, and whether it was destroyed and attested;
the unmask requests sent from here with the gateway's last word on each (its receipt,
or a decision notice), and the one-off releases held with their expiry.
"""

from __future__ import annotations

import collections
import datetime as dt
from typing import Any

from gateway import documents
from gateway.kit.config import AgencyConfig
from gateway.kit.ledger import DocumentRow, KitLedger, parse_time


def collect(cfg: AgencyConfig, ledger: KitLedger, now: dt.datetime) -> dict[str, Any]:
    contracts = sorted({b["contract_id"] for b in ledger.batches()} | {cfg.contract_id})
    pending = ledger.documents(pending=True)
    asked = {r["request_id"] for r in ledger.unmask_requests()}
    receipts = collections.Counter(r["status"] or "encrypted" for r in ledger.receipts())
    out: dict[str, Any] = {"agency": cfg.code, "today": cfg.today(now), "contracts": [],
                           "receipts": dict(sorted(receipts.items())),
                           "to_send": [d.name for d in pending],
                           "unmask_requests": [_request(r) for r in ledger.unmask_requests()],
                           "releases": [_release(r, now) for r in ledger.releases()],
                           "decisions_elsewhere": [_decision(d) for d in ledger.decisions()
                                                   if d["request_id"] not in asked]}
    releases = {r["batch_id"] for r in out["releases"]}
    for contract in contracts:
        batches = ledger.batches(contract)
        rows = ledger.files(contract_id=contract)
        received = [f for f in rows if f.received_at]
        own = [f for f in received if f.batch_id not in releases]  # a release's go at its expiry
        attested = ledger.documents(kind=documents.ATTESTATION, scope=contract)
        entry: dict[str, Any] = {
            "contract_id": contract,
            "batches": len(batches),
            "files_held": sum(1 for f in received if not f.destroyed_at),
            "decrypted_in_store": sum(1 for f in received if f.stored_path and not f.destroyed_at),
            "files_destroyed": sum(1 for f in own if f.destroyed_at),
            "not_received_whole": sorted(f.name for f in rows
                                         if not f.received_at and not f.destroyed_at),
            "cases": ledger.count_cases(contract),
            "unacknowledged_batches": [b["batch_id"] for b in batches if not b["acknowledged_at"]],
            "destroyed": bool(own) and all(f.destroyed_at for f in own),
            "attested": bool(attested) and attested[-1].uploaded_at is not None
            and attested[-1].outcome != "rejected",
            "attestation": None if not attested else {
                "name": attested[-1].name, "sent_at": attested[-1].uploaded_at,
                "outcome": _outcome(attested[-1]), "note": attested[-1].outcome_note},
            "rejected_acknowledgements": [
                f"{d.name} ({d.outcome_note or 'no code'})"
                for d in ledger.documents(kind=documents.ACK) if d.outcome == "rejected"
                and d.scope in {b["batch_id"] for b in batches}],
        }
        if contract == cfg.contract_id:
            entry |= {"contract_end": cfg.contract_end, "deletion_deadline": cfg.deletion_deadline,
                      "ended": cfg.today(now) > cfg.contract_end}
        out["contracts"].append(entry)
    return out


def lines(report: dict[str, Any]) -> list[str]:
    out = [f"agency {report['agency']}, today {report['today']}"]
    for c in report["contracts"]:
        head = f"contract {c['contract_id']}"
        if "contract_end" in c:
            head += (f": {'ended' if c['ended'] else 'runs until'} {c['contract_end']}, data to be "
                     f"destroyed by {c['deletion_deadline']}")
        out.append(head)
        out.append(f"  {c['batches']} batch(es), {c['files_held']} file(s) held "
                   f"({c['decrypted_in_store']} decrypted in the store), {c['cases']} case(s)")
        if c["unacknowledged_batches"]:
            out.append(f"  not acknowledged: {', '.join(c['unacknowledged_batches'])}")
        if c["not_received_whole"]:
            out.append(f"  listed but not received whole: {', '.join(c['not_received_whole'])}")
        if c["rejected_acknowledgements"]:
            out.append("  acknowledgements rejected by the gateway: "
                       + ", ".join(c["rejected_acknowledgements"]))
        if c["destroyed"] or c["files_destroyed"]:
            out.append(f"  destroyed: {c['files_destroyed']} file(s); "
                       + _attestation_words(c["attestation"]))
    for q in report["unmask_requests"]:
        word = q["status"] if q["sent_at"] else "not sent yet (run fetch)"
        if q["status"] == "pending" and q["decide_by"]:
            word += f", to be decided by {q['decide_by']}"
        elif q["note"]:
            word += f" ({q['note']})"
        out.append(f"unmask request {q['request_id'][:8]} ({q['role']}, {q['purpose']}: "
                   f"{', '.join(q['fields'])}; {q['cases']} case(s)): {word}")
    for d in report["decisions_elsewhere"]:
        why = f" ({d['reason']})" if d["reason"] else ""
        out.append(f"unmask request {d['request_id'][:8]} (not sent from this installation): "
                   f"{d['status']} {d['decided_at']}{why}")
    for r in report["releases"]:
        if r["expired_at"]:
            state = f"expired {r['expires_at']}, its copies destroyed {r['expired_at']}"
        else:
            state = f"held until {r['expires_at']}, then destroyed by the next kit command"
        out.append(f"release {r['batch_id']} (unmask request {r['request_id'][:8]}, "
                   f"{r['purpose']}: {', '.join(r['fields'])}): {state}")
    receipts = ", ".join(f"{k} {v}" for k, v in report["receipts"].items()) or "none"
    out.append(f"receipts: {receipts}")
    if report["to_send"]:
        out.append(f"to send (run fetch): {', '.join(report['to_send'])}")
    return out


def _request(r: Any) -> dict[str, Any]:
    return {"request_id": r["request_id"], "name": r["name"], "role": r["role"],
            "purpose": r["purpose"], "fields": str(r["fields"]).split(","), "cases": r["cases"],
            "created_at": r["created_at"], "sent_at": r["uploaded_at"], "status": r["status"],
            "note": r["status_note"], "decide_by": r["decide_by"]}


def _decision(d: Any) -> dict[str, Any]:
    return {"request_id": d["request_id"], "status": d["status"], "decided_at": d["decided_at"],
            "reason": d["reason"]}


def _release(r: Any, now: dt.datetime) -> dict[str, Any]:
    return {"batch_id": r["batch_id"], "request_id": r["request_id"], "purpose": r["purpose"],
            "fields": str(r["fields"]).split(","), "recipient": r["recipient"],
            "contract_id": r["contract_id"], "expires_at": r["expires_at"],
            "expired": parse_time(str(r["expires_at"])) <= now, "expired_at": r["expired_at"]}


def _outcome(doc: DocumentRow) -> str:
    if doc.uploaded_at is None:
        return "not sent yet"
    return doc.outcome or "no receipt yet"


def _attestation_words(a: dict[str, Any] | None) -> str:
    if a is None:
        return "attestation not made yet (run destroy)"
    outcome, note = a["outcome"], a["note"]
    if outcome == "not sent yet":
        return f"attestation {a['name']} not sent yet (run fetch or destroy)"
    head = f"attestation {a['name']} sent {a['sent_at']}"
    if outcome == "rejected":
        return (f"{head}, rejected: {note or 'no code'} — run destroy again to send a new "
                "one once the cause is fixed")
    if outcome == "unknown":
        return f"{head}; the gateway's answer is unknown: {note}"
    if outcome == "no receipt yet":
        return f"{head}; no receipt from the gateway yet (run fetch)"
    return f"{head}; the gateway's answer: {outcome}"
