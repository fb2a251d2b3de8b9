"""A complete gateway site for flow tests: two agencies, every key, local zones, GnuPG parties."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from gateway import config as config_mod
from gateway import daemon, scaffold, synth
from tests.conftest import KeyBox
from tests.gpgparty import GpgParty, validsig_primary
from tests.leaks import LeakScanner

AGENCIES = [
    scaffold.AgencyTemplate("AG001", "Example Collections Co.", ("supervisor", "collector")),
    scaffold.AgencyTemplate("AG002", "Second Recovery Ltd.", ("supervisor", "collector", "analyst")),
]


@dataclass
class Opened:
    rc: int
    body: bytes
    signer: str | None

    @property
    def rows(self) -> list[list[str]]:
        import csv
        import io
        return list(csv.reader(io.StringIO(self.body.decode("utf-8"))))


class Site:
    def __init__(self, root: Path, keys: KeyBox, today: dt.date | None = None,
                 sshd: object | None = None, settle_seconds: float = 0,
                 database_url: str | None = None) -> None:
        self.root = root
        self.keys = keys
        # Files are written whole before each run here; settling has tests of its own.
        self.config = scaffold.init_project(root, agencies=AGENCIES,
                                            today=today or dt.date.today() - dt.timedelta(days=30),
                                            settle_seconds=settle_seconds)
        # Any free port for /metrics: daemons of several tests (or a real one) never collide.
        self.edit("max_daily_attempts = 6", 'max_daily_attempts = 6\nmetrics_listen = "127.0.0.1:0"')
        if database_url:
            self.edit('# database_url = "postgresql+psycopg://gw@db/gateway"',
                      f'database_url = "{database_url}"')
        for name in scaffold.key_names(AGENCIES):
            shutil.copy(keys[name].pub, root / "keys" / f"{name}.pub.asc")
        shutil.copy(keys["gateway"].sec, root / "keys" / "gateway.sec.asc")
        (root / "keys" / "gateway.sec.asc").chmod(0o600)
        if sshd is not None:  # every zone on the SFTP server (its files are these directories)
            text = self.config.read_text()
            for rel in ["zones/bank/outgoing", "zones/bank/incoming"] + [
                    f"zones/{a.code}/{box}" for a in AGENCIES for box in ("inbox", "outbox")]:
                old = f'{{ kind = "local", path = "{rel}", settle_seconds = {settle_seconds:g} }}'
                assert old in text, old
                text = text.replace(old, sshd.zone_toml(root / rel))  # type: ignore[attr-defined]
            self.config.write_text(text)

    # -- config ---------------------------------------------------------------------
    def edit(self, old: str, new: str) -> None:
        text = self.config.read_text()
        assert old in text, old
        self.config.write_text(text.replace(old, new, 1))

    def cfg(self) -> config_mod.Config:
        return config_mod.load(self.config)

    # -- zones ------------------------------------------------------------------------
    def zone(self, *parts: str) -> Path:
        return self.root / "zones" / Path(*parts)

    @property
    def state(self) -> Path:
        return self.root / "var"

    def seal_as(self, signer: str | None, plaintext: bytes, *, to: str = "gateway",
                extra: tuple[str, ...] = ()) -> bytes:
        party = GpgParty(*([self.keys[signer].sec] if signer else []), self.keys[to].pub)
        try:
            return party.seal(plaintext, signer=self.keys[signer].fingerprint if signer else None,
                              recipients=[self.keys[to].fingerprint], extra=extra)
        finally:
            party.close()

    def drop(self, name: str, plaintext: bytes, *, signer: str | None = "bank", **kw) -> Path:
        path = self.zone("bank", "outgoing", name)
        path.write_bytes(self.seal_as(signer, plaintext, **kw))
        return path

    def drop_cases(self, name: str, records: list[dict[str, str]], **kw) -> Path:
        return self.drop(name, synth.to_csv(records), **kw)

    def run(self) -> Counter[str]:
        with daemon.open_context(self.cfg()) as ctx:
            return daemon.run_once(ctx)

    # -- what parties see -----------------------------------------------------------
    def open_as(self, key: str, path: Path) -> Opened:
        party = GpgParty(self.keys[key].sec, self.keys["gateway"].pub)
        try:
            body, status, rc = party.decrypt(path.read_bytes())
        finally:
            party.close()
        return Opened(rc, body, validsig_primary(status))

    def upload(self, agency: str, name: str, plaintext: bytes, *, signer: str | None = None) -> Path:
        """An agency uploads a results file, sealed with plain GnuPG as `gateway seal` would."""
        path = self.zone(agency, "outbox", name)
        path.write_bytes(self.seal_as(signer or agency.lower(), plaintext))
        return path

    def bank_results(self) -> list[dict[str, str]]:
        """Every forwarded results row the bank can read (checking the gateway signed it)."""
        import csv
        import io
        rows = []
        for p in sorted(self.zone("bank", "incoming").glob("results.*.csv.pgp")):
            opened = self.open_as("bank", p)
            assert opened.rc == 0 and opened.signer == self.keys["gateway"].fingerprint
            rows += list(csv.DictReader(io.StringIO(opened.body.decode())))
        return rows

    def agency_receipts(self, agency: str, key: str | None = None) -> dict[str, dict]:
        out = {}
        for p in sorted(self.zone(agency, "inbox").glob("*.receipt.json.pgp")):
            opened = self.open_as(key or f"{agency.lower()}-supervisor", p)
            assert opened.rc == 0 and opened.signer == self.keys["gateway"].fingerprint
            out[p.name] = json.loads(opened.body)
        return out

    def receipts(self) -> dict[str, dict]:
        out = {}
        for p in sorted(self.zone("bank", "incoming").glob("*.receipt.json.pgp")):
            opened = self.open_as("bank", p)
            assert opened.rc == 0 and opened.signer == self.keys["gateway"].fingerprint
            out[p.name] = json.loads(opened.body)
        return out

    def inbox(self, agency: str) -> list[str]:
        return sorted(p.name for p in self.zone(agency, "inbox").iterdir())

    def written_files(self) -> list[Path]:
        return [p for base in (self.state, self.root / "zones") for p in base.rglob("*")
                if p.is_file() and not p.is_symlink()]

    def plaintext_leaks(self, records: list[dict[str, str]]) -> list[tuple[str, str]]:
        """(file, field) for every personal value found in any byte written by the gateway."""
        return LeakScanner(records).scan_files(self.written_files())


# The flow suites run on both deployments: the embedded default (local zones, SQLite) and
# the several-host one (SFTP zones, PostgreSQL) — each zone kind and each database once.
SITES = ["local-sqlite", "sftp-postgresql"]


def site_for(request, tmp_path: Path, keys: KeyBox) -> Site:
    """For a fixture parametrised over SITES."""
    zones, database = request.param.split("-")
    sshd = request.getfixturevalue("sshd") if zones == "sftp" else None
    url = (request.getfixturevalue("postgres").create_database() if database == "postgresql"
           else None)
    return Site(tmp_path / "site", keys, sshd=sshd, database_url=url)
