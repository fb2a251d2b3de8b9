"""Containment by path, never by string prefix, and the gateway's files out of the partners'
reach (issue 29).

The threats: a path check by string prefix (SFTPGo's advisories of 2024: ``/data/user1``
"contains" ``/data/user10``), so that a zone of AG0010 passes for AG001's, a zone nested in
the state directory passes as outside it, or the reverse; and a file the gateway trusts —
its configuration, its keys, its state — lying in a zone a partner writes (Cleo 2024: a
directory a file drop reaches, trusted as code), or writable by a user other than the
gateway's own. Every check is tried with sibling names (``AG001``/``AG0010``,
``inbox``/``inbox2``, ``var``/``var2``, ``shared``/``shared2``) on both sides of the line.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from gateway import config, scaffold
from gateway.config import trust
from gateway.config.base import within
from gateway.errors import ConfigError
from gateway.kit import config as kit_config


def site(tmp_path: Path) -> Path:
    """`gateway init` (state_dir "var", zones under "zones/", keys under "keys/")."""
    return scaffold.init_project(tmp_path / "gw")


def edit(path: Path, old: str, new: str) -> Path:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))
    return path


def problems(path: Path) -> list[str]:
    try:
        config.load(path)
    except ConfigError as exc:
        return exc.problems
    return []


# --- the comparison itself ---------------------------------------------------------------

@pytest.mark.parametrize(("path", "folder", "inside"), [
    ("/zones/AG001", "/zones/AG001", True),
    ("/zones/AG001/x.pgp", "/zones/AG001", True),
    ("/zones/AG0010", "/zones/AG001", False),
    ("/zones/AG0010/x.pgp", "/zones/AG001", False),
    ("/zones/inbox2", "/zones/inbox", False),
    ("/srv/state2", "/srv/state", False),
    ("/srv/state/../state2", "/srv/state", False),
    ("/srv/state2/../state/x", "/srv/state", True),
    ("/srv/gw", "/", True),
])
def test_within_compares_paths_component_by_component(path, folder, inside):
    assert within(path, folder) is inside


def test_within_resolves_symlinks_both_ways(tmp_path):
    (tmp_path / "zones" / "AG001").mkdir(parents=True)
    (tmp_path / "zones" / "AG0010").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "zones" / "AG001")
    assert within(tmp_path / "link" / "k.asc", tmp_path / "zones" / "AG001")
    assert within(tmp_path / "zones" / "AG001" / "k", tmp_path / "link")
    assert not within(tmp_path / "zones" / "AG0010", tmp_path / "link")


# --- zones and the gateway's directories (gateway.toml) -----------------------------------

@pytest.mark.parametrize("zone", ["zones/AG001/inbox", "zones/bank/outgoing"])
def test_a_zone_beside_state_dir_with_a_longer_name_is_accepted_inside_it_refused(tmp_path, zone):
    """``var2`` starts with ``var`` but is its sibling; ``var/inbox`` is inside."""
    path = site(tmp_path)
    edit(path, f'path = "{zone}"', 'path = "var2"')
    assert problems(path) == []
    edit(path, 'path = "var2"', 'path = "var/inbox"')
    assert any("overlap" in p and "gateway.state_dir" in p for p in problems(path))


def test_state_dir_beside_a_zone_is_accepted_inside_it_refused(tmp_path):
    path = site(tmp_path)
    edit(path, 'state_dir = "var"', 'state_dir = "zones/AG001/inbox2"')
    assert problems(path) == []
    edit(path, 'state_dir = "zones/AG001/inbox2"', 'state_dir = "zones/AG001/inbox/var"')
    assert any(p.startswith("agencies[0].inbox.path:") and "overlap" in p for p in problems(path))


def test_shared_dir_and_a_zone_with_sibling_names(tmp_path):
    path = site(tmp_path)
    edit(path, "# shared_dir = \"/srv/gateway-shared\"", 'shared_dir = "shared"')
    edit(path, 'path = "zones/AG001/outbox"', 'path = "shared2"')
    assert problems(path) == []
    edit(path, 'path = "shared2"', 'path = "shared/outbox"')
    assert any(p.startswith("agencies[0].outbox.path:") and "gateway.shared_dir" in p
               for p in problems(path))
    edit(path, 'path = "shared/outbox"', 'path = "zones/AG001/outbox"')
    edit(path, 'shared_dir = "shared"', 'shared_dir = "zones/AG001/outbox/shared"')
    assert any("gateway.shared_dir" in p and "overlap" in p for p in problems(path))


def test_two_agencies_zones_AG001_and_AG0010_are_two_zones(tmp_path):
    """Zones named by code, one code the prefix of the other: neither contains the other's
    files, so both load (an exact alias is refused, as before)."""
    path = scaffold.init_project(tmp_path / "gw", agencies=[
        scaffold.AgencyTemplate("AG001", "A"), scaffold.AgencyTemplate("AG0010", "B")])
    text = path.read_text()
    assert 'path = "zones/AG001/inbox"' in text and 'path = "zones/AG0010/inbox"' in text
    assert problems(path) == []
    edit(path, 'path = "zones/AG0010/inbox"', 'path = "zones/AG001/inbox"')
    assert any("same location as agencies[0].inbox" in p for p in problems(path))


# --- the configuration and the files it names, in a zone ----------------------------------

@pytest.mark.parametrize(("key_line", "key"), [
    ('secret_key = "keys/gateway.sec.asc"', "gateway.secret_key"),
    ('signing_keys = ["keys/ag001.pub.asc"]', "agencies[0].signing_keys[0]"),
    ('gateway_public_keys = ["keys/gateway.pub.asc"]', "console.gateway_public_keys[0]"),
    ('  encrypt_to = ["keys/ag001-collector.pub.asc"]', "agencies[0].roles.collector.encrypt_to[0]"),
])
@pytest.mark.parametrize(("folder", "inside"), [
    ("zones/AG001/inbox", True), ("zones/AG001/inbox2", False), ("zones/AG0010", False),
    ("zones/AG001", False),  # the zones' parent is no zone
])
def test_a_key_file_in_a_zone_is_refused_beside_it_accepted(tmp_path, key_line, key, folder, inside):
    """A partner who may write a key file the gateway trusts could swap in its own key."""
    path = site(tmp_path)
    name = key_line.split('"')[1]
    edit(path, key_line, key_line.replace(name, f"{folder}/{Path(name).name}"))
    found = [p for p in problems(path) if p.startswith(f"{key}:")]
    if inside:
        assert len(found) == 1 and "lies inside the zone agencies[0].inbox" in found[0], found
    else:
        assert found == []


def test_other_configured_files_in_a_zone_are_refused_too(tmp_path):
    """The sshd log (who fetched what) and the console's index are evidence: a partner must
    not be able to write them either."""
    path = site(tmp_path)
    edit(path, "[schema]\n", '[access]\nsshd_log = "zones/bank/incoming/sftp.log"\n\n[schema]\n')
    assert any(p.startswith("access.sshd_log:") and "the zone bank.incoming" in p
               for p in problems(path))


def moved_config(tmp_path: Path, folder: str) -> Path:
    """The site's gateway.toml moved to gw/<folder>/, its relative paths kept right."""
    path = site(tmp_path)
    text = path.read_text().replace('"keys/', '"../keys/').replace('"zones/', '"../zones/')
    text = text.replace('state_dir = "var"', 'state_dir = "../var"')
    (tmp_path / "gw" / folder).mkdir()
    moved = tmp_path / "gw" / folder / "gateway.toml"
    moved.write_text(text)
    path.unlink()
    return moved


