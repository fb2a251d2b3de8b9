"""The partner guides' commands, run as written: docs/partners/*.md cannot drift from gpg
or from the gateway.

A block of a guide is tested when the line before its ```sh fence is ``<!-- test: NAME -->``.
Each party (the bank's export team, an agency's staff member) gets a fresh GNUPGHOME and
working directory; its gpg.conf stands in for the person at the keyboard — it answers
gpg's questions (batch) and types the passphrase (loopback, passphrase-file) — and
changes nothing else. The gateway is a real one (tests/flowsite.py) whose key carries the
guides' ``gateway@bank.example``, and whose bank and AG001 keys are the ones the guides made.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from gateway.crypto import keys
from tests.conftest import Key, KeyBox
from tests.flowsite import Site

pytestmark = pytest.mark.integration

DOCS = Path(__file__).resolve().parents[2] / "docs" / "partners"
_BLOCK = re.compile(r"^<!-- test: ([a-z0-9-]+) -->\n```sh\n(.*?)^```$", re.M | re.S)


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
        secret.write_text("correct horse battery staple\n")
        (self.home / "gpg.conf").write_text(f"batch\npinentry-mode loopback\npassphrase-file {secret}\n")
        (self.home / "gpg-agent.conf").write_text("allow-loopback-pinentry\n")
        self.env = {**os.environ, "GNUPGHOME": str(self.home),
                    "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}

    def run(self, name: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(["bash", "-euo", "pipefail", "-c", self.blocks[name]], cwd=self.dir,
                              env=self.env, capture_output=True, text=True, check=False)
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
                                        "agency-receipt", "agency-sample"}


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
