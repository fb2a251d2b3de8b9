"""Config errors name the key path and the problem, one line each."""

from __future__ import annotations

import datetime as dt

import pytest

from gateway import config, scaffold
from gateway.errors import ConfigError

# a well-formed ssh-ed25519 blob
HOSTKEY = "AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f"


@pytest.fixture
def cfg_path(tmp_path):
    return scaffold.init_project(tmp_path / "gw", today=dt.date(2026, 1, 1))


def edit(path, old, new):
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def problems(path) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        config.load(path)
    assert exc.value.exit_code == 2
    return exc.value.problems


def test_template_loads_and_resolves_paths(cfg_path):
    cfg = config.load(cfg_path)
    assert cfg.gateway.state_dir == cfg_path.parent / "var"
    assert cfg.bank.signing_keys == [cfg_path.parent / "keys" / "bank.pub.asc"]
    assert cfg.agencies[0].contract.effective_end == dt.date(2027, 1, 1)
    assert set(cfg.roles) == {"supervisor", "collector", "field_visitor", "analyst"}
    assert len(cfg.sha256) == 64
    assert cfg.gateway.db_url.startswith("sqlite:///")


@pytest.mark.parametrize(("old", "new", "expected"), [
    ("purge_after_days = 30", "purge_after_days = 45", "gateway.purge_after_days: is 45"),
    ("purge_after_days = 30", "purge_after_days = -1", "gateway.purge_after_days: must be greater"),
    ('timezone = "Asia/Shanghai"', 'timezone = "Mars/Olympus"', "gateway.timezone:"),
    ('contact_hours = "08:00-21:00"', 'contact_hours = "21:00-08:00"', "gateway.contact_hours:"),
    ('contact_hours = "08:00-21:00"', 'contact_hours = "8-21"', "gateway.contact_hours:"),
    ('state_dir = "var"', 'state_dir = "var"\nstate_dri = "x"', "gateway.state_dri: unknown key"),
    ('on_invalid = "reject_batch"', 'on_invalid = "ignore"', "schema.on_invalid: must be"),
    ('# customer_name = "客户姓名"', 'customer_nam = "客户姓名"',
     'schema.columns: "customer_nam" is not a canonical case field'),
    ('[roles.collector]\n', '[roles.collector]\ntotal_due_x = "full"\n',
     'roles.collector.total_due_x: "total_due_x" is not a canonical case field'),
    ('outgoing = { kind = "local"', 'outgoing = { kind = "ftp"', "bank.outgoing: kind must be"),
    ('code = "AG001"', 'code = "AG.001"', "agencies[0].code:"),
    ('[agencies.roles.collector]', '[agencies.roles.collectr]',
     'agencies[0].roles.collectr: role "collectr" is not defined under [roles]'),
    ('receipts_role = "supervisor"', 'receipts_role = "boss"', "agencies[0].receipts_role:"),
    ('# lease_seconds = 60', 'lease_seconds = 1', "gateway.lease_seconds: must be greater"),
    ('# shared_dir = "/srv/gateway-shared"', 'shared_dir = "zones"',
     "and gateway.shared_dir"),
])
def test_one_line_per_problem_naming_the_key(cfg_path, old, new, expected):
    edit(cfg_path, old, new)
    found = problems(cfg_path)
    assert any(expected in p for p in found), found
    assert all("\n" not in p for p in found)


@pytest.mark.parametrize("key", ["source", "sha256"])
def test_keys_load_sets_are_unknown_in_the_file(cfg_path, key):
    """source and sha256 are what load() records about the file; written in it, they would
    be silently overwritten, so they are refused like any misspelt key."""
    text = cfg_path.read_text()
    cfg_path.write_text(f'{key} = "x"\n' + text)
    found = problems(cfg_path)
    assert found == [f"{key}: unknown key (check the spelling)"], found


def test_mask_on_an_amount_is_a_config_error(cfg_path):
    edit(cfg_path, '[roles.collector]\n', '[roles.collector]\nprincipal = "mask"\n')
    (p,) = problems(cfg_path)
    assert p.startswith("roles.collector.principal: rule \"mask\" cannot apply to amount field")


def test_region_only_for_addresses(cfg_path):
    edit(cfg_path, '[roles.collector]\n', '[roles.collector]\nemployer = "region"\n')
    assert problems(cfg_path)[0].startswith("roles.collector.employer:")


def test_role_must_keep_case_id(cfg_path):
    edit(cfg_path, '[roles.analyst]\ncase_id = "full"\n', '[roles.analyst]\n')
    assert any(p.startswith("roles.analyst.case_id:") for p in problems(cfg_path))


