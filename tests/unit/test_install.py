"""`gateway init`'s two layouts and `gateway install`'s plan: what it would do, that doing it
twice changes nothing the second time, and that deploy/ is what it writes for the default
layout. Users and groups are a fake here (no host account is made); the files and
directories are real, under a root of the test's own."""

from __future__ import annotations

import datetime as dt
import os
import stat
from pathlib import Path

import pytest

from gateway import config, install, scaffold, units
from gateway.errors import ConfigError
from tests.conftest import run_cli

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
AGENCIES = [scaffold.AgencyTemplate("AG001", "A"), scaffold.AgencyTemplate("AG002", "B")]
NAMES = units.Names("gwu", "gwu-console", "gwu-{code}")


class FakeAccounts:
    """Users and groups in memory, with ids no host account is likely to have."""

    def __init__(self) -> None:
        self.users: dict[str, int] = {"root": 0}
        self.groups: dict[str, int] = {"root": 0}
        self.extra: dict[str, set[str]] = {}
        self.calls: list[str] = []

    def uid(self, user: str) -> int | None:
        return self.users.get(user)

    def gid(self, group: str) -> int | None:
        return self.groups.get(group)

    def members(self, group: str) -> set[str]:
        own = {u for u, uid in self.users.items() if self.groups.get(u) == uid and u == group}
        return own | self.extra.get(group, set())

    def add_user(self, user: str) -> None:
        self.calls.append(f"useradd {user}")
        self.users[user] = 47000 + len(self.users)
        self.groups[user] = self.users[user]

    def add_group(self, group: str) -> None:
        self.calls.append(f"groupadd {group}")
        self.groups[group] = 48000 + len(self.groups)

    def add_member(self, user: str, group: str) -> None:
        self.calls.append(f"usermod {user} +{group}")
        self.extra.setdefault(group, set()).add(user)


def production_site(root: Path, agencies: list[scaffold.AgencyTemplate] = AGENCIES,
                    **layout: Path) -> Path:
    """A production config whose paths all lie under *root* (as `gateway init DIR
    --state-dir … --zones-dir …` writes it)."""
    lay = scaffold.Layout(root / "var/lib/gateway", root / "srv/gateway/zones",
                          root / "var/lib/gateway-console", **layout)
    return scaffold.init_project(root / "etc/gateway", agencies=agencies,
                                 today=dt.date(2026, 1, 1), layout=lay)


def lines(p: install.Plan, dry_run: bool) -> list[str]:
    return [f"{mark} {text}" for mark, text in install.execute(p, dry_run=dry_run)]


def test_deploy_holds_what_install_writes_for_the_default_layout(tmp_path):
    """The units and the sshd drop-in in deploy/ are the installer's, for the default
    names and paths (and two agencies): the two never drift apart."""
    cfg = config.load(scaffold.init_project(tmp_path / "etc" / "gateway", agencies=AGENCIES,
                                            today=dt.date(2026, 1, 1), layout=scaffold.PRODUCTION))
    site = units.site_of(cfg, units.Names(), strip=tmp_path)
    assert units.gateway_service(site) == (DEPLOY / "gateway.service").read_text()
    assert units.console_service(site) == (DEPLOY / "gateway-console.service").read_text()
    assert units.sshd_dropin(site) == (DEPLOY / "sshd_config.d" / "gateway-zones.conf").read_text()


