"""Configuration and local-file hardening (issue 9): zone aliases, keys shared between
parties, file modes under any umask, a full state disk, secrets out of sight."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys

import pytest

from gateway import synth
from tests.conftest import run_cli
from tests.flowsite import Site
from tests.gpgparty import GpgParty

pytestmark = pytest.mark.integration


@pytest.fixture
def site(tmp_path, keybox):
    return Site(tmp_path / "site", keybox)


def test_a_zone_aliased_by_a_symlink_is_a_config_error_at_run(site):
    """AG002's inbox a symlink to AG001's: both agencies' slices would share a directory and
    a purge of AG002 would delete AG001's files. `run` and `retention run` refuse to start."""
    ag2 = site.zone("AG002", "inbox")
    ag2.rmdir()
    ag2.symlink_to(site.zone("AG001", "inbox"))
    site.drop_cases("B1.csv.pgp", list(synth.cases(4, ["AG001", "AG002"], seed=70)))
    for args in (("run", "--once"), ("retention", "run"), ("check",)):
        proc = run_cli(*args, "-c", str(site.config))
        assert proc.returncode == 2, (args, proc.stderr)
        assert "agencies[1].inbox: same location as agencies[0].inbox" in proc.stderr
    assert list(site.zone("AG001", "inbox").iterdir()) == []
    assert site.zone("bank", "outgoing", "B1.csv.pgp").exists()


def test_a_zone_inside_the_state_directory_is_a_config_error(site):
    site.edit('path = "zones/AG001/outbox"', 'path = "var/archive"')
    proc = run_cli("check", "-c", str(site.config))
    assert proc.returncode == 2 and "agencies[0].outbox.path" in proc.stderr
    assert "overlap" in proc.stderr


def test_one_key_for_two_agencies_is_refused(site):
    shutil.copy(site.keys["ag001-collector"].pub, site.root / "keys" / "ag002-collector.pub.asc")
    for args in (("check",), ("run", "--once")):
        proc = run_cli(*args, "-c", str(site.config))
        assert proc.returncode == 2, proc.stderr
        assert "agencies[1].roles.collector.encrypt_to" in proc.stderr
        assert "is also configured for agency AG001" in proc.stderr


def test_one_key_for_two_roles_of_an_agency_is_a_warning(site):
    shutil.copy(site.keys["ag002-supervisor"].pub, site.root / "keys" / "ag002-analyst.pub.asc")
    proc = run_cli("check", "-c", str(site.config))
    assert proc.returncode == 0, proc.stderr
    assert "both roles can read each other's slices" in proc.stderr


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077])
def test_state_files_are_private_under_any_umask(site, umask):
    site.drop_cases("B1.csv.pgp", list(synth.cases(5, ["AG001", "AG002"], seed=71)))
    proc = subprocess.run(
        ["sh", "-c", f"umask {umask:03o} && exec {sys.executable} -m gateway run --once -c "
                     f"{site.config}"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    loose = []
    for path, _dirs, files in os.walk(site.state):
        for p in [path, *(os.path.join(path, f) for f in files)]:
            st = os.lstat(p)
            want = 0o700 if stat.S_ISDIR(st.st_mode) else 0o600
            if (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)) and \
                    stat.S_IMODE(st.st_mode) != want:
                loose.append((p, oct(stat.S_IMODE(st.st_mode))))
    assert loose == []
    for p in site.zone("AG001", "inbox").iterdir():  # the zone's file_mode, umask or not
        assert stat.S_IMODE(p.stat().st_mode) == 0o640, p


def test_loose_state_is_reported_by_check_and_tightened_by_run(site):
    assert run_cli("run", "--once", "-c", str(site.config)).returncode == 0
    (site.state / "gateway.db").chmod(0o644)
    (site.state / "secrets").chmod(0o755)
    proc = run_cli("check", "-c", str(site.config))
    assert "gateway.state_dir: 2 entries are open to group or others" in proc.stderr
    assert run_cli("run", "--once", "-c", str(site.config)).returncode == 0
    assert stat.S_IMODE((site.state / "gateway.db").stat().st_mode) == 0o600
    assert stat.S_IMODE((site.state / "secrets").stat().st_mode) == 0o700


def test_file_mode_is_configurable_and_checked(site):
    site.edit('path = "zones/AG001/inbox", settle_seconds = 0',
              'path = "zones/AG001/inbox", settle_seconds = 0, file_mode = 0o600')
    site.drop_cases("B1.csv.pgp", list(synth.cases(2, ["AG001"], seed=72)))
    assert site.run() == {"accepted": 1}
    assert {stat.S_IMODE(p.stat().st_mode) for p in site.zone("AG001", "inbox").iterdir()} == {0o600}
    site.edit("file_mode = 0o600", "file_mode = 0o666")
    proc = run_cli("check", "-c", str(site.config))
    assert proc.returncode == 2 and "agencies[0].inbox.file_mode" in proc.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root (CI runs as root)")
@pytest.mark.parametrize("size", ["200k", "1m", "3m"])
def test_a_full_state_disk_is_one_readable_line_and_nothing_is_lost(site, size):
    """The state directory on a tmpfs too small for the batch: each run fails with one line
    naming the path (the ledger or the archive), commits nothing, leaks nothing; once there
    is room the batch is delivered exactly once."""
    records = list(synth.cases(20000, ["AG001", "AG002"], seed=73))
    site.drop_cases("B1.csv.pgp", records)
    site.state.mkdir(exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                    str(site.state)], check=True)
    try:
        for _ in range(2):
            proc = run_cli("run", "--once", "-c", str(site.config))
            assert proc.returncode == 1
            (line,) = proc.stderr.strip().splitlines()
            assert line.startswith("error: ") and str(site.state) in line, line
            assert "full" in line or "No space left" in line, line
            assert "internal error" not in line and "Traceback" not in proc.stderr
        assert site.receipts() == {} and site.inbox("AG001") == []
        assert site.plaintext_leaks(records) == []
        subprocess.run(["mount", "-o", "remount,size=256m", str(site.state)], check=True)
        proc = run_cli("run", "--once", "-c", str(site.config))
        assert proc.returncode == 0, proc.stderr
        assert [r["status"] for r in site.receipts().values()] == ["accepted"]
        assert len(site.inbox("AG001")) == 3 and len(site.inbox("AG002")) == 4
        assert run_cli("audit", "verify", "-c", str(site.config)).returncode == 0
    finally:
        subprocess.run(["umount", "-l", str(site.state)], check=False)


