"""The agency's signed documents at the gateway (docs/formats.md §7): acknowledgements and
deletion attestations taken from the outbox, checked against what was delivered, and
refused with a receipt when they are not true — written here by hand, as a hostile or
careless agency might, not by the kit."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import pytest

from gateway import audit, documents, synth
from gateway.documents import Acknowledgement, Attestation, Held
from gateway.ledger import DeliveryRow, Ledger
from tests.flowsite import Site
from tests.integration.test_retention import end_contract

pytestmark = pytest.mark.integration
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


@pytest.fixture
def site(tmp_path, keybox):
    s = Site(tmp_path / "site", keybox)
    s.records = list(synth.cases(8, ["AG001", "AG002"], seed=41))
    s.drop_cases("B1.csv.pgp", s.records)
    assert s.run() == {"accepted": 1}
    return s


def held(site: Site, agency: str) -> list[Held]:
    """What the agency's inbox holds of batch B1, as its kit would list it."""
    out = []
    for p in sorted(site.zone(agency, "inbox").glob("B1.*.pgp")):
        out.append(Held("B1", p.name, hashlib.sha256(p.read_bytes()).hexdigest(), NOW))
    assert any(".manifest." in f.name for f in out) and len(out) >= 3
    return out


def ack(files: list[Held], agency: str = "AG001", doc_id: str | None = None) -> Acknowledgement:
    return Acknowledgement(doc_id or documents.new_id(), agency, "B1", NOW, tuple(files))


def attestation(files: list[Held], contract: str, agency: str = "AG001") -> Attestation:
    gone = tuple(Held(f.batch_id, f.name, f.sha256, f.received_at, NOW, "none") for f in files)
    return Attestation(documents.new_id(), agency, contract, NOW, gone)


def send(site: Site, name: str, body: bytes, signer: str = "ag001", agency: str = "AG001"):
    site.zone(agency, "outbox", name).write_bytes(site.seal_as(signer, body))
    site.run()
    receipts = site.agency_receipts(agency)
    return receipts[f"{name}.receipt.json.pgp"]


def acknowledged(site: Site) -> dict[str, bool]:
    return acknowledged_in(site.cfg().gateway.db_url)


def acknowledged_in(db_url: str) -> dict[str, bool]:
    """AG001's slices and manifests, each with whether it was acknowledged."""
    ledger = Ledger(db_url)
    try:
        with ledger.session() as s:
            return {d.name: d.acknowledged_at is not None for d in s.query(DeliveryRow).filter(
                DeliveryRow.agency_code == "AG001", DeliveryRow.kind.in_(("slice", "manifest")))}
    finally:
        ledger.close()


def test_an_acknowledgement_marks_each_delivery_and_is_audited(site):
    files = held(site, "AG001")
    doc = ack(files)
    receipt = send(site, "B1-x.ack.json.pgp", doc.to_json())
    assert receipt["status"] == "accepted", receipt
    assert receipt["counts"]["accepted"] == len(files)
    assert receipt["document"] == {"type": "slice-acknowledgement", "id": doc.id,
                                   "created_at": receipt["document"]["created_at"],
                                   "batch_id": "B1"}
    assert receipt["signer"] == site.keys["ag001"].fingerprint
    assert all(acknowledged(site).values())
    (entry,) = [e for e in audit.AuditLog(site.state / "audit").entries()
                if e["event"] == "slice.acknowledged"]
    assert entry["agency"] == "AG001" and entry["batch_id"] == "B1" and entry["files"] == len(files)
    assert entry["document_id"] == doc.id


def test_a_replayed_acknowledgement_is_refused(site):
    doc = ack(held(site, "AG001"))
    assert send(site, "a1.ack.json.pgp", doc.to_json())["status"] == "accepted"
    again = send(site, "a2.ack.json.pgp", doc.to_json())  # sealed again: new bytes, same id
    assert again["status"] == "rejected"
    assert [e["code"] for e in again["errors"]] == ["E_REPLAY"]


def test_hostile_documents_are_refused_with_a_receipt(site):
    ag1, ag2 = held(site, "AG001"), held(site, "AG002")
    cases = [
        # signed by another agency's valid key
        ("signer.ack.json.pgp", ack(ag1).to_json(), "ag002", "E_UNKNOWN_SIGNER"),
        # lists AG002's slice: never delivered to AG001
        ("foreign.ack.json.pgp", ack(ag1[:1] + ag2[:1]).to_json(), "ag001", "E_NOT_DELIVERED"),
        # a hash nobody ever received
        ("made-up.ack.json.pgp", ack([Held("B1", ag1[0].name, "0" * 64, NOW)]).to_json(),
         "ag001", "E_NOT_DELIVERED"),
        # AG001 speaking for AG002
        ("other.ack.json.pgp", ack(ag2, agency="AG002").to_json(), "ag001", "E_DOCUMENT"),
        # an attestation while the contract runs
        ("early.attestation.json.pgp",
         attestation(ag1, site.cfg().agency("AG001").contract.id).to_json(), "ag001",
         "E_CONTRACT_ACTIVE"),
        ("contract.attestation.json.pgp", attestation(ag1, "C-OTHER").to_json(), "ag001",
         "E_WRONG_CONTRACT"),
        # not a document at all, and a results file's content under a document's name
        ("junk.ack.json.pgp", b"{not json", "ag001", "E_DOCUMENT"),
        ("csv.attestation.json.pgp", b"case_id,action_at\r\nC1,2026-01-01T10:00\r\n", "ag001",
         "E_DOCUMENT"),
        # an acknowledgement's content under an attestation's name
        ("swapped.attestation.json.pgp", ack(ag1).to_json(), "ag001", "E_DOCUMENT"),
    ]
    for name, body, signer, code in cases:
        receipt = send(site, name, body, signer=signer)
        assert receipt["status"] == "rejected", name
        assert receipt["errors"][0]["code"] == code, (name, receipt["errors"])
    assert not any(acknowledged(site).values())
    rejected = [e for e in audit.AuditLog(site.state / "audit").entries()
                if e["event"] == "file.rejected"]
    assert len(rejected) == len(cases)
    assert not [e for e in audit.AuditLog(site.state / "audit").entries()
                if e["event"] in ("slice.acknowledged", "agency.deletion_attested")]


