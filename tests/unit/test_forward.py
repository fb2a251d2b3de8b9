"""Forwarding the audit log: the [[forward]] tables, RFC 5424 messages and octet framing, the
webhook's body and signature, reading on from a cursor (chain checked, filter, bounds), and
the cursor moving only past what was confirmed."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
from pathlib import Path
from typing import Any

import pytest
import structlog.testing

from gateway import audit, config, scaffold
from gateway.errors import ConfigError
from gateway.forward import reader, records


@pytest.fixture
def cfg_path(tmp_path):
    return scaffold.init_project(tmp_path / "gw", today=dt.date(2026, 1, 1))


def problems_of(path: Path, table: str) -> list[str]:
    path.write_text(path.read_text() + "\n" + table)
    with pytest.raises(ConfigError) as exc:
        config.load(path)
    return exc.value.problems


SYSLOG = '[[forward]]\nname = "siem"\nkind = "syslog"\nhost = "siem.bank.example"\nca_file = "ca.pem"\n'
WEBHOOK = ('[[forward]]\nname = "hook"\nkind = "webhook"\nurl = "https://siem.bank.example/in"\n'
           'ca_file = "ca.pem"\nsecret_env = "GATEWAY_SIEM_KEY"\n')


def test_forward_tables_load_with_their_defaults(cfg_path):
    cfg_path.write_text(cfg_path.read_text() + "\n" + SYSLOG + "\n" + WEBHOOK)
    cfg = config.load(cfg_path)
    syslog, hook = cfg.forward
    assert isinstance(syslog, config.SyslogForward) and isinstance(hook, config.WebhookForward)
    assert (syslog.transport, syslog.port, syslog.facility, syslog.app_name) == (
        "tls", 6514, "authpriv", "gateway")
    assert syslog.ca_file == cfg_path.parent / "ca.pem"
    assert syslog.describe() == "syslog+tls://siem.bank.example:6514"
    assert hook.describe() == "https://siem.bank.example/in" and hook.batch == 100
    assert syslog.wants("security.foreign_access") and syslog.wants("file.received")


@pytest.mark.parametrize(("table", "expected"), [
    (SYSLOG + 'facility = "mail2"\n', 'forward[0].facility: "mail2" is not a facility'),
    (SYSLOG.replace('ca_file = "ca.pem"\n', ""), "forward[0]: ca_file is required with"),
    (SYSLOG + 'transport = "udp"\n', 'forward[0]: ca_file, client_cert and client_key are for'),
    (SYSLOG + 'client_cert = "c.pem"\n', "forward[0]: client_cert and client_key go together"),
    (SYSLOG + 'transport = "quic"\n', "forward[0].transport: must be 'tls', 'tcp' or 'udp'"),
    (SYSLOG + 'events = ["Security"]\n', "forward[0].events[0]: must match pattern"),
    (SYSLOG + "batch = 0\n", "forward[0].batch: must be greater than or equal to 1"),
    (SYSLOG + 'colour = "red"\n', "forward[0].colour: unknown key"),
    (SYSLOG.replace('"siem"', '"SIEM one"'), "forward[0].name: must match pattern"),
    (SYSLOG.replace('"syslog"', '"kafka"'), 'forward[0]: kind must be "syslog" or "webhook"'),
    (SYSLOG + "\n" + SYSLOG, "forward[1].name: siem is already used by forward[0]"),
    (WEBHOOK.replace("https://", "http://"), "forward[0].url: \"http://siem.bank.example/in\" "
                                             "is not an https:// URL"),
    (WEBHOOK.replace("https://", "https://u:p@"), "forward[0].url: must not hold a user name"),
    (WEBHOOK.replace('secret_env = "GATEWAY_SIEM_KEY"\n', ""), "forward[0].secret_env: is required"),
    (WEBHOOK.replace('"GATEWAY_SIEM_KEY"', '"s3cr3t-value!"'), "forward[0].secret_env: must match"),
])
def test_each_misconfiguration_is_one_line_naming_the_key(cfg_path, table, expected):
    found = problems_of(cfg_path, table)
    assert any(p.startswith(expected) for p in found), found
    assert all("\n" not in p for p in found)


def test_files_and_the_secret_are_checked_where_forwarding_starts(cfg_path, monkeypatch):
    from gateway.config.forward import file_problems

    cfg_path.write_text(cfg_path.read_text() + "\n" + SYSLOG + 'client_cert = "c.pem"\n'
                        'client_key = "c.key"\n\n' + WEBHOOK)
    cfg = config.load(cfg_path)  # loading needs neither the files nor the environment
    monkeypatch.delenv("GATEWAY_SIEM_KEY", raising=False)
    base = cfg_path.parent
    found = file_problems(cfg.forward)
    assert f"forward[0].ca_file: {base / 'ca.pem'} does not exist" in found
    assert f"forward[0].client_key: {base / 'c.key'} does not exist" in found
    assert ("forward[1].secret_env: environment variable GATEWAY_SIEM_KEY is not set (or empty)"
            in found)
    for name in ("ca.pem", "c.pem", "c.key"):
        (base / name).write_text("x")
    (base / "c.key").chmod(0o640)
    monkeypatch.setenv("GATEWAY_SIEM_KEY", "k")
    found = file_problems(cfg.forward)
    assert found[0] == (f"forward[0].client_key: {base / 'c.key'}: key file is readable by group "
                        f"or others (mode 0640); run chmod 600 {base / 'c.key'}")
    # files TLS cannot use are said here, not first in the daemon's forwarding thread
    assert [p.split(":")[0] for p in found[1:]] == ["forward[0].ca_file", "forward[1].ca_file"]
    from tests.tlsca import TestCA

    ca = TestCA(base / "ca")
    (base / "ca.pem").write_bytes(ca.path.read_bytes())
    other = TestCA(base / "other", "Other CA").issue("client", client=True)
    (base / "c.pem").write_bytes(ca.issue("client", client=True).cert.read_bytes())
    (base / "c.key").write_bytes(other.key.read_bytes())  # not the certificate's key
    (base / "c.key").chmod(0o600)
    (found,) = file_problems(cfg.forward)
    assert found.startswith(f"forward[0].client_key: {base / 'c.key'} is not the private key of")
    (base / "c.key").write_bytes((base / "ca" / "client.key").read_bytes())
    assert file_problems(cfg.forward) == []


def test_a_misspelt_event_family_and_a_bad_port_are_refused(cfg_path, monkeypatch):
    from gateway.config.forward import file_problems

    cfg_path.write_text(cfg_path.read_text() + "\n" + WEBHOOK + 'events = ["secruity"]\n')
    monkeypatch.setenv("GATEWAY_SIEM_KEY", "k")
    found = file_problems(config.load(cfg_path).forward)
    assert any(p.startswith("forward[0].events: 'secruity' is no event family") for p in found)
    cfg_path.write_text(cfg_path.read_text().replace("siem.bank.example/in", "siem:99999/in"))
    with pytest.raises(ConfigError) as exc:
        config.load(cfg_path)
    assert any(p.startswith("forward[0].url") and "port" in p for p in exc.value.problems)


# -- what is sent -----------------------------------------------------------------------
def written(tmp_path: Path, events: list[str]) -> tuple[audit.AuditLog, list[bytes]]:
    log = audit.AuditLog(tmp_path / "audit", actor="daemon")
    for i, event in enumerate(events):
        fields: dict[str, Any] = {"zone": "bank.outgoing"} if event.startswith("file.") else {}
        if event == "audit.checkpoint":
            fields = {"node": "gw1"}
        if event == "file.received":
            fields |= {"sha256": "ab" * 32, "bytes": i, "file": f"B2026010{i % 10}-01.csv.pgp"}
        log.record(event, **fields)
    return log, log.path.read_bytes().splitlines(keepends=True)


RFC5424 = re.compile(
    r'<(?P<pri>\d{1,3})>1 (?P<ts>\S+) (?P<host>\S+) (?P<app>\S+) - (?P<msgid>\S+) '
    r'\[gateway@32473 seq="(?P<seq>\d+)" hash="(?P<hash>[0-9a-f]{64})"\] (?P<msg>\{.*\})')


def test_an_entry_as_an_rfc5424_message(tmp_path):
    _, lines = written(tmp_path, ["gateway.started", "security.unknown_login"])
    for line in lines:
        entry = json.loads(line)
        msg = records.rfc5424(line, entry, facility=10, app_name="gateway", node="gw1-0a1b2c")
        m = RFC5424.fullmatch(msg.decode("ascii"))
        assert m, msg
        assert m["ts"] == entry["ts"] and m["host"] == "gw1-0a1b2c" and m["app"] == "gateway"
        assert m["msgid"] == entry["event"] and int(m["seq"]) == entry["seq"]
        assert m["hash"] == entry["hash"]
        assert m["msg"].encode() + b"\n" == line  # the entry exactly as the log holds it
        sev = 4 if entry["event"].startswith("security.") else 5
        assert int(m["pri"]) == 10 * 8 + sev


def test_octet_counting_frames_any_message():
    assert records.octet_frame(b"<85>1 - - - - - - x") == b"19 <85>1 - - - - - - x"
    framed = records.octet_frame(b"a\nb") + records.octet_frame(b"\xc3\xa9")
    # a reader takes LEN, a space, then exactly LEN bytes: a newline inside splits nothing
    out, rest = [], framed
    while rest:
        n, _, rest = rest.partition(b" ")
        out.append(rest[:int(n)])
        rest = rest[int(n):]
    assert out == [b"a\nb", b"\xc3\xa9"]


def test_the_webhook_body_holds_the_entries_byte_for_byte_and_is_signed(tmp_path):
    _, lines = written(tmp_path, ["gateway.started", "file.received", "gateway.stopped"])
    body = records.webhook_body(lines, "gw1-0a1b2c", "2026-01-01T00:00:00Z")
    parsed = json.loads(body)
    assert parsed["node"] == "gw1-0a1b2c" and parsed["sent_at"] == "2026-01-01T00:00:00Z"
    assert [audit.canonical(e) + b"\n" for e in parsed["entries"]] == lines
    assert all(audit.entry_hash(e) == e["hash"] for e in parsed["entries"])
    sig = records.signature(b"k" * 32, body)
    assert sig == "sha256=" + hmac.new(b"k" * 32, body, hashlib.sha256).hexdigest()


# -- reading on from a cursor --------------------------------------------------------------
def test_batches_follow_the_chain_and_filtered_entries_move_the_cursor(tmp_path):
    log, lines = written(tmp_path, ["gateway.started", "file.received", "audit.checkpoint",
                                    "file.received", "gateway.stopped", "audit.checkpoint"])
    wants = lambda event: event.startswith("file.")  # noqa: E731
    first = reader.read_batch(log.path, reader.Position(), wants=wants, size=1)
    assert [e["seq"] for e in first.entries] == [2] and first.lines == [lines[1]]
    assert first.end.seq == 2 and first.end.offset == len(lines[0]) + len(lines[1])
    second = reader.read_batch(log.path, first.end, wants=wants, size=10)
    assert [e["seq"] for e in second.entries] == [4]
    assert second.end.seq == 6 and second.at_end  # past the entries it does not want
    assert second.end.offset == log.size()
    again = reader.read_batch(log.path, second.end, wants=wants, size=10)
    assert again.lines == [] and again.end == second.end and again.at_end


def test_a_long_run_of_unwanted_entries_moves_the_cursor_in_steps(tmp_path):
    log, _ = written(tmp_path, ["gateway.started"] * 7)
    batch = reader.read_batch(log.path, reader.Position(), wants=lambda e: False, size=5,
                              scan_limit=3)
    assert batch.lines == [] and batch.end.seq == 3 and not batch.at_end


def test_an_entry_being_written_is_left_for_later(tmp_path):
    log, lines = written(tmp_path, ["gateway.started", "gateway.stopped"])
    with log.path.open("ab") as fh:
        fh.write(lines[1][:20])  # what a reader may see while record() writes
    batch = reader.read_batch(log.path, reader.Position(), wants=lambda e: True, size=10)
    assert [e["seq"] for e in batch.entries] == [1, 2] and batch.at_end


@pytest.mark.parametrize("damage", ["altered", "removed", "reordered"])
def test_a_broken_chain_stops_at_its_seq_after_the_sound_entries_before_it(tmp_path, damage):
    """The entries before the break still reach the receiver; none after it does."""
    log, lines = written(tmp_path, ["gateway.started", "file.received", "gateway.stopped",
                                    "gateway.started"])
    if damage == "altered":
        lines[2] = lines[2].replace(b'"gateway.stopped"', b'"gateway.started"')
    elif damage == "removed":
        del lines[2]
    else:
        lines[1], lines[2] = lines[2], lines[1]
    log.path.write_bytes(b"".join(lines))
    batch = reader.read_batch(log.path, reader.Position(), wants=lambda e: True, size=10)
    at = 3 if damage != "reordered" else 2
    assert [e["seq"] for e in batch.entries] == list(range(1, at)) and batch.end.seq == at - 1
    exc = batch.broken
    assert exc is not None and exc.seq == at
    again = reader.read_batch(log.path, batch.end, wants=lambda e: True, size=10)
    assert again.entries == [] and again.broken is not None and again.broken.seq == at
    assert f"audit log entry {exc.seq}:" in str(exc)


def test_the_cursor_is_found_at_its_offset_or_again_by_seq(tmp_path):
    log, lines = written(tmp_path, ["gateway.started", "file.received", "gateway.stopped"])
    e2 = json.loads(lines[1])
    offset = len(lines[0]) + len(lines[1])
    assert reader.locate(log.path, 2, e2["hash"], offset) == reader.Position(2, e2["hash"], offset)
    for hint in (0, 5, offset + 3, 10**9):  # a hint that does not match: found by seq
        assert reader.locate(log.path, 2, e2["hash"], hint) == reader.Position(2, e2["hash"], offset)
    with pytest.raises(reader.ChainBroken, match="differs from the entry forwarded"):
        reader.locate(log.path, 2, "f" * 64, offset)
    with pytest.raises(reader.ChainBroken, match="ends before entry 9"):
        reader.locate(log.path, 9, "f" * 64, 0)
    assert reader.last_seq(log.path) == 3 and reader.last_seq(tmp_path / "none") == 0


# -- the cursor moves only past what was confirmed -------------------------------------------
class FlakySender:
    """Refuses the first *failures* batches, then keeps what it is given."""

    def __init__(self, failures: int) -> None:
        self.failures, self.got = failures, []

    def send(self, lines: list[bytes], entries: list[dict[str, Any]]) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionResetError("reset by the test")
        self.got += lines

    def close(self) -> None:
        pass


def test_the_cursor_moves_only_after_a_confirmed_batch(tmp_path, cfg_path):
    from gateway.forward import runner
    from gateway.leases import Leases
    from gateway.ledger import LeaseLost, Ledger
    from gateway.metrics import Metrics

    cfg_path.write_text(cfg_path.read_text() + "\n" + SYSLOG + 'events = ["file"]\nbatch = 1\n')
    dest = config.load(cfg_path).forward[0]
    log, lines = written(tmp_path, ["gateway.started", "file.received", "file.received",
                                    "gateway.stopped"])
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        link = runner.Link(ledger=ledger, audit=log, node="gw1", leases=Leases(ledger, "gw1", 60),
                           metrics=Metrics())
        sender = FlakySender(failures=1)
        fwd = runner.Forwarder(dest, link, sender)
        assert ledger.take_lease(fwd.item, "gw1", 60)
        with pytest.raises(ConnectionResetError):
            fwd.step()
        assert ledger.forward_cursor("siem", "gw1") is None  # nothing confirmed, nothing moved
        assert fwd.step() and sender.got == [lines[1]]
        assert ledger.forward_cursor("siem", "gw1").seq == 2
        assert fwd.step() and sender.got == [lines[1], lines[2]]  # a full batch: maybe more
        assert not fwd.step() and sender.got == [lines[1], lines[2]]
        row = ledger.forward_cursor("siem", "gw1")
        assert (row.seq, row.offset) == (4, log.size())  # past gateway.stopped: not wanted
        assert fwd.backlog == 0
        # a restarted thread reads on from the ledger's cursor: nothing twice, nothing missed
        log.record("file.refused", zone="bank.outgoing", reason="symlink", name_sha256="cd" * 32)
        again = runner.Forwarder(dest, link, sender)
        assert again.step() and not again.step()
        assert sender.got[2:] == [log.path.read_bytes().splitlines(True)[4]]
        # another node took the lease over: this one may not move the cursor any more
        ledger.release_lease(fwd.item, "gw1")
        assert ledger.take_lease(fwd.item, "gw2", 60)
        log.record("file.refused", zone="bank.outgoing", reason="special", name_sha256="ef" * 32)
        with pytest.raises(LeaseLost):
            again.step()
        assert ledger.forward_cursor("siem", "gw1").seq == 5
    finally:
        ledger.close()


def test_a_confirmed_batch_clears_the_last_error_even_after_a_restart(tmp_path, cfg_path):
    """A daemon restarted while its receiver was failing knows of no failure: the ledger's
    last error goes with the first confirmed batch, or status would say failing forever.
    Entries only passed over move the cursor but prove nothing about the receiver."""
    from gateway.forward import runner
    from gateway.leases import Leases
    from gateway.ledger import Ledger
    from gateway.metrics import Metrics

    cfg_path.write_text(cfg_path.read_text() + "\n" + SYSLOG + 'events = ["file"]\n')
    dest = config.load(cfg_path).forward[0]
    log, _ = written(tmp_path, ["gateway.started"])
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        metrics = Metrics()
        link = runner.Link(ledger=ledger, audit=log, node="gw1", leases=Leases(ledger, "gw1", 60),
                           metrics=metrics)
        ledger.save_forward_error("siem", "gw1", "the receiver answered HTTP 500")
        fwd = runner.Forwarder(dest, link, FlakySender(failures=0))
        assert ledger.take_lease(fwd.item, "gw1", 60)
        fwd.step()  # only gateway.started, not wanted: passed over
        row = ledger.forward_cursor("siem", "gw1")
        assert row.seq == 1 and row.delivered_at is None and row.last_error is not None
        log.record("file.refused", zone="bank.outgoing", reason="symlink", name_sha256="cd" * 32)
        fwd.step()
        row = ledger.forward_cursor("siem", "gw1")
        assert row.seq == 2 and row.delivered_at is not None and row.last_error is None
        # the backlog gauge is there while failing too
        log.record("file.refused", zone="bank.outgoing", reason="special", name_sha256="ef" * 32)
        failing = runner.Forwarder(dest, link, FlakySender(failures=5))
        with pytest.raises(ConnectionResetError):
            failing.step()
        with structlog.testing.capture_logs() as logged:  # not whatever stream an earlier
            failing._failed(ConnectionResetError("reset"))  # test left structlog writing to
        assert [e["event"] for e in logged] == ["forward.failed"]
        sample = metrics.forward_backlog.labels(destination="siem")._value.get()
        assert sample == 2  # the entry it failed to send, and its own forward.failing
    finally:
        ledger.close()


def test_a_tls13_session_ticket_does_not_end_the_connection(tmp_path, cfg_path):
    """A TLS 1.3 server sends session tickets after the handshake: the raw socket is then
    readable on a healthy connection. The sender must keep it — one connection for two
    batches — not take the ticket for a receiver that closed."""
    import socket
    import ssl
    import threading
    import time

    from gateway.forward import senders
    from tests.tlsca import TestCA

    ca = TestCA(tmp_path / "ca")
    server_cert = ca.issue("server")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(server_cert.cert, server_cert.key)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    accepted: list[int] = []
    got = bytearray()

    def serve() -> None:
        while True:
            try:
                raw, _ = listener.accept()
            except OSError:
                return
            accepted.append(1)
            with ctx.wrap_socket(raw, server_side=True) as conn:
                while data := conn.recv(65536):
                    got.extend(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    (cfg_path.parent / "ca.pem").write_bytes(ca.path.read_bytes())
    local = SYSLOG.replace('"siem.bank.example"', '"localhost"') + f"port = {port}\n"
    cfg_path.write_text(cfg_path.read_text() + "\n" + local)
    dest = config.load(cfg_path).forward[0]
    _, lines = written(tmp_path, ["gateway.started", "gateway.stopped"])
    entries = [json.loads(x) for x in lines]
    sender = senders.StreamSender(dest, "gw1")
    try:
        sender.send(lines[:1], entries[:1])
        time.sleep(0.3)  # the tickets arrive
        sender.send(lines[1:], entries[1:])
    finally:
        sender.close()
        listener.close()
    thread.join(timeout=5)
    assert accepted == [1]
    assert got.count(b"gateway@32473") == 2