def test_agency_without_roles(cfg_path):
    text = cfg_path.read_text()
    start = text.index("  [agencies.roles.supervisor]")
    cfg_path.write_text(text[:start] + "  [agencies.roles]\n")
    found = problems(cfg_path)
    assert any(p.startswith("agencies[0].roles: agency AG001 has no roles") for p in found), found


def test_contract_dates(cfg_path):
    edit(cfg_path, "  # terminated_on = 2026-06-30", "  terminated_on = 2025-06-30")
    assert any("agencies[0].contract" in p and "terminated_on" in p for p in problems(cfg_path))


def test_sftp_zone_needs_a_pinned_host_key(cfg_path):
    edit(cfg_path, 'incoming = { kind = "local", path = "zones/bank/incoming" }',
         'incoming = { kind = "sftp", host = "127.0.0.1", username = "gw", '
         'private_key = "keys/id", path = "/in" }')
    assert "bank.incoming.known_host: is required" in problems(cfg_path)


def test_sftp_zone_rejects_a_bad_host_key_and_relative_path(cfg_path):
    edit(cfg_path, 'incoming = { kind = "local", path = "zones/bank/incoming" }',
         'incoming = { kind = "sftp", host = "h", username = "gw", private_key = "keys/id", '
         'known_host = "AAAA", path = "in" }')
    found = problems(cfg_path)
    assert any(p.startswith("bank.incoming.known_host: must be a pinned host key") for p in found)
    assert any(p.startswith("bank.incoming.path: must be an absolute path") for p in found)


def test_sftp_zone_accepts_known_hosts_line(cfg_path):
    edit(cfg_path, 'incoming = { kind = "local", path = "zones/bank/incoming" }',
         'incoming = { kind = "sftp", host = "h", username = "gw", private_key = "keys/id", '
         f'known_host = "h ssh-ed25519 {HOSTKEY}", path = "/in" }}')
    zone = config.load(cfg_path).bank.incoming
    assert zone.known_host == f"ssh-ed25519 {HOSTKEY}"


def test_duplicate_zone_location(cfg_path):
    edit(cfg_path, 'path = "zones/bank/incoming"', 'path = "zones/bank/outgoing"')
    assert any(p.startswith("bank.incoming: same location as bank.outgoing")
               for p in problems(cfg_path))


def test_invalid_toml_and_missing_file(tmp_path, cfg_path):
    cfg_path.write_text("[gateway\n")
    (p,) = problems(cfg_path)
    assert p.startswith("not valid TOML")
    (p,) = problems(tmp_path / "absent.toml")
    assert "not found" in p


def test_passphrase_env_is_not_needed_to_read_the_config(cfg_path, monkeypatch):
    """Only what opens the secret key needs the passphrase (`run`, `check`: refused there,
    tests/integration/test_crypto_service.py); the console's unit never sees it."""
    monkeypatch.delenv("GW_TEST_PASS", raising=False)
    edit(cfg_path, '# passphrase_env = "GATEWAY_KEY_PASSPHRASE"', 'passphrase_env = "GW_TEST_PASS"')
    assert config.load(cfg_path).gateway.passphrase_env == "GW_TEST_PASS"


def test_error_message_carries_the_file_name(cfg_path):
    edit(cfg_path, "purge_after_days = 30", "purge_after_days = 31")
    with pytest.raises(ConfigError) as exc:
        config.load(cfg_path)
    assert str(exc.value).startswith(f"{cfg_path}: gateway.purge_after_days:")


def test_shared_dir_holds_what_another_node_needs(cfg_path):
    edit(cfg_path, '# shared_dir = "/srv/gateway-shared"', 'shared_dir = "shared"')
    gw = config.load(cfg_path).gateway
    assert (gw.shared, gw.state_dir, gw.lease_seconds) == (
        cfg_path.parent / "shared", cfg_path.parent / "var", 60)


@pytest.mark.parametrize("delimiter", ['"\\""', '"\\r"', '"\\n"', '"\\u0000"'])
def test_a_delimiter_that_cannot_separate_fields_is_refused(cfg_path, delimiter):
    """Found by the fuzz suite: with a quote as the delimiter, Arrow's reader raised
    and the reference reader read something else than was meant."""
    edit(cfg_path, 'delimiter = ","', f"delimiter = {delimiter}")
    (problem,) = problems(cfg_path)
    assert "schema.delimiter" in problem and "cannot separate fields" in problem
