"""The ``[[forward]]`` tables: where copies of the audit log go — the security team's SIEM,
over syslog (RFC 5424 over TLS, TCP or UDP) or an HTTPS webhook (docs/operations.md,
"Forwarding the audit log to a SIEM").

Every destination pins the receiver's CA (``ca_file``): the system's trust store is never
used, so a certificate any public CA would sign for the name is not enough. Secrets stay
out of the file: a client key is a file of mode 0600, a webhook's HMAC key an environment
variable named by ``secret_env``. Files and the environment are checked where forwarding
starts and by ``gateway check`` (:func:`file_problems`), not on loading: ``gateway status``
and the console read the configuration without them."""

from __future__ import annotations

import os
import ssl
import stat
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from gateway.config.base import ConfigPath, _Model

FAMILY_RE = r"[a-z][a-z0-9_]{0,31}"
# The syslog facilities a receiver may route on (RFC 5424 §6.2.1), by name.
FACILITIES = {"kern": 0, "user": 1, "daemon": 3, "auth": 4, "syslog": 5, "authpriv": 10,
              **{f"local{i}": 16 + i for i in range(8)}}
_NAME_HELP = ("The destination's name, unique among [[forward]] tables: lower-case letters, "
              "digits, \"_\" and \"-\" (up to 32). It names the destination in `gateway status`, "
              "the metrics and the audit log, and keys its cursor in the ledger: renaming it "
              "starts over from the first entry.")
_EVENTS_HELP = ("The event families to send, by the part of the event name before its first "
                "dot (\"security\", \"file\", \"key\", \"console\", \"forward\"…; the events "
                "are listed in docs/formats.md, section 5.4). Unset: every entry. A receiver "
                "given only some families cannot check the chain's links across the entries left "
                "out, only each entry's own hash.")
_BATCH_HELP = ("Entries sent at a time; the cursor in the ledger moves after each batch is "
               "confirmed, so a failure resends at most one batch.")


def https_url(cls: type, v: str) -> str:
    """An https:// URL with a host, a valid port and no credentials (a webhook's ``url``,
    for [[forward]] and [alerts] alike)."""
    parts = urlsplit(v)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(f'"{v}" is not an https:// URL (plain http would send it in clear)')
    if parts.username or parts.password:
        raise ValueError("must not hold a user name or password (the request is signed "
                         "with the key in secret_env)")
    try:
        parts.port  # noqa: B018 — urlsplit checks the port only when asked for it
    except ValueError as exc:
        raise ValueError(f'"{v}" has no valid port ({exc})') from exc
    return v


class _Destination(_Model):
    name: str = Field(pattern=r"^[a-z0-9_-]{1,32}$", description=_NAME_HELP)
    events: list[Annotated[str, Field(pattern=f"^{FAMILY_RE}$")]] | None = Field(
        default=None, min_length=1, description=_EVENTS_HELP)
    batch: int = Field(default=100, ge=1, le=1000, description=_BATCH_HELP)
    timeout: float = Field(
        default=10.0, gt=0, le=300,
        description="Seconds any one step with the receiver may take (connecting, the TLS "
                    "handshake, sending, the receiver confirming); past it the attempt fails "
                    "and is retried with back-off, from the last confirmed entry.")

    def wants(self, event: str) -> bool:
        """Whether an entry of *event* is for this destination (its family is listed)."""
        return self.events is None or family(event) in self.events


class SyslogForward(_Destination):
    """Syslog, RFC 5424: octet-counted frames over TLS (RFC 5425) or TCP (RFC 6587), or one
    datagram per entry over UDP (RFC 5426; best effort: nothing confirms a datagram)."""

    kind: Literal["syslog"] = Field(description='"syslog".')
    transport: Literal["tls", "tcp", "udp"] = Field(
        default="tls",
        description='"tls" (RFC 5425, the receiver\'s certificate checked against ca_file and '
                    'host), "tcp" (plain, for a receiver on the same trusted network segment) or '
                    '"udp" (best effort: a lost datagram is lost, so udp cannot be at-least-once).')
    host: str = Field(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9.:_-]+$",
                      description="The receiver's host name or IP address (with tls, as its "
                                  "certificate names it).")
    port: int = Field(default=6514, ge=1, le=65535,
                      description="The receiver's port (6514 is syslog over TLS's; plain syslog "
                                  "is usually 514).")
    ca_file: ConfigPath | None = Field(
        default=None,
        description="The receiver's CA certificate(s), PEM: the only CA trusted for this "
                    "destination (the system's store is not used). Required with transport = "
                    "\"tls\", not allowed otherwise.")
    client_cert: ConfigPath | None = Field(
        default=None, description="A client certificate (PEM) for a receiver that "
                                  "authenticates senders; with client_key. tls only.")
    client_key: ConfigPath | None = Field(
        default=None, description="client_cert's private key (PEM), readable by its owner only "
                                  "(mode 0600).")
    facility: str = Field(
        default="authpriv",
        description="The syslog facility, by name: authpriv (the default: security messages, "
                    "which receivers' default rules keep in a file only root reads), auth, "
                    "daemon, user, syslog, kern or local0 to local7.")
    app_name: str = Field(default="gateway", pattern=r"^[!-~]{1,48}$",
                          description="The APP-NAME of every message (RFC 5424: up to 48 printable "
                                      "ASCII characters).")

    @field_validator("facility")
    @classmethod
    def _facility(cls, v: str) -> str:
        if v not in FACILITIES:
            raise ValueError(f'"{v}" is not a facility; use one of {", ".join(FACILITIES)}')
        return v

    @model_validator(mode="after")
    def _tls_only(self) -> SyslogForward:
        if self.transport == "tls" and self.ca_file is None:
            raise ValueError('ca_file is required with transport = "tls" (the receiver\'s CA, '
                             "pinned)")
        if self.transport != "tls" and (self.ca_file or self.client_cert or self.client_key):
            raise ValueError(f'ca_file, client_cert and client_key are for transport = "tls", '
                             f'not "{self.transport}"')
        if (self.client_cert is None) != (self.client_key is None):
            raise ValueError("client_cert and client_key go together: set both or neither")
        return self

    @property
    def pri_facility(self) -> int:
        return FACILITIES[self.facility]

    def describe(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"syslog+{self.transport}://{host}:{self.port}"


class WebhookForward(_Destination):
    """An HTTPS endpoint taking batches of entries as JSON, each request signed with HMAC."""

    kind: Literal["webhook"] = Field(description='"webhook".')
    ca_file: ConfigPath = Field(
        description="The receiver's CA certificate(s), PEM: the only CA trusted for this "
                    "destination (the system's store is not used); the certificate must also "
                    "name the URL's host.")
    url: str = Field(description="The receiver's URL: https:// only, no user name or password "
                                 "in it.")
    secret_env: str = Field(
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$",
        description="The name of the environment variable that holds the HMAC key (never the "
                    "key itself: the config file is not a place for secrets). Each request "
                    "carries X-Gateway-Signature: sha256=<hex HMAC-SHA256 of the body>.")

    _url = field_validator("url")(https_url)

    def describe(self) -> str:
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}{parts.path}"


