"""A real OpenSSH sshd on a loopback port, for SFTP tests: temporary host key, key-only login.

Nothing is installed here (``make test`` makes sure ``openssh-server`` is); the
server runs in the foreground (``-D``) as a child of the test process, with its
own config, host key and authorized key, and is stopped — or restarted, to
simulate an outage — by the fixture.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def descendants(pid: int) -> list[int]:
    """Every process below *pid*, read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path: Path, kind: str = "ed25519") -> str:
    """A new key pair at *path*; returns the public key line."""
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(path)], check=True)
    return Path(f"{path}.pub").read_text().strip()


class Sshd:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        root.chmod(0o700)
        self.port = free_port()
        self.host_key = root / "ssh_host_ed25519_key"
        pub = keygen(self.host_key)
        self.known_host = " ".join(pub.split()[:2])  # "ssh-ed25519 AAAA…"
        self.client_key = root / "client_ed25519"
        client_pub = keygen(self.client_key)
        self.authorized = root / "authorized_keys"
        self.authorized.write_text(client_pub + "\n")
        self.authorized.chmod(0o600)
        self.user = pwd.getpwuid(os.getuid()).pw_name
        self.config = root / "sshd_config"
        self.config.write_text(f"""\
Port {self.port}
ListenAddress 127.0.0.1
HostKey {self.host_key}
PidFile {root / "sshd.pid"}
AuthorizedKeysFile {self.authorized}
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
Subsystem sftp internal-sftp
LogLevel ERROR
""")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, log_file: Path | None = None) -> None:
        """Start listening. Its own messages go to stderr, or to *log_file* (``-E``): with
        ``-e``, a non-root session's internal-sftp logs to stderr instead of syslog."""
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation directory
        where = ["-E", str(log_file)] if log_file else ["-e"]
        self.proc = subprocess.Popen([SSHD, "-D", *where, "-f", str(self.config)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {self.proc.stderr.read().decode()}")  # type: ignore[union-attr]
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("sshd did not start listening")

    def stop(self) -> None:
        """Kill the listener and every session process under it: an outage, not a goodbye."""
        if self.proc is None:
            return
        for pid in [*descendants(self.proc.pid), self.proc.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait()
        self.proc = None

    def zone_toml(self, remote_path: Path, *, known_host: str | None = None) -> str:
        return (f'{{ kind = "sftp", host = "127.0.0.1", port = {self.port}, username = "{self.user}", '
                f'private_key = "{self.client_key}", known_host = "{known_host or self.known_host}", '
                f'path = "{remote_path}", settle_seconds = 0.3 }}')
