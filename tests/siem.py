"""Receivers a SIEM would run, for the forwarding tests: a real rsyslogd taking syslog over
TLS (rsyslog-gnutls) into a file, and a small HTTPS webhook (http.server and ssl in a
process of its own) that checks each request's HMAC. Both on loopback, with certificates
from a test CA (tests/tlsca.py)."""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from gateway import audit
from tests.tlsca import Issued, TestCA

# The receiving side of docs/operations.md, "Forwarding the audit log to a SIEM", as tested.
RSYSLOG_CONF = """\
global(workDirectory="{work}"
       DefaultNetstreamDriver="gtls"
       DefaultNetstreamDriverCAFile="{ca}"
       DefaultNetstreamDriverCertFile="{cert}"
       DefaultNetstreamDriverKeyFile="{key}")
module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1"
       StreamDriver.AuthMode="anon")
input(type="imtcp" port="{port}" address="127.0.0.1" ruleset="gateway")
template(name="gateway-entry" type="string"
         string="%msgid% %hostname% %app-name% %structured-data% %msg%\\n")
ruleset(name="gateway") {{
    action(type="omfile" file="{out}" template="gateway-entry")
}}
"""
LINE = re.compile(r'(?P<msgid>\S+) (?P<host>\S+) (?P<app>\S+) \[gateway@32473 seq="(?P<seq>\d+)" '
                  r'hash="(?P<hash>[0-9a-f]{64})"\] (?P<msg>\{.*\})')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Rsyslog:
    """rsyslogd -n with a TLS input on a fixed port, started and stopped at will."""

    def __init__(self, directory: Path, ca: TestCA, server: Issued) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.dir, self.port, self.out = directory, free_port(), directory / "received.log"
        self.conf = directory / "rsyslog.conf"
        self.conf.write_text(RSYSLOG_CONF.format(work=directory, ca=ca.path, cert=server.cert,
                                                 key=server.key, port=self.port, out=self.out))
        self.bin = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
        checked = subprocess.run([self.bin, "-N1", "-f", str(self.conf)], capture_output=True,
                                 text=True, check=False)
        assert checked.returncode == 0, checked.stderr
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([self.bin, "-n", "-f", str(self.conf), "-i",
                                      str(self.dir / "pid")], stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:  # listening once a connection is taken
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                assert time.monotonic() < deadline and self.proc.poll() is None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=20)
            self.proc = None

    def received(self) -> list[tuple[dict[str, str], bytes]]:
        """(header fields, the entry's bytes) for every message written, in order."""
        if not self.out.exists():
            return []
        out = []
        for line in self.out.read_bytes().splitlines():
            m = LINE.fullmatch(line.decode("ascii"))
            assert m, line
            out.append((m.groupdict(), m["msg"].encode("ascii")))
        return out


WEBHOOK = r'''
import hashlib, hmac, http.server, json, os, ssl, sys
out, key = sys.argv[1], os.environ["GATEWAY_SIEM_KEY"].encode()
class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        sig = "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(sig, self.headers.get("X-Gateway-Signature", "")):
            self.send_response(401); self.end_headers(); return
        assert json.loads(body)["sent_at"] == self.headers["X-Gateway-Timestamp"]
        with open(out, "ab") as fh:
            fh.write(body + b"\n")
        self.send_response(204); self.end_headers()
    def log_message(self, *args): pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[2])), Handler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(sys.argv[3], sys.argv[4])
server.socket = ctx.wrap_socket(server.socket, server_side=True)
print("listening", flush=True)
server.serve_forever()
'''


class Webhook:
    """An HTTPS receiver that keeps each correctly signed body (one per line)."""

    def __init__(self, directory: Path, server: Issued, key: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.port, self.out = free_port(), directory / "bodies.jsonl"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WEBHOOK, str(self.out), str(self.port), str(server.cert),
             str(server.key)], stdout=subprocess.PIPE, env={"GATEWAY_SIEM_KEY": key})
        assert self.proc.stdout is not None and self.proc.stdout.readline() == b"listening\n"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)

    def bodies(self) -> list[dict[str, Any]]:
        if not self.out.exists():
            return []
        return [json.loads(line) for line in self.out.read_bytes().splitlines()]


def check_complete(received: list[bytes], log_lines: list[bytes]) -> int:
    """What a receiver checks: de-duplicated by seq, the entries are 1..N without a gap, each
    exactly as in the log, each hash recomputes and each links to the one before. Returns N."""
    by_seq: dict[int, bytes] = {}
    for raw in received:
        entry = json.loads(raw)
        assert by_seq.setdefault(entry["seq"], raw) == raw, "one seq, two different entries"
    seqs = sorted(by_seq)
    assert seqs == list(range(1, len(seqs) + 1)), "a gap in the sequence"
    prev = audit.GENESIS
    for seq in seqs:
        entry = json.loads(by_seq[seq])
        assert audit.canonical(entry) == by_seq[seq] and by_seq[seq] + b"\n" == log_lines[seq - 1]
        assert audit.entry_hash(entry) == entry["hash"] and entry["prev"] == prev
        prev = entry["hash"]
    return len(seqs)
