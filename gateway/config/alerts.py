"""The ``[alerts]`` section: who is told when something needs a person (docs/operations.md,
"Alerts") — by e-mail over SMTP with STARTTLS and a pinned CA, and by signed HTTPS
webhooks of the same shape as a ``[[forward]]`` webhook.

As with forwarding, secrets stay out of the file (an SMTP password and a webhook's HMAC
key are environment variables named by ``password_env`` and ``secret_env``), and files and
the environment are checked where the daemon starts and by ``gateway check``
(:func:`file_problems`), not on loading: ``gateway status``, ``gateway alerts`` and the
console read the configuration without them."""

from __future__ import annotations

import datetime as dt
import os
import re
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from gateway.config.base import ConfigPath, _Model, is_loopback_host
from gateway.config.forward import https_url

SEVERITIES = ("critical", "warning", "info")
_ENV_RE = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
# An address as a mail server takes it in RCPT TO: no display name, no comment, no spaces.
_ADDRESS_RE = r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9.-]{1,253}$"
Address = Annotated[str, Field(pattern=_ADDRESS_RE)]
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WINDOW_RE = re.compile(r"(?i)(?P<d1>[a-z]{3})(?:-(?P<d2>[a-z]{3}))?\s+"
                        r"(?P<h1>\d{2}):(?P<m1>\d{2})-(?P<h2>\d{2}):(?P<m2>\d{2})")


@dataclass(frozen=True)
class Window:
    """A weekly window: the days (0 = Monday) and the local times [start, end) in them."""

    days: frozenset[int]
    start: dt.time
    end: dt.time

    def contains(self, local: dt.datetime) -> bool:
        return local.weekday() in self.days and self.start <= local.time() < self.end


def parse_window(text: str) -> Window:
    """``"Mon-Fri 09:00-17:00"`` (or one day, ``"Sat 10:00-12:00"``); ValueError otherwise."""
    m = _WINDOW_RE.fullmatch(text.strip())
    if m is None:
        raise ValueError(f'"{text}" is not a window such as "Mon-Fri 09:00-17:00"')
    first, last = m["d1"].lower(), (m["d2"] or m["d1"]).lower()
    if first not in _DAYS or last not in _DAYS:
        raise ValueError(f'"{text}": days are Mon, Tue, Wed, Thu, Fri, Sat, Sun')
    a, b = _DAYS.index(first), _DAYS.index(last)
    days = frozenset(range(a, b + 1)) if a <= b else frozenset([*range(a, 7), *range(0, b + 1)])
    try:
        start = dt.time(int(m["h1"]), int(m["m1"]))
        end = dt.time(23, 59, 59, 999999) if (m["h2"], m["m2"]) == ("24", "00") else dt.time(
            int(m["h2"]), int(m["m2"]))
    except ValueError:
        raise ValueError(f'"{text}": a time is not HH:MM (00:00 to 24:00)') from None
    if end <= start:
        raise ValueError(f'"{text}": the window must end after it starts (not over midnight)')
    return Window(days, start, end)


class SmtpSettings(_Model):
    """The mail relay alerts go through."""

    host: str = Field(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9.:_-]+$",
                      description="The relay's host name or IP address, as its certificate "
                                  "names it.")
    port: int = Field(default=587, ge=1, le=65535,
                      description="The relay's submission port (587: STARTTLS).")
    tls: Literal["starttls", "none"] = Field(
        default="starttls",
        description='"starttls" (required: the relay\'s certificate is checked against ca_file '
                    'and host), or "none" for a relay on this host\'s loopback only.')
    ca_file: ConfigPath | None = Field(
        default=None,
        description="The relay's CA certificate(s), PEM: the only CA trusted (the system's store "
                    "is not used). Required with tls = \"starttls\".")
    username: str | None = Field(default=None, min_length=1, max_length=256,
                                 description="The login at the relay, if it wants one; with "
                                             "password_env.")
    password_env: str | None = Field(
        default=None, pattern=_ENV_RE,
        description="The name of the environment variable holding the relay password (never "
                    "the password itself).")
    sender: Address = Field(alias="from", description="The From address of every alert.")
    timeout: float = Field(default=10.0, gt=0, le=300,
                           description="Seconds one delivery to the relay may take in all; "
                                       "past it the attempt fails and is retried.")

    @model_validator(mode="after")
    def _tls(self) -> SmtpSettings:
        if self.tls == "starttls" and self.ca_file is None:
            raise ValueError('ca_file is required with tls = "starttls" (the relay\'s CA, pinned)')
        if self.tls == "none" and not is_loopback_host(self.host):
            raise ValueError(f'tls = "none" is for a relay on loopback only, not {self.host}: '
                             "alerts would cross the network in clear")
        if self.tls == "none" and self.ca_file is not None:
            raise ValueError('ca_file is for tls = "starttls", not "none"')
        if (self.username is None) != (self.password_env is None):
            raise ValueError("username and password_env go together: set both or neither")
        return self


class Recipients(_Model):
    critical: list[Address] = Field(default=[], description="Addresses told of critical alerts.")
    warning: list[Address] = Field(default=[], description="Addresses told of warnings.")
    info: list[Address] = Field(default=[], description="Addresses told of information "
                                                        "(`gateway alerts test`).")

    def of(self, severity: str) -> list[str]:
        return list(getattr(self, severity))


