"""Getting a batch to a receiver, and knowing it arrived.

- **Syslog over TCP or TLS.** RFC 5425/6587 have no acknowledgement of their own, so
  "confirmed" is the strongest thing TCP says: the receiver's TCP stack acknowledged every
  byte. After writing a batch the sender polls the socket's unacknowledged send queue
  (Linux ``ioctl(SIOCOUTQ)``, alias ``TIOCOUTQ``, on the raw socket under TLS: the bytes
  of TLS records not yet acknowledged) until it is empty. A receiver that crashes between
  its kernel's acknowledgement and its own write can still lose what it was given; RELP
  would close that gap, RFC 5425 cannot. Anything else — a reset, a peer that closed, a
  queue that does not drain within ``timeout`` — is a failure: the connection is dropped
  and the batch resent from the cursor.
- **Syslog over UDP.** One datagram per entry; nothing confirms a datagram, so UDP is
  best effort (a sent datagram counts as delivered) and cannot be at-least-once.
- **Webhook.** One HTTPS POST per batch; any 2xx status is the confirmation. The response
  body is never read (a receiver answering with gigabytes costs nothing) and the whole
  exchange has one deadline (a receiver trickling its answer byte by byte cannot hold
  the thread).

TLS trusts the destination's ``ca_file`` alone — never the system's store — and checks
the receiver's name; TLS 1.2 at least.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import http.client
import os
import select
import socket
import ssl
import struct
import termios
import threading
import time
from collections.abc import Iterator
from typing import Any, Protocol
from urllib.parse import urlsplit

from gateway.config.forward import SyslogForward, WebhookForward
from gateway.errors import GatewayError
from gateway.forward import records

SIOCOUTQ = termios.TIOCOUTQ  # Linux: the same request number (0x5411) for TCP sockets


class SendError(GatewayError):
    """A batch was not confirmed; *reason* is a fixed word for the audit log."""

    code = "E_FORWARD"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class Sender(Protocol):
    def send(self, lines: list[bytes], entries: list[dict[str, Any]]) -> None:
        """Return once the receiver confirmed all of them; raise :class:`SendError`."""

    def close(self) -> None: ...


def sender_for(dest: SyslogForward | WebhookForward, node: str) -> Sender:
    if isinstance(dest, WebhookForward):
        return WebhookSender(dest, node)
    if dest.transport == "udp":
        return UdpSender(dest, node)
    return StreamSender(dest, node)


def tls_context(ca_file: os.PathLike[str] | str, client_cert: os.PathLike[str] | None = None,
                client_key: os.PathLike[str] | None = None) -> ssl.SSLContext:
    """A client context that trusts *ca_file* only and checks the host name."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED, check_hostname: on
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_verify_locations(cafile=os.fspath(ca_file))
    if client_cert is not None:
        ctx.load_cert_chain(os.fspath(client_cert), os.fspath(client_key) if client_key else None,
                            password=_no_passphrase)
    return ctx


def _no_passphrase() -> str:
    """A client key with a passphrase is refused: OpenSSL would otherwise ask for it on the
    terminal a daemon does not have."""
    raise ssl.SSLError("the client key has a passphrase; the gateway takes keys without one "
                       "(mode 0600)")


def classify(exc: BaseException) -> str:
    """A fixed word for what went wrong (the audit log's ``reason``)."""
    if isinstance(exc, SendError):
        return exc.reason
    if isinstance(exc, ssl.SSLCertVerificationError | ssl.CertificateError):
        return "bad_certificate"
    if isinstance(exc, ssl.SSLError):
        return "tls"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, ConnectionResetError | BrokenPipeError | ConnectionAbortedError):
        return "reset"
    if isinstance(exc, socket.gaierror):
        return "unresolved"
    if isinstance(exc, OSError):
        return "unreachable"
    return "failed"


class StreamSender:
    """Syslog over TCP or TLS: one connection kept between batches, octet-counted frames."""

    def __init__(self, dest: SyslogForward, node: str) -> None:
        self.dest, self.node = dest, node
        self.sock: socket.socket | None = None
        self._ctx = (tls_context(dest.ca_file, dest.client_cert, dest.client_key)
                     if dest.transport == "tls" and dest.ca_file is not None else None)

    def _connect(self) -> socket.socket:
        raw = socket.create_connection((self.dest.host, self.dest.port), timeout=self.dest.timeout)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if self._ctx is None:
            return raw
        try:
            return self._ctx.wrap_socket(raw, server_hostname=self.dest.host)
        except BaseException:
            raw.close()
            raise

    def send(self, lines: list[bytes], entries: list[dict[str, Any]]) -> None:
        if self.sock is not None and _peer_closed(self.sock):
            self.close()  # the receiver closed an idle connection (a restart): a new one
        if self.sock is None:
            self.sock = self._connect()
        sock = self.sock  # close() from another thread clears self.sock
        data = b"".join(records.octet_frame(records.rfc5424(
            line, entry, facility=self.dest.pri_facility, app_name=self.dest.app_name,
            node=self.node)) for line, entry in zip(lines, entries, strict=True))
        sock.settimeout(self.dest.timeout)
        sock.sendall(data)  # one deadline for the whole batch (Python >= 3.5)
        wait_acknowledged(sock, self.dest.timeout)

    def close(self) -> None:
        """Also from another thread (the daemon stopping): shutting the socket down first
        ends a send blocked on a receiver that does not read."""
        sock, self.sock = self.sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the raw socket, under TLS too
            with contextlib.suppress(OSError):
                sock.close()


def unacknowledged(sock: socket.socket) -> int:
    """Bytes written to *sock* that the peer's TCP stack has not acknowledged yet."""
    raw = fcntl.ioctl(sock.fileno(), SIOCOUTQ, struct.pack("i", 0))
    return int(struct.unpack("i", raw)[0])