def test_the_configuration_file_in_a_zone_is_refused_beside_it_accepted(tmp_path):
    moved = moved_config(tmp_path, "conf")
    assert problems(moved) == []
    edit(moved, 'path = "../zones/AG001/inbox"', 'path = "../conf2"')  # a sibling of conf
    assert problems(moved) == []
    edit(moved, 'path = "../conf2"', 'path = "."')
    assert problems(moved) == [
        f"agencies[0].inbox.path: {moved.parent} contains the configuration file {moved}; a "
        "partner could rewrite it — keep the configuration outside every zone"]


# --- who may write the configuration, state_dir, shared_dir, the keys ---------------------

@pytest.fixture
def cfg(tmp_path):
    path = site(tmp_path)
    edit(path, "# shared_dir = \"/srv/gateway-shared\"", 'shared_dir = "shared"')
    (tmp_path / "gw" / "shared").mkdir()
    for name in ("gateway.sec.asc", "ag001.pub.asc"):
        (tmp_path / "gw" / "keys" / name).write_text("a key\n")
    (tmp_path / "gw" / "keys" / "gateway.sec.asc").chmod(0o600)
    return config.load(path)


def writable(cfg, **ids) -> list[str]:
    return trust.writable_problems(cfg, **ids)


def test_files_owned_by_the_gateway_and_not_writable_by_others_pass(cfg):
    assert writable(cfg) == []


