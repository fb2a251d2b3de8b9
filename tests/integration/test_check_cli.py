"""`gateway init` + `keys generate` + `check`, and one readable error line per misconfiguration."""

from __future__ import annotations

import shutil

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.integration


def errors_of(proc) -> list[str]:
    return [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]


def test_init_generate_check_from_scratch(tmp_path):
    d = tmp_path / "site"
    proc = run_cli("init", str(d))
    assert proc.returncode == 0, proc.stderr
    for name in ("gateway", "bank", "ag001", "ag001-supervisor", "ag001-collector"):
        proc = run_cli("keys", "generate", name, "--email", f"{name}@example.com",
                       "--out", str(d / "keys"))
        assert proc.returncode == 0, proc.stderr
    assert (d / "keys" / "gateway.sec.asc").stat().st_mode & 0o777 == 0o600
    proc = run_cli("check", "-c", str(d / "gateway.toml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "self-test" in proc.stdout
    # the config comes from the environment too (docs/cli.md)
    proc = run_cli("check", env={"GATEWAY_CONFIG": str(d / "gateway.toml")})
    assert proc.returncode == 0, proc.stderr


def test_init_refuses_to_overwrite(setup):
    proc = run_cli("init", str(setup.dir))
    assert proc.returncode == 2 and "already exists" in proc.stderr


def test_generated_config_checks(setup):
    proc = run_cli("check", "-c", str(setup.config))
    assert proc.returncode == 0, proc.stderr


def test_purge_after_45_days_is_a_config_error(setup):
    setup.edit("purge_after_days = 30", "purge_after_days = 45")
    proc = run_cli("check", "-c", str(setup.config))
    assert proc.returncode == 2
    (line,) = errors_of(proc)
    assert "gateway.purge_after_days" in line and "45" in line


def test_undefined_role(setup):
    setup.edit("[agencies.roles.collector]", "[agencies.roles.collectr]")
    proc = run_cli("check", "-c", str(setup.config))
    assert proc.returncode == 2
    (line,) = errors_of(proc)
    assert line.endswith('agencies[0].roles.collectr: role "collectr" is not defined under [roles]')


def test_missing_key_file(setup):
    (setup.dir / "keys" / "bank.pub.asc").unlink()
    proc = run_cli("check", "-c", str(setup.config))
    assert proc.returncode == 2
    lines = errors_of(proc)
    assert lines and all("keys/bank.pub.asc: key file does not exist" in ln for ln in lines)
    assert "bank.signing_keys[0]" in lines[0]


def test_weak_rsa_key(setup):
    shutil.copy(setup.keys["weak"].pub, setup.dir / "keys" / "ag001.pub.asc")
    proc = run_cli("check", "-c", str(setup.config))
    assert proc.returncode == 2
    (line,) = errors_of(proc)
    assert "agencies[0].signing_keys[0]" in line and "RSA 2048 bits is too weak" in line
    assert "no usable key left" in line


def test_expired_key(setup):
    shutil.copy(setup.keys["expired"].pub, setup.dir / "keys" / "ag001-collector.pub.asc")
    proc = run_cli("check", "-c", str(setup.config))
    assert proc.returncode == 2
    (line,) = errors_of(proc)
    assert "agencies[0].roles.collector.encrypt_to[0]" in line and "expired on" in line


def test_revoked_key(setup):
    shutil.copy(setup.keys["revoked"].pub, setup.dir / "keys" / "bank.pub.asc")
    proc = run_cli("check", "-c", str(setup.config))
    assert proc.returncode == 2
    assert all("is revoked" in ln for ln in errors_of(proc))


def test_world_readable_secret_key(setup):
    (setup.dir / "keys" / "gateway.sec.asc").chmod(0o644)
    proc = run_cli("check", "-c", str(setup.config))
    assert proc.returncode == 2
    (line,) = errors_of(proc)
    assert "gateway.secret_key" in line and "mode 0644" in line and "chmod 600" in line


def test_weak_key_in_a_list_is_a_warning_when_another_remains(setup):
    shutil.copy(setup.keys["weak"].pub, setup.dir / "keys" / "bank-old.pub.asc")
    setup.edit('signing_keys = ["keys/bank.pub.asc"]',
               'signing_keys = ["keys/bank.pub.asc", "keys/bank-old.pub.asc"]')
    proc = run_cli("check", "-c", str(setup.config))
    assert proc.returncode == 0, proc.stderr
    assert "warn" in proc.stderr and "bank.signing_keys[1]" in proc.stderr
    assert "ignored" in proc.stderr


def test_public_key_given_as_gateway_secret(setup):
    shutil.copy(setup.dir / "keys" / "gateway.pub.asc", setup.dir / "keys" / "gateway.sec.asc")
    (setup.dir / "keys" / "gateway.sec.asc").chmod(0o600)
    proc = run_cli("check", "-c", str(setup.config))
    assert proc.returncode == 2
    assert "holds no secret key" in errors_of(proc)[0]


def test_a_loose_public_key_as_gateway_secret_says_what_it_is_first(setup):
    """Copied from the public key, the file has 0644 too: `check` once asked for chmod 600
    and only after it said the file holds no secret key — the fix that matters."""
    shutil.copy(setup.dir / "keys" / "gateway.pub.asc", setup.dir / "keys" / "gateway.sec.asc")
    (setup.dir / "keys" / "gateway.sec.asc").chmod(0o644)
    proc = run_cli("check", "-c", str(setup.config))
    assert proc.returncode == 2
    (line,) = errors_of(proc)
    assert "gateway.secret_key" in line and "holds no secret key" in line
    assert "mode" not in line and "chmod" not in line


def test_secret_key_in_a_public_slot_is_refused(setup):
    shutil.copy(setup.keys["bank"].sec, setup.dir / "keys" / "bank.pub.asc")
    proc = run_cli("check", "-c", str(setup.config))
    assert proc.returncode == 2
    assert "holds a secret key" in errors_of(proc)[0]


def test_the_gateways_own_key_as_the_banks_recipient_is_refused(setup):
    """Receipts and results sealed only to the gateway's key are unreadable by the bank;
    `check` once passed it. Known by its fingerprint: a copy under the bank's name too."""
    setup.edit('encrypt_to = ["keys/bank.pub.asc"]', 'encrypt_to = ["keys/gateway.pub.asc"]')
    proc = run_cli("check", "-c", str(setup.config))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    (line,) = errors_of(proc)
    assert "bank.encrypt_to[0]" in line and "the gateway's own key" in line
    shutil.copy(setup.dir / "keys" / "gateway.pub.asc", setup.dir / "keys" / "bank-enc.pub.asc")
    setup.edit('encrypt_to = ["keys/gateway.pub.asc"]',
               'encrypt_to = ["keys/bank.pub.asc", "keys/bank-enc.pub.asc"]')
    proc = run_cli("check", "-c", str(setup.config))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    (line,) = errors_of(proc)
    assert "bank.encrypt_to[1]" in line and "the gateway's own key" in line


def test_the_gateways_own_key_as_a_roles_recipient_is_refused(setup):
    shutil.copy(setup.dir / "keys" / "gateway.pub.asc",
                setup.dir / "keys" / "ag001-collector.pub.asc")
    proc = run_cli("check", "-c", str(setup.config))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    (line,) = errors_of(proc)
    assert "agencies[0].roles.collector.encrypt_to[0]" in line
    assert "the gateway's own key" in line


def test_missing_config_is_one_line(tmp_path):
    proc = run_cli("check", "-c", str(tmp_path / "nope.toml"))
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_check_and_run_refuse_a_key_or_the_config_that_others_may_write(setup):
    """Issue 29: whoever may write a partner's key file can make the gateway accept their
    signature; whoever may write the configuration can point it anywhere. `gateway check`
    and `gateway run` refuse both (exit 2), naming the key (gateway/config/trust.py)."""
    key = setup.dir / "keys" / "ag001.pub.asc"
    key.chmod(0o666)
    setup.config.chmod(0o646)
    for command in (["check"], ["run", "--once"]):
        proc = run_cli(*command, "-c", str(setup.config))
        assert proc.returncode == 2, proc.stdout + proc.stderr
        lines = errors_of(proc)
        assert any(f"agencies[0].signing_keys[0]: {key} is writable by any user (mode 0666)" in ln
                   for ln in lines), lines
        assert any(f"the configuration file: {setup.config} is writable by any user" in ln
                   for ln in lines), lines
    key.chmod(0o644)
    setup.config.chmod(0o644)
    assert run_cli("check", "-c", str(setup.config)).returncode == 0


def test_a_key_file_in_a_zone_is_a_config_error(setup):
    """Issue 29: a key file a partner could replace (it lies in the partner's zone)."""
    shutil.copy(setup.dir / "keys" / "ag001.pub.asc", setup.dir / "zones" / "AG001" / "inbox")
    setup.edit('signing_keys = ["keys/ag001.pub.asc"]', 'signing_keys = ["zones/AG001/inbox/ag001.pub.asc"]')
    proc = run_cli("check", "-c", str(setup.config))
    assert proc.returncode == 2
    (line,) = errors_of(proc)
    assert "agencies[0].signing_keys[0]:" in line and "lies inside the zone agencies[0].inbox" in line
