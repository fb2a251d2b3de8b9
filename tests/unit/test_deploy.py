"""The shipped systemd unit keeps its promises."""

from __future__ import annotations

from pathlib import Path

UNIT = Path(__file__).resolve().parents[2] / "deploy" / "gateway.service"


def test_unit_is_hardened_and_simple():
    text = UNIT.read_text()
    lines = {ln.split("=", 1)[0]: ln.split("=", 1)[1] for ln in text.splitlines()
             if "=" in ln and not ln.startswith("#")}
    assert lines["Type"] == "simple"
    assert lines["NoNewPrivileges"] == "yes" and lines["ProtectSystem"] == "strict"
    assert lines["User"] == "gateway"
    assert "/var/lib/gateway" in lines["ReadWritePaths"]
    assert lines["ExecStart"].endswith("gateway run")
    assert lines["ExecStartPre"].endswith("gateway check")


def test_console_unit_cannot_reach_the_secret_key():
    text = (UNIT.parent / "gateway-console.service").read_text()
    lines = {ln.split("=", 1)[0]: ln.split("=", 1)[1] for ln in text.splitlines()
             if "=" in ln and not ln.startswith("#")}
    assert lines["User"] == "gateway-console" and lines["SupplementaryGroups"] == "gateway"
    assert lines["ExecStart"].endswith("gateway console")
    assert lines["NoNewPrivileges"] == "yes" and lines["ProtectSystem"] == "strict"
    hidden = lines["InaccessiblePaths"].split()
    assert "-/etc/gateway/keys/gateway.sec.asc" in hidden and "-/srv/gateway/zones" in hidden
    assert "/var/lib/gateway" in lines["ReadOnlyPaths"].split()
    assert all(p.lstrip("-").startswith(("/var/lib/gateway/", "/var/lib/gateway-console"))
               for p in lines["ReadWritePaths"].split())
    assert lines["UMask"] == "0077"


def test_sshd_fragment_is_valid_and_locks_every_agency_in():
    """`sshd -t` accepts the fragment (with a host key of its own), and every agency's
    block chroots, forces internal-sftp logging at INFO and forwards nothing."""
    import shutil
    import subprocess
    import tempfile

    fragment = (UNIT.parent / "sshd_config.d" / "gateway-zones.conf").read_text()
    blocks = fragment.split("Match Group ")[1:]
    assert len(blocks) >= 2
    for block in blocks:
        assert "ChrootDirectory /srv/gateway/zones/" in block
        assert "ForceCommand internal-sftp -l INFO -u 0027" in block
        assert "AllowTcpForwarding no" in block and "PermitTTY no" in block
    sshd = shutil.which("sshd") or "/usr/sbin/sshd"
    with tempfile.TemporaryDirectory() as tmp:
        key = Path(tmp) / "host_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        config = Path(tmp) / "sshd_config"
        config.write_text(f"HostKey {key}\nUsePAM no\n" + fragment)
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        checked = subprocess.run([sshd, "-t", "-f", str(config)], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stderr
