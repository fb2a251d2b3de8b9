"""The partner guides' commands, run as written: docs/partners/*.md cannot drift from gpg
or from the gateway.

A block of a guide is tested when the line before its ```sh fence is ``<!-- test: NAME -->``
(a ```toml block so marked is a configuration file the test writes as the person would).
Each party (the bank's export team, an agency's staff member) gets a fresh GNUPGHOME and
working directory; its gpg.conf stands in for the person at the keyboard — it answers
gpg's questions (batch) and types the passphrase (loopback, passphrase-file) — and
changes nothing else. The gateway is a real one (tests/flowsite.py) whose key carries the
guides' ``gateway@bank.example``, and whose bank and AG001 keys are the ones the guides made.
The agency guide's kit (``gateway-agency``) runs on the site's AG001 zones, configured with the
guide's own agency.toml but for the zones (local here, SFTP in the guide) and the contract.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import pytest

from gateway import daemon, synth
from gateway.crypto import keys
from gateway.kit import config as kit_config
from tests.conftest import Key, KeyBox
from tests.flowsite import Site
from tests.integration.test_retention import TZ, end_contract

pytestmark = pytest.mark.integration

DOCS = Path(__file__).resolve().parents[2] / "docs" / "partners"
_BLOCK = re.compile(r"^<!-- test: ([a-z0-9-]+) -->\n```(?:sh|toml)\n(.*?)^```$", re.M | re.S)
PASSPHRASE = "correct horse battery staple"


def blocks(guide: str) -> dict[str, str]:
    return dict(_BLOCK.findall((DOCS / guide).read_text()))


class Party:
    """A person following a guide: own GnuPG home, own directory, a shell."""

    def __init__(self, root: Path, guide: str) -> None:
        self.blocks = blocks(guide)
        self.dir = root / "work"
        self.dir.mkdir(parents=True)
        # gpg-agent's socket path must stay short (sun_path): a home under /tmp
        self.home = Path(tempfile.mkdtemp(prefix="gwdoc", dir="/tmp"))
        secret = self.home / "passphrase"
        secret.write_text(PASSPHRASE + "\n")
        (self.home / "gpg.conf").write_text(f"batch\npinentry-mode loopback\npassphrase-file {secret}\n")
        (self.home / "gpg-agent.conf").write_text("allow-loopback-pinentry\n")
        self.env = {**os.environ, "GNUPGHOME": str(self.home),
                    "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}

    def run(self, name: str, *, check: bool = True,
            answer: str | None = None) -> subprocess.CompletedProcess[str]:
        """The block *name* in bash; *answer*: what the person types when a command asks."""
        proc = subprocess.run(["bash", "-euo", "pipefail", "-c", self.blocks[name]], cwd=self.dir,
                              env=self.env, input=answer, capture_output=True, text=True,
                              check=False)
        if check:
            assert proc.returncode == 0, f"{name}:\n{self.blocks[name]}\n{proc.stderr}"
        return proc

    def close(self) -> None:
        subprocess.run(["gpgconf", "--homedir", str(self.home), "--kill", "all"],
                       capture_output=True, check=False)
        shutil.rmtree(self.home, ignore_errors=True)


class GuideKeys(KeyBox):
    """The session's keys, but a gateway key whose user ID is the guides' address."""

    def __init__(self, directory: Path, shared: KeyBox) -> None:
        super().__init__(directory)
        self._shared = shared
        g = keys.generate("gateway", "gateway@bank.example", directory)
        self._keys["gateway"] = Key("gateway", g.fingerprint, g.public_path, g.secret_path)

    def __getitem__(self, name: str) -> Key:
        return self._keys[name] if name in self._keys else self._shared[name]


@pytest.fixture
def parties(tmp_path):
    made: list[Party] = []

    def make(name: str, guide: str) -> Party:
        made.append(Party(tmp_path / name, guide))
        return made[-1]

    yield make
    for p in made:
        p.close()


def test_every_marked_block_is_known_to_this_test():
    assert set(blocks("bank.md")) == {"bank-keygen", "bank-export", "bank-import", "bank-trust",
                                      "bank-seal", "bank-receipt", "bank-sample"}
    assert set(blocks("agency.md")) == {"agency-keygen", "agency-export", "agency-import",
                                        "agency-trust", "agency-open", "agency-seal",
                                        "agency-receipt", "agency-sample",
                                        # the agency kit
                                        "agency-kit-key", "agency-kit-trust", "agency-kit-init",
                                        "agency-kit-toml", "agency-kit-fetch", "agency-kit-status",
                                        "agency-kit-export", "agency-kit-check",
                                        "agency-kit-send",
                                        "agency-kit-destroy-plan", "agency-kit-destroy"}


def test_the_guides_commands_as_written_take_a_batch_and_results_through(tmp_path, keybox,
                                                                         parties):
    box = GuideKeys(tmp_path / "keys", keybox)
    site = Site(tmp_path / "site", box)
    gateway = box["gateway"]

    # -- the bank's export team ------------------------------------------------------------
    bank = parties("bank", "bank.md")
    bank.run("bank-keygen")
    bank.run("bank-export")
    bank_key = keys.check(bank.dir / "bank.pub.asc", keys.Purpose.VERIFY)
    assert keys.check(bank.dir / "bank.pub.asc", keys.Purpose.ENCRYPT) == bank_key  # the policy
    shutil.copy(bank.dir / "bank.pub.asc", site.root / "keys" / "bank.pub.asc")  # bank IT installs it
    shutil.copy(gateway.pub, bank.dir / "gateway.pub.asc")  # ... and hands out the gateway's
    bank.env["GATEWAY_FPR"] = gateway.fingerprint
    bank.run("bank-import")
    bank.run("bank-sample")
    before = bank.run("bank-seal", check=False)  # not trusted yet: the failure the guide names
    assert before.returncode != 0 and "Unusable public key" in before.stderr
    assert "There is no assurance this key belongs to the named user" in before.stderr
    bank.run("bank-trust")
    bank.run("bank-seal")
    shutil.copy(bank.dir / "B20261102-01.csv.pgp", site.zone("bank", "outgoing"))
    assert site.run() == {"accepted": 1}
    shutil.copy(site.zone("bank", "incoming") / "B20261102-01.csv.pgp.receipt.json.pgp", bank.dir)
    shown = bank.run("bank-receipt")
    assert "VALIDSIG" in shown.stdout and '"status": "accepted"' in shown.stdout
    assert '"accepted": 1000' in shown.stdout

    # -- an agency's staff member: supervisor role, and a signer of AG001's results ----------
    agency = parties("agency", "agency.md")
    agency.run("agency-keygen")
    agency.run("agency-export")
    for name in ("ag001", "ag001-supervisor"):
        shutil.copy(agency.dir / "anna.wang.pub.asc", site.root / "keys" / f"{name}.pub.asc")
    # a new batch, so that AG001's supervisor slice is encrypted to her key
    bank.blocks["bank-seal"] = bank.blocks["bank-seal"].replace("B20261102-01", "B20261102-02")
    (bank.dir / "B20261102-02.csv").write_bytes((bank.dir / "B20261102-01.csv").read_bytes()
                                                .replace(b"SAMPLE-", b"SAMPLE2-"))
    bank.run("bank-seal")
    shutil.copy(bank.dir / "B20261102-02.csv.pgp", site.zone("bank", "outgoing"))
    assert site.run() == {"accepted": 1}

    shutil.copy(gateway.pub, agency.dir / "gateway.pub.asc")
    agency.env["GATEWAY_FPR"] = gateway.fingerprint
    agency.run("agency-import")
    agency.run("agency-trust")
    slice_ = site.zone("AG001", "inbox") / "B20261102-02.AG001.supervisor.csv.pgp"
    shutil.copy(slice_, agency.dir / "B20261102-01.AG001.supervisor.csv.pgp")  # the guide's name
    agency.run("agency-open")
    opened = (agency.dir / "B20261102-01.AG001.supervisor.csv").read_text()
    assert opened.count("\n") == 501 and "SAMPLE2-" in opened
    agency.run("agency-sample")
    agency.run("agency-seal")
    shutil.copy(agency.dir / "results-20261120.csv.pgp", site.zone("AG001", "outbox"))
    assert site.run() == {"accepted": 1}
    shutil.copy(site.zone("AG001", "inbox") / "results-20261120.csv.pgp.receipt.json.pgp",
                agency.dir)
    shown = agency.run("agency-receipt")
    assert "VALIDSIG" in shown.stdout and '"status": "accepted"' in shown.stdout
    assert '"accepted": 20' in shown.stdout
    # the bank reads what was forwarded with the key its guide made
    (forwarded,) = site.zone("bank", "incoming").glob("results.AG001.*.csv.pgp")
    proc = subprocess.run(["gpg", "--status-fd", "2", "--decrypt", str(forwarded)], env=bank.env,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and "VALIDSIG" in proc.stderr and gateway.fingerprint in proc.stderr
    assert proc.stdout.count("\n") == 21 and ",AG001," in proc.stdout


def test_the_agency_kit_as_the_guide_says_from_key_to_attestation(tmp_path, keybox, parties):
    """Anna, supervisor and signer of AG001, sets the kit up as the guide says; the bank's
    batch reaches her, she answers it, and at the contract's end she destroys and attests."""
    box = GuideKeys(tmp_path / "keys", keybox)
    site = Site(tmp_path / "site", box)
    gateway = box["gateway"]
    agency = parties("agency", "agency.md")
    agency.run("agency-keygen")
    agency.run("agency-export")
    for name in ("ag001", "ag001-supervisor"):  # the bank's IT configures her key
        shutil.copy(agency.dir / "anna.wang.pub.asc", site.root / "keys" / f"{name}.pub.asc")
    records = list(synth.cases(12, ["AG001", "AG002"], seed=7))
    ag001 = sorted(r["case_id"] for r in records if r["agency_code"] == "AG001")
    site.drop_cases("B20261102-01.csv.pgp", records)
    assert site.run() == {"accepted": 1}

    # -- once: the secret key file, the gateway's key checked, agency.toml -----------------
    agency.run("agency-kit-key")
    secret = agency.dir / "keys" / "anna.wang.sec.asc"
    assert secret.stat().st_mode & 0o777 == 0o600 and b"PRIVATE KEY" in secret.read_bytes()
    shutil.copy(gateway.pub, agency.dir / "gateway.pub.asc")  # what the bank's IT hands out
    agency.env["GATEWAY_FPR"] = "0" * 40  # a fingerprint that is not this key's: refused
    assert agency.run("agency-kit-trust", check=False).returncode != 0
    assert not (agency.dir / "keys" / "gateway.pub.asc").exists()
    agency.env["GATEWAY_FPR"] = gateway.fingerprint
    assert agency.run("agency-kit-trust").stdout.strip() == f"public key {gateway.fingerprint}"
    agency.run("agency-kit-init")
    sample = agency.dir / "agency.toml"
    assert kit_config.load(sample).code == "AG001"  # what init wrote is a valid start
    # the guide's agency.toml, as written, is one the kit accepts ...
    sample.write_text(agency.blocks["agency-kit-toml"])
    assert kit_config.load(sample).signing_key == secret
    # ... and is hers but for the zones (the site's local ones) and the site's contract
    cfg = site.cfg().agency("AG001")
    text = agency.blocks["agency-kit-toml"]
    text = text[:text.index("[inbox]")] + "".join(
        f'[{zone}]\nkind = "local"\npath = "{site.zone("AG001", zone)}"\n'
        for zone in ("inbox", "outbox"))
    end = cfg.contract.end
    text = text.replace('contract_id = "C-2026-001"', f'contract_id = "{cfg.contract.id}"')
    text = text.replace("contract_end = 2027-11-01", f"contract_end = {end.isoformat()}")
    assert tomllib.loads(text)["contract_end"] == end
    sample.write_text(text)
    agency.env["AGENCY_KEY_PASSPHRASE"] = PASSPHRASE

    # -- every day: fetch, the gateway takes the acknowledgement, fetch its receipt --------
    fetched = agency.run("agency-kit-fetch")
    assert "batch B20261102-01: manifest received, 2 slice(s) listed" in fetched.stdout
    assert ("batch B20261102-01: acknowledged 2 slice(s) and 1 manifest(s) in "
            "B20261102-01.AG001.ack.json.pgp") in fetched.stdout
    assert site.inbox("AG001") == []
    assert site.run() == {"accepted": 1}
    fetched = agency.run("agency-kit-fetch")
    assert "receipt for B20261102-01.AG001.ack.json.pgp: accepted, 0 error(s)" in fetched.stdout

    # -- a results file: a sample about her cases, checked, then sent ---------------------
    exported = agency.run("agency-kit-export")
    assert "the supervisor role's view — columns with masked values" in exported.stderr
    rows = (agency.dir / "B20261102-01.AG001.supervisor.csv").read_text().splitlines()
    assert sorted(r.split(",")[0] for r in rows[1:]) == ag001
    agency.run("agency-sample")
    checked = agency.run("agency-kit-check")
    assert "20 row(s), 20 valid, 0 error(s); the gateway would answer: accepted" in checked.stdout
    assert site.zone("AG001", "outbox").exists() and not list(site.zone("AG001", "outbox").iterdir())
    sent = agency.run("agency-kit-send")
    assert "sent results-20261120.csv.pgp to the outbox" in sent.stdout
    assert site.run() == {"accepted": 1}
    fetched = agency.run("agency-kit-fetch")
    assert "receipt for results-20261120.csv.pgp: accepted, 0 error(s)" in fetched.stdout
    status = agency.run("agency-kit-status").stdout
    assert f"contract {cfg.contract.id}: runs until {end}" in status
    assert f"1 batch(es), 3 file(s) held (0 decrypted in the store), {len(ag001)} case(s)" in status
    assert "receipts: accepted 2" in status
    plan = agency.run("agency-kit-destroy-plan").stdout
    assert "to destroy: 3 file(s)" in plan and "destroy would be refused now" in plan

    # -- the contract ends: destroy, attest; the gateway accepts it and its certificate cites it
    end_contract(site, "AG001")
    ended = (dt.datetime.now(TZ).date() - dt.timedelta(days=1)).isoformat()
    sample.write_text(text.replace(f"contract_end = {end.isoformat()}", f"contract_end = {ended}"))
    plan = agency.run("agency-kit-destroy-plan").stdout
    assert f"contract {cfg.contract.id}: ended {ended}" in plan and "refused" not in plan
    refused = agency.run("agency-kit-destroy", check=False, answer="n\n")
    assert refused.returncode == 1 and len(list((agency.dir / "var" / "files").iterdir())) == 3
    done = agency.run("agency-kit-destroy", answer="y\n").stdout
    attestation = f"{cfg.contract.id}.AG001.attestation.json.pgp"
    assert f"destroyed 3 file(s) and the case ids of contract {cfg.contract.id}" in done
    assert f"sent the deletion attestation {attestation}" in done
    assert list((agency.dir / "var" / "files").iterdir()) == []
    assert site.run() == {"accepted": 1}
    fetched = agency.run("agency-kit-fetch")
    assert f"receipt for {attestation}: accepted, 0 error(s)" in fetched.stdout
    site.edit("purge_after_days = 30", "purge_after_days = 0")
    daemon.purge_due(site.cfg())
    (certificate,) = site.zone("bank", "incoming").glob("deletion-certificate.*.json.asc")
    assert f'"name": "{attestation}"' in certificate.read_text()
