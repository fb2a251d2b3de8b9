"""The whole loop between the bank's gateway and an agency running the agency kit, with
every part real: a batch delivered, fetched and acknowledged; a results file checked by
the kit, an error fixed before it is sent, accepted by the gateway; the contract ends, the
kit destroys every copy and attests it, and the gateway's deletion certificate to the
bank cites that attestation by its hash.

Twice: on local zones (the kit beside the gateway, as a person runs it), and in
production shape — the gateway as its own non-root user, and the kit as the agency's own
non-root login, over SFTP to OpenSSH's chrooted internal-sftp with a pinned host key.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import pwd
import shutil
import subprocess
import sys
import zoneinfo
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway import audit, synth
from tests.conftest import KeyBox
from tests.flowsite import Site
from tests.gpgparty import GpgParty
from tests.integration.test_agency_documents import acknowledged_in
from tests.kitsite import KitSite
from tests.leaks import LeakScanner
from tests.prodsite import (  # noqa: F401 (the fixtures, by their own names)
    accounts_fixture,
    build,
    gateway,
    python_runs_as,
    root_fixture,
    sealed,
    sftp,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
TZ = zoneinfo.ZoneInfo("Asia/Shanghai")


def results(rows: list[tuple[str, str]]) -> bytes:
    """A results file: (case id, action) per row, yesterday at 10:00 local time."""
    day = (dt.datetime.now(TZ) - dt.timedelta(days=1)).strftime("%Y-%m-%dT10:00:00")
    lines = ["case_id,action_at,action_code,contact_target,collector_id"]
    lines += [f"{case},{day},{action},debtor,col-7" for case, action in rows]
    return ("\r\n".join(lines) + "\r\n").encode()


def end_contract_in(config: Path, code: str) -> dt.date:
    """The gateway's side of the contract's end: terminated yesterday, purged at once."""
    ended = dt.datetime.now(TZ).date() - dt.timedelta(days=1)
    text = config.read_text()
    i = text.index(f'code = "{code}"')
    text = text[:i] + text[i:].replace("# terminated_on = 2026-06-30",
                                       f"terminated_on = {ended}", 1)
    config.write_text(text.replace("purge_after_days = 30", "purge_after_days = 0", 1))
    return ended


class Cycle:
    """What the test does, whichever the deployment: the bank's drop, a gateway pass, a kit
    command, where things are."""

    records: list[dict[str, str]]
    config: Path  # the gateway's
    kit_config: Path
    kit_state: Path
    zones: Path  # the gateway's zone directories, as the gateway's host sees them
    gateway_state: Path
    kit_dirs: list[Path]  # everything the kit may write

    def drop(self, name: str, plaintext: bytes) -> None:
        """The bank's case file, signed and sealed to the gateway, in bank.outgoing."""
    def run_gateway(self) -> None: ...
    def kit(self, *args: str) -> subprocess.CompletedProcess[str]: ...

    def kit_ok(self, *args: str) -> str:
        proc = self.kit(*args)
        assert proc.returncode == 0, f"gateway-agency {' '.join(args)}:\n{proc.stdout}{proc.stderr}"
        return proc.stdout

    def write_kit_file(self, name: str, body: bytes) -> Path:
        path = self.kit_config.parent / name
        path.write_bytes(body)
        return path

    def end_contract(self) -> None:
        ended = end_contract_in(self.config, "AG001")
        text = self.kit_config.read_text()
        start = text.index("contract_end = ")
        stop = text.index("\n", start)
        self.kit_config.write_text(f"{text[:start]}contract_end = {ended}{text[stop:]}")


class LocalCycle(Cycle):
    def __init__(self, tmp_path: Path, keybox: KeyBox) -> None:
        self.site = Site(tmp_path / "site", keybox)
        self.kit_site = KitSite(tmp_path / "kit", self.site, keybox,
                                roles=("collector", "supervisor"))
        self.config, self.kit_config = self.site.config, self.kit_site.config
        self.kit_state, self.zones = self.kit_site.state, self.site.root / "zones"
        self.gateway_state = self.site.state
        self.kit_dirs = [self.kit_site.root]

    def drop(self, name: str, plaintext: bytes) -> None:
        self.site.drop(name, plaintext)

    def run_gateway(self) -> None:
        self.site.run()

    def kit(self, *args: str) -> subprocess.CompletedProcess[str]:
        proc = self.kit_site.run_process(*args)
        return subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout.decode(),
                                           proc.stderr.decode())