def test_dry_run_lists_every_step_and_changes_nothing(tmp_path):
    cfg = config.load(production_site(tmp_path))
    accounts = FakeAccounts()
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    out = lines(install.plan(cfg, names=NAMES, root=tmp_path, accounts=accounts), dry_run=True)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert accounts.calls == []
    todo = [ln for ln in out if ln.startswith("todo ")]
    zones = tmp_path / "srv/gateway/zones"
    for want in ["todo group gwu-bank", "todo group gwu-ag001", "todo group gwu-ag002",
                 "todo system user gwu (its own group, no home, /usr/sbin/nologin)",
                 "todo system user gwu-console (its own group, no home, /usr/sbin/nologin)",
                 "todo user gwu-console in group gwu", "todo user gwu in group gwu-ag001",
                 f"todo directory {tmp_path}/var/lib/gateway gwu:gwu 0710",
                 f"todo directory {tmp_path}/var/lib/gateway/ledger gwu:gwu 2770",
                 f"todo directory {tmp_path}/var/lib/gateway-console gwu-console:gwu-console 0700",
                 f"todo directory {zones}/AG001 root:root 0755",
                 f"todo directory {zones}/AG001/inbox gwu:gwu-ag001 2770",
                 f"todo directory {zones}/AG001/outbox gwu:gwu-ag001 2770",
                 f"todo directory {zones}/bank/outgoing gwu:gwu-bank 2770",
                 f"todo directory {zones}/bank/incoming gwu:gwu-bank 2770",
                 f"todo file {tmp_path}/etc/gateway/gateway.toml root:gwu 0640",
                 f"todo file {tmp_path}/etc/systemd/system/gateway.service (as written for this "
                 "config)",
                 f"todo file {tmp_path}/etc/ssh/sshd_config.d/gateway-zones.conf (as written for "
                 "this config)"]:
        assert want in todo, want
    # the secret key is not there yet: said, not made
    assert f"warn {tmp_path}/etc/gateway/keys/gateway.sec.asc is not there yet (put it there, " \
           "mode 0600, and run gateway install again)" in out
    # users before the directories they own
    assert todo.index("todo system user gwu (its own group, no home, /usr/sbin/nologin)") < \
        todo.index(f"todo directory {zones}/AG001/inbox gwu:gwu-ag001 2770")


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_install_twice_changes_nothing_the_second_time(tmp_path):
    tmp_path.chmod(0o755)
    conf = production_site(tmp_path)
    (conf.parent / "keys" / "gateway.sec.asc").write_text("secret")
    (conf.parent / "keys" / "bank.pub.asc").write_text("public")
    cfg = config.load(conf)
    accounts = FakeAccounts()
    first = lines(install.plan(cfg, names=NAMES, root=tmp_path, accounts=accounts), dry_run=False)
    assert not any(ln.startswith("todo ") for ln in first)
    assert sum(ln.startswith("done ") for ln in first) > 20
    calls = list(accounts.calls)
    second = lines(install.plan(cfg, names=NAMES, root=tmp_path, accounts=accounts), dry_run=False)
    assert [ln for ln in second if ln.startswith(("done ", "todo "))] == []
    assert accounts.calls == calls  # nobody added twice
    again = lines(install.plan(cfg, names=NAMES, root=tmp_path, accounts=accounts), dry_run=True)
    assert [ln for ln in again if ln.startswith("todo ")] == []

    def owner(p: Path) -> tuple[int, int, int]:
        st = p.stat()
        return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)

    u, ag1 = accounts.users["gwu"], accounts.groups["gwu-ag001"]
    zones = tmp_path / "srv/gateway/zones"
    assert owner(zones / "AG001") == (0, 0, 0o755)
    assert owner(zones / "AG001/inbox") == (u, ag1, 0o2770)
    assert owner(zones / "AG001/outbox") == (u, ag1, 0o2770)
    for parent in (zones, zones.parent, zones.parent.parent):
        assert owner(parent)[0] == 0 and not owner(parent)[2] & 0o022
    assert owner(conf.parent / "keys" / "gateway.sec.asc") == (u, u, 0o600)
    assert owner(conf.parent / "keys" / "bank.pub.asc") == (0, u, 0o640)
    assert owner(conf) == (0, u, 0o640)
    assert owner(tmp_path / "var/lib/gateway") == (u, u, 0o710)
    unit = (tmp_path / "etc/systemd/system/gateway.service").read_text()
    assert "ReadWritePaths=/var/lib/gateway /srv/gateway/zones\n" in unit  # the host's paths
    # something changed by hand is put back, and only that
    (zones / "AG001/inbox").chmod(0o777)
    third = lines(install.plan(cfg, names=NAMES, root=tmp_path, accounts=accounts), dry_run=False)
    assert [ln for ln in third if ln.startswith("done ")] == [
        f"done directory {zones}/AG001/inbox gwu:gwu-ag001 2770"]


