"""deploy/rsyslog.d/gateway-sftp.conf with Debian's rsyslogd: lines a chroot's internal-sftp
sends reach the file the gateway reads; the same line sent by any local user to the host's
own log socket does not (it would be taken for evidence of a read)."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]
CONF = Path(__file__).resolve().parents[2] / "deploy" / "rsyslog.d" / "gateway-sftp.conf"


def test_only_the_chroots_sockets_feed_the_evidence_file(tmp_path):
    rsyslogd = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
    text = CONF.read_text().replace("/srv/gateway", str(tmp_path / "srv")) \
        .replace("/var/log/gateway", str(tmp_path)).replace('FileGroup="gateway"', 'FileGroup="root"')
    # the host's /dev/log, here a socket of the test's own, on the default ruleset
    text = text.replace('module(load="imuxsock")', 'module(load="imuxsock" SysSock.Use="off")\n'
                        f'input(type="imuxsock" Socket="{tmp_path}/host.sock")')
    conf = tmp_path / "rsyslog.conf"
    conf.write_text(text)
    checked = subprocess.run([rsyslogd, "-N1", "-f", str(conf)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    for code in ("AG001", "AG002"):
        (tmp_path / "srv" / "zones" / code / "dev").mkdir(parents=True)
    proc = subprocess.Popen([rsyslogd, "-n", "-f", str(conf), "-i", str(tmp_path / "pid")])
    try:
        chroot = tmp_path / "srv" / "zones" / "AG001" / "dev" / "log"
        deadline = time.monotonic() + 20
        while not (chroot.exists() and (tmp_path / "host.sock").exists()):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        def send(sock: Path, message: str) -> None:
            subprocess.run(["logger", "-u", str(sock), "-t", "internal-sftp[4242]", message],
                           check=True)
        send(tmp_path / "host.sock", 'close "/inbox/forged.csv.pgp" bytes read 5 written 0')
        send(chroot, 'close "/inbox/real.csv.pgp" bytes read 5 written 0')
        out = tmp_path / "sftp.log"
        while not (out.exists() and "real.csv.pgp" in out.read_text()):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.3)  # the forged line, had it been routed, was sent first
        assert "forged" not in out.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