PASSPHRASE = "Tr0ub4dor-and-3-more-words"


def test_the_passphrase_never_shows(site, tmp_path, monkeypatch):
    """While a batch runs: not in any process's arguments, not in any gpg child's
    environment; after it: not in the logs, the audit log or any file; and objects that
    hold key material have a redacted repr."""
    import time

    from gateway import daemon
    from gateway.crypto import keys

    key = keys.generate("gwpp", "gwpp@test.example", tmp_path / "k", passphrase=PASSPHRASE)
    shutil.copy(key.secret_path, site.root / "keys" / "gateway.sec.asc")
    shutil.copy(key.public_path, site.root / "keys" / "gateway.pub.asc")
    site.edit('# passphrase_env = "GATEWAY_KEY_PASSPHRASE"', 'passphrase_env = "GW_PP"')
    env = {**os.environ, "GW_PP": PASSPHRASE}
    party = GpgParty(site.keys["bank"].sec, key.public_path)
    try:
        sealed = party.seal(synth.to_csv(list(synth.cases(20000, ["AG001", "AG002"], seed=74))),
                            signer=site.keys["bank"].fingerprint, recipients=[key.fingerprint])
    finally:
        party.close()
    site.zone("bank", "outgoing", "B1.csv.pgp").write_bytes(sealed)
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "run", "--once", "-c",
                             str(site.config)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    seen_gpg = 0
    needle = PASSPHRASE.encode()
    while proc.poll() is None:
        for pid in os.listdir("/proc"):
            if not pid.isdigit() or int(pid) == os.getpid():
                continue
            try:
                cmdline = open(f"/proc/{pid}/cmdline", "rb").read()  # noqa: SIM115
                assert needle not in cmdline, cmdline
                if b"gpg" in cmdline.split(b"\0")[0]:
                    seen_gpg += 1
                    assert needle not in open(f"/proc/{pid}/environ", "rb").read()  # noqa: SIM115
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue
        time.sleep(0.05)
    out, err = proc.communicate()
    assert proc.returncode == 0, err
    assert b"1 accepted" in err
    assert seen_gpg > 0  # the check looked at gpg children while they worked
    assert needle not in out and needle not in err
    for path in site.written_files():
        assert needle not in path.read_bytes(), path
    monkeypatch.setenv("GW_PP", PASSPHRASE)
    with daemon.open_context(site.cfg()) as ctx:
        for thing in (ctx, ctx.crypto, ctx.crypto.keyring, ctx.crypto.engine,
                      ctx.crypto.keyring.passphrase):
            assert PASSPHRASE not in repr(thing) and PASSPHRASE not in str(thing)