def test_root_owned_files_read_by_a_gateway_user_pass_unless_root_lets_others_write(cfg):
    """/etc/gateway as a bank installs it: root's, 0755/0644 (or root:gateway 0640). Seen
    from a gateway user (uid and gid not root's) files of root are fine; if root made one
    group-writable for its own group, that group is not the gateway's."""
    if os.geteuid() != 0:
        pytest.skip("the files must belong to root")
    assert writable(cfg, uid=54321, gid=54321) == []
    key = cfg.agencies[0].signing_keys[0]
    key.chmod(0o664)
    assert [p.split(":")[0] for p in writable(cfg, uid=54321, gid=54321)] == [
        "agencies[0].signing_keys[0]"]
    assert writable(cfg, uid=54321, gid=0) == []  # the gateway's own group may write


@pytest.mark.parametrize("what", ["config", "state_dir", "shared_dir", "secret_key", "signing_key"])
@pytest.mark.parametrize("mode_change", [stat.S_IWOTH, "group", "owner"])
def test_a_file_or_directory_the_gateway_trusts_writable_by_someone_else_is_refused(
        cfg, what, mode_change):
    path, key = {
        "config": (cfg.source, "the configuration file"),
        "state_dir": (cfg.gateway.state_dir, "gateway.state_dir"),
        "shared_dir": (cfg.gateway.shared_dir, "gateway.shared_dir"),
        "secret_key": (cfg.gateway.secret_key, "gateway.secret_key"),
        "signing_key": (cfg.agencies[0].signing_keys[0], "agencies[0].signing_keys[0]"),
    }[what]
    if mode_change == stat.S_IWOTH:
        path.chmod(path.stat().st_mode | stat.S_IWOTH)
        words = "is writable by any user"
    elif os.geteuid() != 0:
        pytest.skip("chown to another user or group needs root")
    elif mode_change == "group":
        os.chown(path, -1, 65534)
        path.chmod(path.stat().st_mode | stat.S_IWGRP)
        words = "is writable by group"
    else:
        os.chown(path, 65534, -1)
        words = "belongs to"
    found = writable(cfg)
    assert len(found) == 1, found
    assert found[0].startswith(f"{key}: {path} {words}"), found


def test_a_directory_above_a_key_writable_by_others_is_refused_unless_sticky(cfg):
    """Whoever may write the keys directory may put another key file in its place; in a
    sticky directory (as /tmp) only the owner of an entry may replace it."""
    keys = cfg.gateway.secret_key.parent
    keys.chmod(0o777)
    found = writable(cfg)
    assert {p.split(":")[0] for p in found} >= {"gateway.secret_key", "agencies[0].signing_keys[0]"}
    assert all(f"{keys} is writable by any user" in p for p in found)
    keys.chmod(0o1777)
    assert writable(cfg) == []


