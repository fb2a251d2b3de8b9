"""A mail relay for the alert tests, in a process of its own on loopback: aiosmtpd with
STARTTLS required (a certificate from a test CA, tests/tlsca.py), keeping each message it
takes as one JSON line — or a hostile one: ``reject`` answers every message with a 554,
``silent`` takes the connection and never says a word."""

from __future__ import annotations

import email
import email.policy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.siem import free_port
from tests.tlsca import Issued

RELAY = r'''
import json, socket, ssl, sys, threading, time
mode, port, out, cert, key = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
if mode == "silent":
    srv = socket.create_server(("127.0.0.1", port))
    held = []
    print("listening", flush=True)
    while True:
        conn, _ = srv.accept()
        held.append(conn)  # never a greeting, never closed
from aiosmtpd.controller import Controller
class Handler:
    async def handle_DATA(self, server, session, envelope):
        if mode == "reject":
            return "554 5.7.1 not today"
        with open(out, "a") as fh:
            fh.write(json.dumps({"from": envelope.mail_from, "to": envelope.rcpt_tos,
                                 "tls": session.ssl is not None,
                                 "data": envelope.content.decode("utf-8", "replace")}) + "\n")
        return "250 OK"
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
controller = Controller(Handler(), hostname="127.0.0.1", port=port, tls_context=ctx,
                        require_starttls=True, ready_timeout=20)
controller.start()
print("listening", flush=True)
while True:
    time.sleep(3600)
'''


class Relay:
    """The relay process; :meth:`restart` brings it back on the same port in another mode."""

    def __init__(self, directory: Path, server: Issued, mode: str = "good",
                 port: int | None = None) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.dir, self.server = directory, server
        self.port, self.out = port or free_port(), directory / "mail.jsonl"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start(mode)

    def start(self, mode: str, server: Issued | None = None) -> None:
        cert = server or self.server
        self.proc = subprocess.Popen(
            [sys.executable, "-c", RELAY, mode, str(self.port), str(self.out), str(cert.cert),
             str(cert.key)], stdout=subprocess.PIPE)
        assert self.proc.stdout is not None and self.proc.stdout.readline() == b"listening\n"

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None

    def restart(self, mode: str, server: Issued | None = None) -> None:
        self.stop()
        self.start(mode, server)

    def mails(self) -> list[dict[str, Any]]:
        """Each message taken: envelope, whether over TLS, and the parsed message."""
        if not self.out.exists():
            return []
        out = []
        for line in self.out.read_text().splitlines():
            m = json.loads(line)
            m["message"] = email.message_from_string(m["data"], policy=email.policy.default)
            out.append(m)
        return out

    def raw(self) -> bytes:
        return self.out.read_bytes() if self.out.exists() else b""