def test_an_attestation_after_the_contract_ended_is_recorded(site):
    files = held(site, "AG001")
    end_contract(site, "AG001")
    contract = site.cfg().agency("AG001").contract.id
    doc = attestation(files[:-1], contract)  # one file not listed: recorded, not hidden
    receipt = send(site, "end.attestation.json.pgp", doc.to_json())
    assert receipt["status"] == "accepted", receipt
    assert receipt["document"]["contract_id"] == contract
    assert receipt["document"]["not_listed"] == 1
    (entry,) = [e for e in audit.AuditLog(site.state / "audit").entries()
                if e["event"] == "agency.deletion_attested"]
    assert entry["contract_id"] == contract and entry["files"] == len(files) - 1 and entry["not_listed"] == 1
    assert json.loads(doc.to_json())["objects"][0]["decrypted"] == "none"


def test_the_deletion_certificate_cites_the_attestation(site, keybox):
    files = held(site, "AG001")
    end_contract(site, "AG001")
    site.edit("purge_after_days = 30", "purge_after_days = 0")
    contract = site.cfg().agency("AG001").contract.id
    name = "end.attestation.json.pgp"
    sealed = site.seal_as("ag001", attestation(files, contract).to_json())
    site.zone("AG001", "outbox", name).write_bytes(sealed)
    site.run()  # the attestation is taken before the purge of the same pass
    cert_file = next(site.zone("bank", "incoming").glob("deletion-certificate.*.json.asc"))
    from tests.gpgparty import GpgParty
    party = GpgParty(keybox["gateway"].pub)
    try:
        cert = json.loads(party.gpg("--decrypt", str(cert_file)).stdout)
    finally:
        party.close()
    cited = cert["agency_attestation"]
    assert cited["name"] == name and cited["sha256"] == hashlib.sha256(sealed).hexdigest()
    assert cited["files"] == len(files) and cited["not_listed"] == 0


def test_poison_documents_are_answered_not_retried(site):
    """What the parser could once not digest — a type that is a list, JSON nested deeper
    than the stack, a date without a time — is answered E_DOCUMENT on the first pass, not
    retried every pass as a failing piece."""
    base = json.loads(ack(held(site, "AG001")).to_json())
    deep = b"[" * 100_000 + b"]" * 100_000
    listed = json.dumps({**base, "type": ["slice-acknowledgement"]}).encode()
    dated = json.dumps({**base, "created_at": "2026-01-03Z"}).encode()
    ahead = json.dumps({**base, "id": documents.new_id(), "created_at": "2999-01-01T00:00:00Z"})
    for name, body in [("deep.ack.json.pgp", deep), ("listed.ack.json.pgp", listed),
                       ("dated.ack.json.pgp", dated), ("ahead.ack.json.pgp", ahead.encode())]:
        receipt = send(site, name, body)
        assert receipt["status"] == "rejected" and receipt["errors"][0]["code"] == "E_DOCUMENT", \
            (name, receipt)
    assert not [e for e in audit.AuditLog(site.state / "audit").entries()
                if e["event"] == "pass.failed"]


def test_an_attestation_after_the_purge_reaches_the_bank_as_a_signed_notice(site, keybox):
    """With the defaults the purge and the attestation's due date fall on the same day:
    an attestation that comes after the certificate is not lost — the bank gets a notice,
    clear-signed, citing the certificate and the attestation. The purge deleted the
    rejected document the agency sent before, and kept the accepted one."""
    files = held(site, "AG001")
    end_contract(site, "AG001")
    send(site, "junk.attestation.json.pgp", b"case_id\r\nC1\r\n")  # rejected: quarantined
    site.edit("purge_after_days = 30", "purge_after_days = 0")
    site.run()  # the purge
    cert = next(site.zone("bank", "incoming").glob("deletion-certificate.*.json.asc"))
    assert not list(site.zone("bank", "incoming").glob("deletion-attestation.*"))
    assert not [p for p in (site.state / "quarantine").iterdir() if "junk" in p.name]
    contract = site.cfg().agency("AG001").contract.id
    name = "late.attestation.json.pgp"
    sealed = site.seal_as("ag001", attestation(files, contract).to_json())
    site.zone("AG001", "outbox", name).write_bytes(sealed)
    site.run()
    (notice_file,) = site.zone("bank", "incoming").glob("deletion-attestation.*.json.asc")
    from tests.gpgparty import GpgParty
    party = GpgParty(keybox["gateway"].pub)
    try:
        assert party.gpg("--verify", str(notice_file)).returncode == 0
        notice = json.loads(party.gpg("--decrypt", str(notice_file)).stdout)
    finally:
        party.close()
    assert notice["type"] == "deletion-attestation-notice" and notice["certificate"] == cert.name
    cited = notice["agency_attestation"]
    assert cited["name"] == name and cited["sha256"] == hashlib.sha256(sealed).hexdigest()
    assert (site.state / "archive" / f"{cited['sha256']}.pgp").exists()  # evidence, kept
