"""An agency kit installation next to a real gateway site (tests/flowsite.Site): AG001's
kit on the site's local zones, its keys copied from the session's keybox."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
from pathlib import Path

from gateway import documents
from gateway.kit import cli
from tests.conftest import KeyBox
from tests.flowsite import Site
from tests.gpgparty import GpgParty, validsig_primary


class KitSite:
    def __init__(self, root: Path, site: Site, keys: KeyBox, *, roles: tuple[str, ...] = ("collector",),
                 store: bool = False, contract_end: dt.date | None = None,
                 sshd: object | None = None) -> None:
        self.root, self.site, self.keys = root, site, keys
        (root / "keys").mkdir(parents=True, mode=0o700)
        for name in ("ag001", *(f"ag001-{r}" for r in roles)):
            dst = root / "keys" / f"{name}.sec.asc"
            shutil.copy(keys[name].sec, dst)
            dst.chmod(0o600)
        shutil.copy(keys["gateway"].pub, root / "keys" / "gateway.pub.asc")
        end = contract_end or dt.date.today() + dt.timedelta(days=300)
        # the site's contract id (C-<year>-001, by the year the site's contract began)
        self.contract = site.cfg().agency("AG001").contract.id
        inbox, outbox = (f'{{ kind = "local", path = "{site.zone("AG001", box)}", settle_seconds = 0 }}'
                         for box in ("inbox", "outbox"))
        if sshd is not None:  # the same directories, through a real SFTP server
            inbox, outbox = (sshd.zone_toml(site.zone("AG001", box))  # type: ignore[attr-defined]
                             for box in ("inbox", "outbox"))
        lines = [
            'code = "AG001"', f'contract_id = "{self.contract}"', f"contract_end = {end.isoformat()}",
            'timezone = "Asia/Shanghai"', 'state_dir = "var"',
            'signing_key = "keys/ag001.sec.asc"', 'gateway_key = "keys/gateway.pub.asc"',
            f"inbox = {inbox}", f"outbox = {outbox}",
        ]
        if store:
            lines.append('store = "store"')
        for r in roles:
            lines += [f"[roles.{r}]", f'key = "keys/ag001-{r}.sec.asc"']
        self.config = root / "agency.toml"
        self.config.write_text("\n".join(lines) + "\n")

    def end_contract(self, days_ago: int = 3) -> dt.date:
        """agency.toml's contract_end moved to *days_ago* days before today (a contract
        that ran while the kit fetched, and has ended since)."""
        end = dt.date.today() - dt.timedelta(days=days_ago)
        lines = [f"contract_end = {end.isoformat()}" if line.startswith("contract_end = ")
                 else line for line in self.config.read_text().splitlines()]
        self.config.write_text("\n".join(lines) + "\n")
        return end

    @property
    def state(self) -> Path:
        return self.root / "var"

    @property
    def store(self) -> Path:
        return self.root / "store"

    def run(self, *args: str, capsys=None) -> tuple[int, str, str]:
        """The command in this process (fast; monkeypatches apply)."""
        code = cli.main([*args, "--config", str(self.config)])
        if capsys is None:
            return code, "", ""
        out = capsys.readouterr()
        return code, out.out, out.err

    def run_process(self, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        """The command as a person runs it: ``python -m gateway.kit``."""
        return subprocess.run([sys.executable, "-m", "gateway.kit", *args, "--config",
                               str(self.config)], capture_output=True, input=stdin, check=False)

    def outbox(self) -> list[Path]:
        return sorted(self.site.zone("AG001", "outbox").iterdir())

    def open_document(self, path: Path) -> documents.Document:
        """As the gateway will: decrypt with its key, check the agency signed it, parse."""
        body = self.open_for_gateway(path)
        kind = documents.kind_of(path.name)
        assert kind is not None, path.name
        return documents.parse(body, kind)

    def open_for_gateway(self, path: Path) -> bytes:
        party = GpgParty(self.keys["gateway"].sec, self.keys["ag001"].pub)
        try:
            body, status, rc = party.decrypt(path.read_bytes())
        finally:
            party.close()
        assert rc == 0 and validsig_primary(status) == self.keys["ag001"].fingerprint
        return body

    def ledger_rows(self, sql: str) -> list[tuple]:
        import sqlite3

        db = sqlite3.connect(self.state / "kit.db")
        try:
            return db.execute(sql).fetchall()
        finally:
            db.close()

    @staticmethod
    def json_of(text: str) -> dict:
        return json.loads(text)