def wait_acknowledged(sock: socket.socket, timeout: float) -> None:
    """Until every byte written to *sock* is acknowledged by the peer (see the module's
    docstring); :class:`SendError` when the connection fails or *timeout* passes first."""
    deadline = time.monotonic() + timeout
    pause = 0.001
    while (left := unacknowledged(sock)) > 0:
        if (err := sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)) != 0:
            raise SendError("reset", f"the connection failed with {left} bytes unconfirmed: "
                            f"{os.strerror(err)}")
        if time.monotonic() >= deadline:
            raise SendError("timeout", f"the receiver has not acknowledged {left} bytes within "
                            f"{timeout:g} s")
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def _peer_closed(sock: socket.socket) -> bool:
    """Whether the peer closed, reset or wrote to the connection: a syslog receiver never
    writes application data, so any it sent means the connection is over. Under TLS the
    raw socket is also readable for TLS's own records (TLS 1.3 sends session tickets after
    the handshake): a non-blocking read lets the TLS layer take those, and only a close or
    application data count."""
    try:
        readable, _, _ = select.select([sock.fileno()], [], [], 0)
    except (OSError, ValueError):
        return True
    if not readable:
        return False
    if not isinstance(sock, ssl.SSLSocket):
        return True
    sock.setblocking(False)  # send() sets the timeout again before writing
    try:
        sock.recv(1)
    except ssl.SSLWantReadError:
        return False  # only TLS's own records were there: the connection is alive
    except OSError:
        return True
    return True  # b"" (closed) or application data


class UdpSender:
    """Syslog over UDP: one datagram per entry, sent = delivered (best effort)."""

    def __init__(self, dest: SyslogForward, node: str) -> None:
        self.dest, self.node = dest, node
        self.sock: socket.socket | None = None

    def send(self, lines: list[bytes], entries: list[dict[str, Any]]) -> None:
        if self.sock is None:
            info = socket.getaddrinfo(self.dest.host, self.dest.port, type=socket.SOCK_DGRAM)[0]
            self.sock = socket.socket(info[0], socket.SOCK_DGRAM)
            self.sock.settimeout(self.dest.timeout)
            self.sock.connect(info[4])
        for line, entry in zip(lines, entries, strict=True):
            self.sock.send(records.rfc5424(line, entry, facility=self.dest.pri_facility,
                                           app_name=self.dest.app_name, node=self.node))

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class WebhookTarget(Protocol):
    """What a webhook sender needs of its configuration: a [[forward]] webhook and an
    [alerts] webhook both have it."""

    @property
    def url(self) -> str: ...
    @property
    def ca_file(self) -> os.PathLike[str]: ...
    @property
    def secret_env(self) -> str: ...
    @property
    def timeout(self) -> float: ...


class WebhookSender:
    """One signed HTTPS POST per batch; a new connection each time (nothing to go stale).
    :meth:`post` sends any body so — the alerts' webhooks use it too."""

    def __init__(self, dest: WebhookTarget, node: str) -> None:
        self.dest, self.node = dest, node
        self._ctx = tls_context(dest.ca_file)
        parts = urlsplit(dest.url)
        self.host, self.port = parts.hostname or "", parts.port or 443
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

    def send(self, lines: list[bytes], entries: list[dict[str, Any]]) -> None:
        now = sent_at()
        self.post(records.webhook_body(lines, self.node, now), now)

    def post(self, body: bytes, now: str) -> None:
        """POST *body* signed, with *now* (which the body must hold as its ``sent_at``) as
        ``X-Gateway-Timestamp``; return on a 2xx, raise :class:`SendError` otherwise."""
        key = os.environ.get(self.dest.secret_env, "").encode()
        if not key:
            raise SendError("no_secret", f"environment variable {self.dest.secret_env} is not set")
        headers = {"Content-Type": "application/json", "Connection": "close",
                   "X-Gateway-Signature": records.signature(key, body),
                   "X-Gateway-Timestamp": now}
        conn = http.client.HTTPSConnection(self.host, self.port, timeout=self.dest.timeout,
                                           context=self._ctx)
        try:
            with deadline(conn, self.dest.timeout * 2):
                conn.request("POST", self.path, body=body, headers=headers)
                status = conn.getresponse().status  # headers only: the body is never read
        finally:
            conn.close()
        if not 200 <= status < 300:
            raise SendError("rejected", f"the receiver answered HTTP {status}")

    def close(self) -> None:
        pass


def sent_at() -> str:
    """Now, as a webhook body's ``sent_at`` and its ``X-Gateway-Timestamp`` say it."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class _Connection(Protocol):
    sock: socket.socket | None


@contextlib.contextmanager
def deadline(conn: _Connection, seconds: float) -> Iterator[None]:
    """Shut the connection's socket down if the exchange is not over within *seconds*:
    per-operation timeouts alone let a receiver that sends one byte at a time keep us.
    *conn* is an HTTP connection, or an SMTP one (the alerts' mail: the same attribute)."""
    done, fired = threading.Event(), threading.Event()

    def cut() -> None:
        if not done.wait(seconds) and conn.sock is not None:
            fired.set()
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)

    watchdog = threading.Thread(target=cut, name="webhook-deadline", daemon=True)
    watchdog.start()
    try:
        yield
    except (OSError, http.client.HTTPException) as exc:
        if fired.is_set():
            raise SendError("timeout", f"the receiver did not answer within {seconds:g} s") from exc
        if isinstance(exc, http.client.HTTPException):
            raise SendError("bad_response", f"the receiver's answer is not HTTP: "
                            f"{type(exc).__name__}") from exc
        raise
    finally:
        done.set()
        watchdog.join()
