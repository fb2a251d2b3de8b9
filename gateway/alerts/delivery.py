"""Telling people: each queued notice to its channel — e-mail through the [alerts.smtp]
relay (STARTTLS, the relay's CA pinned, one deadline for the whole exchange) or an HTTPS
webhook (the forwarding's :class:`~gateway.forward.senders.WebhookSender`: HMAC-signed,
CA pinned, bounded) — in a thread of its own, so a slow or hostile relay never holds a
pass. A notice that fails stays in the ledger's outbox and is tried again after a
back-off (:data:`BACKOFF`), counted in ``gateway_alerts_failed_total``; one that arrives
is audited as ``alert.sent`` (the rule, severity, channel and how many addresses — never
an address)."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import smtplib
import threading
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

import structlog

from gateway.alerts.rules import RULES, key_hash
from gateway.audit import AuditLog
from gateway.config.alerts import AlertsSection, SmtpSettings
from gateway.errors import AuditError, GatewayError
from gateway.forward import senders
from gateway.ledger import AlertMessageRow, AlertRow, Ledger, utcnow
from gateway.metrics import Metrics

log = structlog.get_logger("gateway.alerts")

BACKOFF = (5.0, 600.0)  # seconds: the first wait after a failure, and the longest
POLL = 1.0
CLAIM = 30.0  # seconds a notice taken for sending stays another thread's, beyond its deadline


@dataclass(frozen=True)
class Notice:
    """What a notice says, whichever the channel."""

    rule: str
    severity: str
    kind: str  # opened | escalated | reminder | cleared | test
    key: str
    subject: str
    detail: str
    opened_at: dt.datetime
    cleared_at: dt.datetime | None = None

    @classmethod
    def of(cls, alert: AlertRow, kind: str) -> Notice:
        return cls(alert.rule, alert.severity, kind, alert.key, alert.subject, alert.detail,
                   alert.opened_at, alert.cleared_at)

    @property
    def title(self) -> str:
        """``[gateway <severity>] <rule>: <subject>``, with what changed when not new."""
        state = {"cleared": " (cleared)", "reminder": " (still open)",
                 "escalated": " (escalated)"}.get(self.kind, "")
        return f"[gateway {self.severity}] {self.rule}: {self.subject}{state}"

    def text(self, node: str) -> str:
        rule = RULES.get(self.rule)
        when = f"Opened {self.opened_at:%Y-%m-%d %H:%M} UTC on {node}."
        if self.kind == "cleared" and self.cleared_at is not None:
            when += f" Cleared {self.cleared_at:%Y-%m-%d %H:%M} UTC: the condition no longer holds."
        what = f"{rule.title}: {self.detail}" if rule else self.detail
        return "\n\n".join([what, when, rule.advice if rule else "",
                            f"Condition: {self.key}\nList open alerts: gateway alerts"]) + "\n"

    def json(self, node: str, sent_at: str) -> bytes:
        rule = RULES.get(self.rule)
        alert = {"rule": self.rule, "severity": self.severity, "kind": self.kind, "key": self.key,
                 "subject": self.subject, "detail": self.detail,
                 "opened_at": self.opened_at.isoformat(),
                 "cleared_at": self.cleared_at.isoformat() if self.cleared_at else None,
                 "title": self.title, "advice": rule.advice if rule else ""}
        return json.dumps({"alert": alert, "node": node, "sent_at": sent_at}, sort_keys=True,
                          separators=(",", ":"), ensure_ascii=True).encode()


class Channels:
    """Every configured channel, by the name notices carry (``email``, ``webhook<i>``)."""

    def __init__(self, section: AlertsSection, node: str) -> None:
        self.section, self.node = section, node
        self.hooks = [senders.WebhookSender(h, node) for h in section.webhooks]

    def timeouts(self) -> list[float]:
        smtp = [self.section.smtp.timeout] if self.section.smtp else []
        return [*smtp, *(h.timeout for h in self.section.webhooks), 1.0]

    def send(self, channel: str, notice: Notice) -> int:
        """Send *notice* to *channel*; the number of addresses it went to. Raises on failure."""
        if channel == "email":
            smtp = self.section.smtp
            to = self.section.recipients.of(notice.severity)
            if smtp is None or not to:
                return 0  # the configuration changed since it was queued: nobody to tell
            send_mail(smtp, to, notice.title, notice.text(self.node))
            return len(to)
        index = int(channel.removeprefix("webhook"))
        if index >= len(self.hooks):
            return 0
        now = senders.sent_at()
        self.hooks[index].post(notice.json(self.node, now), now)
        return 1


def send_mail(smtp: SmtpSettings, to: list[str], subject: str, body: str) -> None:
    """One message through the relay: STARTTLS with the pinned CA (unless tls = "none" on
    loopback), a login if configured, and one deadline over the whole exchange — a relay
    that never answers, or answers a byte at a time, cannot hold the thread longer."""
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = smtp.sender, ", ".join(to), subject
    msg["Date"], msg["Message-ID"] = format_datetime(utcnow()), make_msgid(domain="gateway")
    msg.set_content(body)
    conn = smtplib.SMTP(timeout=smtp.timeout)
    conn._host = smtp.host  # type: ignore[attr-defined]  # the name starttls() checks; only SMTP(host) would set it, and
    # that connects before the deadline below could watch the socket
    try:
        with senders.deadline(conn, smtp.timeout * 2):
            conn.connect(smtp.host, smtp.port)
            conn.ehlo()
            if smtp.tls == "starttls":
                assert smtp.ca_file is not None  # noqa: S101 — invariant, not an input check
                conn.starttls(context=senders.tls_context(smtp.ca_file))
                conn.ehlo()
            if smtp.username is not None and smtp.password_env is not None:
                conn.login(smtp.username, os.environ.get(smtp.password_env, ""))
            conn.send_message(msg, from_addr=smtp.sender, to_addrs=to)
            with contextlib.suppress(smtplib.SMTPException, OSError):
                conn.quit()
    finally:
        with contextlib.suppress(OSError):
            conn.close()


def reason(exc: BaseException) -> str:
    """A fixed word for what went wrong, as forwarding words it (and SMTP's own)."""
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"smtp_{exc.smtp_code}"
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return "smtp_recipients_refused"
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return "smtp_disconnected"
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return "smtp_no_starttls"
    return senders.classify(exc)


class Deliverer:
    """The delivery thread (see the module docstring)."""

    def __init__(self, ledger: Ledger, audit: AuditLog, channels: Channels, metrics: Metrics,
                 backoff: tuple[float, float] = BACKOFF) -> None:
        self.ledger, self.audit, self.channels, self.metrics = ledger, audit, channels, metrics
        self.backoff = backoff
        self.wake, self.stop = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._run, name="alerts", daemon=True)

    def start(self) -> None:
        for channel in ["email", *(f"webhook{i}" for i in range(len(self.channels.hooks)))]:
            self.metrics.alerts_failed.labels(channel=channel)  # each from 0
        self.thread.start()

    def close(self, timeout: float = 5.0) -> None:
        self.stop.set()
        self.wake.set()
        if self.thread.ident is not None:
            self.thread.join(timeout=timeout)

    def _run(self) -> None:
        while not self.stop.is_set():
            self.wake.clear()
            try:
                self.drain()
            except Exception as exc:  # the ledger away, a bug: said, and tried again
                log.error("alerts.delivery_failed", error=str(exc)[:300],
                          exc_info=not isinstance(exc, GatewayError))
                self.stop.wait(self.backoff[0])
            self.wake.wait(POLL)

    def drain(self) -> int:
        """Send every notice that is due; the number sent."""
        sent = 0
        for message, alert in self.ledger.due_messages():
            if self.stop.is_set():
                break
            sent += self.deliver(message, alert)
        return sent

    def deliver(self, message: AlertMessageRow, alert: AlertRow) -> int:
        """Send one notice, if no other delivery thread took it first; 1 if it went."""
        hold = CLAIM + 2 * max(self.channels.timeouts())
        if not self.ledger.claim_message(message.id, message.next_try_at,
                                         utcnow() + dt.timedelta(seconds=hold)):
            return 0
        try:
            recipients = self.channels.send(message.channel, Notice.of(alert, message.kind))
        except Exception as exc:  # the relay, the receiver, the network, TLS: retried
            word = reason(exc)
            wait = min(self.backoff[0] * 2 ** message.attempts, self.backoff[1])
            # the word only: an SMTP error's text names addresses (refused recipients,
            # "550 <soc@…> rejected"), which neither the ledger nor `gateway alerts` shows
            self.ledger.message_failed(message.id, word, utcnow() + dt.timedelta(seconds=wait))
            self.metrics.alerts_failed.labels(channel=message.channel).inc()
            log.warning("alerts.send_failed", channel=message.channel, rule=alert.rule,
                        reason=word, attempts=message.attempts + 1, retry_in=wait)
            return 0
        self.ledger.message_sent(message.id, recipients)
        try:
            self.audit.record("alert.sent", rule=alert.rule, severity=alert.severity,
                              kind=message.kind, channel=message.channel, recipients=recipients,
                              alert_sha256=key_hash(alert.key))
        except (AuditError, OSError) as exc:
            log.error("alerts.audit_failed", error=str(exc))
        return 1
