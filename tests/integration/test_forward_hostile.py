"""Hostile SIEM receivers: one that accepts and never reads (its window fills), one that
resets every connection, one with a certificate from another CA, a webhook that answers
500 with an endless body, and one that never answers. The flows' pass finishes as fast
as without forwarding, memory does not grow with what the receivers send, every failure
is in `gateway status`, audited once, counted — and the daemon still stops promptly."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import ssl
import struct
import threading
import time
from pathlib import Path

import pytest

from gateway import audit, daemon, synth
from tests.conftest import run_cli
from tests.flowsite import Site
from tests.tlsca import TestCA

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


class Hostile:
    """A loopback TCP server whose every connection gets *behaviour* (in a thread)."""

    def __init__(self, behaviour, *, tls: ssl.SSLContext | None = None, rcvbuf: int = 0) -> None:
        self.sock = socket.socket()
        if rcvbuf:  # set before listen(): accepted sockets inherit a small window
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.tls, self.behaviour, self.held = tls, behaviour, []
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError, ssl.SSLError):
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
                self.held.append(conn)
            self.behaviour(conn, self.stop)

    def close(self) -> None:
        self.stop.set()
        self.sock.close()
        for c in self.held:
            with contextlib.suppress(OSError):
                c.close()


def never_read(conn: socket.socket, stop: threading.Event) -> None:
    stop.wait(60)


def reset(conn: socket.socket, stop: threading.Event) -> None:
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def huge_500(conn: socket.socket, stop: threading.Event) -> None:
    conn.recv(65536)
    conn.sendall(b"HTTP/1.1 500 Oops\r\nContent-Type: text/plain\r\n\r\n")
    chunk = b"x" * 65536
    while not stop.is_set():  # endless: until the client goes
        conn.sendall(chunk)


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_hostile_receivers_hold_back_nothing(tmp_path, keybox, monkeypatch):
    ca, other = TestCA(tmp_path / "ca"), TestCA(tmp_path / "other", name="Another CA")
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    issued = ca.issue("siem")
    server_ctx.load_cert_chain(issued.cert, issued.key)
    impostor_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    impostor = other.issue("impostor")
    impostor_ctx.load_cert_chain(impostor.cert, impostor.key)
    servers = {
        "stuck": Hostile(never_read, rcvbuf=4096),
        "reset": Hostile(reset),
        "impostor": Hostile(never_read, tls=impostor_ctx),
        "huge": Hostile(huge_500, tls=server_ctx),
        "hang": Hostile(never_read, tls=server_ctx),
    }
    monkeypatch.setenv("GATEWAY_SIEM_KEY", "k" * 32)
    tables = ""
    for name in ("stuck", "reset"):
        tables += (f'\n[[forward]]\nname = "{name}"\nkind = "syslog"\ntransport = "tcp"\n'
                   f'host = "127.0.0.1"\nport = {servers[name].port}\ntimeout = 1\nbatch = 1000\n')
    tables += (f'\n[[forward]]\nname = "impostor"\nkind = "syslog"\nhost = "localhost"\n'
               f'port = {servers["impostor"].port}\nca_file = "{ca.path}"\ntimeout = 1\n')
    for name in ("huge", "hang"):
        tables += (f'\n[[forward]]\nname = "{name}"\nkind = "webhook"\nurl = '
                   f'"https://localhost:{servers[name].port}/"\nca_file = "{ca.path}"\n'
                   'secret_env = "GATEWAY_SIEM_KEY"\ntimeout = 1\n')
    site = Site(tmp_path / "site", keybox)
    site.config.write_text(site.config.read_text() + tables)
    records = list(synth.cases(400, ["AG001", "AG002"], seed=71))
    try:
        with daemon.open_context(site.cfg()) as ctx:
            for i in range(150):  # enough to fill a small window several times over
                ctx.audit.record("key.refused", key=f"agencies[{i}].keys", fingerprint="A" * 40)
            before = rss_kib()
            hub = daemon.start_forwarding(ctx)
            assert hub is not None
            site.drop_cases("B20260101-01.csv.pgp", records)
            started = time.monotonic()
            assert daemon.run_once(ctx) == {"accepted": 1}
            took = time.monotonic() - started
            deadline = time.monotonic() + 30
            while {f.dest.name for f in hub.forwarders if f.failing} != set(servers):
                assert time.monotonic() < deadline, [(f.dest.name, f.failing) for f in hub.forwarders]
                time.sleep(0.1)
            time.sleep(3)  # several retries each; the endless body streams meanwhile
            grown = rss_kib() - before
            closing = time.monotonic()
            hub.close(drain=0.5)
            closed_in = time.monotonic() - closing
            failing = {f.dest.name: f.failing for f in hub.forwarders}
            metrics = ctx.metrics.render().decode()
    finally:
        for s in servers.values():
            s.close()
    assert took < 20, took  # 400 cases: a few seconds, whatever the receivers do
    assert grown < 40 * 1024, f"memory grew by {grown} KiB"
    assert closed_in < 15, closed_in
    assert failing == {"stuck": "timeout", "reset": "reset", "impostor": "bad_certificate",
                       "huge": "rejected", "hang": "timeout"}, failing
    for name in servers:
        assert f'gateway_forward_errors_total{{destination="{name}"}}' in metrics
    log = audit.AuditLog(site.state / "audit")
    failed = [e for e in log.entries() if e["event"] == "forward.failing"]
    assert sorted(e["destination"] for e in failed) == sorted(servers)  # once each
    status = run_cli("status", "--json", "-c", str(site.config))
    assert status.returncode == 1  # failing destinations fail the status
    rows = {r["destination"]: r for r in json.loads(status.stdout) if "destination" in r}
    assert all(rows[n]["state"] == "failing" and rows[n]["last_error"] for n in servers), rows
    assert "HTTP 500" in rows["huge"]["last_error"]
    assert os.environ["GATEWAY_SIEM_KEY"] not in status.stdout