class ProductionCycle(Cycle):
    """The gateway as its user; the kit as AG001's login, on SFTP through the chroot."""

    def __init__(self, root: Path, accounts, keybox: KeyBox, tmp_path: Path) -> None:
        self.prod = build(root, accounts, keybox, tmp_path)
        self.keybox, self.accounts = keybox, accounts
        self.config, self.zones = self.prod.conf, self.prod.layout.zones_dir
        self.gateway_state = self.prod.layout.state_dir
        self.login = dict(accounts.logins)["AG001"]
        if not python_runs_as(self.login):
            pytest.skip(f"{sys.executable} cannot be run by another user here")
        user = pwd.getpwnam(self.login)
        home = root / "home" / self.login  # the agency's own machine, as far as the kit knows
        (home / "keys").mkdir(parents=True)
        for name in ("ag001", "ag001-collector", "ag001-supervisor"):
            shutil.copy(keybox[name].sec, home / "keys" / f"{name}.sec.asc")
        shutil.copy(keybox["gateway"].pub, home / "keys" / "gateway.pub.asc")
        shutil.copy(self.prod.sshd.client_key, home / "keys" / "sftp_ed25519")
        contract = self.prod_contract()
        sshd = self.prod.sshd

        def zone(box: str) -> str:
            return (f'{{ kind = "sftp", host = "127.0.0.1", port = {sshd.port}, '
                    f'username = "{self.login}", private_key = "keys/sftp_ed25519", '
                    f'known_host = "{sshd.known_host}", path = "/{box}", settle_seconds = 0.3 }}')
        self.kit_config = home / "agency.toml"
        self.kit_config.write_text("\n".join([
            'code = "AG001"', f'contract_id = "{contract.id}"', f"contract_end = {contract.end}",
            'timezone = "Asia/Shanghai"', 'state_dir = "var"',
            'signing_key = "keys/ag001.sec.asc"', 'gateway_key = "keys/gateway.pub.asc"',
            f"inbox = {zone('inbox')}", f"outbox = {zone('outbox')}",
            "[roles.collector]", 'key = "keys/ag001-collector.sec.asc"',
            "[roles.supervisor]", 'key = "keys/ag001-supervisor.sec.asc"', ""]))
        for p in [home.parent, home, *home.rglob("*")]:
            os.chown(p, user.pw_uid, user.pw_gid)
            p.chmod(0o700 if p.is_dir() else 0o600)
        self.kit_state = home / "var"
        self.kit_dirs = [home]
        self.uid, self.gid = user.pw_uid, user.pw_gid

    def prod_contract(self):
        from gateway import config as config_mod
        return config_mod.load(self.prod.conf).agency("AG001").contract

    def drop(self, name: str, plaintext: bytes) -> None:
        t, bank = sftp(self.prod.sshd, self.accounts.bank_login)
        try:
            bank.putfo(io.BytesIO(sealed(self.keybox, "bank", plaintext)), f"/outgoing/{name}")
        finally:
            t.close()

    def run_gateway(self) -> None:
        gateway("run", "--once", "-c", str(self.config), user=self.accounts.user)

    def kit(self, *args: str) -> subprocess.CompletedProcess[str]:
        boot = ("import os, sys; os.umask(0o077); sys.argv[0] = 'gateway-agency'; "
                "from gateway.kit.cli import run; run()")
        argv = ["setpriv", "--reuid", str(self.uid), "--regid", str(self.gid), "--init-groups",
                "--", sys.executable, "-c", boot, *args, "--config", str(self.kit_config)]
        return subprocess.run(argv, capture_output=True, text=True, check=False,
                              cwd=self.kit_config.parent,
                              env={**os.environ, "HOME": "/nonexistent"})

    def write_kit_file(self, name: str, body: bytes) -> Path:
        path = super().write_kit_file(name, body)
        os.chown(path, self.uid, self.gid)
        return path


