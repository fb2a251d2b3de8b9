"""Odd OpenPGP envelopes and concurrent runs (issue 9, "what already holds"): every one is
rejected with exactly one receipt, nothing is delivered, no plaintext is left."""

from __future__ import annotations

import subprocess
import sys

import pytest

from gateway import synth
from tests.conftest import run_cli
from tests.flowsite import Site
from tests.gpgparty import GpgParty

pytestmark = pytest.mark.integration

REJECTING = {"E_NOT_ENCRYPTED", "E_UNSIGNED", "E_BAD_SIGNATURE", "E_UNKNOWN_SIGNER",
             "E_NOT_FOR_US", "E_DECRYPT", "E_CORRUPT", "E_TRUNCATED", "E_REVOKED_OR_EXPIRED"}


@pytest.fixture(scope="module")
def records():
    return list(synth.cases(5, ["AG001", "AG002"], seed=95))


def envelope(site: Site, how: str, plain: bytes) -> bytes:
    k = site.keys
    party = GpgParty(k["bank"].sec, k["other"].sec, k["gateway"].pub)
    bank, other, gw = k["bank"].fingerprint, k["other"].fingerprint, k["gateway"].fingerprint
    try:
        def gpg(*args: str) -> bytes:
            return party.gpg(*args, stdin=plain, check=True).stdout
        return {
            "signed only": lambda: gpg("-u", bank, "--sign"),
            "symmetric only": lambda: gpg("--passphrase", "pw", "-c"),
            "symmetric and signed": lambda: gpg("--passphrase", "pw", "-u", bank, "-c", "--sign"),
            "encrypted, unsigned": lambda: gpg("-r", gw, "--encrypt"),
            "signed by an unknown key": lambda: gpg("-u", other, "--sign", "-r", gw, "--encrypt"),
            "signed by the bank and another key": lambda: gpg("-u", bank, "-u", other, "--sign",
                                                              "-r", gw, "--encrypt"),
            "encrypted to another key": lambda: gpg("-u", bank, "--sign", "-r", other, "--encrypt"),
            "clear-signed": lambda: gpg("-u", bank, "--clearsign"),
            "detached signature": lambda: gpg("-u", bank, "--detach-sign"),
            "random bytes": lambda: bytes(range(256)) * 40,
            "zero bytes": lambda: b"",
            "two messages concatenated": lambda: gpg("-u", bank, "--sign", "-r", gw, "--encrypt")
            + gpg("-u", bank, "--sign", "-r", gw, "--encrypt"),
        }[how]()
    finally:
        party.close()


ENVELOPES = ["signed only", "symmetric only", "symmetric and signed", "encrypted, unsigned",
             "signed by an unknown key", "signed by the bank and another key",
             "encrypted to another key", "clear-signed", "detached signature", "random bytes",
             "zero bytes", "two messages concatenated"]


@pytest.mark.parametrize("how", ENVELOPES)
def test_odd_envelopes_are_rejected_with_a_receipt(tmp_path, keybox, records, how):
    site = Site(tmp_path / "site", keybox)
    site.zone("bank", "outgoing", "B1.csv.pgp").write_bytes(
        envelope(site, how, synth.to_csv(records)))
    assert site.run() == {"rejected": 1}, how
    (receipt,) = site.receipts().values()
    assert receipt["status"] == "rejected" and receipt["errors"][0]["code"] in REJECTING
    assert site.inbox("AG001") == [] and site.inbox("AG002") == []
    assert site.plaintext_leaks(records) == []
    unencrypted = how in ("signed only", "clear-signed", "detached signature", "random bytes",
                          "zero bytes")
    assert (receipt["errors"][0]["code"] == "E_NOT_ENCRYPTED") == unencrypted, receipt["errors"]
    # only an encrypted message is kept (quarantined byte for byte); nothing else is copied
    assert bool(list((site.state / "quarantine").iterdir())) != unencrypted


def test_a_plaintext_csv_dropped_by_mistake_is_never_copied(tmp_path, keybox, records):
    """The bank uploads its CSV unencrypted under a .csv.pgp name: the gateway hashes it,
    removes it from the zone, answers E_NOT_ENCRYPTED — and no byte of it is ever written
    to the gateway's disk (not to the archive, not to the quarantine), also after a crash
    between the claim and the answer."""
    for fault in (None, "after_claim"):
        site = Site(tmp_path / f"site-{fault}", keybox)
        site.zone("bank", "outgoing", "B1.csv.pgp").write_bytes(synth.to_csv(records))
        if fault:
            crashed = run_cli("run", "--once", "-c", str(site.config), env={"GATEWAY_FAULT": fault})
            assert crashed.returncode == 137
            dropped = str(site.zone("bank", "outgoing", "B1.csv.pgp"))
            assert {path for path, _ in site.plaintext_leaks(records)} == {dropped}
        assert site.run() == {"rejected": 1}
        (receipt,) = site.receipts().values()
        assert receipt["errors"][0]["code"] == "E_NOT_ENCRYPTED"
        assert site.plaintext_leaks(records) == []  # the zone copy is gone too
        assert list(site.zone("bank", "outgoing").iterdir()) == []


def test_two_concurrent_runs_deliver_once(tmp_path, keybox, records):
    site = Site(tmp_path / "site", keybox)
    site.drop_cases("B1.csv.pgp", list(synth.cases(5000, ["AG001", "AG002"], seed=96)))
    procs = [subprocess.Popen([sys.executable, "-m", "gateway", "run", "--once", "-c",
                               str(site.config)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    assert sorted(rc for rc, _ in results) in ([0, 0], [0, 1])
    for rc, err in results:
        assert rc == 0 or "another gateway process is running" in err, err
    assert [r["status"] for r in site.receipts().values()] == ["accepted"]
    assert len(site.inbox("AG001")) == 3 and len(site.inbox("AG002")) == 4
    assert run_cli("audit", "verify", "-c", str(site.config)).returncode == 0