def test_zones_are_the_partners_to_write_and_are_not_checked(cfg):
    zone = cfg.agencies[0].inbox.path
    zone.mkdir(parents=True, exist_ok=True)
    zone.chmod(0o777)
    assert writable(cfg) == []


def test_a_sibling_of_a_writable_directory_is_not_inside_it(cfg, tmp_path):
    """keys2, writable by all, beside keys: nothing in keys is refused for it."""
    (tmp_path / "gw" / "keys2").mkdir(mode=0o777)
    (tmp_path / "gw" / "keys2").chmod(0o777)
    assert writable(cfg) == []


# --- the agency kit's store and state_dir (gateway/kit/config.py) -------------------------

KIT = """\
code = "AG001"
contract_id = "C-2026-001"
contract_end = 2027-11-01
timezone = "Asia/Shanghai"
state_dir = "{state}"
{store}signing_key = "keys/ag001.sec.asc"
gateway_key = "keys/gateway.pub.asc"
inbox = {{ kind = "local", path = "{inbox}" }}
outbox = {{ kind = "local", path = "zones/outbox" }}
[roles.collector]
key = "keys/ag001-collector.sec.asc"
"""


def kit_problems(tmp_path: Path, state="var", store=None, inbox="zones/inbox") -> list[str]:
    path = tmp_path / "agency.toml"
    path.write_text(KIT.format(state=state, inbox=inbox,
                               store=f'store = "{store}"\n' if store else ""))
    try:
        kit_config.load(path)
    except ConfigError as exc:
        return exc.problems
    return []


@pytest.mark.parametrize(("kw", "refused"), [
    ({"state": "var", "store": "var2"}, False),
    ({"state": "var", "store": "var/plain"}, True),
    ({"state": "store/var", "store": "store"}, True),
    ({"state": "zones/inbox2"}, False),
    ({"state": "zones/inbox/var"}, True),
    ({"store": "zones/inbox2"}, False),
    ({"store": "zones/inbox/plain"}, True),
    ({"inbox": "zones/AG0010", "state": "zones/AG001"}, False),
    ({"inbox": "zones/AG001", "state": "zones/AG001/var"}, True),
])
def test_the_kits_store_state_dir_and_zones_with_sibling_names(tmp_path, kw, refused):
    """The kit keeps plaintext in its store: it may share a directory with neither the
    state nor a zone the gateway writes, by path (the kit's check was already by path)."""
    assert bool(kit_problems(tmp_path, **kw)) is refused


def test_a_copy_of_the_site_is_not_refused_for_its_old_place(tmp_path):
    """The checks look at where the files are now: a site copied to gw2 beside gw loads."""
    path = site(tmp_path)
    shutil.copytree(tmp_path / "gw", tmp_path / "gw2")
    assert problems(tmp_path / "gw2" / path.name) == []


# --- the installer's paths (gateway/units.py) ----------------------------------------------

def test_install_root_is_taken_off_by_path_not_by_prefix():
    """`gateway install --root /r`: a path under /r loses the root, one under /r2 keeps it."""
    from gateway.units import host_path

    assert host_path(Path("/r/etc/gateway"), Path("/r")) == Path("/etc/gateway")
    assert host_path(Path("/r2/etc/gateway"), Path("/r")) == Path("/r2/etc/gateway")


def test_the_daemons_writable_zones_root_is_the_common_directory_not_a_common_prefix():
    """The unit's write access to the zones: AG001's and AG0010's chroots share /srv/zones,
    not the string /srv/zones/AG001."""
    import dataclasses

    from gateway.units import Chroot, Site

    chroots = [Chroot(f"agencies[{i}]", Path(f"/srv/zones/{c}"), c, None, None)
               for i, c in enumerate(("AG001", "AG0010"))]
    fields = {f.name: None for f in dataclasses.fields(Site)}
    site = Site(**{**fields, "chroots": chroots, "remote": []})
    assert site.zones_root == Path("/srv/zones")
