"""The kit's agency.toml: strict, every problem one line naming its key; and the sample
that `gateway-agency init` writes is a valid start."""

from __future__ import annotations

import datetime as dt

import pytest

from gateway.errors import ConfigError
from gateway.kit import config

GOOD = """\
code = "AG001"
contract_id = "C-2026-001"
contract_end = 2027-11-01
timezone = "Asia/Shanghai"
state_dir = "var"
signing_key = "keys/ag001.sec.asc"
gateway_key = "keys/gateway.pub.asc"
inbox = { kind = "local", path = "zones/inbox" }
outbox = { kind = "local", path = "zones/outbox" }
[roles.collector]
key = "keys/ag001-collector.sec.asc"
"""


def load(tmp_path, text: str) -> config.AgencyConfig:
    path = tmp_path / "agency.toml"
    path.write_text(text)
    return config.load(path)


def problems(tmp_path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        load(tmp_path, text)
    assert exc.value.exit_code == 2
    return exc.value.problems


def test_a_good_file_resolves_paths_against_its_directory(tmp_path):
    cfg = load(tmp_path, GOOD)
    assert cfg.state_dir == tmp_path / "var" and cfg.roles["collector"].key == \
        tmp_path / "keys" / "ag001-collector.sec.asc"
    assert cfg.inbox.path == tmp_path / "zones" / "inbox"  # type: ignore[union-attr]
    assert cfg.deletion_deadline == dt.date(2027, 12, 1) and cfg.store is None
    assert cfg.contact_window == (dt.time(8), dt.time(21))


@pytest.mark.parametrize(("change", "expected"), [
    (('code = "AG001"\n', ""), "code: is required"),
    (('code = "AG001"', 'code = "AG.001"'), "code: Value error, 'AG.001' is not an agency code"),
    (('timezone = "Asia/Shanghai"', 'timezone = "Mars/Olympus"'), "timezone:"),
    (("contract_end = 2027-11-01", 'contract_end = "soon"'), "contract_end:"),
    (('state_dir = "var"', 'state_dir = "var"\nstate = 1'), "state: unknown key (check the spelling)"),
    (('kind = "local", path = "zones/inbox"', 'kind = "ftp", path = "zones/inbox"'),
     'inbox: kind must be "local" or "sftp"'),
    (("[roles.collector]", "[roles.Collector]"), "roles.Collector:"),
    (('[roles.collector]\nkey = "keys/ag001-collector.sec.asc"\n', ""),
     "roles: Value error, at least one role key is needed"),
    (('state_dir = "var"', 'state_dir = "var"\nstore = "var/plain"'),
     "store: must not be inside state_dir"),
    (('state_dir = "var"', 'state_dir = "zones/outbox/var"'),
     "state_dir: must lie outside the outbox zone's directory"),
])
def test_each_problem_names_its_key(tmp_path, change, expected):
    found = problems(tmp_path, GOOD.replace(*change, 1))
    assert any(expected.replace("Value error, ", "") in p for p in found), found


def test_missing_file_and_bad_toml_are_one_line(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        config.load(tmp_path / "nope.toml")
    assert problems(tmp_path, "code = ")[0].startswith("not valid TOML")


def test_the_sample_loads_and_is_never_overwritten(tmp_path):
    path = config.write_sample(tmp_path / "kit")
    cfg = config.load(path)
    assert cfg.code == "AG001" and cfg.inbox.kind == "sftp"
    with pytest.raises(FileExistsError):
        config.write_sample(tmp_path / "kit")


def test_config_path_order(monkeypatch, tmp_path):
    monkeypatch.delenv(config.ENV, raising=False)
    assert config.config_path(None) == config.DEFAULT_PATH
    monkeypatch.setenv(config.ENV, str(tmp_path / "x.toml"))
    assert config.config_path(None) == tmp_path / "x.toml"
    assert config.config_path(tmp_path / "y.toml") == tmp_path / "y.toml"


def test_an_ssh_key_readable_by_others_is_refused_naming_it(tmp_path):
    from types import SimpleNamespace

    from gateway.kit import cli

    key = tmp_path / "ssh_ed25519"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    key.chmod(0o644)
    with pytest.raises(ConfigError, match=r"outbox.private_key: .* mode 644; it must be 0600"):
        cli._ssh_key(SimpleNamespace(private_key=key), "outbox")
    key.chmod(0o600)
    cli._ssh_key(SimpleNamespace(private_key=key), "outbox")
    with pytest.raises(ConfigError, match=r"inbox\.private_key: cannot read"):
        cli._ssh_key(SimpleNamespace(private_key=tmp_path / "absent"), "inbox")