@pytest.fixture(params=["local", "sftp-as-agency-login"])
def cycle(request, tmp_path, keybox) -> Iterator[Cycle]:
    if request.param == "local":
        yield LocalCycle(tmp_path, keybox)
        return
    root = request.getfixturevalue("root")
    accounts = request.getfixturevalue("accounts")
    c = ProductionCycle(root, accounts, keybox, tmp_path)
    try:
        yield c
    finally:
        c.prod.sshd.stop()


def acknowledged(config: Path) -> dict[str, bool]:
    from gateway import config as config_mod
    return acknowledged_in(config_mod.load(config).gateway.db_url)


def test_the_agency_closes_the_loop(cycle: Cycle, keybox):
    records = list(synth.cases(12, ["AG001", "AG002"], seed=260))
    mine = [r["case_id"] for r in records if r["agency_code"] == "AG001"]
    theirs = [r["case_id"] for r in records if r["agency_code"] == "AG002"]
    cycle.drop("B1.csv.pgp", synth.to_csv(records))
    cycle.run_gateway()

    # -- fetch: every slice checked against the manifest, kept sealed, acknowledged once
    out = cycle.kit_ok("fetch")
    assert "acknowledged" in out, out
    cycle.run_gateway()
    assert acknowledged(cycle.config) and all(acknowledged(cycle.config).values())
    out = cycle.kit_ok("fetch")  # the acknowledgement's receipt
    assert "accepted" in out, out

    # -- results: the kit finds the gateway's error before anything is sent
    bad = cycle.write_kit_file("results-1.csv", results([(mine[0], "CALL"), (theirs[0], "CALL")]))
    checked = cycle.kit("results", str(bad), "--check")
    assert checked.returncode == 1 and "row 2: E_NOT_ASSIGNED case_id" in checked.stdout, \
        checked.stdout + checked.stderr
    refused = cycle.kit("results", str(bad))
    assert refused.returncode == 1 and not any(
        (cycle.zones / "AG001" / "outbox").iterdir())  # nothing sent with an error in it
    good = cycle.write_kit_file("results-2.csv", results([(mine[0], "CALL"), (mine[1], "VISIT")]))
    cycle.kit_ok("results", str(good))
    cycle.run_gateway()
    out = cycle.kit_ok("fetch")
    assert "results-2.csv.pgp" in out and "accepted" in out, out
    forwarded = list((cycle.zones / "bank" / "incoming").glob("results.AG001.*.csv.pgp"))
    assert len(forwarded) == 1

    # -- the contract ends: the kit destroys and attests; the gateway purges and cites it
    cycle.end_contract()
    out = cycle.kit_ok("destroy", "--yes")
    assert "attestation" in out, out
    sent = next((cycle.kit_state / "attestations").glob("*.attestation.json.pgp"))
    sent_sha = hashlib.sha256(sent.read_bytes()).hexdigest()
    assert not list((cycle.kit_state / "files").iterdir())
    cycle.run_gateway()  # takes the attestation, then purges the agency (deadline: today)
    (cert_file,) = (cycle.zones / "bank" / "incoming").glob("deletion-certificate.*.json.asc")
    party = GpgParty(keybox["gateway"].pub)
    try:
        verified = party.gpg("--verify", str(cert_file))
        cert = json.loads(party.gpg("--decrypt", str(cert_file)).stdout)
    finally:
        party.close()
    assert verified.returncode == 0
    cited = cert["agency_attestation"]
    assert cited is not None and cited["name"] == sent.name and cited["sha256"] == sent_sha
    assert cited["not_listed"] == 0 and cited["files"] == len(acknowledged(cycle.config))
    events = [e["event"] for e in audit.AuditLog(cycle.gateway_state / "audit").entries()]
    assert {"slice.acknowledged", "agency.deletion_attested", "retention.purged"} <= set(events)

    # -- no personal value in anything either side wrote, the kit's state and zones included
    written = [p for base in [cycle.gateway_state, cycle.zones, *cycle.kit_dirs]
               for p in base.rglob("*") if p.is_file() and not p.is_symlink()]
    assert LeakScanner(records).scan_files(written) == []