class AlertWebhook(_Model):
    """An HTTPS endpoint taking each alert as signed JSON: a [[forward]] webhook's shape."""

    url: str = Field(description="The receiver's URL: https:// only, no user name or password "
                                 "in it.")
    ca_file: ConfigPath = Field(
        description="The receiver's CA certificate(s), PEM: the only CA trusted (the system's "
                    "store is not used); the certificate must also name the URL's host.")
    secret_env: str = Field(
        pattern=_ENV_RE,
        description="The name of the environment variable that holds the HMAC key. Each request "
                    "carries X-Gateway-Signature: sha256=<hex HMAC-SHA256 of the body>.")
    timeout: float = Field(default=10.0, gt=0, le=300,
                           description="Seconds one step with the receiver may take; past it "
                                       "the attempt fails and is retried.")

    _url = field_validator("url")(https_url)

    def describe(self) -> str:
        from urllib.parse import urlsplit
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}{parts.path}"


class Thresholds(_Model):
    key_expiry_days: int = Field(default=30, ge=1, le=365,
                                 description="A key expiring within this many days is a warning "
                                             "(expired: critical).")
    purge_due_days: int = Field(default=3, ge=0, le=30,
                                description="A purge due within this many days is a warning "
                                            "(overdue: critical).")
    uncollected_days: int | None = Field(
        default=None, ge=1, le=365,
        description="Slices an agency has not collected after this many days are a warning. "
                    "Unset: console.stale_days.")
    zone_down_minutes: int = Field(default=15, ge=1, le=10080,
                                   description="A zone unreachable this long is critical.")
    pass_failures: int = Field(default=3, ge=1, le=1000,
                               description="A piece of the pass failing this many passes in a "
                                           "row is critical.")


class AlertsSection(_Model):
    smtp: SmtpSettings | None = Field(default=None, description="The mail relay; unset: no "
                                                                "e-mail.")
    recipients: Recipients = Field(default_factory=Recipients,
                                   description="Who gets e-mail, per severity.")
    webhooks: list[AlertWebhook] = Field(default=[], description=(
        "HTTPS endpoints that get every alert as signed JSON ([[alerts.webhooks]] tables: url, "
        "ca_file, secret_env, timeout — as a [[forward]] webhook)."))
    reminder_hours: float = Field(default=24, gt=0, le=24 * 30,
                                  description="An alert still open is sent again this often.")
    change_window: str | None = Field(
        default=None,
        description="When console accounts may be changed, local time (gateway.timezone), e.g. "
                    "\"Mon-Fri 09:00-17:00\"; a change outside it is an alert. Unset: every "
                    "account change is one.")
    thresholds: Thresholds = Field(default_factory=Thresholds,
                                   description="When a condition becomes an alert.")

    @field_validator("change_window")
    @classmethod
    def _window(cls, v: str | None) -> str | None:
        if v is not None:
            parse_window(v)
        return v

    @model_validator(mode="after")
    def _somebody(self) -> AlertsSection:
        if self.smtp is None and any(self.recipients.of(s) for s in SEVERITIES):
            raise ValueError("recipients are set but [alerts.smtp] is not: nobody could be "
                             "mailed")
        if self.smtp is not None and not any(self.recipients.of(s) for s in SEVERITIES):
            raise ValueError("[alerts.smtp] is set but alerts.recipients lists nobody")
        if self.smtp is None and not self.webhooks:
            raise ValueError("no channel: set [alerts.smtp] with alerts.recipients, or "
                             "[[alerts.webhooks]] — an alert nobody receives is not one")
        return self

    @property
    def window(self) -> Window | None:
        return parse_window(self.change_window) if self.change_window else None


def file_problems(section: AlertsSection | None) -> list[str]:
    """What the files and the environment the alert channels need lack: checked where the
    daemon starts and by ``gateway check``, one line each naming the key path."""
    from gateway.forward.senders import tls_context

    if section is None:
        return []
    problems = []
    targets: list[tuple[str, Path | None]] = []
    if (smtp := section.smtp) is not None:
        if smtp.password_env is not None and not os.environ.get(smtp.password_env):
            problems.append(f"alerts.smtp.password_env: environment variable {smtp.password_env} "
                            "is not set (or empty)")
        targets.append(("alerts.smtp.ca_file", smtp.ca_file))
    for i, hook in enumerate(section.webhooks):
        if not os.environ.get(hook.secret_env):
            problems.append(f"alerts.webhooks[{i}].secret_env: environment variable "
                            f"{hook.secret_env} is not set (or empty)")
        targets.append((f"alerts.webhooks[{i}].ca_file", hook.ca_file))
    for where, ca in targets:
        if ca is None:
            continue
        if not ca.is_file():
            problems.append(f"{where}: {ca} does not exist")
            continue
        try:
            tls_context(ca)
        except (ssl.SSLError, OSError) as exc:
            problems.append(f"{where}: {ca} holds no CA certificate TLS can use "
                            f"({exc.__class__.__name__})")
    return problems