Forward = Annotated[SyslogForward | WebhookForward, Field(discriminator="kind")]


def name_problems(destinations: list[SyslogForward | WebhookForward]) -> list[str]:
    """Two tables of one name would share a cursor: each would skip what the other sent."""
    seen: dict[str, int] = {}
    problems = []
    for i, d in enumerate(destinations):
        if d.name in seen:
            problems.append(f"forward[{i}].name: {d.name} is already used by forward[{seen[d.name]}]")
        seen.setdefault(d.name, i)
    return problems


def file_problems(destinations: list[SyslogForward | WebhookForward]) -> list[str]:
    """What the files and the environment a destination needs lack: checked where forwarding
    starts and by ``gateway check``, one line each naming the key path."""
    problems = []
    for i, d in enumerate(destinations):
        where = f"forward[{i}]"
        if d.ca_file is not None and not d.ca_file.is_file():
            problems.append(f"{where}.ca_file: {d.ca_file} does not exist")
        if isinstance(d, SyslogForward) and d.client_cert is not None:
            if not d.client_cert.is_file():
                problems.append(f"{where}.client_cert: {d.client_cert} does not exist")
            if d.client_key is not None and (why := _secret_mode(d.client_key)):
                problems.append(f"{where}.client_key: {why}")
        if isinstance(d, WebhookForward) and not os.environ.get(d.secret_env):
            problems.append(f"{where}.secret_env: environment variable {d.secret_env} is not "
                            "set (or empty)")
        problems += _tls_problems(where, d)
        problems += _family_problems(where, d)
    return problems


def _tls_problems(where: str, d: SyslogForward | WebhookForward) -> list[str]:
    """The TLS files as TLS reads them: a CA file that is no certificate, a client key that
    is not the certificate's (or has a passphrase) would otherwise first fail in the
    daemon's forwarding thread."""
    from gateway.forward.senders import tls_context

    tls = isinstance(d, WebhookForward) or d.transport == "tls"
    if not tls or d.ca_file is None or not d.ca_file.is_file():
        return []
    try:
        tls_context(d.ca_file)
    except (ssl.SSLError, OSError) as exc:
        return [f"{where}.ca_file: {d.ca_file} holds no CA certificate TLS can use "
                f"({exc.__class__.__name__}: {exc})"]
    if isinstance(d, SyslogForward) and d.client_cert is not None and d.client_cert.is_file():
        try:
            tls_context(d.ca_file, d.client_cert, d.client_key)
        except (ssl.SSLError, OSError) as exc:
            return [f"{where}.client_key: {d.client_key or d.client_cert} is not the private key "
                    f"of {d.client_cert}, or has a passphrase ({exc.__class__.__name__})"]
    return []


def _family_problems(where: str, d: SyslogForward | WebhookForward) -> list[str]:
    """A misspelt family ("secruity") would forward nothing of it, silently."""
    from gateway.audit import EVENTS

    known = {family(e) for e in EVENTS}
    return [f"{where}.events: {f!r} is no event family (known: {', '.join(sorted(known))})"
            for f in d.events or () if f not in known]


def _secret_mode(path: Path) -> str | None:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return f"{path} does not exist"
    except OSError as exc:
        return f"{path}: {exc.strerror}"
    if mode & 0o077:
        return (f"{path}: key file is readable by group or others (mode {mode:04o}); run "
                f"chmod 600 {path}")
    return None


def family(event: str) -> str:
    """The part of an event name before its first dot: what ``events`` lists."""
    return event.split(".", 1)[0]

