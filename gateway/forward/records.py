"""What a receiver is sent: each audit entry as the log holds it (its canonical JSON, so
the receiver can recompute its hash and check its link), wrapped for the transport.

Syslog (RFC 5424)::

    <PRI>1 TIMESTAMP HOSTNAME APP-NAME - MSGID [gateway@32473 seq="…" hash="…"] MSG

TIMESTAMP is the entry's ``ts``, HOSTNAME this node's name, MSGID the event name and MSG
the entry's line without its newline (plain ASCII: no BOM). The structured data's SD-ID
must carry an IANA private enterprise number; the gateway has none of its own, so it uses
32473, the number RFC 5612 reserves for documentation — a receiver matches on the name
``gateway@32473``, which no registered enterprise can collide with. Over TCP and TLS each
message is framed by octet counting (RFC 6587 §3.4.1, RFC 5425 §4.3): its length in
decimal, a space, the message — a newline inside a message cannot split it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

SD_ID = "gateway@32473"
NILVALUE = "-"
# Severity (RFC 5424 §6.2.1) by what an entry says: 4 warning for security events and
# failures, 5 notice for the rest of the record.
WARNING, NOTICE = 4, 5
_WARNING_EVENTS = frozenset({"pass.failed", "zone.refused", "zone.error", "file.refused",
                             "forward.failing", "key.refused", "console.locked",
                             "console.login_failed"})


def severity(event: str) -> int:
    return WARNING if event.startswith("security.") or event in _WARNING_EVENTS else NOTICE


def rfc5424(line: bytes, entry: dict[str, Any], *, facility: int, app_name: str,
            node: str) -> bytes:
    """One syslog message for the audit entry *entry* read as *line* (with its newline)."""
    pri = facility * 8 + severity(str(entry["event"]))
    msgid = str(entry["event"])[:32]  # RFC 5424: up to 32 printable characters
    sd = f'[{SD_ID} seq="{int(entry["seq"])}" hash="{_sd_value(str(entry["hash"]))}"]'
    header = f"<{pri}>1 {entry['ts']} {node[:255] or NILVALUE} {app_name} {NILVALUE} {msgid} {sd} "
    return header.encode("ascii") + line.rstrip(b"\n")


def _sd_value(value: str) -> str:
    """A PARAM-VALUE with ``"``, ``\\`` and ``]`` escaped (RFC 5424 §6.3.3)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def octet_frame(message: bytes) -> bytes:
    """RFC 6587 octet counting: ``MSG-LEN SP SYSLOG-MSG``."""
    return str(len(message)).encode("ascii") + b" " + message


def webhook_body(lines: list[bytes], node: str, sent_at: str) -> bytes:
    """``{"entries":[…],"node":…,"sent_at":…}``: the entries spliced in byte for byte as the
    log holds them (each a canonical JSON object), so parsing the body and writing each
    entry back canonically gives the very bytes that were hashed. ``sent_at`` is inside
    the signed body: a replayed request carries its old time."""
    node_json = _json_string(node)
    return (b'{"entries":[' + b",".join(line.rstrip(b"\n") for line in lines) + b'],"node":'
            + node_json + b',"sent_at":' + _json_string(sent_at) + b"}")


def _json_string(value: str) -> bytes:
    return json.dumps(value, ensure_ascii=True).encode("ascii")


def signature(key: bytes, body: bytes) -> str:
    """The ``X-Gateway-Signature`` header's value: ``sha256=`` and the HMAC-SHA256 of the
    body, in lower-case hex."""
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()