def test_remote_zones_are_skipped_with_a_line_each(tmp_path):
    conf = production_site(tmp_path, agencies=AGENCIES[:1])
    text = conf.read_text()
    zone = f'{{ kind = "local", path = "{tmp_path}/srv/gateway/zones/AG001/inbox" }}'
    assert zone in text
    conf.write_text(text.replace(zone, '{ kind = "sftp", host = "sftp.ag001.example", '
                                       'username = "gw", private_key = "keys/sftp", '
                                       'known_host = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGUx", '
                                       'path = "/in" }'))
    (conf.parent / "keys" / "sftp").write_text("k")
    cfg = config.load(conf)
    out = lines(install.plan(cfg, names=NAMES, root=tmp_path, accounts=FakeAccounts()), True)
    assert "info agencies[0].inbox: an SFTP zone on sftp.ag001.example: nothing to make on this " \
           "host" in out
    # its outbox is still local: the chroot is made for it alone
    assert f"todo directory {tmp_path}/srv/gateway/zones/AG001/outbox gwu:gwu-ag001 2770" in out
    assert not any("AG001/inbox" in ln for ln in out)
    assert f"todo file {tmp_path}/etc/gateway/keys/sftp gwu:gwu 0600" in out


def test_an_agencys_zones_in_two_directories_are_refused_naming_the_key(tmp_path):
    conf = production_site(tmp_path, agencies=AGENCIES[:1])
    conf.write_text(conf.read_text().replace("zones/AG001/outbox", "zones/elsewhere/outbox"))
    with pytest.raises(ConfigError, match=r"^agencies\[0\]\.inbox: .* must lie in one directory"):
        install.plan(config.load(conf), names=NAMES, root=tmp_path, accounts=FakeAccounts())


@pytest.mark.parametrize("code", ["BANK", "ag001"])
def test_two_parties_sharing_an_sshd_group_are_refused(tmp_path, code):
    """An agency coded "bank" would be chrooted with the bank's group (and its case files);
    codes differing only in case would share one group, one chroot's zones."""
    agencies = [*AGENCIES[:1], scaffold.AgencyTemplate(code, "C")]
    conf = production_site(tmp_path, agencies=agencies)
    with pytest.raises(ConfigError, match=r"^agencies\[1\]: its sshd group gwu-"):
        install.plan(config.load(conf), names=NAMES, root=tmp_path, accounts=FakeAccounts())


def test_init_production_layout_makes_no_zone_or_state_directory(tmp_path):
    proc = run_cli("init", str(tmp_path / "etc"), "--state-dir", str(tmp_path / "state"),
                   "--zones-dir", str(tmp_path / "zones"))
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["etc"]
    text = (tmp_path / "etc" / "gateway.toml").read_text()
    assert f'state_dir = "{tmp_path}/state"' in text
    assert f'database_url = "sqlite:///{tmp_path}/state/ledger/gateway.db"' in text
    assert f'path = "{tmp_path}/zones/AG001/inbox"' in text
    assert 'audit_index = "/var/lib/gateway-console/audit-index.sqlite"' in text
    assert "group_access = true" in text and "SPEC" not in text
    assert "gateway install" in proc.stdout


def test_init_dir_alone_is_the_self_contained_trial(tmp_path):
    proc = run_cli("init", str(tmp_path / "site"))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "site" / "zones" / "AG001" / "inbox").is_dir()
    text = (tmp_path / "site" / "gateway.toml").read_text()
    assert 'state_dir = "var"' in text and "group_access" not in text and "SPEC" not in text


def test_group_access_wants_the_sqlite_ledger_in_a_directory_of_its_own(tmp_path):
    conf = production_site(tmp_path)
    conf.write_text(conf.read_text().replace("/ledger/gateway.db", "/gateway.db"))
    with pytest.raises(ConfigError, match=r"console\.group_access: the SQLite ledger"):
        config.load(conf)


def test_agency_group_without_code_is_a_usage_error(tmp_path):
    conf = production_site(tmp_path)
    proc = run_cli("install", "-c", str(conf), "--root", str(tmp_path), "--dry-run",
                   "--agency-group", "agencies")
    assert proc.returncode == 2 and "--agency-group" in proc.stderr
